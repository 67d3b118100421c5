"""Per-cluster state: windows of what the member accounts did under one shared key.

A cluster is keyed by one shared attribute (`models.keys`). Its state keeps the last
`cluster_horizon_windows` windows of additive counters, and a capped member map used to
count distinct, young and new accounts over the horizon and to fan a verdict out to members.
Counting is exact up to the member cap; what is over it is counted in `members_overflow`.
The cap is a count (`cluster_member_cap`) and a size (`cluster_member_bytes`, the member map's
largest encoded size, each member counted at its most: `member_wire_bytes`), so that no
cluster's state outgrows what a worker may write (`max_state_bytes`), whatever its crowd.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from distillguard.models.account import Verdict
from distillguard.models.behaviour import HARVESTING, ROTATING, SUSTAINED
from distillguard.models.config import DetectorConfig
from distillguard.models.crowd_hours import counts_crowd_hours, hour_harvester, hour_of
from distillguard.models.keys import is_template_key
from distillguard.models.messages import ClusterSummary
from distillguard.models.templates import signature, uses_template


@dataclass(slots=True)
class ClusterWindow:
    start: int
    accounts: int = 0  # distinct accounts active in this window under the key
    requests: int = 0
    reasoning: int = 0
    high_value: int = 0
    completion_tokens: int = 0

    def to_wire(self) -> list[Any]:
        return [self.start, self.accounts, self.requests, self.reasoning, self.high_value,
                self.completion_tokens]

    @classmethod
    def from_wire(cls, w: list[Any]) -> ClusterWindow:
        return cls(*w)


# Member record, kept as a short tuple to stay small on the wire (an array):
# (last window active, young (0/1), first request ts, id of the last verdict it was told,
# for a template bucket the member's latest prompt there (SimHash; 0 for other keys),
# the account's latest harvest and rotation figures and its history level (models/behaviour.py
# `history`: too new to judge, judged, or harvesting known templates for a while), its
# organisation and card (`ClusterSummary.org`, `card`), the clock hour it last sent the key,
# its high-value reasoning requests of the key and all its requests in that hour, and whether it
# was told that the hour was a crowd hour: these six for a key whose crowds are judged by the
# hour (models/crowd_hours.py `counts_crowd_hours`), zeros for the others, whose member records
# (and their counted bytes, `member_wire_bytes`) they would otherwise make a third larger).
# A tuple, replaced on update, rather than a list: the garbage collector stops tracking a
# tuple of plain values, and a list per member of every cluster made much of its work.
_LAST: Final = 0
_YOUNG: Final = 1
_FIRST: Final = 2
_TOLD: Final = 3
_PROMPT: Final = 4
_HARVEST: Final = 5
_ROTATION: Final = 6
_HISTORY: Final = 7
_ORG: Final = 8
_CARD: Final = 9
_HOUR: Final = 10
_HOUR_HARVEST: Final = 11
_HOUR_REQUESTS: Final = 12
_HOUR_TOLD: Final = 13
Member = tuple[int, int, float, str, int, float, float, int, int, int, int, int, int, int]

# The most bytes a member takes in the state's wire form (orjson) besides its account id:
# `"<id>":[last,young,first,"<told>",prompt,harvest,rotation,history,org,card,hour,harvested,
# requests,told],` is 4 for the id's quotes, colon and comma, 2 brackets and 13 commas, then
# each field at its longest: a window start (an event time, at most 10 digits: models/events.py
# MAX_EVENT_TS), 1, three floats (24: a double's longest repr, "-2.2250738585072014e-308"), a
# verdict id in quotes (2 + 27, "cv-" and 24 hex digits, models/cluster_stage.py), a 64-bit
# SimHash (20 digits), a history level (1), and the six crowd-hour fields at 0 (1 each). In a
# cluster judged by the hour they take at most CROWD_HOUR_MEMBER_BYTES more: two 32-bit hashes
# (10 digits each), an hour (an event time, 10), two request counts (20 each: a 64-bit integer)
# and 1. tests/unit/test_state_bounds.py encodes members built at these lengths.
MEMBER_FIXED_BYTES: Final = 4 + 2 + 13 + 10 + 1 + 3 * 24 + 2 + 27 + 20 + 1 + 6
CROWD_HOUR_MEMBER_BYTES: Final = 2 * 10 + 10 + 2 * 20 + 1 - 6


def text_wire_bytes(text: str) -> int:
    """The most bytes a string takes inside JSON quotes: a quote or a backslash is escaped in 2
    bytes, a control character in 6 (`\u0001`)."""
    size = len(text.encode())
    if not text.isprintable() or '"' in text or "\\" in text:
        size += sum(5 if c < " " else 1 for c in text if c < " " or c in '"\\')
    return size


def member_wire_bytes(account_id: str, cluster_key: str = "") -> int:
    """The most bytes this account's member record can take on the wire in this key's cluster."""
    return (text_wire_bytes(account_id) + MEMBER_FIXED_BYTES
            + (CROWD_HOUR_MEMBER_BYTES if counts_crowd_hours(cluster_key) else 0))


# The most bytes a waiting summary takes in the state's wire form besides its cluster key and
# account id (models/messages.py `ClusterSummary.to_wire`, 19 fields): 2 brackets, 18 commas,
# the comma after it, 6 quotes (key, id, kind), the kind ("window", 6), then each field at its
# longest: a window start and a tick (10 digits each), two event times and two behaviour
# figures (24 each: a double's longest repr), five counters (20: a 64-bit integer), `false`
# (5), a 64-bit SimHash (20), a history level (1) and two 32-bit hashes (10 each).
# tests/unit/test_state_bounds.py encodes summaries built at these lengths.
SUMMARY_FIXED_BYTES: Final = (2 + 18 + 1 + 6 + 6 + 2 * 10 + 4 * 24 + 5 * 20 + 5 + 20 + 1
                              + 2 * 10)


def summary_wire_bytes(s: ClusterSummary) -> int:
    """The most bytes this summary can take on the wire while it waits in a cluster's state."""
    return text_wire_bytes(s.cluster_key) + text_wire_bytes(s.account_id) + SUMMARY_FIXED_BYTES


