"""Cluster stage: window summaries per shared key -> cluster verdicts for the member accounts.

Driven per cluster key by the Faust agent and by offline replay alike, in event time aligned
over the account partitions, so that the live fleet and a replay judge every cluster on the
same summaries at the same moments (DESIGN.md, decision 1):

- every summary is stamped by its account partition with that partition's tick (its newest
  event time // `cluster_tick_s`) and waits in the cluster's state (`on_summary`);
- every account partition announces each new tick to every cluster partition (`SourceTick`);
  once all of them have passed a tick (the aligned watermark), the summaries of that tick are
  folded in, in a fixed order, and the cluster is judged as of the tick's end (`settle`).

Judging a cluster (O(horizon), plus O(members) while a verdict is in force):
- convict it when the score reaches `cluster_convict_score`, telling every active member
  (one `AccountVerdict` per account, keyed by account for the account stage);
- tell members new to a convicted cluster at the next tick (the hydra response);
- re-issue a conviction that has grown stronger, or that is `verdict_refresh_s` old and still
  warranted (evidence against members decays from the verdict's issue time).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

from distillguard.models.account import Verdict
from distillguard.models.cluster import (
    ClusterState,
    add_summary,
    hour_harvesters,
    members_to_tell,
    summary_wire_bytes,
    tell_crowd_hour,
)
from distillguard.models.config import DetectorConfig
from distillguard.models.crowd_hours import convicts, notice
from distillguard.models.due import DueIndex
from distillguard.models.keys import (
    SYSTEM_PROMPT,
    TEMPLATE,
    is_template_key,
    key_kind,
    signature_of,
)
from distillguard.models.messages import BROADCAST, AccountVerdict, ClusterSummary
from distillguard.models.scoring import cluster_evidence, min_accounts

# A conviction is re-issued when the cluster's score has risen by this much since.
VERDICT_UPGRADE_STEP = 0.05
# The keys whose convictions are withdrawn when their crowd no longer bears them out
# (`ClusterStage._withdraw`): content that a course, a tutorial or an exam hands to an honest
# crowd, which then joins the key by the hundred. Not a card: strangers do not join one, and a
# hydra's own blocked replacements (no harvest seen, so half an honest member each) would
# withdraw it (measured: a hydra replacing each blocked account after a minute withdrew its card
# ~13 minutes after each conviction, 1,933 of 2,348 replacement requests served, core 0.7 882;
# tests/unit/test_withdrawal_adversary.py). Not a network key: alone it weighs under half.
WITHDRAWN_KINDS = frozenset({TEMPLATE, SYSTEM_PROMPT})


@dataclass(slots=True)
class ClusterPartition:
    """What one partition of the cluster stage keeps besides the per-cluster states.

    In memory only: after a restart the source ticks come back with the next tick of each
    account partition, and the edge re-registers the recovered clusters (`watch`).
    """

    sources: int  # account partitions that send summaries here
    source_ticks: dict[int, int] = field(default_factory=dict)
    judged_before: int = 0  # every tick below this has been judged
    pending: DueIndex = field(default_factory=DueIndex)  # key -> tick of a pending summary
    # key -> the earliest tick it is registered at in `pending` and not popped yet: a key is
    # registered again only below it (a pop reads each key's earliest entry, so later ones
    # would only cost a push and a pop; it was one push per summary).
    pending_at: dict[str, int] = field(default_factory=dict)
    expiry: DueIndex = field(default_factory=DueIndex)  # key -> event time it may go idle
    # Sources the edge reported idle (nothing to read for a while, `SourceIdle`): left out of
    # the aligned watermark until their next tick.
    idle_sources: set[int] = field(default_factory=set)

    def register_pending(self, key: str, tick: int) -> None:
        at = self.pending_at.get(key)
        if at is None or tick < at:
            self.pending_at[key] = tick
            self.pending.register(key, tick)

    @classmethod
    def create(cls, cfg: DetectorConfig, sources: int) -> ClusterPartition:
        return cls(sources=sources)


class ClusterOutputs:
    # A plain class, not a dataclass, as `account_stage.Outputs`: made per settled cluster.
    __slots__ = ("behind", "convictions", "judged_early", "late", "verdicts")

    def __init__(self) -> None:
        self.verdicts: list[AccountVerdict] = []
        # New convictions (and re-issues), for every account partition (`BROADCAST`), so that
        # an account joining the key later is acted on at its first request.
        self.convictions: list[AccountVerdict] = []
        self.late = 0  # summaries older than the cluster's horizon when folded in (counted)
        self.behind = False  # the summary arrived after its tick was judged (its source idle)
        # summaries judged before every account partition had passed their tick, because the
        # cluster's waiting summaries outgrew `cluster_pending_bytes` (`judge_early`)
        self.judged_early = 0


def verdict_id(cluster_key: str, issued_ts: int, score: float, model_version: str) -> str:
    # The score is part of it: an upgrade within the same moment is a new verdict to tell.
    # `issued_ts` is a tick's end, an int: typed so, the compiled core writes it as the
    # sources do ("1767225720", not "1767225720.0"), and both builds issue the same ids.
    text = f"{cluster_key}|{issued_ts!r}|{score!r}|{model_version}"
    return "cv-" + hashlib.sha256(text.encode()).hexdigest()[:24]


def convict_scores(cluster_key: str, cfg: DetectorConfig) -> tuple[float, float]:
    """The scores at which a key's crowd is convicted, and at which a conviction is kept."""
    convict = (cfg.template_convict_score if is_template_key(cluster_key)
               else cfg.cluster_convict_score)
    return convict, min(convict, cfg.cluster_keep_score)


