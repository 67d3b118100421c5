"""A cluster's state stays under the size a worker may write, whatever its crowd.

A campaign's shared card outgrew max_state_bytes in a live fleet (534 KB, 5,000 members under
the member count cap alone): from then on every summary for it was dead-lettered, so the
biggest campaigns stopped being tracked as they grew. The members are now capped by their
most bytes on the wire as well (models/cluster.py `member_wire_bytes`), and so are the
summaries waiting for their tick (`summary_wire_bytes`): ~3,770 of them, with a full member
set, passed 512 KB while one account partition lagged.
"""

from __future__ import annotations

import orjson
import pytest

from distillguard.models.account import Verdict
from distillguard.models.cluster import (
    MEMBER_FIXED_BYTES,
    SIGNATURE_MEMBERS,
    SUMMARY_FIXED_BYTES,
    ClusterState,
    ClusterWindow,
    add_summary,
    advance,
    member_wire_bytes,
    summary_wire_bytes,
    tell_member,
)
from distillguard.models.cluster_stage import ClusterPartition, ClusterStage
from distillguard.models.config import DetectorConfig
from distillguard.models.events import MAX_EVENT_TS
from distillguard.models.messages import ClusterSummary
from distillguard.streams.edge.codec import decode_cluster_state, encode_cluster_state
from distillguard.streams.edge.settings import (
    CAPPED_SHARE_OF_STATE,
    Settings,
    SettingsError,
    load_settings,
)

LONGEST_ID = "a" * 128  # the contract's longest account_id
LONGEST_KEY = "sys:" + "\x01" * 128  # a system prompt hash at the contract's longest, escaped
LONGEST_REASON = "r" * 2000
LONGEST_FLOAT = -2.2250738585072014e-308  # a double's longest repr: 24 characters
LONGEST_VERDICT_ID = "cv-" + "f" * 24
T0 = 1_767_225_600


def test_a_member_at_its_longest_encodes_within_its_counted_bytes() -> None:
    assert len(repr(LONGEST_FLOAT)) == 24
    member = [int(MAX_EVENT_TS), 1, LONGEST_FLOAT, LONGEST_VERDICT_ID, 2**64 - 1, LONGEST_FLOAT,
              LONGEST_FLOAT, 2, 2**32 - 1, 2**32 - 1, int(MAX_EVENT_TS), 2**64 - 1, 2**64 - 1, 1]
    encoded = orjson.dumps({LONGEST_ID: member})
    # `{...}` has no comma after its only member: one byte of the count is that comma
    # (a system prompt's cluster: its crowd-hour fields at their longest)
    assert len(encoded) - 2 + 1 <= member_wire_bytes(LONGEST_ID, LONGEST_KEY)
    # any other cluster: its crowd-hour fields are zeros
    other = orjson.dumps({LONGEST_ID: [*member[:8], 0, 0, 0, 0, 0, 0]})
    assert len(other) - 2 + 1 <= member_wire_bytes(LONGEST_ID, "pay:shared-card")
    assert member_wire_bytes("acct-1") == 6 + MEMBER_FIXED_BYTES


def summary(account: str, i: int) -> ClusterSummary:
    return ClusterSummary("pay:shared-card", account, "window", T0, T0 + 1.0, 40, 30, 30, 9000,
                          True, LONGEST_FLOAT, tick=1, simhash=0, harvest=LONGEST_FLOAT,
                          rotation=LONGEST_FLOAT, history=2)


def test_a_crowd_of_the_longest_ids_fills_the_member_bytes_and_no_more() -> None:
    cfg = DetectorConfig()
    state = ClusterState(cluster_key="pay:shared-card")
    accounts = [f"{i:06d}" + LONGEST_ID[6:] for i in range(cfg.cluster_member_cap)]
    for i, account in enumerate(accounts):
        add_summary(state, summary(account, i), cfg)
    assert len(state.members) < cfg.cluster_member_cap, "the byte cap binds before the count"
    assert state.member_bytes <= cfg.cluster_member_bytes
    assert state.member_bytes + member_wire_bytes(accounts[-1]) > cfg.cluster_member_bytes
    assert state.members_overflow == len(accounts) - len(state.members)
    for account in state.members:  # every member told of a verdict: the longest told field
        tell_member(state, account, LONGEST_VERDICT_ID)

    members_part = len(orjson.dumps(state.members))
    assert members_part <= state.member_bytes, "the count is an upper bound of the encoding"
    encoded = encode_cluster_state(state)
    assert len(encoded) <= Settings().max_state_bytes, len(encoded)
    assert decode_cluster_state(encoded).member_bytes == state.member_bytes