def member_flags(young: int, harvest: float, rotation: float,
                 history: int) -> tuple[int, int, int, int]:
    """(harvesting, suspicious, rotating harvester, sustained) of one member, each 0 or 1.
    Suspicious: harvesting on a cheap identity, a young account or a rotating one (bought and
    aged accounts rotate to look like many people). A rotating harvester: harvesting while it
    rotates its network or client, as a hydra's accounts on a proxy pool do; a member that
    rotates and harvests nothing does not count (since core 0.16: a few established accounts on
    a rotating proxy sending a course's prompts as chat made its crowd "rotate", and the course's
    late joiners were blocked as a hydra's fresh accounts, an adversary's probe). Sustained:
    suspicious, and harvesting known templates for longer than a tutorial or a course lasts
    (models/behaviour.py `SUSTAINED`)."""
    harvesting = harvest >= HARVESTING
    rotating = rotation >= ROTATING
    suspicious = harvesting and (young or rotating)
    return (int(harvesting), int(suspicious), int(harvesting and rotating),
            int(suspicious and history >= SUSTAINED))


def _member_from_wire(m: Sequence[Any]) -> Member:
    # A list when decoded from the changelog, the tuple itself when a state is copied in memory
    # (a compiled core checks the type). 5, 7 or 8 fields: a member from a core before member
    # behaviour, before its history, or before its identity and crowd hours.
    if len(m) >= 14:
        return (m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8], m[9], m[10], m[11], m[12],
                m[13])
    return (m[0], m[1], m[2], m[3], m[4] if len(m) > 4 else 0,
            m[5] if len(m) > 5 else 0.0, m[6] if len(m) > 6 else 0.0, m[7] if len(m) > 7 else 0,
            0, 0, 0, 0, 0, 0)


