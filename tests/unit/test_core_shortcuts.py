"""The core's shortcuts for speed give what the plain definitions give, on random inputs.

- `members_to_tell` looks only at members added since every active member was told of the
  verdict; it must list exactly the active members not yet told, in member order.
- The cluster partition registers a key for its pending summaries only when its earliest
  pending tick falls; `on_source_tick` must return exactly the keys with a summary of a
  judged tick, ordered by their earliest pending tick, then by key.
- The account partition prunes the broadcast convictions only once one can have expired; it
  must keep exactly what pruning at every conviction keeps.
"""

from __future__ import annotations

import copy
import random

from distillguard.models.account import Verdict
from distillguard.models.account_stage import AccountPartition, AccountStage
from distillguard.models.cluster import _LAST, _TOLD, ClusterState, add_summary, members_to_tell
from distillguard.models.cluster_stage import ClusterPartition, ClusterStage
from distillguard.models.config import DetectorConfig
from distillguard.models.messages import BROADCAST, AccountVerdict, ClusterSummary
from distillguard.models.windows import window_start

CFG = DetectorConfig(cluster_member_cap=24)
T0 = 1_700_000_000.0


def _summary(key: str, account: str, ts: float, tick: int = 0) -> ClusterSummary:
    return ClusterSummary(cluster_key=key, account_id=account, kind="window",
                          window_start=window_start(ts, CFG.window_s), event_ts=ts, requests=3,
                          reasoning=1, high_value=2, completion_tokens=900, young=True,
                          account_first_ts=T0, tick=tick)


def _scan(state: ClusterState, verdict_id: str) -> list[str]:
    """The definition: every active member not told of the verdict, in member order."""
    start = state.horizon_start(CFG)
    return [a for a, m in state.members.items() if m[_LAST] >= start and m[_TOLD] != verdict_id]


def test_members_to_tell_lists_what_a_scan_of_every_member_lists() -> None:
    for seed in range(20):
        rng = random.Random(seed)
        state = ClusterState(cluster_key="pay:p")
        ts, verdict, told = T0, "cv-0", 0
        for step in range(600):
            # Mostly minutes apart, now and then a pause past the horizon or the idle expiry,
            # so members leave the horizon, come back, are dropped and are added again.
            ts += rng.choice([30.0] * 30 + [1800.0, 3 * 3600.0, 7 * 3600.0])
            for _ in range(rng.randint(1, 4)):
                add_summary(state, _summary("pay:p", f"a{rng.randrange(40)}", ts), CFG)
            if rng.random() < 0.05:
                verdict = f"cv-{step}"  # a new verdict (an upgrade or a re-issue)
            if rng.random() < 0.7:  # judged while the verdict is in force
                expected = _scan(state, verdict)
                assert members_to_tell(state, verdict, CFG) == expected, (seed, step)
                told += len(expected)
                assert _scan(state, verdict) == []
        assert told > 0


def test_a_recovered_state_tells_the_same_members() -> None:
    state = ClusterState(cluster_key="pay:p")
    for i in range(10):
        add_summary(state, _summary("pay:p", f"a{i}", T0 + i), CFG)
    assert len(members_to_tell(state, "cv-1", CFG)) == 10
    add_summary(state, _summary("pay:p", "late", T0 + 20), CFG)
    recovered = ClusterState.from_wire(copy.deepcopy(state.to_wire()))
    assert recovered == state
    assert members_to_tell(recovered, "cv-1", CFG) == members_to_tell(state, "cv-1", CFG) == [
        "late"]


def test_source_ticks_release_the_keys_with_judged_summaries_in_tick_then_key_order() -> None:
    stage, sources = ClusterStage(CFG), 3
    for seed in range(10):
        rng = random.Random(seed)
        part = ClusterPartition.create(CFG, sources=sources)
        states: dict[str, ClusterState] = {}
        ticks = [100] * sources
        released = 0
        for _ in range(800):
            source = rng.randrange(sources)
            if rng.random() < 0.3:
                ticks[source] += rng.randint(1, 3)
                # The definition, from the states before the tick is announced.
                before = part.judged_before
                stage_ticks = dict(part.source_ticks)
                stage_ticks[source] = max(stage_ticks.get(source, -1), ticks[source])
                aligned = max(max(stage_ticks.values()) - stage.idle_ticks,
                              min(stage_ticks.values()) if len(stage_ticks) >= sources else -1)
                expected = [] if aligned <= before else sorted(
                    (k for k, st in states.items() if any(s.tick < aligned for s in st.pending)),
                    key=lambda k: (min(s.tick for s in states[k].pending), k))
                keys = stage.on_source_tick(part, source, ticks[source])
                assert keys == expected, seed
                for key in keys:
                    stage.settle(states[key], part)
                released += len(keys)
            else:
                key = f"tpl:0:{rng.randrange(12):04x}"
                ts = T0 + 60 * ticks[source]
                s = _summary(key, f"a{rng.randrange(30)}", ts, tick=ticks[source])
                states[key], _ = stage.on_summary(states.get(key), s, part)
        assert released > 0


def test_convictions_are_pruned_as_when_pruned_at_every_conviction() -> None:
    stage, rng = AccountStage(CFG), random.Random(3)
    part, reference = AccountPartition.create(CFG, 0), AccountPartition.create(CFG, 0)
    ts = T0
    for i in range(300):
        ts += rng.choice([10.0, 60.0, 600.0, 3600.0])
        part.watermark.observe(ts)
        reference.watermark.observe(ts)
        ttl = rng.choice([600, 3600, CFG.verdict_ttl_s])
        v = Verdict(f"pay:{rng.randrange(20)}", 0.9, ts, ts + ttl, f"cv-{i}", "why")
        stage.on_conviction(AccountVerdict(BROADCAST, v, ts), part)
        reference.convicted.add(ts + CFG.verdict_delay_s, v)
        reference.convicted.prune(reference.watermark.max_ts)
        assert part.convicted == reference.convicted, i
