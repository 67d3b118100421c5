"""The gate played against: a lab that wants through, a buggy or hostile producer of the
decisions topic, and the worst legal input (contract/enforcement-decision.schema.json).

Each test is one attack and what the gate must do about it: hold the block or throttle, refuse
the record with a clear reason without touching another account, or never die of it. The
attacks through nginx itself (header tricks) are in tests/integration/test_gateway_nginx.py.
"""

from __future__ import annotations

import json
import math
import tracemalloc
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import orjson
import pytest
from structlog.testing import capture_logs

from distillguard.streams.gate.server import (
    DEFAULT_ACCOUNT_HEADER,
    GateOptions,
    build_service,
    response_for,
)
from distillguard.streams.gate.table import (
    MAX_RETRY_AFTER_S,
    DecisionTable,
    Gate,
)
from tests.gateway import decision_record

REPO = Path(__file__).resolve().parents[2]
T0 = 1_800_000_000.0
SCHEMA = jsonschema.Draft202012Validator(json.loads(
    (REPO / "contract" / "enforcement-decision.schema.json").read_text()))


def legal(record: dict[str, Any]) -> dict[str, Any]:
    """`record`, asserted valid under the contract: the gate must apply it."""
    SCHEMA.validate(record)
    return record


def table_of(*records: tuple[str, dict[str, Any] | None], now: float = T0,
             burst_s: float = 0) -> DecisionTable:
    table = DecisionTable(burst_s=burst_s)
    for key, value in records:
        table.apply(key, value, now)
    return table


def record(key: bytes | None, value: bytes | None, offset: int = 0,
           partition: int = 0) -> Any:
    return SimpleNamespace(key=key, value=value, partition=partition, offset=offset)


# ---- the worst legal input -----------------------------------------------------------------
@pytest.mark.parametrize("field", ["ttl_s", "rate_limit_rpm"])
def test_whole_numbers_written_as_floats_are_applied_as_the_contract_allows(field: str) -> None:
    # JSON Schema's "integer" is a mathematical integer: 600.0 is one. A producer whose JSON
    # library writes floats (or a value that went through a float) must not lift a block.
    throttle = legal({**decision_record("acct-1", "throttle", ts=T0, rpm=6), field: 6.0 * 100})
    block = legal({**decision_record("acct-2", "block", ts=T0), "ttl_s": 600.0})
    table = table_of(("acct-1", throttle), ("acct-2", block))
    assert table.applied == {"in_force": 2}
    assert table.check("acct-2", T0 + 599).status == 403
    assert table.check("acct-2", T0 + 600).status == 200
    assert table.check("acct-1", T0).outcome == "within_budget"


@pytest.mark.parametrize("bad", [600.5, -1.0, 0.0, True, "600"])
def test_a_ttl_that_is_not_a_whole_number_is_still_refused(bad: Any) -> None:
    table = DecisionTable()
    with pytest.raises(ValueError, match="ttl_s"):
        table.apply("acct-1", {**decision_record("acct-1", "block", ts=T0), "ttl_s": bad}, T0)


@pytest.mark.parametrize("ts", [T0 + 86_400 * 365 * 1000, 1e300])
def test_a_decision_from_the_far_future_holds_ttl_s_from_now_not_for_ever(ts: float) -> None:
    # A producer whose clock is wrong (or hostile) must not make a 10-minute block permanent:
    # the end is counted from the gate's clock when ts is ahead of it.
    table = table_of(("acct-1", legal(decision_record("acct-1", "block", ts=ts, ttl_s=600))),
                     ("acct-2", legal(decision_record("acct-2", "throttle", ts=ts, ttl_s=600,
                                                      rpm=0))))
    assert table.check("acct-1", T0 + 599).status == 403
    assert table.check("acct-1", T0 + 600).status == 200
    over = table.check("acct-2", T0)
    assert over.status == 429 and over.retry_after_s == 600
    assert table.ts_ahead == 2
    assert table.sweep(T0 + 600) == 1  # acct-1's entry left with its check


def test_a_decision_a_little_ahead_of_the_gate_s_clock_is_not_counted_as_ahead() -> None:
    table = table_of(("acct-1", decision_record("acct-1", "block", ts=T0 + 5, ttl_s=600)))
    assert table.check("acct-1", T0 + 599).status == 403 and table.ts_ahead == 0