def _told(m: Member, verdict_id: str) -> Member:
    return (m[0], m[1], m[2], verdict_id, m[4], m[5], m[6], m[7], m[8], m[9], m[10], m[11],
            m[12], m[13])


@dataclass(slots=True)
class ClusterState:
    cluster_key: str
    current_window: int = -1
    windows: dict[int, ClusterWindow] = field(default_factory=dict)
    members: dict[str, Member] = field(default_factory=dict)
    members_overflow: int = 0
    late_summaries: int = 0
    # Over the horizon, recounted when the window advances and kept current in between. Members
    # that harvest, that do so on a cheap identity (young or rotating: suspicious), that do so
    # while rotating (`member_flags`).
    active: int = 0
    active_young: int = 0
    active_new: int = 0
    active_harvesting: int = 0
    active_suspicious: int = 0
    active_rotating: int = 0
    active_sustained: int = 0
    # Suspicious members among all those remembered (not only the horizon's): who a key's crowd
    # has been, for judging a newcomer by it (models/scoring.py `prior`).
    remembered_suspicious: int = 0
    verdict: Verdict | None = None
    last_ts: float = 0.0
    # Summaries received but not folded in yet: each waits until its tick is judged
    # (models/cluster_stage.py), so the fold order never depends on arrival order. At most
    # `cluster_pending_bytes` of them (`summary_wire_bytes`, summed in `pending_bytes`): past
    # it the oldest are judged at once, without waiting for the slowest account partition
    # (`ClusterStage.judge_early`), and every tick below `judged_early_before` is judged.
    pending: list[ClusterSummary] = field(default_factory=list)
    judged_early_before: int = 0
    # For a template bucket: the template its crowd uses (`template_signature`), set once the
    # first members agree on one. A summary of a prompt far from it is a stray, left out of the
    # crowd, and a conviction names it: two templates can share a 16-bit band (measured: a CoT
    # campaign's template and a launch tutorial; the campaign's crowd convicted the bucket, and
    # the tutorial's users, matching the majority of the latest prompts, were throttled).
    template: int = 0
    # The latest strays (member records of accounts whose prompts are far from the template, at
    # most SIGNATURE_MEMBERS; None until the first): when more of them, active in the horizon,
    # agree on another template than the crowd has active members, that template takes the
    # bucket over (`_reelect`). Else three decoy accounts that agreed first would hide any
    # later crowd in the bucket for as long as they stay.
    strays: dict[str, Member] | None = None
    # Not on the wire, so a recovered state starts over with a full scan: the verdict every
    # active member has been told of (`members_to_tell`), and the members added since, in
    # the order they were added. Telling then looks at those only, not at every member.
    # `joined` is a list only while `told_all` is set: an empty list in every cluster state
    # was a tenth of the objects the garbage collector scans.
    told_all: str = field(default="", compare=False, repr=False)
    joined: list[str] | None = field(default=None, compare=False, repr=False)
    # The members' most bytes on the wire (`member_wire_bytes`, summed), kept as they come
    # and go; not on the wire, recounted by `from_wire`.
    member_bytes: int = field(default=0, compare=False, repr=False)
    # The same for the waiting summaries (`summary_wire_bytes`, summed).
    pending_bytes: int = field(default=0, compare=False, repr=False)
    # The clock hours in which an established member became a harvester of this content key
    # (`add_summary`, models/crowd_hours.py); the cluster stage looks for a crowd hour in each
    # (`hour_harvesters`) and clears them, within the same fold. None, not an empty list, in
    # the many clusters where none crossed (a list each was garbage collector work).
    crossed_hours: list[int] | None = field(default=None, compare=False, repr=False)

    def horizon_start(self, cfg: DetectorConfig) -> int:
        return self.current_window - (cfg.cluster_horizon_windows - 1) * cfg.cluster_window_s

    def to_wire(self) -> list[Any]:
        return [self.cluster_key, self.current_window,
                [w.to_wire() for w in self.windows.values()], self.members,
                self.members_overflow, self.late_summaries, self.active, self.active_young,
                self.active_new, self.verdict.to_wire() if self.verdict else None, self.last_ts,
                [p.to_wire() for p in self.pending], self.template, self.strays,
                [self.active_harvesting, self.active_suspicious, self.active_rotating,
                 self.active_sustained, self.remembered_suspicious],
                self.judged_early_before]

    @classmethod
    def from_wire(cls, w: list[Any]) -> ClusterState:
        windows = [ClusterWindow.from_wire(x) for x in w[2]]
        members = {a: _member_from_wire(m) for a, m in w[3].items()}
        pending = [ClusterSummary.from_wire(p) for p in w[11]]
        return cls(cluster_key=w[0], current_window=w[1],
                   windows={x.start: x for x in windows},
                   members=members,
                   member_bytes=sum(member_wire_bytes(a, w[0]) for a in members),
                   members_overflow=w[4], late_summaries=w[5], active=w[6], active_young=w[7],
                   active_new=w[8], verdict=Verdict.from_wire(w[9]) if w[9] else None,
                   last_ts=w[10], pending=pending,
                   pending_bytes=sum(summary_wire_bytes(s) for s in pending),
                   template=w[12] if len(w) > 12 else 0,
                   strays=({a: _member_from_wire(m) for a, m in w[13].items()}
                           if len(w) > 13 and w[13] is not None else None),
                   active_harvesting=w[14][0] if len(w) > 14 else 0,
                   active_suspicious=w[14][1] if len(w) > 14 else 0,
                   active_rotating=w[14][2] if len(w) > 14 else 0,
                   active_sustained=w[14][3] if len(w) > 14 and len(w[14]) > 3 else 0,
                   remembered_suspicious=w[14][4] if len(w) > 14 and len(w[14]) > 4 else 0,
                   judged_early_before=w[15] if len(w) > 15 else 0)


