"""`streams.edge.codec`: the one place bytes become the core's values and back.

Refused records must carry a reason an operator can act on; dead-letter records must carry
what is needed to find and re-drive the original; state must survive the changelog unchanged.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from distillguard.models.account import AccountState, Verdict
from distillguard.models.account_stage import AccountPartition, AccountStage
from distillguard.models.cluster import ClusterState
from distillguard.models.cluster_stage import ClusterPartition, ClusterStage
from distillguard.models.config import DetectorConfig
from distillguard.models.decision import Decision
from distillguard.models.events import InvalidEvent, RequestEvent
from distillguard.models.messages import AccountVerdict, ClusterSummary, SourceTick
from distillguard.models.policy import decide
from distillguard.streams.edge.codec import (
    DEFAULT_MAX_RECORD_BYTES,
    dead_letter_record,
    decode_account_state,
    decode_cluster_record,
    decode_cluster_state,
    decode_request,
    decode_request_line,
    decode_verdict_record,
    encode_account_state,
    encode_batch,
    encode_cluster_state,
    encode_decision,
    encode_summary,
    encode_verdict,
)
from tests.conftest import event_dict, make_event

CFG = DetectorConfig()
T0 = 1_700_000_000.0


def _valid(account: str = "acct-1", **fields: Any) -> bytes:
    return orjson.dumps(event_dict(account, T0, **fields))


# --- decode_request ---------------------------------------------------------------------------

def test_valid_record_decodes_to_the_event() -> None:
    ev = decode_request(_valid(), b"acct-1")
    assert isinstance(ev, RequestEvent)
    assert ev == make_event("acct-1", T0)


@pytest.mark.parametrize("value,key,words", [
    (None, b"acct-1", ["tombstone"]),
    (b"\xff\xfe{}", b"acct-1", ["not utf-8"]),
    (b'{"event_id": "\xc3\x28"}', b"acct-1", ["not utf-8"]),
    (b"{not json", b"acct-1", ["not json"]),
    (b"", b"acct-1", ["not json"]),
    (b"[1, 2", b"acct-1", ["not json"]),
    (_valid(), None, ["no key"]),
    (_valid(), b"", ["no key"]),
    (_valid(), b"acct-2", ["key", "account_id"]),
    (_valid(), b"\xff\xfe", ["key", "utf-8"]),
    (orjson.dumps([1, 2, 3]), b"acct-1", ["object"]),
    (orjson.dumps({**event_dict("acct-1", T0), "status": 42}), b"acct-1", ["'status'"]),
])
def test_bad_records_are_refused_with_a_reason(value: bytes | None, key: bytes | None,
                                                words: list[str]) -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_request(value, key)
    reason = info.value.reason.lower()
    assert all(w.lower() in reason for w in words), reason


def test_record_over_the_byte_limit_is_refused_before_parsing() -> None:
    padded = orjson.dumps({**event_dict("acct-1", T0), "padding": "x" * 2000})
    assert decode_request(padded, b"acct-1", max_bytes=len(padded)).account_id == "acct-1"
    with pytest.raises(InvalidEvent) as info:
        decode_request(padded, b"acct-1", max_bytes=len(padded) - 1)
    assert "over the limit" in info.value.reason and str(len(padded)) in info.value.reason
    # even bytes that are not JSON at all are refused for size first, cheaply
    with pytest.raises(InvalidEvent, match="over the limit"):
        decode_request(b"\xff" * (DEFAULT_MAX_RECORD_BYTES + 1), b"acct-1")


def test_key_mismatch_reason_quotes_a_bounded_key() -> None:
    with pytest.raises(InvalidEvent) as info:
        decode_request(_valid(), b"k" * 10_000)
    assert len(info.value.reason) < 200


def test_decode_request_line_has_no_key_check() -> None:
    assert decode_request_line(_valid("acct-9")).account_id == "acct-9"
    with pytest.raises(InvalidEvent, match="not JSON"):
        decode_request_line(b"garbage")
    with pytest.raises(InvalidEvent, match="over the limit"):
        decode_request_line(_valid(), max_bytes=10)


# --- dead letters -----------------------------------------------------------------------------

def test_dead_letter_record_carries_reason_and_original() -> None:
    value = b"\x00\xffnot an event"
    rec = orjson.loads(dead_letter_record("record value is not UTF-8", value, b"acct-7",
                                          "distillguard.requests", 5, 1234, 99.5))
    assert rec["reason"] == "record value is not UTF-8"
    assert base64.b64decode(rec["value_b64"]) == value
    assert base64.b64decode(rec["key_b64"]) == b"acct-7"
    assert (rec["source_topic"], rec["source_partition"], rec["source_offset"]) == (
        "distillguard.requests", 5, 1234)
    assert rec["ts"] == 99.5


def test_dead_letter_record_of_a_tombstone_without_key() -> None:
    rec = orjson.loads(dead_letter_record("record has no value (tombstone)", None, None,
                                          "t", 0, 0, 1.0))
    assert rec["value_b64"] is None and rec["key_b64"] is None
    assert rec["reason"].startswith("record has no value")


# --- state round trips ------------------------------------------------------------------------

def _driven_account_state() -> AccountState:
    """An account with a closed window, an open one, keys, a verdict and an action."""
    stage, part = AccountStage(CFG), AccountPartition.create(CFG, 0)
    state = None
    for i in range(6):
        ev = make_event("acct-1", T0 + 20 * i, i, reasoning_requested=True,
                        task_category="coding", payment_fingerprint="pay-1",
                        system_prompt_hash="sys-1", account_created_ts=T0 - 3600,
                        ip=f"198.51.100.{i}", tools_count=i)
        state, _ = stage.on_event(state, ev, part)
    ev = make_event("acct-1", T0 + CFG.window_s + 5, 99, prompt_simhash="fedcba9876543210")
    state, _ = stage.on_event(state, ev, part)
    for key, score, ts in (("pay:pay-1", 0.95, T0 + 300), ("tpl:0:cdef", 0.9, T0 + 400)):
        verdict = Verdict(key, score, ts, ts + CFG.verdict_ttl_s, f"cv-{key}", f"cluster {key}",
                          0x0123_4567_89AB_CDEF if key.startswith("tpl:") else 0)
        state, _ = stage.on_verdict(state, AccountVerdict("acct-1", verdict, ts), part)
    # the first verdict's time comes (the second's not yet): one held, one pending
    part.watermark.observe(T0 + 300 + CFG.verdict_delay_s)
    assert state is not None
    stage.on_due(state, part)
    assert state.windows_closed == 1 and state.window is not None
    assert state.window.templates and state.verdicts and state.pending_verdicts and state.keys
    assert state.action != "allow"
    return state


def test_account_state_round_trip() -> None:
    state = _driven_account_state()
    data = encode_account_state(state)
    assert isinstance(data, bytes)
    again = decode_account_state(data)
    assert again == state
    assert encode_account_state(again) == data


def test_fresh_account_state_round_trip() -> None:
    state = AccountState.new("acct-2", T0)
    assert decode_account_state(encode_account_state(state)) == state


def _summary(account: str, key: str = "pay:shared", ts: float = T0, **kw: Any) -> ClusterSummary:
    fields: dict[str, Any] = {
        "cluster_key": key, "account_id": account, "kind": "window",
        "window_start": int(ts // CFG.window_s) * CFG.window_s, "event_ts": ts, "requests": 20,
        "reasoning": 20, "high_value": 20, "completion_tokens": 40_000, "young": True,
        "account_first_ts": ts, "harvest": 1.0, "history": 1}
    fields.update(kw)
    return ClusterSummary(**fields)


KEY_SHARED = "pay:shared"


def _driven_cluster_state() -> ClusterState:
    stage, part = ClusterStage(CFG), ClusterPartition.create(CFG, sources=1)
    tick = int(T0) // CFG.cluster_tick_s
    state = None
    for i in range(8 * CFG.cluster_min_accounts):
        state, _ = stage.on_summary(state, _summary(f"acct-{i:03d}", ts=T0 + i, tick=tick), part)
    later = T0 + CFG.window_s + 1
    state, _ = stage.on_summary(state, _summary("acct-000", ts=later, tick=tick + 1), part)
    assert stage.on_source_tick(part, 0, tick + 1) == [KEY_SHARED]
    assert state is not None
    stage.settle(state, part)  # the first tick judged, the second still pending
    assert state.verdict is not None and len(state.windows) == 1 and len(state.pending) == 1
    return state


def test_cluster_state_round_trip() -> None:
    state = _driven_cluster_state()
    data = encode_cluster_state(state)
    again = decode_cluster_state(data)
    assert again == state
    assert encode_cluster_state(again) == data


def _driven_template_state() -> ClusterState:
    """A convicted template bucket, with a template and a summary still pending."""
    stage, part = ClusterStage(CFG), ClusterPartition.create(CFG, sources=1)
    tick = int(T0) // CFG.cluster_tick_s
    state = None
    for i in range(8):
        s = _summary(f"acct-{i}", key="tpl:0:cdef", ts=T0 + i, tick=tick,
                     simhash=0x0123_4567_89AB_CDEF ^ (1 << (20 + i)))
        state, _ = stage.on_summary(state, s, part)
    stray = _summary("acct-stray", key="tpl:0:cdef", ts=T0 + 9, tick=tick,
                     simhash=0xFEDC_BA98_7654_CDEF)  # shares the band only
    state, _ = stage.on_summary(state, stray, part)
    later = _summary("acct-0", key="tpl:0:cdef", ts=T0 + CFG.window_s + 1, tick=tick + 1,
                     simhash=0x0123_4567_89AB_CDEF)
    state, _ = stage.on_summary(state, later, part)
    stage.on_source_tick(part, 0, tick + 1)
    assert state is not None
    stage.settle(state, part)
    assert state.template == 0x0123_4567_89AB_CDEF and state.verdict is not None
    assert len(state.pending) == 1 and state.strays and "acct-stray" in state.strays
    return state


def test_a_template_cluster_state_round_trip() -> None:
    state = _driven_template_state()
    assert decode_cluster_state(encode_cluster_state(state)) == state


def test_records_and_states_of_the_core_before_template_signatures_still_decode() -> None:
    # A fleet upgraded in place reads what the previous core wrote: summaries of 12 fields,
    # verdicts of 6, cluster states without a template and members of 4 fields, account
    # windows whose template buckets have 4 counts. They decode without a signature (0).
    old_summary = _summary("acct-1", kind="join", requests=1).to_wire()[:12]
    assert decode_cluster_record(encode_batch("summaries", [old_summary]))[0].simhash == 0
    old_verdict = ["acct-1", ["tpl:0:cdef", 0.9, T0, T0 + 60, "cv-1", "why"], T0]
    assert decode_verdict_record(orjson.dumps(old_verdict))[0].verdict.signature == 0
    for driven in (_driven_cluster_state(), _driven_template_state()):
        wire = orjson.loads(encode_cluster_state(driven))
        old_state = [*wire[:3], {a: m[:4] for a, m in wire[3].items()}, *wire[4:11],
                     [p[:12] for p in wire[11]]]
        state = decode_cluster_state(orjson.dumps(old_state))
        assert state.template == 0 and all(m[4] == 0 for m in state.members.values())
        assert all(p.simhash == 0 for p in state.pending)
        assert state.members.keys() == driven.members.keys()
    account = orjson.loads(encode_account_state(_driven_account_state()))
    window = account[6]
    window[13] = {k: c[:4] for k, c in window[13].items()}
    again = decode_account_state(orjson.dumps(account))
    assert again.window is not None
    assert all(len(c) == 5 and c[4] == 0 for c in again.window.templates.values())


def test_stage_messages_round_trip() -> None:
    s = _summary("acct-1", kind="join", requests=0, tick=29_000_000)
    assert decode_cluster_record(encode_summary(s)) == [s]
    t = SourceTick(source=3, tick=29_000_000)
    assert decode_cluster_record(encode_summary(t)) == t
    v = AccountVerdict("acct-1", Verdict("ip:1.2.3.0/24", 0.9, T0, T0 + 60, "cv-1", "why"), T0)
    assert decode_verdict_record(encode_verdict(v)) == [v]


def test_a_cluster_record_holds_summaries_in_order_or_one_summary_or_a_tick() -> None:
    made = [_summary(f"acct-{i}", kind="join", requests=0, tick=29_000_000) for i in range(3)]
    assert decode_cluster_record(encode_batch("summaries", [s.to_wire() for s in made])) == made
    # a record of a single summary (as workers before the outbox sent them) is read as one
    assert decode_cluster_record(encode_summary(made[0])) == [made[0]]
    tick = SourceTick(source=3, tick=29_000_000)
    assert decode_cluster_record(encode_summary(tick)) == tick


def test_a_verdict_record_holds_verdicts_in_order_or_one_verdict() -> None:
    told = [AccountVerdict(f"acct-{i}", Verdict("ip:1.2.3.0/24", 0.9, T0, T0 + 60, "cv-1", "why"),
                           T0) for i in range(3)]
    assert decode_verdict_record(encode_batch("verdicts", [v.to_wire() for v in told])) == told
    assert decode_verdict_record(encode_verdict(told[0])) == [told[0]]


@pytest.mark.parametrize("decode,data", [(decode_cluster_record, b'["too", "short"]'),
                                         (decode_cluster_record, b'["tick", 1, "x"]'),
                                         (decode_cluster_record, b'{"a": 1}'),
                                         (decode_cluster_record, b'["summaries", {"a": 1}]'),
                                         (decode_cluster_record, b'["summaries", [["short"]]]'),
                                         (decode_verdict_record, b'["verdicts", 3]'),
                                         (decode_verdict_record, b'["acct"]')])
def test_malformed_stage_messages_raise(decode: Callable[[bytes], Any], data: bytes) -> None:
    with pytest.raises(ValueError):
        decode(data)


# --- decisions out ----------------------------------------------------------------------------

def _decision(shadow: bool = False) -> Decision:
    cfg = DetectorConfig(shadow=shadow)
    state = AccountState.new("acct-1", T0)
    for key in ("pay:p", "tpl:0:abcd"):
        state.verdicts[key] = Verdict(key, 1.0, T0, T0 + 3600, f"cv-{key}", f"cluster {key}")
    d = decide(state, T0, cfg)
    assert d is not None
    return d


@pytest.mark.parametrize("shadow", [False, True])
def test_encoded_decision_is_contract_valid(validate: Callable[[str, Any], None],
                                            shadow: bool) -> None:
    d = _decision(shadow)
    record = orjson.loads(encode_decision(d, 1_700_000_123.25))
    validate("enforcement-decision", record)
    assert record["ts"] == 1_700_000_123.25
    assert record["decision_id"] == d.decision_id and record["action"] == d.action
    assert record["mode"] == ("shadow" if shadow else "enforce")


def test_the_alignment_records_between_the_stages_round_trip() -> None:
    from distillguard.models.messages import JudgedTick, SourceIdle
    from distillguard.streams.edge.codec import decode_verdict_input

    assert decode_cluster_record(encode_summary(SourceIdle(4))) == SourceIdle(4)  # type: ignore[arg-type]
    mark = JudgedTick(3, 29_453_760)
    v = AccountVerdict("judged", Verdict("pay:p", 0.9, 1.0, 2.0, "cv-1", "r", 0, 1.0, 1.0), 60.0)
    batch = encode_batch("verdicts", [v.to_wire(), mark.to_wire()])
    assert decode_verdict_input(batch) == [v, mark]  # an account named "judged" stays a verdict
    assert decode_verdict_record(batch) == [v]  # the marks left out
    assert decode_verdict_input(orjson.dumps(mark.to_wire())) == [mark]
    with pytest.raises(ValueError):
        decode_cluster_record(b'["idle", "x"]')