def test_retry_after_stays_a_sensible_number_of_seconds() -> None:
    # rate 0 with a huge ttl: the client is told to come back within a day, not in 10^18 s
    huge = 10**18
    table = table_of(("acct-1", legal(decision_record("acct-1", "throttle", ts=T0, ttl_s=huge,
                                                      rpm=0))),
                     ("acct-2", legal(decision_record("acct-2", "throttle", ts=T0, ttl_s=None,
                                                      rpm=0))),
                     ("acct-3", legal(decision_record("acct-3", "throttle", ts=T0, ttl_s=30,
                                                      rpm=1))))
    assert table.check("acct-1", T0).retry_after_s == MAX_RETRY_AFTER_S
    assert table.check("acct-2", T0).retry_after_s == 60  # no end: ask again in a minute
    assert table.check("acct-3", T0).status == 200
    assert table.check("acct-3", T0 + 1).retry_after_s == 29  # the throttle ends first
    response = response_for(table.check("acct-1", T0), nginx=True)
    assert response.headers["Retry-After"] == str(MAX_RETRY_AFTER_S)


@pytest.mark.parametrize("rpm", [0, 1, 2**63 - 1])
def test_extreme_rates_answer_without_error(rpm: int) -> None:
    table = table_of(("acct-1", legal(decision_record("acct-1", "throttle", ts=T0, rpm=rpm))),
                     burst_s=10)
    answers = [table.check("acct-1", T0 + i / 10) for i in range(50)]
    assert all(a.status in (200, 429) for a in answers)
    assert all(a.retry_after_s >= 1 for a in answers if a.status == 429)
    if rpm == 0:
        assert {a.status for a in answers} == {429}
    if rpm > 10**6:
        assert {a.status for a in answers} == {200}


def test_the_same_decision_id_with_another_action_is_a_new_decision() -> None:
    # At-least-once delivery repeats a decision; a buggy producer that reuses an id for a
    # block must not leave the account throttled (nor keep an old rate).
    throttle = decision_record("acct-1", "throttle", ts=T0, rpm=60)
    table = table_of(("acct-1", throttle))
    table.apply("acct-1", {**throttle, "action": "block"}, T0 + 1)
    assert table.check("acct-1", T0 + 1).status == 403
    table.apply("acct-1", throttle, T0 + 2)
    table.apply("acct-1", {**throttle, "rate_limit_rpm": 0}, T0 + 3)
    assert table.check("acct-1", T0 + 3).status == 429


def test_a_redelivered_throttle_keeps_its_bucket() -> None:
    throttle = decision_record("acct-1", "throttle", ts=T0, rpm=6)
    table = table_of(("acct-1", throttle), burst_s=10)
    assert table.check("acct-1", T0).status == 200
    assert table.check("acct-1", T0).status == 429  # one request's worth of burst, spent
    table.apply("acct-1", throttle, T0)  # delivered again
    assert table.check("acct-1", T0).status == 429


def test_an_allow_after_a_block_and_out_of_order_records_follow_the_topic_s_order() -> None:
    # The newest record of a key wins, whatever its ts: that is what compaction keeps, so a
    # gate started later holds the same.
    block = decision_record("acct-1", "block", ts=T0)
    allow = decision_record("acct-1", "allow", ts=T0 - 60, n=2)
    table = table_of(("acct-1", block), ("acct-1", allow))
    assert table.check("acct-1", T0).status == 200
    table.apply("acct-1", block, T0)
    assert table.check("acct-1", T0).status == 403


def test_a_shadow_record_after_an_enforced_one_ends_it_as_compaction_would() -> None:
    table = table_of(("acct-1", decision_record("acct-1", "block", ts=T0)),
                     ("acct-1", decision_record("acct-1", "block", ts=T0, mode="shadow", n=2)))
    assert table.check("acct-1", T0).status == 200 and table.shadow_checks == {"block": 1}


def test_a_tombstone_for_an_unknown_key_changes_nothing_else() -> None:
    table = table_of(("acct-1", decision_record("acct-1", "block", ts=T0)),
                     ("acct-unknown", None), ("org:nobody", None))
    assert table.check("acct-1", T0).status == 403 and len(table) == 1