def template_notice(state: ClusterState, told_ts: int) -> Verdict:
    """The broadcast that a template bucket's crowd agreed on a template (not a conviction:
    score 0, `Verdict.is_template_notice`)."""
    text = f"{state.cluster_key}|{told_ts!r}|{state.template}"
    return Verdict(cluster_key=state.cluster_key, score=0.0, issued_ts=told_ts,
                   expires_ts=told_ts, verdict_id="tn-" + hashlib.sha256(text.encode()).hexdigest()[:24],
                   reason="template", signature=state.template, prior=0.0)


def _fold_order(s: ClusterSummary) -> tuple[object, ...]:
    return (s.tick, s.account_id, s.event_ts, s.kind, s.window_start, s.requests, s.reasoning,
            s.high_value, s.completion_tokens, s.young, s.account_first_ts, s.simhash,
            s.harvest, s.rotation)


class ClusterStage:
    def __init__(self, cfg: DetectorConfig) -> None:
        self.cfg = cfg
        self.idle_ticks = math.ceil(cfg.source_idle_s / cfg.cluster_tick_s)

    # --- per summary: keep it until its tick is judged ------------------------------------
    def on_summary(self, state: ClusterState | None, s: ClusterSummary,
                   part: ClusterPartition) -> tuple[ClusterState, ClusterOutputs]:
        state, behind = self.keep_until_judged(state, s, part)
        if state.pending_bytes > self.cfg.cluster_pending_bytes:
            out = self.judge_early(state, part)
        else:
            out = ClusterOutputs()
        out.behind = behind
        return state, out

    def keep_until_judged(self, state: ClusterState | None, s: ClusterSummary,
                          part: ClusterPartition) -> tuple[ClusterState, bool]:
        """`on_summary` without the outputs, for a caller that routes two or three summaries
        per event (models/pipeline.py): it returns `behind`, and the caller calls `judge_early`
        when the state's `pending_bytes` passed `cluster_pending_bytes`."""
        if state is None:
            # (a known template's cluster has its template from the start: its key)
            state = ClusterState(cluster_key=s.cluster_key, template=signature_of(s.cluster_key))
            # One expiry hint per cluster; `is_expired` re-registers it while the key lives.
            part.expiry.register(state.cluster_key, s.event_ts + self._idle_after(state))
        judged_before = max(part.judged_before, state.judged_early_before)
        behind = s.tick < judged_before
        if behind:
            # Its tick was judged without it (the source trailed by more than source_idle_s,
            # or the cluster judged early): it joins the next tick to judge, as late as it
            # came, and is counted.
            s = s._replace(tick=judged_before)
        state.pending.append(s)
        state.pending_bytes += summary_wire_bytes(s)
        part.register_pending(state.cluster_key, s.tick)
        return state, behind

    def judge_early(self, state: ClusterState, part: ClusterPartition) -> ClusterOutputs:
        """Judge the oldest waiting summaries now, until what waits takes at most half of
        `cluster_pending_bytes`: the bound on a cluster's state when an account partition lags
        (up to `source_idle_s`) behind a crowd too big to wait for it. Their ticks are judged
        without that partition's summaries, which join a later tick when they come (`behind`),
        as after `source_idle_s`: the one case where the fold order depends on arrival
        order, counted (`judged_early`).

        A tick is marked judged (`judged_early_before`) only once an account partition has
        passed it: the newest tick any of them has reached is still open, so its summaries may
        be folded early, but the later ones of it keep their tick, and the cluster is never
        judged more than a tick ahead of the event time the fleet has reached. (A helper's
        review: marking the open tick moved the mark, and with it the verdicts' time, a tick
        ahead per cap's worth of summaries, hours ahead for a crowd of 20,000 without any lag;
        tests/unit/test_state_bounds.py.)"""
        by_tick: dict[int, int] = {}
        for s in state.pending:
            by_tick[s.tick] = by_tick.get(s.tick, 0) + summary_wire_bytes(s)
        left = state.pending_bytes
        before = 0
        for tick in sorted(by_tick):
            before = tick + 1
            left -= by_tick[tick]
            if left <= self.cfg.cluster_pending_bytes // 2:
                break
        newest = max(part.source_ticks.values(), default=max(by_tick))
        state.judged_early_before = max(state.judged_early_before, min(before, newest))
        waiting = len(state.pending)
        out = self._fold(state, part, before)
        out.judged_early = waiting - len(state.pending)
        return out

    # --- per source tick: advance the aligned watermark ------------------------------------
    def on_source_tick(self, part: ClusterPartition, source: int, tick: int) -> list[str]:
        """Record that `source` reached `tick`; return the keys with summaries now judgeable
        (call `settle` on each), in a fixed order."""
        if source in part.idle_sources:  # back: waited for again from this tick on
            part.idle_sources.discard(source)
        elif tick <= part.source_ticks.get(source, -1):
            return []
        if tick > part.source_ticks.get(source, -1):
            part.source_ticks[source] = tick
        return self._advance(part)

    def on_source_idle(self, part: ClusterPartition, source: int) -> list[str]:
        """Record that `source` has had nothing to read for a while (the edge's wall clock):
        the aligned watermark stops waiting for it until its next tick. Returns the keys now
        judgeable, as `on_source_tick`."""
        if source in part.idle_sources:
            return []
        part.idle_sources.add(source)
        return self._advance(part)

    def _advance(self, part: ClusterPartition) -> list[str]:
        ticks = part.source_ticks
        if not ticks:
            return []
        newest = max(ticks.values())
        aligned = newest - self.idle_ticks
        if len(ticks) + len([s for s in part.idle_sources if s not in ticks]) >= part.sources:
            waited = [t for s, t in ticks.items() if s not in part.idle_sources]
            aligned = max(aligned, min(waited) if waited else newest)
        if aligned <= part.judged_before:
            return []
        part.judged_before = aligned
        keys = part.pending.pop_due(aligned - 1)
        pending_at = part.pending_at
        for key in keys:  # popped at its earliest entry: what is left of it is all later
            pending_at.pop(key, None)
        return keys

    def settle(self, state: ClusterState, part: ClusterPartition) -> ClusterOutputs:
        """Fold in the summaries of every judged tick, tick by tick, judging after each."""
        return self._fold(state, part, part.judged_before)

    def _fold(self, state: ClusterState, part: ClusterPartition, before: int) -> ClusterOutputs:
        """Fold in the waiting summaries of the ticks below `before`, tick by tick, judging
        after each."""
        out = ClusterOutputs()
        pending = state.pending
        due = [s for s in pending if s.tick < before]
        if not due:
            if pending:  # registered at an earlier tick that `judge_early` has judged
                part.register_pending(state.cluster_key, min(s.tick for s in pending))
            return out
        # In place: a new list each time would live as long as the cluster idles, and the
        # garbage collector's oldest generation filled with them.
        if len(due) == len(pending):
            pending.clear()
            state.pending_bytes = 0
        else:
            pending[:] = [s for s in pending if s.tick >= before]
            state.pending_bytes = sum(summary_wire_bytes(s) for s in pending)
            part.register_pending(state.cluster_key, min(s.tick for s in pending))
        if len(due) > 1:
            due.sort(key=_fold_order)
        cfg = self.cfg
        template = state.template
        tick = due[0].tick
        for s in due:
            if s.tick != tick:  # the next tick: judge as of the end of the one folded in
                self._judge(state, (tick + 1) * cfg.cluster_tick_s, out)
                if state.crossed_hours:
                    self._judge_crowd_hours(state, (tick + 1) * cfg.cluster_tick_s, out)
                tick = s.tick
            if not add_summary(state, s, cfg):
                out.late += 1
        end = (tick + 1) * cfg.cluster_tick_s
        if state.verdict is not None or state.active >= min_accounts(state.cluster_key, cfg):
            # (else `_judge` has nothing to do: the common case, checked without the call)
            self._judge(state, end, out)
        if state.crossed_hours:
            self._judge_crowd_hours(state, end, out)
        if state.template != template and state.template:
            # A crowd agreed on a template (or a larger one took the bucket over): every account
            # partition learns it, so its accounts' prompts of it count as templated.
            out.convictions.append(AccountVerdict(BROADCAST, template_notice(state, end), end))
        return out

    def _judge(self, state: ClusterState, now_ts: int, out: ClusterOutputs) -> None:
        cfg = self.cfg
        v = state.verdict
        if v is None and state.active < min_accounts(state.cluster_key, cfg):
            return  # too few accounts to convict: the common case, not scored
        evidence = cluster_evidence(state, cfg)
        in_force = v is not None and v.expires_ts > now_ts
        convict, keep = convict_scores(state.cluster_key, cfg)
        if (evidence.score >= convict and (
                v is None or not in_force
                or evidence.score >= v.score + VERDICT_UPGRADE_STEP
                or now_ts - v.issued_ts >= cfg.verdict_refresh_s)) or (
                in_force and v is not None and evidence.score >= keep
                and now_ts - v.issued_ts >= cfg.verdict_refresh_s):
            # Convict, or re-issue a conviction that has grown stronger or needs confirming
            # (evidence against members decays from the verdict's issue time). A conviction
            # in force is confirmed while its crowd still scores `cluster_keep_score`: a
            # campaign that outlasts the horizon is no newer, but no less of a campaign.
            v = Verdict(cluster_key=state.cluster_key, score=evidence.score,
                        issued_ts=now_ts, expires_ts=now_ts + cfg.verdict_ttl_s,
                        verdict_id=verdict_id(state.cluster_key, now_ts, evidence.score,
                                              cfg.model_version),
                        reason=evidence.reason(state.cluster_key),
                        signature=state.template, prior=round(evidence.prior, 4),
                        proven=round(evidence.proven, 4),
                        rotating=round(evidence.rotating_share, 4))
            state.verdict = v
            out.convictions.append(AccountVerdict(BROADCAST, v, now_ts))
        elif (in_force and v is not None and evidence.score < keep
              and key_kind(state.cluster_key) in WITHDRAWN_KINDS):
            self._withdraw(state, v, evidence.score, now_ts, out)
            return
        elif not in_force:
            return
        assert v is not None
        # Every active member not yet told of the verdict in force: all of them at a
        # conviction, and each member new to a convicted cluster (the hydra response).
        for account in members_to_tell(state, v.verdict_id, cfg):
            out.verdicts.append(AccountVerdict(account, v, now_ts))

    def _judge_crowd_hours(self, state: ClusterState, now_ts: int, out: ClusterOutputs) -> None:
        """Members became harvesters of this content key in these hours: where an hour's
        established harvesters make a crowd hour (models/crowd_hours.py), tell each one not
        told yet."""
        for hour in sorted(state.crossed_hours or ()):
            harvesters = hour_harvesters(state, hour)
            identities = [(org, card) for _, org, card, _ in harvesters]
            if not convicts(identities):
                continue
            told = notice(state.cluster_key, hour, identities, self.cfg.model_version)
            for account, _, _, already in harvesters:
                if not already:
                    tell_crowd_hour(state, account)
                    out.verdicts.append(AccountVerdict(account, told, now_ts))
        state.crossed_hours = None

    def _withdraw(self, state: ClusterState, v: Verdict, score: float, now_ts: int,
                  out: ClusterOutputs) -> None:
        """Stop handing a conviction in force to the accounts joining its content key once its
        crowd no longer bears it out (scores under `cluster_keep_score`), rather than at its expiry.

        Measured: framers who harvested a course's system prompt and exercise template for two
        hours before class had them convicted, and each arriving student carried the conviction
        as it joined (the hydra response) for the verdict's six hours, though the students in
        the crowd soon took its score under the keep score. A withdrawal is a verdict that
        expires before it is issued: the account partitions stop handing the key's conviction
        to joiners. Members told of the conviction keep it till it expires or is re-issued
        (measured: telling them too released a stealth campaign inside a campus's crowd,
        campus seed 2, 84% acted on to 55%; not telling them, 71%). The crowd is convicted
        again at its convict score: for a system prompt `cluster_convict_score`, above the
        keep score, so it does not flap; for a template `template_convict_score`, the keep
        score itself, so a template crowd near the line is withdrawn and convicted again in
        turn (measured: a few percent more verdict messages, no account acted on later;
        tests/unit/test_withdrawal_adversary.py). Only for `WITHDRAWN_KINDS`."""
        # (It expires when the conviction was issued: so it is in force at no event time,
        # not even for a late request of a member from before the withdrawal.)
        withdrawal = Verdict(cluster_key=state.cluster_key, score=v.score, issued_ts=now_ts,
                             expires_ts=v.issued_ts,
                             verdict_id=verdict_id(state.cluster_key, now_ts, -score,
                                                   self.cfg.model_version),
                             reason=f"withdrawn: the crowd now scores {score:.2f}",
                             signature=v.signature, prior=0.0, proven=0.0)
        state.verdict = withdrawal
        out.convictions.append(AccountVerdict(BROADCAST, withdrawal, now_ts))

    # --- expiry, by the aligned watermark ---------------------------------------------------
    def clock(self, part: ClusterPartition) -> float:
        """Event time up to which every account partition has been judged."""
        return float(part.judged_before * self.cfg.cluster_tick_s)

    def expired_clusters(self, part: ClusterPartition) -> list[str]:
        return part.expiry.pop_due(self.clock(part))

    def is_expired(self, state: ClusterState, part: ClusterPartition) -> bool:
        """Idle past its horizon with no verdict in force and nothing pending: the edge
        deletes it."""
        due = state.last_ts + self._idle_after(state)
        expired = not state.pending and due <= self.clock(part)
        if not expired:
            part.expiry.register(state.cluster_key, due)
        return expired

    def watch(self, state: ClusterState, part: ClusterPartition) -> None:
        """Register a recovered cluster with a partition (after a restart or a move)."""
        part.expiry.register(state.cluster_key, state.last_ts + self._idle_after(state))
        if state.pending:
            part.register_pending(state.cluster_key, min(s.tick for s in state.pending))

    def _idle_after(self, state: ClusterState) -> float:
        cfg = self.cfg
        horizon = cfg.cluster_horizon_windows * cfg.cluster_window_s
        if state.verdict is not None:
            return max(horizon, state.verdict.expires_ts - state.last_ts)
        return horizon