def test_the_default_caps_fit_the_default_state_bound() -> None:
    cfg = DetectorConfig()
    assert (cfg.cluster_member_bytes + cfg.cluster_pending_bytes
            <= Settings().max_state_bytes * CAPPED_SHARE_OF_STATE)


def test_settings_refuse_caps_that_do_not_fit_the_state_bound() -> None:
    with pytest.raises(SettingsError, match="cluster_pending_bytes"):
        load_settings(env={"DISTILLGUARD_DETECTOR_CLUSTER_PENDING_BYTES": "600000"})


def longest_summary(account: str, tick: int) -> ClusterSummary:
    """A waiting summary with every field at its longest on the wire."""
    return ClusterSummary(LONGEST_KEY, account, "window", int(MAX_EVENT_TS), LONGEST_FLOAT,
                          2**64 - 1, 2**64 - 1, 2**64 - 1, 2**64 - 1, False, LONGEST_FLOAT,
                          tick=int(MAX_EVENT_TS), simhash=2**64 - 1, harvest=LONGEST_FLOAT,
                          rotation=LONGEST_FLOAT, history=2, org=2**32 - 1, card=2**32 - 1,
                          key_harvest=2**64 - 1)


def test_a_summary_at_its_longest_encodes_within_its_counted_bytes() -> None:
    s = longest_summary("\x01" + LONGEST_ID[1:], 0)
    # `[...]` has no comma after its only element: one byte of the count is that comma
    assert len(orjson.dumps([s.to_wire()])) - 2 + 1 <= summary_wire_bytes(s)
    assert summary_wire_bytes(s._replace(account_id="a", cluster_key="k")) == (
        2 + SUMMARY_FIXED_BYTES)


def test_every_capped_part_of_a_cluster_at_its_longest_fits_max_state_bytes() -> None:
    """Members, strays and waiting summaries each at their cap, every id and figure at its
    longest, a verdict in force and every window of the horizon: the state still encodes
    under the worker's max_state_bytes."""
    cfg = DetectorConfig()
    state = ClusterState(cluster_key=LONGEST_KEY)
    for i in range(cfg.cluster_member_cap):
        add_summary(state, summary(f"{i:06d}" + LONGEST_ID[6:], i)._replace(
            cluster_key=LONGEST_KEY), cfg)
    for account in state.members:
        tell_member(state, account, LONGEST_VERDICT_ID)
    state.strays = {f"s{i:05d}" + LONGEST_ID[6:]: (int(MAX_EVENT_TS), 1, LONGEST_FLOAT,
                                                    LONGEST_VERDICT_ID, 2**64 - 1,
                                                    LONGEST_FLOAT, LONGEST_FLOAT, 2, 2**32 - 1,
                                                    2**32 - 1, int(MAX_EVENT_TS), 2**64 - 1,
                                                    2**64 - 1, 1)
                    for i in range(SIGNATURE_MEMBERS)}
    for start in range(cfg.cluster_horizon_windows):
        state.windows[start] = ClusterWindow(int(MAX_EVENT_TS), 2**63, 2**63, 2**63, 2**63,
                                             2**63)
    state.verdict = Verdict(cluster_key=LONGEST_KEY, score=LONGEST_FLOAT,
                            issued_ts=int(MAX_EVENT_TS), expires_ts=int(MAX_EVENT_TS),
                            verdict_id=LONGEST_VERDICT_ID, reason=LONGEST_REASON,
                            signature=2**64 - 1, prior=LONGEST_FLOAT, proven=LONGEST_FLOAT,
                            rotating=LONGEST_FLOAT)
    stage, part = ClusterStage(cfg), ClusterPartition(sources=2)
    i = 0
    while state.pending_bytes + summary_wire_bytes(longest_summary(LONGEST_ID, 0)) <= (
            cfg.cluster_pending_bytes):
        state.pending.append(longest_summary(f"p{i:05d}" + LONGEST_ID[6:], int(MAX_EVENT_TS)))
        state.pending_bytes += summary_wire_bytes(state.pending[-1])
        i += 1
    assert state.member_bytes <= cfg.cluster_member_bytes
    encoded = encode_cluster_state(state)
    assert len(encoded) <= Settings().max_state_bytes, len(encoded)
    assert decode_cluster_state(encoded).pending_bytes == state.pending_bytes
    # ... and the stage keeps it so: the next summary judges the oldest waiting ones early.
    state, out = stage.on_summary(state, longest_summary(LONGEST_ID, int(MAX_EVENT_TS)), part)
    assert out.judged_early > 0 and state.pending_bytes <= cfg.cluster_pending_bytes