# ---- account ids against organisation keys -------------------------------------------------
def test_an_account_whose_id_starts_with_org_is_not_an_organisation() -> None:
    # Account "org:acme" (legal: any string of 1-128 characters) is blocked. Its record is keyed
    # by its account id, like every account's; it must not block organisation acme's members.
    table = table_of(("org:acme", legal(decision_record("org:acme", "block", ts=T0))))
    assert table.check("acct-of-acme", T0, org="acme").status == 200
    assert table.check("org:acme", T0).status == 403
    # An organisation's record (its account_id is not the key) applies to its members only.
    table.apply("org:globex", decision_record("globex", "block", ts=T0), T0)
    assert table.check("acct-of-globex", T0, org="globex").status == 403
    assert table.check("org:globex", T0).status == 200  # an account of that name is not it
    assert table.in_force() == {"block": 2}
    # The newest record of the key replaces whichever kind it held (one key, one record).
    table.apply("org:globex", decision_record("org:globex", "block", ts=T0, n=2), T0)
    assert table.check("acct-of-globex", T0, org="globex").status == 200
    assert table.check("org:globex", T0).status == 403
    table.apply("org:globex", None, T0)
    assert table.check("org:globex", T0).status == 200 and table.in_force() == {"block": 1}
    assert table.sweep(T0 + 600) == 1 and len(table) == 0


def test_organisation_entries_end_and_are_swept() -> None:
    table = table_of(("org:acme", decision_record("acme", "throttle", ts=T0, rpm=0)),
                     ("org:acme2", decision_record("acme2", "block", ts=T0, mode="shadow")))
    assert table.check("a", T0, org="acme").status == 429
    assert table.sweep(T0 + 600) == 2 and len(table) == 0 and not table.shadow_in_force()


# ---- the reader: bad records never kill the gate nor touch another account -----------------
def service(**opts: Any) -> Any:
    svc = build_service("127.0.0.1:1", "decisions", GateOptions(**opts))
    svc.reader.clock = lambda: T0
    svc.gate.caught_up = True
    svc.gate.table.apply("acct-victim", decision_record("acct-victim", "block", ts=T0), T0)
    return svc


HOSTILE: list[tuple[bytes | None, bytes | None]] = [
    (b"acct-x", b"\x00\xff"),
    (b"acct-x", b"[]"),
    (b"acct-x", b"null"),
    (b"acct-x", b'"block"'),
    (b"acct-x", b"{}"),
    (b"acct-x", b'{"action": "block"}'),
    (b"acct-x", orjson.dumps({**decision_record("acct-victim", "allow", ts=T0)})),
    (b"acct-x", b"[" * 10_000 + b"]" * 10_000),
    (b"acct-x", b'{"decision_id": "d", "ts": 1e999, "action": "block"}'),
    (b"acct-x", orjson.dumps({**decision_record("acct-x", "block", ts=T0), "ts": -1})),
    (b"acct-odd", orjson.dumps({**decision_record("acct-odd", "block", ts=T0),
                                "reason_codes": [{"a": 1}], "decision_id": "\u2028\n\r"})),
    (b"acct-x", orjson.dumps({**decision_record("acct-x", "throttle", ts=T0, rpm=6),
                              "rate_limit_rpm": None})),
    (b"acct-x", orjson.dumps({**decision_record("acct-x", "block", ts=T0), "mode": "maybe"})),
    (b"a" * 257, orjson.dumps(decision_record("acct-x", "block", ts=T0))),
    (None, None),
    (b"", b"{}"),
]


def test_no_record_kills_the_reader_nor_changes_another_account() -> None:
    svc = service()
    with capture_logs() as logs:
        for offset, (key, value) in enumerate(HOSTILE):
            svc.reader.on_record(record(key, value, offset))
    table = svc.gate.table
    assert table.check("acct-victim", T0).status == 403, "a bad record lifted another account"
    assert svc.reader.state.read == len(HOSTILE)
    # each refused one way or another; the decision with the odd id and reason is applied
    assert svc.reader.state.unreadable == len(HOSTILE) - 1
    odd = table.check("acct-odd", T0)
    assert odd.status == 403 and odd.decision_id == "???" and odd.reason == "unspecified"
    reasons = [e["reason"] for e in logs if e["event"] == "gate_record_unreadable"]
    assert len(reasons) == len(HOSTILE) - 1 and all(reasons), reasons


