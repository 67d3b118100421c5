"""A cluster's state stays under the size a worker may write, whatever its crowd.

A campaign's shared card outgrew max_state_bytes in a live fleet (534 KB, 5,000 members under
the member count cap alone): from then on every summary for it was dead-lettered, so the
biggest campaigns stopped being tracked as they grew. The members are now capped by their
most bytes on the wire as well (models/cluster.py `member_wire_bytes`).
"""

from __future__ import annotations

import orjson

from models.cluster import (
    MEMBER_FIXED_BYTES,
    ClusterState,
    add_summary,
    advance,
    member_wire_bytes,
    tell_member,
)
from models.config import DetectorConfig
from models.events import MAX_EVENT_TS
from models.messages import ClusterSummary
from streams.edge.codec import decode_cluster_state, encode_cluster_state
from streams.edge.settings import MEMBER_SHARE_OF_STATE, Settings

LONGEST_ID = "a" * 128  # the contract's longest account_id
LONGEST_FLOAT = -2.2250738585072014e-308  # a double's longest repr: 24 characters
LONGEST_VERDICT_ID = "cv-" + "f" * 24
LONGEST_ASN = 2**32 - 1  # models/events.py: an ASN is a 32-bit number
T0 = 1_767_225_600


def test_a_member_at_its_longest_encodes_within_its_counted_bytes() -> None:
    assert len(repr(LONGEST_FLOAT)) == 24
    member = [int(MAX_EVENT_TS), 1, LONGEST_FLOAT, LONGEST_VERDICT_ID, 2**64 - 1, LONGEST_FLOAT,
              LONGEST_FLOAT, 2, LONGEST_ASN]
    encoded = orjson.dumps({LONGEST_ID: member})
    # `{...}` has no comma after its only member: one byte of the count is that comma
    assert len(encoded) - 2 + 1 <= member_wire_bytes(LONGEST_ID)
    assert member_wire_bytes("acct-1") == 6 + MEMBER_FIXED_BYTES


def summary(account: str, i: int) -> ClusterSummary:
    return ClusterSummary("pay:shared-card", account, "window", T0, T0 + 1.0, 40, 30, 30, 9000,
                          True, LONGEST_FLOAT, tick=1, simhash=0, harvest=LONGEST_FLOAT,
                          rotation=LONGEST_FLOAT, history=2, network=LONGEST_ASN)


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


def test_the_default_member_bytes_fit_the_default_state_bound() -> None:
    assert (DetectorConfig().cluster_member_bytes
            <= Settings().max_state_bytes * MEMBER_SHARE_OF_STATE)


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
        state.members[f"old-{i:05d}"] = (T0, 1, float(T0), "", old_template, 0.0, 0.0, 0, 0)
    state.member_bytes = sum(member_wire_bytes(a) for a in state.members)
    now = T0 + cfg.cluster_horizon_windows * cfg.cluster_window_s * 2
    state.strays = {f"new-{i}": (now, 1, float(now), "", new_template ^ (1 << i), 0.0, 0.0, 0,
                                  0)
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