def cluster_window(account_window_start: int, cfg: DetectorConfig) -> int:
    return account_window_start - account_window_start % cfg.cluster_window_s


def advance(state: ClusterState, window: int, cfg: DetectorConfig) -> None:
    """Move the cluster's current window forward: drop old windows, recount the horizon.

    Runs once per window per cluster, so its O(members) cost is paid per window, not per event.
    """
    state.current_window = window
    start = state.horizon_start(cfg)
    for old in [w for w in state.windows if w < start]:
        del state.windows[old]
    if state.strays:
        _reelect(state, start)
    # One pass over the members: most clusters have one or two (a template bucket of one
    # account), where building three lists cost more than the counting.
    idle_before = window - cfg.idle_expiry_s
    idle: list[str] = []
    active = young = new = harvesting = suspicious = rotating = sustained = remembered = 0
    for account, m in state.members.items():
        if m[_LAST] < idle_before:
            idle.append(account)
            continue
        remembered += member_flags(m[_YOUNG], m[_HARVEST], m[_ROTATION], m[_HISTORY])[1]
        if m[_LAST] >= start:
            active += 1
            young += m[_YOUNG]
            if m[_FIRST] >= start:
                new += 1
            h, s, r, o = member_flags(m[_YOUNG], m[_HARVEST], m[_ROTATION], m[_HISTORY])
            harvesting += h
            suspicious += s
            rotating += r
            sustained += o
    if idle:  # one may come back as a new member, last in the member order
        state.told_all = ""
        state.joined = None
        for account in idle:
            del state.members[account]
            state.member_bytes -= member_wire_bytes(account, state.cluster_key)
    state.active = active
    state.active_young = young
    state.active_new = new
    state.active_harvesting = harvesting
    state.active_suspicious = suspicious
    state.active_rotating = rotating
    state.active_sustained = sustained
    state.remembered_suspicious = remembered
    if not state.template and is_template_key(state.cluster_key):
        state.template = template_signature(state)