def test_an_unexpected_error_on_one_record_is_reported_and_the_reader_goes_on() -> None:
    svc = service()

    def broken(key: str, value: Any, now: float) -> str:
        raise KeyError("something nobody thought of")
    svc.gate.table.apply = broken  # type: ignore[method-assign]
    with capture_logs() as logs:
        svc.reader.on_record(record(b"acct-x", b"{}", 7))
    assert svc.reader.state.unreadable == 1 and svc.reader.state.next_offsets == {0: 8}
    (warned,) = [e for e in logs if e["event"] == "gate_record_unreadable"]
    assert "internal error: KeyError" in warned["reason"] and warned["offset"] == 7


def test_a_flood_of_bad_records_is_counted_whole_and_logged_in_a_sample() -> None:
    svc = service()
    with capture_logs() as logs:
        for offset in range(10_000):
            svc.reader.on_record(record(b"acct-%d" % offset, b"not json", offset))
        svc.reader.flush_log(force=True)
    assert svc.reader.state.unreadable == 10_000
    lines = [e for e in logs if e["event"].startswith("gate_record")]
    assert len(lines) <= 30, len(lines)
    summaries = [e for e in lines if e["event"] == "gate_records_unreadable_suppressed"]
    assert sum(e["suppressed"] for e in summaries) + (len(lines) - len(summaries)) == 10_000
    assert summaries[-1]["last_offset"] == 9_999


def test_a_record_ahead_of_the_gate_s_clock_is_applied_and_reported() -> None:
    svc = service()
    ahead = orjson.dumps(decision_record("acct-x", "block", ts=T0 + 86_400 * 30))
    with capture_logs() as logs:
        svc.reader.on_record(record(b"acct-x", ahead, 3))
    assert svc.gate.table.check("acct-x", T0 + 599).status == 403
    assert svc.gate.table.check("acct-x", T0 + 600).status == 200
    (warned,) = [e for e in logs if e["event"] == "gate_record_ts_ahead"]
    assert warned["key"] == "acct-x" and warned["ahead_s"] == 86_400 * 30


# ---- the HTTP face -------------------------------------------------------------------------
def test_a_unicode_or_128_character_account_is_found_from_its_header() -> None:
    import asyncio

    from aiohttp.test_utils import TestClient, TestServer

    accounts = ["acct-é-日本", "a" * 128, "org:acme"]
    svc = service()
    for account in accounts:
        svc.gate.table.apply(account, legal({**decision_record(account, "block", ts=T0),
                                             "decision_id": "d-1"}), T0)
    svc.clock = lambda: T0

    async def run() -> list[int]:
        async with TestClient(TestServer(svc.app())) as client:
            out = []
            for account in accounts:
                # sent as UTF-8, as nginx sends the mapped value (the nginx test checks that)
                resp = await client.get("/check", headers={DEFAULT_ACCOUNT_HEADER: account})
                out.append(resp.status)
            return out
    assert asyncio.run(run()) == [403, 403, 403]


def test_fail_open_before_catch_up_still_holds_what_was_read() -> None:
    gate = Gate(table_of(("acct-1", decision_record("acct-1", "block", ts=T0))), "open")
    answers = [gate.check("acct-1", T0), gate.check("acct-2", T0), gate.check("", T0)]
    assert [(a.status, a.degraded) for a in answers] == [(403, "not_ready"), (200, "not_ready"),
                                                         (200, "not_ready")]


# ---- memory --------------------------------------------------------------------------------
def test_memory_per_decision_in_force_is_bounded() -> None:
    # what /health's operators plan for: docs/operations.md gives the figure per decision
    n = 20_000
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    table = DecisionTable()
    for i in range(n):
        account = f"acct-{i:08d}"
        action = "block" if i % 2 else "throttle"
        table.apply(account, decision_record(account, action, ts=T0, rpm=6, n=i), T0)
    per = (tracemalloc.get_traced_memory()[0] - before) / n
    tracemalloc.stop()
    assert len(table) == n
    assert per < 520, f"{per:.0f} bytes per decision"  # 667 before the shared strings
    assert math.isfinite(per)


def test_a_decision_delivered_again_later_holds_to_its_new_end_through_the_sweep() -> None:
    # The workers publish a decision again with the processing time of the new publish (a
    # restart re-decides it, same id): its end moves on, and the sweep must not end it at the
    # old one.
    block = decision_record("acct-1", "block", ts=T0, ttl_s=600)
    table = table_of(("acct-1", block))
    table.apply("acct-1", {**block, "ts": T0 + 300}, T0 + 300)
    assert table.sweep(T0 + 600) == 0
    assert table.check("acct-1", T0 + 899).status == 403
    assert table.sweep(T0 + 900) == 1 and len(table) == 0


