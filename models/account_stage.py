"""Account stage: per-account windows and evidence, fan-out to clusters, and the policy.

Driven per account key by the Faust agent (`streams/worker/topology.py`) and by offline replay alike.
Per event the work is O(1): the watermark, a few counter updates, and the policy's look at the
account's stored evidence. Models run when a window closes, never per event.

Inputs and outputs, all plain values:
- `on_event(state, event)`    -> summaries to cluster keys ("join" at once, "window" at close),
  decisions, and a new tick of the partition to announce to the cluster stage
- `on_due(state)`             -> the same, for a window closed by the watermark, for verdicts
  due to apply; or expiry
- `on_verdict(state, verdict)`-> nothing yet: the verdict waits in the state until the
  partition's event time reaches `told_ts + verdict_delay_s`, then applies (decisions). So a
  verdict takes effect at the same point of the partition's event stream in the live fleet,
  where it arrives whenever the round trip allows, and in a replay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from distillguard.models.account import (
    MAX_IP_PREFIXES_PER_WINDOW,
    MAX_KEYS_PER_ACCOUNT,
    AccountState,
    Verdict,
    add_event,
    add_known_template,
    count_prompt_harvest,
    top_template_keys,
)
from distillguard.models.allowlist import AllowList
from distillguard.models.behaviour import harvest, history, rotation
from distillguard.models.config import DetectorConfig
from distillguard.models.convicted import ConvictedClusters
from distillguard.models.crowd_hours import (
    COUNT_RESET_S,
    card_identity,
    is_crowd_hour,
    org_identity,
    record,
    window_harvest,
)
from distillguard.models.decision import ALLOW, Decision
from distillguard.models.detectors import AccountModel
from distillguard.models.due import DueIndex
from distillguard.models.events import RequestEvent
from distillguard.models.features import account_features
from distillguard.models.keys import (
    IP,
    PAYMENT,
    client_id,
    infrastructure_keys,
    ip_prefix,
    is_ip_key,
    is_template_key,
    key_kind,
    template_key,
    template_keys,
)
from distillguard.models.messages import AccountVerdict, ClusterSummary
from distillguard.models.operator import OperatorDecisions
from distillguard.models.policy import decide
from distillguard.models.templates import KnownTemplates, TemplateRecurrence
from distillguard.models.windows import Watermark, window_start

# Verdicts carried per account: infrastructure keys are few per account (see config); template
# buckets can be many, so the oldest template verdicts go first.
MAX_VERDICTS_PER_ACCOUNT = 48
VERDICT_EVICTION_BATCH = 8
RECENT_PROMPTS = 8
# For its first requests an account joins template buckets at once instead of at window close:
# the hydra response needs it, and it costs a bounded number of messages per account.
JOIN_AT_ONCE_REQUESTS = 32
# Requests an account window needs before the account model's score of it is evidence.
ACCOUNT_MODEL_MIN_REQUESTS = 4
# Every band of a prompt (the band counts `DetectorConfig.problems` accepts), for a young account.
ALL_BANDS = {b: list(range(b)) for b in (4, 8, 16)}


class Outputs:
    # A plain class, not a dataclass: one is made per event, and a dataclass's generated
    # __init__ stays interpreted in the compiled core (1.6% of its time for this one).
    __slots__ = ("decisions", "expired", "late", "late_verdict", "summaries", "tick")

    def __init__(self, late: bool = False) -> None:
        self.summaries: list[ClusterSummary] = []
        self.decisions: list[Decision] = []
        # A tick this partition has just reached: announced to every cluster partition (as a
        # `SourceTick`) before this output's summaries.
        self.tick: int | None = None
        self.late = late
        self.late_verdict = False  # a verdict that came after its time to apply (applied now)
        self.expired = False  # the state is idle past expiry: the edge deletes it


@dataclass(slots=True)
class AccountPartition:
    """What one partition of the account stage keeps besides the per-account states."""

    partition: int
    watermark: Watermark
    model: AccountModel
    templates: TemplateRecurrence
    due: DueIndex = field(default_factory=DueIndex)
    tick: int = -1  # the newest tick announced to the cluster stage
    convicted: ConvictedClusters = field(default_factory=ConvictedClusters)
    # Templates whose crowds the cluster stage has seen agree (and which of them are convicted):
    # what makes a prompt "templated" and an account's template breadth (models/behaviour.py).
    known: KnownTemplates = field(default_factory=KnownTemplates)
    # No key of `convicted` can be all expired before this event time, so pruning before it
    # would drop nothing: pruning is O(keys) and ran at every conviction (a third of the
    # core's time). Valid for the `convicted` object it was computed on (`pruned`), so a
    # restored one is pruned at once.
    prune_at: float = math.inf
    pruned: ConvictedClusters | None = None

    @classmethod
    def create(cls, cfg: DetectorConfig, partition: int) -> AccountPartition:
        model = AccountModel.create(seed=cfg.account_model_seed + partition,
                                    n_trees=cfg.account_model_trees,
                                    height=cfg.account_model_height,
                                    window_size=cfg.account_model_window)
        recurrence = TemplateRecurrence(bands=cfg.simhash_bands,
                                        generation_s=cfg.cluster_window_s
                                        * cfg.cluster_horizon_windows)
        return cls(partition=partition, watermark=Watermark(cfg.allowed_lateness_s),
                   model=model, templates=recurrence)


class AccountStage:
    def __init__(self, cfg: DetectorConfig, allow: AllowList | None = None,
                 operator: OperatorDecisions | None = None) -> None:
        self.cfg = cfg
        # Verified organisations and accounts (models/allowlist.py) and operators' manual
        # decisions (models/operator.py): shared with the edge, which changes them while the
        # stage runs.
        self.allow = allow if allow is not None else AllowList()
        self.operator = operator if operator is not None else OperatorDecisions()

    # --- per event -------------------------------------------------------------------------
    def on_event(self, state: AccountState | None, ev: RequestEvent,
                 part: AccountPartition) -> tuple[AccountState, Outputs]:
        # The hot path of the core (once per event): attributes are read once into locals.
        cfg = self.cfg
        ts = ev.ts
        out = Outputs(late=part.watermark.observe(ts))
        tick = int(part.watermark.max_ts // cfg.cluster_tick_s)
        if tick > part.tick:
            part.tick = out.tick = tick
        if state is None:
            state = AccountState.new(ev.account_id, ts)
            state.created_ts = ev.account_created_ts
            state.org_id = ev.org_id or None
        else:
            if state.org_id is None and ev.org_id:  # (a verdict may have made the state)
                state.org_id = ev.org_id
            if state.pending_verdicts:
                self._apply_verdicts(state, part, out, ts)
        if out.late:
            state.late_events += 1
        win = state.window
        if win is not None and ts >= win.start + cfg.window_s:
            self._close_window(state, part, out)
        win = state.window_for(ts, cfg)
        # The account's own behaviour first, so the summaries below carry this request too.
        simhash = ev.simhash
        template = part.known.match(simhash, part.watermark.max_ts)
        state.behaviour.observe(ev.asn, client_id(ev.user_agent), ev.is_high_value,
                                ev.reasoning_requested, template, ip_prefix(ev.ip), ts)
        state.requests += 1
        infra_keys = win.infra_keys
        young = self._young(state, ts)
        convicted_keys = part.convicted.by_key  # checked here: the call is for the rare hit
        for key in infrastructure_keys(ev):
            if key in infra_keys:
                # Done with in this window already: its IP prefix is counted (or the window's
                # prefixes are full, which they stay) and the account has joined the key.
                continue
            if is_ip_key(key) and key[3:] not in win.ip_prefixes \
                    and len(win.ip_prefixes) < MAX_IP_PREFIXES_PER_WINDOW:
                win.ip_prefixes.append(key[3:])  # rotation counts past the account's IP keys
            if key not in state.keys:
                if key_kind(key) == IP and self._ip_keys(state) >= cfg.max_ip_keys_per_account:
                    state.ip_keys_overflow += 1
                    continue
                if len(state.keys) >= MAX_KEYS_PER_ACCOUNT:
                    state.keys_overflow += 1
                    continue
                state.keys.append(key)
                out.summaries.append(self._join(state, key, ev, part, young))
                if key in convicted_keys:
                    self._hold_convicted(state, key, part)
            infra_keys.append(key)
        if win.requests == 0:
            part.due.register(state.account_id, win.start + cfg.window_s + cfg.allowed_lateness_s)
        buckets = template_keys(simhash, cfg.simhash_bands)
        recurring = part.templates.observe(simhash, ts)
        if len(recurring) < cfg.simhash_bands and young:
            # A young account's prompts go to their template buckets from the first sighting.
            # Recurrence is counted per partition, so a template shared thinly across many
            # accounts (a slow campaign: a few prompts an hour per template, spread over every
            # partition) loses its first sighting in each partition of each generation, and its
            # clusters saw under half of its crowd for the first hours (measured on
            # campaign_stealth: 4 of 11 accounts at two hours). Young accounts are the ones a
            # template crowd is judged on and a minority of the traffic, so the cost is bounded
            # by them; an established account's one-off prompts still wait for recurrence.
            # Its price on the default scenario: 1.96 cluster summaries per event (was 1.57),
            # about twice the live clusters, the core ~19% slower.
            recurring = ALL_BANDS[cfg.simhash_bands]
        newly_recurring = add_event(win, ev, buckets, recurring)
        count_prompt_harvest(win, ev, bool(template))
        if template and add_known_template(win, ev, template_key(template)):
            # A prompt of a known template joins the template's own cluster at its first use in
            # the window: its crowd is every account sending it, whatever bands they share.
            out.summaries.append(self._join(state, template_key(template), ev, part, young,
                                            simhash))
        prompts = state.recent_prompts
        prompts.append(simhash)
        if len(prompts) > RECENT_PROMPTS:
            del prompts[0]
        if state.requests <= JOIN_AT_ONCE_REQUESTS:
            # A new account joins each recurring template bucket at once, so its clusters
            # count it from its first requests; later, its window summaries keep them informed.
            for key in newly_recurring:
                out.summaries.append(self._join(state, key, ev, part, young, simhash))
        if template and part.known.convicted_buckets(template):
            # The hydra response for templates, whatever the account's age or request count
            # (for infrastructure keys it is `_hold_convicted`, above).
            self._hold_convicted_template(state, template, part)
        state.last_ts = max(state.last_ts, ts)
        decision = decide(state, state.last_ts, cfg, self.allow, self.operator)
        if decision is not None:
            out.decisions.append(decision)
        return state, out

    # --- driven by the watermark -----------------------------------------------------------
    def due_accounts(self, part: AccountPartition) -> list[str]:
        """Accounts that may have a window to close or state to expire by now."""
        return part.due.pop_due(part.watermark.max_ts)

    def on_due(self, state: AccountState, part: AccountPartition) -> Outputs:
        cfg = self.cfg
        out = Outputs()
        if state.pending_verdicts:
            self._apply_verdicts(state, part, out)
        now = part.watermark.value
        if state.window is not None and state.window.start + cfg.window_s <= now:
            self._close_window(state, part, out)
            self._decide(state, state.last_ts, out)
        if state.window is None:
            idle_until = self._idle_until(state)
            if idle_until <= now and state.action_until <= now and not state.pending_verdicts:
                out.expired = True
            else:
                part.due.register(state.account_id, max(idle_until, state.action_until)
                                  + cfg.allowed_lateness_s)
        return out

    def _idle_until(self, state: AccountState) -> float:
        """When an idle account's state may go: after `idle_expiry_s`, or for an account that
        has been blocked after `offender_memory_s`, so that waiting out a block does not make
        it a newcomer; for one told of crowd hours, not before a day without one has passed
        (`crowd_hours.COUNT_RESET_S`), so that pausing between sessions does not clear them (an
        adversary's probe: 3-hour sessions 7 hours apart were never throttled)."""
        cfg = self.cfg
        idle = state.last_ts + (max(cfg.idle_expiry_s, cfg.offender_memory_s) if state.strikes
                                else cfg.idle_expiry_s)
        if state.crowd_hours:
            return max(idle, state.crowd_hour_last + COUNT_RESET_S)
        return idle

    # --- after a restart or a move ---------------------------------------------------------
    def watch(self, state: AccountState, part: AccountPartition) -> None:
        """Register a recovered account with a partition: the partition's event time moves
        to the account's, and the account is due when the core would next look at it (an open
        window at its close, else at idle expiry or the end of its action; carried verdicts at
        their time). Earlier would drop an open window from the index (on_due re-registers
        only closed ones), so it would never close unless the account came back."""
        cfg = self.cfg
        part.watermark.observe(state.last_ts)
        due = (float(state.window.start + cfg.window_s) if state.window is not None
               else max(self._idle_until(state), state.action_until))
        part.due.register(state.account_id, due + cfg.allowed_lateness_s)
        if state.pending_verdicts:
            part.due.register(state.account_id, min(at for at, _ in state.pending_verdicts))

    # --- cluster verdicts ------------------------------------------------------------------
    def on_conviction(self, av: AccountVerdict, part: AccountPartition) -> Outputs:
        """A conviction broadcast to the partition: accounts joining its key later carry it."""
        out = Outputs()
        apply_ts = av.told_ts + self.cfg.verdict_delay_s
        verdict = av.verdict
        if verdict.signature:  # a template bucket's: its template is known from now on
            part.known.add(verdict.signature, apply_ts,
                           "" if verdict.is_template_notice else verdict.cluster_key)
        out.late_verdict = apply_ts <= part.watermark.max_ts
        if verdict.is_template_notice:
            return out
        known = part.convicted
        new_key = verdict.cluster_key not in known.by_key
        known.add(apply_ts, verdict)
        # A key's verdicts all expire at the latest expiry among them, which adding a verdict
        # never lowers: so the earliest such time over the keys bounds when pruning can drop
        # anything, and only a new key can lower it. (A withdrawal expires before it is
        # issued: lowering the bound by it would rescan every key at every withdrawal, 2 of the
        # 3 minutes of a replay of the default scenario, measured. `applicable` drops
        # verdicts superseded by newer ones; a withdrawal expires earlier than what it
        # supersedes, and the bound then only keeps an inert key until that expiry.)
        if new_key:
            part.prune_at = min(part.prune_at, verdict.expires_ts)
        now = part.watermark.max_ts
        if known is not part.pruned or part.prune_at <= now:
            known.prune(now)
            part.pruned = known
            part.prune_at = min((max(v.expires_ts for _, v in entries)
                                 for entries in known.by_key.values()), default=math.inf)
        return out

    def on_verdict(self, state: AccountState | None, av: AccountVerdict,
                   part: AccountPartition) -> tuple[AccountState, Outputs]:
        out = Outputs()
        account_id = av.account_id
        if state is None:  # a verdict may overtake the account's own first event
            state = AccountState.new(account_id, av.told_ts)
            part.due.register(account_id, av.told_ts + self.cfg.idle_expiry_s)
        apply_ts = av.told_ts + self.cfg.verdict_delay_s
        state.pending_verdicts.append((apply_ts, av.verdict))
        if apply_ts <= part.watermark.max_ts:
            # The partition is past the verdict's time already: the round trip took longer
            # than verdict_delay_s. Applied now, and counted: here live and replay may differ.
            out.late_verdict = True
            self._apply_verdicts(state, part, out)
        else:
            part.due.register(account_id, apply_ts)
        return state, out

    # --- internals -------------------------------------------------------------------------
    def _ip_keys(self, state: AccountState) -> int:
        return sum(1 for k in state.keys if is_ip_key(k))

    def _young(self, state: AccountState, ts: float) -> bool:
        return (state.created_ts is not None
                and ts - state.created_ts < self.cfg.young_account_age_s)

    def _apply_verdicts(self, state: AccountState, part: AccountPartition, out: Outputs,
                        request_ts: float = 0.0) -> None:
        """Apply the verdicts whose time has come (at or before the partition's newest event
        time), in a fixed order, then decide as of the latest of: their time to apply, the
        account's last request, and the request being processed (`request_ts`, which was
        served before the decision). A late verdict is judged as of its own time, not as of
        how late it came: lateness must not decay the evidence."""
        now = part.watermark.max_ts
        pending = state.pending_verdicts
        due = [p for p in pending if p[0] <= now]
        if not due:
            return
        # In place: the state's list lives as long as the account (a new one each time went
        # to the garbage collector's oldest generation).
        if len(due) == len(pending):
            pending.clear()
        else:
            pending[:] = [p for p in pending if p[0] > now]
            part.due.register(state.account_id, min(at for at, _ in pending))
        due.sort(key=lambda p: (p[0], p[1].issued_ts, p[1].cluster_key, p[1].verdict_id))
        for _, verdict in due:
            self._hold(state, verdict)
        self._decide(state, max(state.last_ts, due[-1][0], request_ts), out)

    def _hold_convicted(self, state: AccountState, key: str, part: AccountPartition) -> None:
        """The hydra response: an account joining a convicted key carries its verdict at once.
        Called for keys in `part.convicted` only (`applicable` says None for the others)."""
        verdict = part.convicted.applicable(key, part.watermark.max_ts)
        if verdict is not None:
            self._hold_if_newer(state, verdict)

    def _hold_convicted_template(self, state: AccountState, template: int,
                                 part: AccountPartition) -> None:
        """A prompt of a convicted template (near the signature of a known template with a
        convicted bucket: `KnownTemplates.match`, whatever bits the prompt flipped) carries the
        convicted buckets' verdicts at once, whatever the account's age or request count.

        An established account's one-off prompts join no bucket until the template recurs in
        its partition, and a thin campaign template recurs there late; a noisy prompt may share
        no 16-bit band with its template at all. The policy still weighs a single template at
        half against an established account, and by the account's own behaviour."""
        now = part.watermark.max_ts
        for key in part.known.convicted_buckets(template):
            verdict = part.convicted.applicable(key, now)
            if verdict is not None:
                self._hold_if_newer(state, verdict)

    def _hold_if_newer(self, state: AccountState, verdict: Verdict) -> None:
        carried = state.verdicts.get(verdict.cluster_key)
        if carried is None or carried.issued_ts < verdict.issued_ts:
            self._hold(state, verdict)

    def _hold(self, state: AccountState, verdict: Verdict) -> None:
        if is_crowd_hour(verdict):  # counted, never weighed as a crowd's evidence
            hours, last = record(state.crowd_hours, state.crowd_hour_last, verdict)
            if last != state.crowd_hour_last:
                state.crowd_hours, state.crowd_hour_last = hours, last
                state.crowd_hour_key = verdict.cluster_key
                state.crowd_hour_reason = verdict.reason
            return
        state.verdicts[verdict.cluster_key] = verdict
        if len(state.verdicts) > MAX_VERDICTS_PER_ACCOUNT:
            # Expired first, then the oldest template buckets, then the oldest of any kind;
            # a few at a time, so the sort is paid once per several verdicts.
            # (Ranked as tuples built in one comprehension: a key function called per verdict
            # was 4% of the core once established accounts carried template verdicts. Keys are
            # unique, so the ranking never reaches past the key.)
            now = verdict.issued_ts
            ranked = sorted([(v.expires_ts > now, not is_template_key(key), v.issued_ts, key)
                             for key, v in state.verdicts.items()])
            for rank in ranked[:len(ranked) - MAX_VERDICTS_PER_ACCOUNT + VERDICT_EVICTION_BATCH]:
                del state.verdicts[rank[3]]

    def _join(self, state: AccountState, key: str, ev: RequestEvent, part: AccountPartition,
              young: bool, simhash: int = 0) -> ClusterSummary:
        # The joining request itself is reported at once, so a cluster of brand-new accounts
        # has content to judge before their first windows close (it is counted once more in
        # the window summary: one request of bias, for minutes of detection time).
        org, card = _identity(state)
        return ClusterSummary(cluster_key=key, account_id=state.account_id, kind="join",
                              window_start=window_start(ev.ts, self.cfg.window_s),
                              event_ts=ev.ts, requests=1,
                              reasoning=int(ev.reasoning_requested),
                              high_value=int(ev.is_high_value),
                              completion_tokens=ev.completion_tokens,
                              young=young, account_first_ts=state.first_ts,
                              tick=part.tick, simhash=simhash,
                              harvest=harvest(state.behaviour, state.requests),
                              rotation=rotation(state.behaviour, state.requests),
                              history=history(state.behaviour, state.requests),
                              org=org, card=card)

    def _close_window(self, state: AccountState, part: AccountPartition, out: Outputs) -> None:
        cfg = self.cfg
        win = state.window
        assert win is not None
        age = None if state.created_ts is None else win.last_ts - state.created_ts
        features = account_features(win, cfg.window_s, age)
        score = part.model.score_and_learn(features, may_learn=state.action == ALLOW)
        floor = cfg.account_anomaly_floor
        # A window of a request or two is anomalous by its shares alone (one reasoning request
        # is 100% reasoning): the model's score is evidence from ACCOUNT_MODEL_MIN_REQUESTS on.
        state.account_score = (max(0.0, (score - floor) / (1.0 - floor))
                               if win.requests >= ACCOUNT_MODEL_MIN_REQUESTS else 0.0)
        state.account_score_window = win.start
        state.account_reasons = (
            [(f"account model anomaly {score:.2f} on window {win.start}: {win.requests} "
              f"requests, {features['reasoning_share']:.0%} reasoning, "
              f"{features['high_value_share']:.0%} high-value")]
            if state.account_score > 0 else [])
        young = self._young(state, win.last_ts)
        behaviour = state.behaviour
        harvesting = harvest(behaviour, state.requests)
        rotating = rotation(behaviour, state.requests)
        level = history(behaviour, state.requests)
        org, card = _identity(state)
        for key in win.infra_keys:
            out.summaries.append(ClusterSummary(
                cluster_key=key, account_id=state.account_id, kind="window",
                window_start=win.start, event_ts=win.last_ts, requests=win.requests,
                reasoning=win.reasoning, high_value=win.high_value,
                completion_tokens=win.completion_tokens, young=young,
                account_first_ts=state.first_ts, tick=part.tick, harvest=harvesting,
                rotation=rotating, history=level, org=org, card=card,
                key_harvest=window_harvest(win.prompt_harvest.get(key))))
        per_request_tokens = win.completion_tokens // max(1, win.requests)
        for key in top_template_keys(win, cfg.max_template_keys_per_window):
            requests, reasoning, high_value, _, simhash = win.templates[key]
            out.summaries.append(ClusterSummary(
                cluster_key=key, account_id=state.account_id, kind="window",
                window_start=win.start, event_ts=win.last_ts, requests=requests,
                reasoning=reasoning, high_value=high_value,
                completion_tokens=per_request_tokens * requests, young=young,
                account_first_ts=state.first_ts, tick=part.tick, simhash=simhash,
                harvest=harvesting, rotation=rotating, history=level, org=org, card=card))
        state.window = None
        state.windows_closed += 1

    def _decide(self, state: AccountState, now_ts: float, out: Outputs) -> None:
        decision = decide(state, now_ts, self.cfg, self.allow, self.operator)
        if decision is not None:
            out.decisions.append(decision)


def _identity(state: AccountState) -> tuple[int, int]:
    """The account's organisation and card as its summaries carry them (models/crowd_hours.py
    `org_identity`, `card_identity`): its first card joined, its own account's without one."""
    card = next((key[len(PAYMENT) + 1:] for key in state.keys if key_kind(key) == PAYMENT), None)
    return org_identity(state.org_id, state.account_id), card_identity(card, state.account_id)