def add_summary(state: ClusterState, s: ClusterSummary, cfg: DetectorConfig) -> bool:
    """Fold one summary in; return False when it is older than the horizon (counted late)."""
    # Two or three times per event: `cluster_window` and `horizon_start` inline, each field
    # of the summary read once.
    cluster_window_s = cfg.cluster_window_s
    window = s.window_start - s.window_start % cluster_window_s
    if window > state.current_window:
        advance(state, window, cfg)
    start = state.current_window - (cfg.cluster_horizon_windows - 1) * cluster_window_s
    if window < start:
        state.late_summaries += 1
        return False
    simhash = s.simhash
    if simhash and state.template and not uses_template(simhash, state.template):
        # A stray: a prompt that shares the bucket's 16 bits, not its template. It neither
        # joins the crowd nor adds what it asks (so it is not told of the bucket's verdicts),
        # but is remembered in case its own template takes the bucket over.
        _remember_stray(state, s, window)
        return True
    state.last_ts = max(state.last_ts, s.event_ts)
    windows = state.windows
    win = windows.get(window)
    if win is None:
        win = windows[window] = ClusterWindow(start=window)
    members = state.members
    account_id = s.account_id
    member = members.get(account_id)
    # (who the member is, and its hour, only where crowds are judged by the hour)
    crowd = counts_crowd_hours(state.cluster_key)
    org, card = (s.org, s.card) if crowd else (0, 0)
    if member is None:
        size = member_wire_bytes(account_id, state.cluster_key)
        if (len(members) >= cfg.cluster_member_cap
                or state.member_bytes + size > cfg.cluster_member_bytes):
            state.members_overflow += 1
        else:
            hour, harvested, requests = _hour_counts(crowd, s, 0, 0, 0)
            members[account_id] = (window, int(s.young), s.account_first_ts, "", s.simhash,
                                   s.harvest, s.rotation, s.history, org, card, hour,
                                   harvested, requests, 0)
            if not s.young and hour_harvester(harvested, requests):
                _crossed(state, hour)
            state.member_bytes += size
            if state.joined is not None:  # else the next telling scans every member anyway
                state.joined.append(account_id)  # (so at most the member cap of them)
            _count_active(state, members[account_id], start)
            state.remembered_suspicious += member_flags(int(s.young), s.harvest, s.rotation,
                                                        s.history)[1]
            win.accounts += 1
            if s.simhash and not state.template:
                state.template = template_signature(state)
    else:
        last = member[_LAST]
        changed = (s.harvest != member[_HARVEST] or s.rotation != member[_ROTATION]
                   or s.history != member[_HISTORY])
        hour, harvested, requests = _hour_counts(crowd, s, member[_HOUR], member[_HOUR_HARVEST],
                                                 member[_HOUR_REQUESTS])
        if (last < window or (s.simhash and s.simhash != member[_PROMPT]) or changed
                or requests != member[_HOUR_REQUESTS] or hour != member[_HOUR]
                or org != member[_ORG] or card != member[_CARD]):
            told_hour = member[_HOUR_TOLD] if hour == member[_HOUR] else 0
            updated = (max(last, window), member[_YOUNG], member[_FIRST], member[_TOLD],
                       s.simhash or member[_PROMPT], s.harvest, s.rotation, s.history,
                       org, card, hour, harvested, requests, told_hour)
            members[account_id] = updated
            if not member[_YOUNG] and not told_hour and hour_harvester(harvested, requests):
                _crossed(state, hour)
            if changed:
                state.remembered_suspicious += (
                    member_flags(updated[_YOUNG], s.harvest, s.rotation, s.history)[1]
                    - member_flags(member[_YOUNG], member[_HARVEST], member[_ROTATION],
                                   member[_HISTORY])[1])
            if last < start:  # back in the horizon after a pause
                _count_active(state, updated, start)
                state.told_all = ""  # active again, maybe not told: the next telling scans all
                state.joined = None
            elif changed:
                _recount_member(state, member, updated)
        if last < window:
            win.accounts += 1
    # A join carries its joining request, a window summary the window's requests.
    win.requests += s.requests
    win.reasoning += s.reasoning
    win.high_value += s.high_value
    win.completion_tokens += s.completion_tokens
    return True


