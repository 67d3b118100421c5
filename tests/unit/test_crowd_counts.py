"""`models.cluster`: a crowd's behaviour counts, kept current summary by summary.

A cluster counts its members active in the horizon that harvest, that harvest on a cheap
identity (suspicious), that rotate, and the suspicious ones proven to harvest for long. The
counts are kept current as members come, come back and change their behaviour, and recounted
when the window advances; both ways must agree, whatever the order of the summaries.
"""

from __future__ import annotations

import random

from distillguard.models.behaviour import JUDGED, NEW, SUSTAINED
from distillguard.models.cluster import ClusterState, add_summary, advance, member_flags
from distillguard.models.config import DetectorConfig
from distillguard.models.messages import ClusterSummary
from distillguard.models.windows import window_start

CFG = DetectorConfig()
T0 = 1_700_000_000.0
COUNTS = ("active", "active_young", "active_new", "active_harvesting", "active_suspicious",
          "active_rotating", "active_sustained", "remembered_suspicious")


def summary(account: str, ts: float, *, young: bool, harvest: float, rotation: float,
            history: int) -> ClusterSummary:
    return ClusterSummary("pay:p", account, "window", window_start(ts, CFG.window_s), ts, 3, 1,
                          2, 3000, young, T0 - 86400, harvest=harvest, rotation=rotation,
                          history=history)


def counts(state: ClusterState) -> tuple[int, ...]:
    return tuple(getattr(state, name) for name in COUNTS)


def recounted(state: ClusterState) -> tuple[int, ...]:
    """The counts as `advance` makes them from the members, on a copy."""
    copy = ClusterState.from_wire(state.to_wire())
    advance(copy, copy.current_window, CFG)
    return counts(copy)


def test_member_flags() -> None:
    assert member_flags(1, 0.9, 0.0, JUDGED) == (1, 1, 0, 0)  # a young harvester
    assert member_flags(0, 0.9, 0.0, SUSTAINED) == (1, 0, 0, 0)  # an established one
    assert member_flags(0, 0.9, 0.8, SUSTAINED) == (1, 1, 1, 1)  # a rotating one, for long
    assert member_flags(1, 0.1, 0.0, SUSTAINED) == (0, 0, 0, 0)  # young, not harvesting


def test_the_counts_kept_current_equal_a_recount_whatever_the_order() -> None:
    rng = random.Random(7)
    for _ in range(200):
        state = ClusterState(cluster_key="pay:p")
        accounts = [f"a{i}" for i in range(rng.randrange(1, 12))]
        young = {a: rng.random() < 0.5 for a in accounts}
        ts = T0
        for _ in range(rng.randrange(1, 40)):
            # mostly within the horizon, now and then a pause that takes members out of it
            ts += rng.choice([5.0, 60.0, 400.0, CFG.cluster_window_s * 3.0])
            a = rng.choice(accounts)
            add_summary(state, summary(a, ts, young=young[a], harvest=rng.choice([0.0, 0.3, 0.9]),
                                       rotation=rng.choice([0.0, 0.2, 1.0]),
                                       history=rng.choice([NEW, JUDGED, SUSTAINED])), CFG)
            assert counts(state) == recounted(state)


def test_a_member_that_starts_harvesting_becomes_suspicious() -> None:
    state = ClusterState(cluster_key="pay:p")
    add_summary(state, summary("a", T0, young=True, harvest=0.2, rotation=0.0, history=NEW), CFG)
    assert (state.active, state.active_harvesting, state.active_suspicious) == (1, 0, 0)
    add_summary(state, summary("a", T0 + 300, young=True, harvest=0.8, rotation=0.0,
                               history=SUSTAINED), CFG)
    assert (state.active, state.active_harvesting, state.active_suspicious,
            state.active_sustained) == (1, 1, 1, 1)


def test_members_of_a_core_before_member_behaviour_decode_as_ordinary() -> None:
    state = ClusterState(cluster_key="pay:p")
    add_summary(state, summary("a", T0, young=True, harvest=0.9, rotation=0.0, history=JUDGED),
                CFG)
    wire = state.to_wire()
    old = [*wire[:3], {a: m[:5] for a, m in wire[3].items()}, *wire[4:14]]
    again = ClusterState.from_wire(old)
    assert again.members["a"][5:] == (0.0, 0.0, 0, 0, 0, 0, 0, 0, 0)
    assert again.active_harvesting == 0