def test_health_shows_no_problem_once_the_broker_answers_again() -> None:
    # Seen with the broker stopped and started under a running gate: /health went on saying
    # "does not answer" (and before that "topic not found") with status ok.
    import asyncio

    class Broker:
        async def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
            return {}

    svc = service(probe_s=0.01)
    svc.reader.state.last_problem = "127.0.0.1:1 does not answer: TimeoutError"

    async def run() -> None:
        probe = asyncio.create_task(svc.reader._probe(Broker(), []))  # type: ignore[arg-type]
        try:
            deadline = asyncio.get_running_loop().time() + 5
            while svc.reader.state.last_problem:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.01)
        finally:
            probe.cancel()
    asyncio.run(run())
    assert svc.health()["problem"] is None and svc.health()["status"] == "ok"


def test_a_huge_decision_id_or_reason_does_not_overflow_the_gateway_s_header_buffer() -> None:
    # A 100,000-character id (the contract allows 128) in x-distillguard-decision overflowed
    # nginx's proxy buffer (4-8 KB): 'upstream sent too big header', 502, and the throttled
    # account got 503 even within its budget. The headers are cut at 128 characters.
    huge = {**decision_record("acct-1", "throttle", ts=T0, rpm=60), "decision_id": "d" * 100_000,
            "reason_codes": ["r" * 100_000]}
    table = table_of(("acct-1", huge), burst_s=10)
    response = response_for(table.check("acct-1", T0), nginx=True)
    assert response.status == 200
    assert sum(len(k) + len(v) for k, v in response.headers.items()) < 1000
    assert response.headers["x-distillguard-decision"] == "d" * 128
    table.apply("acct-1", huge, T0)  # delivered again: still the same decision
    assert table.applied == {"in_force": 2} and table.check("acct-1", T0).status == 200


@pytest.mark.parametrize(("opts", "message"), [
    ({"burst_s": math.inf}, "--burst-s"), ({"burst_s": math.nan}, "--burst-s"),
    ({"lost_after_s": math.inf}, "--broker-lost-after"),
    ({"lost_after_s": math.nan}, "--broker-lost-after"),
])
def test_options_that_would_disable_a_throttle_or_the_broker_watch_are_refused(
        opts: dict[str, Any], message: str) -> None:
    # argparse's float() takes "inf" and "nan": --burst-s inf let every throttled request
    # through, --broker-lost-after nan never noticed a lost broker.
    from distillguard.streams.gate.server import GateError

    with pytest.raises(GateError, match=message):
        build_service("127.0.0.1:1", "decisions", GateOptions(**opts))


@pytest.mark.parametrize("path", ["/check/../ready", "/check/%2e%2e/health", "/check//../ready",
                                  "/check/v1/../../ready", "/check/..%2fready"])
def test_a_client_path_cannot_climb_out_of_the_check(path: str) -> None:
    # Envoy asks /check + the client's own path (path_prefix), and does not normalise paths by
    # default: /check/../ready must not be answered by /ready's 200.
    import socket

    from tests.gateway import GateInThread

    svc = service()
    with GateInThread(svc) as gate, socket.create_connection(("127.0.0.1", gate.port)) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: gate\r\n{DEFAULT_ACCOUNT_HEADER}: acct-victim"
                  f"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        s.settimeout(5)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.split(b"\r\n", 1)[0] == b"HTTP/1.1 403 Forbidden", data[:200]


def test_aiokafka_s_repeated_lines_are_let_through_once_per_interval() -> None:
    # Measured with the decisions topic deleted under a running gate: aiokafka logged "Topic
    # ... not found in cluster metadata" 11,580 times in 12 s.
    import logging

    from distillguard.streams.gate.reader import RepeatFilter

    now = [0.0]
    repeat = RepeatFilter(interval_s=10, clock=lambda: now[0])

    def line(text: str) -> logging.LogRecord:
        return logging.LogRecord("aiokafka.cluster", logging.ERROR, __file__, 1, text, (), None)

    passed = []
    for i in range(12_000):
        now[0] = i / 1000
        passed.append(repeat.filter(line("Topic t not found in cluster metadata")))
    assert sum(passed) == 2 and repeat.suppressed == 11_998
    assert repeat.filter(line("another message"))  # other messages are not held back