def _hour_counts(crowd: bool, s: ClusterSummary, hour: int, harvested: int,
                 requests: int) -> tuple[int, int, int]:
    """A member's (clock hour, high-value reasoning requests of the key in it, all its requests
    in it) after this summary (models/crowd_hours.py): a window summary of a later hour starts
    the counts again, one of an earlier hour (late) leaves them. A join is counted in its
    window's summary. `crowd`: the key's crowds are judged by the hour (else all stay 0)."""
    if s.kind != "window" or not crowd:
        return hour, harvested, requests
    at = hour_of(s.window_start)
    if at < hour:
        return hour, harvested, requests
    if at > hour:
        return at, s.key_harvest, s.requests
    return hour, harvested + s.key_harvest, requests + s.requests


def _crossed(state: ClusterState, hour: int) -> None:
    if state.crossed_hours is None:
        state.crossed_hours = [hour]
    elif hour not in state.crossed_hours:
        state.crossed_hours.append(hour)


def hour_harvesters(state: ClusterState, hour: int) -> list[tuple[str, int, int, bool]]:
    """The established members whose latest clock hour of this content key is `hour` and that
    harvested it then: (account, organisation, card, told already), in member order. (The
    hour a member crossed in, not the latest hour of any member: one record stamped ahead
    would hide the crowd of the hours before it.)"""
    return [(account, m[_ORG], m[_CARD], bool(m[_HOUR_TOLD]))
            for account, m in state.members.items()
            if m[_HOUR] == hour and not m[_YOUNG]
            and hour_harvester(m[_HOUR_HARVEST], m[_HOUR_REQUESTS])]


def tell_crowd_hour(state: ClusterState, account_id: str) -> None:
    m = state.members[account_id]
    state.members[account_id] = (*m[:_HOUR_TOLD], 1)


def _count_active(state: ClusterState, m: Member, horizon_start: int) -> None:
    """A member (back) in the horizon: count it as active, young, new, and by its behaviour."""
    state.active += 1
    state.active_young += m[_YOUNG]
    state.active_new += int(m[_FIRST] >= horizon_start)
    h, s, r, o = member_flags(m[_YOUNG], m[_HARVEST], m[_ROTATION], m[_HISTORY])
    state.active_harvesting += h
    state.active_suspicious += s
    state.active_rotating += r
    state.active_sustained += o


def _recount_member(state: ClusterState, before: Member, after: Member) -> None:
    """An active member's behaviour changed: move it between the behaviour counts."""
    h0, s0, r0, o0 = member_flags(before[_YOUNG], before[_HARVEST], before[_ROTATION],
                                  before[_HISTORY])
    h1, s1, r1, o1 = member_flags(after[_YOUNG], after[_HARVEST], after[_ROTATION],
                                  after[_HISTORY])
    state.active_harvesting += h1 - h0
    state.active_suspicious += s1 - s0
    state.active_rotating += r1 - r0
    state.active_sustained += o1 - o0


def horizon_totals(state: ClusterState) -> ClusterWindow:
    total = ClusterWindow(start=state.current_window)
    for w in state.windows.values():
        total.requests += w.requests
        total.reasoning += w.reasoning
        total.high_value += w.high_value
        total.completion_tokens += w.completion_tokens
    return total