def test_a_lagging_partition_cannot_grow_the_waiting_summaries_past_their_cap() -> None:
    """One account partition stops reporting its ticks (lagging, not idle for source_idle_s
    yet) while a big crowd goes on: the oldest waiting summaries are judged without it, so
    the state stays under its cap, and the crowd is still convicted (the counts are exact:
    nothing is dropped)."""
    cfg = DetectorConfig()
    stage, part = ClusterStage(cfg), ClusterPartition(sources=2)
    state = None
    judged_early = 0
    verdicts = 0
    for i in range(6_000):
        tick = T0 // cfg.cluster_tick_s + i // 600  # 600 summaries a tick, ten ticks
        s = ClusterSummary("pay:shared-card", f"acct-{i % 1500:05d}", "window", T0, T0 + i / 10,
                           5, 5, 5, 9000, True, float(T0), tick=tick, harvest=1.0,
                           rotation=0.0, history=1)
        state, out = stage.on_summary(state, s, part)
        judged_early += out.judged_early
        verdicts += len(out.verdicts)
        assert state.pending_bytes <= cfg.cluster_pending_bytes
        assert state.pending_bytes == sum(summary_wire_bytes(p) for p in state.pending)
    assert judged_early > 0 and state.judged_early_before > T0 // cfg.cluster_tick_s
    assert verdicts > 0, "the crowd is judged while it waits"
    assert sum(w.requests for w in state.windows.values()) == 5 * judged_early
    # The lagging partition's summary of an early-judged tick joins a later one, counted.
    late = ClusterSummary("pay:shared-card", "acct-lagging", "window", T0, T0 + 1.0, 1, 0, 0, 10,
                          True, float(T0), tick=T0 // cfg.cluster_tick_s)
    state, out = stage.on_summary(state, late, part)
    assert out.behind and state.pending[-1].tick == state.judged_early_before
    # What is left waits for the lagging partition, and is judged when it passes its ticks.
    last_tick = max(s.tick for s in state.pending) + 1
    assert stage.on_source_tick(part, 0, last_tick) == []
    keys = stage.on_source_tick(part, 1, last_tick)
    assert keys == ["pay:shared-card"]
    stage.settle(state, part)
    assert state.pending == [] and state.pending_bytes == 0
    assert sum(w.requests for w in state.windows.values()) == 5 * 6_000 + 1


def test_members_that_go_idle_give_their_bytes_back() -> None:
    cfg = DetectorConfig()
    state = ClusterState(cluster_key="pay:shared-card")
    add_summary(state, summary("acct-old", 0), cfg)
    before = state.member_bytes
    assert before == member_wire_bytes("acct-old")
    later = T0 + cfg.idle_expiry_s + 2 * cfg.cluster_window_s
    add_summary(state, summary("acct-new", 1)._replace(window_start=later, event_ts=later), cfg)
    assert "acct-old" not in state.members
    assert state.member_bytes == member_wire_bytes("acct-new")


def test_a_template_takeover_recounts_the_member_bytes() -> None:
    # A helper's review: `_reelect` replaced the members without recounting their bytes, so
    # the new crowd was capped by the old crowd's size until a restart recounted it.
    cfg = DetectorConfig()
    old_template, new_template = 0x0123_4567_89AB_CDEF, 0x0123_0000_FFFF_1234
    state = ClusterState(cluster_key="tpl:3:0123", template=old_template)
    for i in range(1500):  # the old crowd, out of the horizon by the next window
        state.members[f"old-{i:05d}"] = (T0, 1, float(T0), "", old_template, 0.0, 0.0, 0,
                                         0, 0, 0, 0, 0, 0)
    state.member_bytes = sum(member_wire_bytes(a) for a in state.members)
    now = T0 + cfg.cluster_horizon_windows * cfg.cluster_window_s * 2
    state.strays = {f"new-{i}": (now, 1, float(now), "", new_template ^ (1 << i), 0.0, 0.0, 0,
                                 0, 0, 0, 0, 0, 0)
                    for i in range(5)}
    advance(state, now, cfg)
    assert state.template == new_template and set(state.members) == set(state.strays or {}) | {
        f"new-{i}" for i in range(5)}
    assert state.member_bytes == sum(member_wire_bytes(a) for a in state.members)


def test_ids_that_json_escapes_are_counted_at_their_escaped_length() -> None:
    # Any 1-128 character account_id is valid; orjson writes a control character in 6 bytes.
    for account in ["acct-1", "a\x01b\x1f", 'q""\\', "é" * 10]:
        assert member_wire_bytes(account) - MEMBER_FIXED_BYTES == len(orjson.dumps(account)) - 2
    assert member_wire_bytes("\n\t") - MEMBER_FIXED_BYTES >= len(orjson.dumps("\n\t")) - 2
    cfg = DetectorConfig()
    state = ClusterState(cluster_key="pay:shared-card")
    for i in range(cfg.cluster_member_cap):
        add_summary(state, summary(f"{i:05d}" + "\x01" * 123, i), cfg)
    assert len(encode_cluster_state(state)) <= Settings().max_state_bytes


def test_judging_early_never_runs_ahead_of_the_event_time_the_fleet_reached() -> None:
    """A helper's review: with no lag at all, a crowd over the cap within the open tick marked
    that tick judged, so the rest of it went to the next tick, which filled and was marked in
    turn: the mark, and the time verdicts were issued at, ran ahead of event time (a crowd of
    20,000 harvesting from minute 240 was acted on at minute 519, not 242)."""
    cfg = DetectorConfig(cluster_pending_bytes=65_536)
    stage, part = ClusterStage(cfg), ClusterPartition(sources=1)
    state: ClusterState | None = None
    issued = []
    for minute in range(30):
        tick = T0 // cfg.cluster_tick_s + minute
        # the one account partition, in step: its tick is announced before its summaries
        for key in stage.on_source_tick(part, 0, tick):
            assert state is not None and key == state.cluster_key
            issued += [av.verdict.issued_ts for av in stage.settle(state, part).convictions]
        for i in range(400):  # ~120,000 bytes a minute: over the cap in every tick
            s = ClusterSummary("pay:shared-card", f"acct-{i:05d}", "window", T0,
                               tick * cfg.cluster_tick_s + i * 0.1, 5, 5, 5, 9000, True,
                               float(T0), tick=tick, harvest=1.0, history=1)
            state, out = stage.on_summary(state, s, part)
            assert not out.behind, "no partition lags: no summary is behind"
            issued += [av.verdict.issued_ts for av in out.convictions]
        assert state.judged_early_before <= tick, "a tick no partition has passed is open"
    assert state is not None and state.verdict is not None and issued
    last_event_ts = (T0 // cfg.cluster_tick_s + 30) * cfg.cluster_tick_s
    assert max(issued) <= last_event_ts, "never judged past the fleet's event time"
    assert state.pending_bytes <= cfg.cluster_pending_bytes


def test_settings_refuse_a_pending_cap_that_would_judge_early_at_every_summary() -> None:
    with pytest.raises(SettingsError, match="cluster_pending_bytes must be at least"):
        load_settings(env={"DISTILLGUARD_DETECTOR_CLUSTER_PENDING_BYTES": "2000"})
