"""Per-account state: the open event-time window, its aggregates, and the verdicts it carries.

State is plain data with pure update functions (`add_event`, `close_window`), stored by the
edge in a changelogged table after every change. It stays small and bounded per account:
a window holds counters and a capped map of template buckets, nothing per event.

>>> from distillguard.models.config import DetectorConfig
>>> from distillguard.models.events import RequestEvent
>>> from distillguard.models.keys import template_keys
>>> cfg = DetectorConfig()
>>> st = AccountState.new("a", 1000.0)
>>> ev = RequestEvent("e", 1000.0, "a", "1.2.3.4", "m", 10, 20, 200, 0xff, True)
>>> win = st.window_for(ev.ts, cfg)
>>> add_event(win, ev, template_keys(ev.simhash, cfg.simhash_bands), recurring=[])
[]
>>> win.requests
1
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from distillguard.models.behaviour import Behaviour
from distillguard.models.config import DetectorConfig
from distillguard.models.decision import ALLOW
from distillguard.models.events import RequestEvent
from distillguard.models.keys import system_prompt_key
from distillguard.models.windows import window_start

# Template buckets remembered per window before new ones are only counted: bounds state for an
# account whose every prompt is new (ordinary users) at 4 bands x 8 prompts.
MAX_TEMPLATE_BUCKETS_PER_WINDOW = 32
# Distinct IP prefixes remembered per window; more than this is rotation, counted as the cap.
MAX_IP_PREFIXES_PER_WINDOW = 8
# System prompts whose high-value reasoning requests are counted per window
# (`AccountWindow.prompt_harvest`); an account rarely has more than one or two, and a flood of
# new ones (an attacker's) must not grow its state.
MAX_PROMPT_HARVEST_KEYS_PER_WINDOW = 4
# Keys of any kind one account joins: far above any honest account's (a card, a system prompt or
# two, a client per ASN: at most 39 in the simulated scenarios, a rotating campaign's), and the
# bound that keeps one account's flood of new system prompts and user agents (a helper's attack:
# 30,000 in five minutes, 9 MiB of state and a key list scanned per request) from growing its
# state and making a cluster per request. Rotation past it is still counted by its behaviour.
MAX_KEYS_PER_ACCOUNT = 256


@dataclass(slots=True)
class AccountWindow:
    start: int
    requests: int = 0
    reasoning: int = 0
    high_value: int = 0
    errors: int = 0
    with_tools: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_ts: float = 0.0
    last_ts: float = 0.0
    # Inter-arrival gaps, for regularity (coefficient of variation) without keeping the times.
    gap_n: int = 0
    gap_sum: float = 0.0
    gap_sq_sum: float = 0.0
    # Recurring template bucket -> (requests, reasoning requested, high-value, 1, latest prompt)
    # in this window, so a summary to a template cluster carries what was asked *with that
    # template* only, and one of its prompts (the cluster's signature is made of them). Buckets
    # of one-off prompts are kept as (requests, 0, 0, 0, prompt) while room lasts, for the
    # template-reuse feature, and never fanned out. Tuples, replaced on update, rather than
    # lists: the garbage collector stops tracking a tuple of ints, and up to 32 lists per
    # window living for minutes made most of the full collections (a quarter of the core's
    # time). The wire form is the same (arrays).
    templates: dict[str, tuple[int, int, int, int, int]] = field(default_factory=dict)
    ip_prefixes: list[str] = field(default_factory=list)
    # The account's infrastructure cluster keys used in this window: only they get a summary.
    infra_keys: list[str] = field(default_factory=list)
    # System prompt key -> (high-value requests with reasoning sent with it in this window, those
    # of them of known templates) (models/crowd_hours.py): what the account harvested with that
    # prompt, not its whole window.
    prompt_harvest: dict[str, tuple[int, int]] = field(default_factory=dict)

    def to_wire(self) -> list[Any]:
        return [self.start, self.requests, self.reasoning, self.high_value, self.errors,
                self.with_tools, self.prompt_tokens, self.completion_tokens, self.first_ts,
                self.last_ts, self.gap_n, self.gap_sum, self.gap_sq_sum, self.templates,
                self.ip_prefixes, self.infra_keys, self.prompt_harvest]

    @classmethod
    def from_wire(cls, w: list[Any]) -> AccountWindow:
        return cls(start=w[0], requests=w[1], reasoning=w[2], high_value=w[3], errors=w[4],
                   with_tools=w[5], prompt_tokens=w[6], completion_tokens=w[7], first_ts=w[8],
                   last_ts=w[9], gap_n=w[10], gap_sum=w[11], gap_sq_sum=w[12],
                   templates={k: (c[0], c[1], c[2], c[3], c[4] if len(c) > 4 else 0)
                              for k, c in w[13].items()},
                   ip_prefixes=list(w[14]), infra_keys=list(w[15]),
                   prompt_harvest=({k: (c[0], c[1]) for k, c in w[16].items()}
                                   if len(w) > 16 else {}))


@dataclass(slots=True)
class Verdict:
    """A cluster verdict an account carries, as the cluster stage sent it."""

    cluster_key: str
    score: float
    issued_ts: float  # event time the verdict rests on
    expires_ts: float
    verdict_id: str
    reason: str
    # For a prompt-template bucket: the template its crowd used, the bitwise majority of the
    # crowd's recent prompts (`models.templates.signature`); 0 for other keys. A prompt is of
    # the convicted template when it lies near it, not merely when it shares the bucket's
    # 16 bits (models/policy.py `uses_template`).
    signature: int = 0
    # Share of the crowd's active members that harvest on a cheap identity: how likely an
    # account joining the key, with too little history of its own to judge, is one of them.
    prior: float = 1.0
    # Share of the crowd's suspicious members proven to harvest for longer than a tutorial lasts
    # (models/scoring.py): a content key (template, system prompt) judges its newcomers by the
    # crowd only when its crowd is proven.
    proven: float = 0.0
    # Share of the crowd's active members that harvest while rotating their network or client
    # (models/policy.py: a newcomer judged by a proven content crowd is a campaign's fresh
    # account, blocked at once, only when its crowd rotates). 0 in a verdict from a core before
    # 0.15; before 0.16 it counted members that rotate and harvest nothing too.
    rotating: float = 0.0

    def to_wire(self) -> list[Any]:
        return [self.cluster_key, self.score, self.issued_ts, self.expires_ts, self.verdict_id,
                self.reason, self.signature, self.prior, self.proven, self.rotating]

    @classmethod
    def from_wire(cls, w: list[Any]) -> Verdict:
        return cls(*w)

    @property
    def is_template_notice(self) -> bool:
        """A broadcast that a template bucket's crowd agreed on a template (its signature),
        not a conviction: it makes the template known to the account partitions."""
        return self.score == 0.0

    @property
    def is_withdrawal(self) -> bool:
        """A broadcast that the key's conviction is handed to joiners no more (it expires
        before it is issued: models/cluster_stage.py `_withdraw`)."""
        return self.expires_ts < self.issued_ts


@dataclass(slots=True)
class AccountState:
    account_id: str
    first_ts: float
    last_ts: float = 0.0
    created_ts: float | None = None
    requests: int = 0
    late_events: int = 0
    window: AccountWindow | None = None
    # Infrastructure cluster keys this account has been announced to: at most
    # `max_ip_keys_per_account` IP prefixes (config) and MAX_KEYS_PER_ACCOUNT keys in all.
    keys: list[str] = field(default_factory=list)
    ip_keys_overflow: int = 0
    # The account's latest prompt SimHashes, to tell which convicted template buckets it really
    # uses (near their signature, models/policy.py) from chance collisions of a band.
    recent_prompts: list[int] = field(default_factory=list)
    windows_closed: int = 0
    # Latest account-model evidence: score in [0, 1] and the window it rests on.
    account_score: float = 0.0
    account_score_window: int = -1
    account_reasons: list[str] = field(default_factory=list)
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    # Verdicts received but not applied yet, with the event time at which each applies (when
    # the account was told + verdict_delay_s; models/account_stage.py).
    pending_verdicts: list[tuple[float, Verdict]] = field(default_factory=list)
    # What the gateway is currently applying for this account (from our last decision).
    action: str = ALLOW
    action_until: float = 0.0
    action_score: float = 0.0
    action_decision_id: str = ""
    # What the account's own requests say about it (models/behaviour.py), and its organisation.
    behaviour: Behaviour = field(default_factory=Behaviour)
    org_id: str | None = None
    # Blocks so far: an account that waited out a block and harvests again is no newcomer.
    strikes: int = 0
    # New keys past MAX_KEYS_PER_ACCOUNT, counted instead of joined.
    keys_overflow: int = 0
    # Crowd hours the account was told of (models/crowd_hours.py): how many, the latest's start,
    # and the key and the figures of the latest (the decision names them).
    crowd_hours: int = 0
    crowd_hour_last: int = 0
    crowd_hour_key: str = ""
    crowd_hour_reason: str = ""

    @classmethod
    def new(cls, account_id: str, ts: float) -> AccountState:
        return cls(account_id=account_id, first_ts=ts, last_ts=ts)

    def window_for(self, ts: float, cfg: DetectorConfig) -> AccountWindow:
        if self.window is None:
            self.window = AccountWindow(start=window_start(ts, cfg.window_s), first_ts=ts,
                                        last_ts=ts)
        return self.window

    def to_wire(self) -> list[Any]:
        return [self.account_id, self.first_ts, self.last_ts, self.created_ts, self.requests,
                self.late_events, self.window.to_wire() if self.window else None, self.keys,
                self.ip_keys_overflow, self.recent_prompts, self.windows_closed, self.account_score,
                self.account_score_window, self.account_reasons,
                [v.to_wire() for v in self.verdicts.values()], self.action, self.action_until,
                self.action_score, self.action_decision_id,
                [[at, v.to_wire()] for at, v in self.pending_verdicts],
                self.behaviour.to_wire(), self.org_id, self.strikes, self.keys_overflow,
                [self.crowd_hours, self.crowd_hour_last, self.crowd_hour_key,
                 self.crowd_hour_reason]]

    @classmethod
    def from_wire(cls, w: list[Any]) -> AccountState:
        verdicts = [Verdict.from_wire(v) for v in w[14]]
        return cls(
            account_id=w[0], first_ts=w[1], last_ts=w[2], created_ts=w[3], requests=w[4],
            late_events=w[5], window=AccountWindow.from_wire(w[6]) if w[6] else None,
            keys=list(w[7]), ip_keys_overflow=w[8], recent_prompts=list(w[9]),
            windows_closed=w[10], account_score=w[11], account_score_window=w[12],
            account_reasons=list(w[13]), verdicts={v.cluster_key: v for v in verdicts},
            action=w[15], action_until=w[16], action_score=w[17], action_decision_id=w[18],
            pending_verdicts=[(at, Verdict.from_wire(v)) for at, v in w[19]],
            # (20 fields: a state from a core before account behaviour)
            behaviour=Behaviour.from_wire(w[20]) if len(w) > 20 else Behaviour(),
            org_id=w[21] if len(w) > 21 else None, strikes=w[22] if len(w) > 22 else 0,
            keys_overflow=w[23] if len(w) > 23 else 0,
            # (24 fields: a state from a core before crowd hours)
            crowd_hours=w[24][0] if len(w) > 24 else 0,
            crowd_hour_last=w[24][1] if len(w) > 24 else 0,
            crowd_hour_key=w[24][2] if len(w) > 24 else "",
            crowd_hour_reason=w[24][3] if len(w) > 24 else "")


def count_prompt_harvest(win: AccountWindow, ev: RequestEvent, templated: bool) -> None:
    """Count one request toward its system prompt's harvest in the window when it is high-value
    with reasoning: (such requests, those of them of a known template: the caller matched it).
    Past MAX_PROMPT_HARVEST_KEYS_PER_WINDOW prompts, the least counted gives its place to the new
    one, which takes over its counts plus this request (space-saving: a prompt's counts are
    never under its own requests, and over them by at most what the prompt it replaced had):
    else a few one-off decoy prompts at each window's start kept the harvest's own prompt
    uncounted (an adversary's probe)."""
    if not (ev.reasoning_requested and ev.is_high_value and ev.system_prompt_hash):
        return
    counts, key = win.prompt_harvest, system_prompt_key(ev.system_prompt_hash)
    harvested = counts.get(key)
    if harvested is None:
        if len(counts) < MAX_PROMPT_HARVEST_KEYS_PER_WINDOW:
            harvested = (0, 0)
        else:
            least = min(counts, key=lambda k: (counts[k], k))
            harvested = counts.pop(least)
    counts[key] = (harvested[0] + 1, harvested[1] + templated)


def add_event(win: AccountWindow, ev: RequestEvent, buckets: tuple[str, ...],
              recurring: list[int]) -> list[str]:
    """Fold one event into a window: O(1) counter updates and a capped map update.

    `buckets` are the event's template buckets, `recurring` the indexes of those that recur in
    the partition (`models.templates`). Returns the buckets that became recurring in this
    window with this event.
    """
    if win.requests:
        gap = ev.ts - win.last_ts
        if gap >= 0:
            win.gap_n += 1
            win.gap_sum += gap
            win.gap_sq_sum += gap * gap
    else:
        win.first_ts = ev.ts
    win.last_ts = max(win.last_ts, ev.ts)
    reasoning = int(ev.reasoning_requested)
    high_value = int(ev.is_high_value)
    win.requests += 1
    win.reasoning += reasoning
    win.high_value += high_value
    win.errors += ev.is_error
    win.with_tools += bool(ev.tools_count)
    win.prompt_tokens += ev.prompt_tokens
    win.completion_tokens += ev.completion_tokens
    templates = win.templates
    simhash = ev.simhash
    newly: list[str] = []
    for band, key in enumerate(buckets):
        counts = templates.get(key)
        if counts is None:
            if len(templates) >= MAX_TEMPLATE_BUCKETS_PER_WINDOW:
                if band not in recurring:
                    continue
                # A recurring bucket takes the place of a one-off prompt's bucket.
                one_off = next((k for k, c in templates.items() if not c[3]), None)
                if one_off is None:
                    continue
                del templates[one_off]
            counts = _NO_COUNTS
        if band in recurring:
            templates[key] = (counts[0] + 1, counts[1] + reasoning, counts[2] + high_value, 1,
                              simhash)
            if not counts[3]:
                newly.append(key)
        else:
            templates[key] = (counts[0] + 1, counts[1], counts[2], counts[3], simhash)
    return newly


_NO_COUNTS = (0, 0, 0, 0, 0)


def add_known_template(win: AccountWindow, ev: RequestEvent, key: str) -> bool:
    """Count a prompt of a known template under the template's own key (`models.keys.
    template_key`), as a recurring entry of the window's template map; True when it is the
    template's first prompt in the window. Within the map's cap: a full map of recurring
    buckets leaves it out (its crowd still hears of the account through its buckets)."""
    counts = win.templates.get(key)
    if counts is None:
        if len(win.templates) >= MAX_TEMPLATE_BUCKETS_PER_WINDOW:
            one_off = next((k for k, c in win.templates.items() if not c[3]), None)
            if one_off is None:
                return False
            del win.templates[one_off]
        counts = _NO_COUNTS
    win.templates[key] = (counts[0] + 1, counts[1] + ev.reasoning_requested,
                          counts[2] + ev.is_high_value, 1, ev.simhash)
    return counts[0] == 0


def top_template_keys(win: AccountWindow, limit: int) -> list[str]:
    """The window's most used recurring template buckets, ties broken by key."""
    ranked = sorted((kv for kv in win.templates.items() if kv[1][3]),
                    key=lambda kv: (-kv[1][0], kv[0]))
    return [k for k, _ in ranked[:limit]]


def template_reuse(win: AccountWindow) -> float:
    """Share of the window's requests whose prompt repeats a bucket of this window."""
    if win.requests <= 1 or not win.templates:
        return 0.0
    return (max(c[0] for c in win.templates.values()) - 1) / (win.requests - 1)