def members_to_tell(state: ClusterState, verdict_id: str, cfg: DetectorConfig) -> list[str]:
    """Active members not yet told of this verdict, in member order; marks them told.

    Called at every judged tick while a verdict is in force. Once every active member has
    been told of it (`told_all`), only members added since can be untold and active (a member
    coming back into the horizon resets `told_all`); they come after all others in the member
    order, in the order they were added (`joined`), so looking at them alone gives the same
    list as a scan of every member.
    """
    start = state.horizon_start(cfg)
    told = []
    members = state.members
    if state.told_all == verdict_id and state.joined is not None:
        for account in state.joined:
            m = members[account]
            if m[_LAST] >= start and m[_TOLD] != verdict_id:
                members[account] = _told(m, verdict_id)
                told.append(account)
    else:
        for account, m in members.items():  # replacing values keeps the member order
            if m[_LAST] >= start and m[_TOLD] != verdict_id:
                members[account] = _told(m, verdict_id)
                told.append(account)
        state.told_all = verdict_id
    if state.joined is None:
        state.joined = []
    else:
        state.joined.clear()
    return told


def tell_member(state: ClusterState, account_id: str, verdict_id: str) -> bool:
    """Mark one member told; True when it had not been told of this verdict yet."""
    m = state.members.get(account_id)
    if m is None or m[_TOLD] == verdict_id:
        return False
    state.members[account_id] = _told(m, verdict_id)
    return True


def _remember_stray(state: ClusterState, s: ClusterSummary, window: int) -> None:
    strays = state.strays
    if strays is None:
        strays = state.strays = {}
    m = strays.get(s.account_id)
    if m is not None:
        strays[s.account_id] = (max(m[_LAST], window), m[_YOUNG], m[_FIRST], "", s.simhash,
                                s.harvest, s.rotation, s.history, 0, 0, 0, 0, 0, 0)
        return
    if len(strays) >= SIGNATURE_MEMBERS:
        del strays[next(iter(strays))]  # the stray remembered longest
    strays[s.account_id] = (window, int(s.young), s.account_first_ts, "", s.simhash, s.harvest,
                            s.rotation, s.history, 0, 0, 0, 0, 0, 0)


def _reelect(state: ClusterState, horizon_start: int) -> None:
    """Hand the bucket to another template when more strays active in the horizon agree on it
    than the crowd has active members: they become its crowd (its members), what the old crowd
    asked and the old verdict go (the new crowd is judged on its own summaries from now on).
    Once per window change; a crowd that shrinks below a growing stray crowd loses the bucket
    (whose other bands still show it)."""
    assert state.strays is not None
    active = [(a, m) for a, m in state.strays.items() if m[_LAST] >= horizon_start]
    challenger = signature([m[_PROMPT] for _, m in active])
    if not challenger:
        return
    crowd = [(a, m) for a, m in active if uses_template(m[_PROMPT], challenger)]
    if len(crowd) <= sum(1 for m in state.members.values() if m[_LAST] >= horizon_start):
        return
    state.template = challenger
    state.members = dict(crowd)
    state.member_bytes = sum(member_wire_bytes(a, state.cluster_key) for a in state.members)
    state.strays = None
    state.windows = {}
    state.verdict = None
    state.told_all = ""
    state.joined = None


def template_signature(state: ClusterState) -> int:
    """The template a bucket's crowd uses: the signature of its members' latest prompts there
    (one each, of the `SIGNATURE_MEMBERS` members added last), so no one account, however
    chatty, makes the template alone; 0 when they share none (`models.templates.signature`)."""
    prompts = []
    for m in reversed(state.members.values()):  # (a crowded bucket: the last few only)
        if m[_PROMPT]:
            prompts.append(m[_PROMPT])
            if len(prompts) == SIGNATURE_MEMBERS:
                break
    return signature(prompts)


# Members whose prompts make a template bucket's signature (odd: no ties).
SIGNATURE_MEMBERS = 31
