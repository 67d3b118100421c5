"""The gate's pure part (streams/gate/table.py): what a record of the decisions topic does to
the table, what one check answers, token buckets, expiry, shadow, fail modes. Time is the
`now` each call is given."""

from __future__ import annotations

from typing import Any

import pytest

from distillguard.streams.gate.table import (
    ORG_KEY_PREFIX,
    DecisionError,
    DecisionTable,
    Gate,
    parse_decision,
)
from tests.gateway import decision_record

T0 = 1_800_000_000.0


def table_with(*records: tuple[str, dict[str, Any] | None], burst_s: float = 10.0,
               now: float = T0) -> DecisionTable:
    table = DecisionTable(burst_s=burst_s)
    for key, value in records:
        table.apply(key, value, now)
    return table


def test_an_account_without_a_decision_is_served() -> None:
    answer = DecisionTable().check("acct-1", T0)
    assert (answer.status, answer.outcome, answer.reason, answer.decision_id) == \
        (200, "allow", "", "")


def test_a_block_is_a_403_with_its_strongest_reason_code_and_its_id() -> None:
    block = decision_record("acct-1", "block", ts=T0,
                            reason_codes=("cluster_template", "account_harvest"))
    table = table_with(("acct-1", block))
    answer = table.check("acct-1", T0 + 1)
    assert (answer.status, answer.outcome, answer.reason, answer.decision_id) == \
        (403, "block", "cluster_template", block["decision_id"])
    assert table.check("acct-2", T0 + 1).status == 200


def test_a_decision_without_reason_codes_says_unspecified() -> None:
    old = decision_record("acct-1", "block", ts=T0)
    del old["reason_codes"]
    assert table_with(("acct-1", old)).check("acct-1", T0).reason == "unspecified"


def test_a_throttle_serves_its_burst_then_429_until_its_rate_refills() -> None:
    # 60 a minute, 10 s of burst: ten at once, then one a second.
    table = table_with(("acct-1", decision_record("acct-1", "throttle", ts=T0, rpm=60)))
    assert [table.check("acct-1", T0).status for _ in range(10)] == [200] * 10
    over = table.check("acct-1", T0)
    assert (over.status, over.outcome, over.retry_after_s, over.reason) == \
        (429, "over_budget", 1, "cluster_template")
    assert table.check("acct-1", T0 + 0.5).status == 429
    assert table.check("acct-1", T0 + 1.0).status == 200
    assert table.check("acct-1", T0 + 1.0).status == 429


def test_a_slow_throttle_holds_at_least_one_request_and_says_when_the_next_fits() -> None:
    table = table_with(("acct-1", decision_record("acct-1", "throttle", ts=T0, rpm=2)))
    assert table.check("acct-1", T0).outcome == "within_budget"
    assert table.check("acct-1", T0).retry_after_s == 30  # two a minute
    assert table.check("acct-1", T0 + 29).retry_after_s == 1
    assert table.check("acct-1", T0 + 30).status == 200


def test_a_throttle_at_zero_requests_a_minute_waits_for_the_decision_s_end() -> None:
    table = table_with(("acct-1", decision_record("acct-1", "throttle", ts=T0, rpm=0,
                                                  ttl_s=600)))
    answer = table.check("acct-1", T0 + 100.5)
    assert (answer.status, answer.retry_after_s) == (429, 500)
    assert table.check("acct-1", T0 + 600).status == 200


def test_an_action_ends_at_ts_plus_ttl_by_the_gate_s_clock_and_leaves_the_table() -> None:
    table = table_with(("acct-1", decision_record("acct-1", "block", ts=T0, ttl_s=60)),
                       ("acct-2", decision_record("acct-2", "block", ts=T0, ttl_s=120)))
    assert table.check("acct-1", T0 + 59.9).status == 403
    assert table.check("acct-1", T0 + 60).status == 200
    assert table.sweep(T0 + 60) == 0  # acct-1 already left at its check
    assert len(table) == 1
    assert table.sweep(T0 + 120) == 1 and len(table) == 0


def test_a_decision_without_ttl_holds_until_a_later_record_lifts_it() -> None:
    table = table_with(("acct-1", decision_record("acct-1", "block", ts=T0, ttl_s=None)))
    assert table.sweep(T0 + 10**8) == 0
    assert table.check("acct-1", T0 + 10**8).status == 403
    table.apply("acct-1", None, T0 + 10**8)
    assert table.check("acct-1", T0 + 10**8).status == 200


def test_a_record_already_expired_when_read_is_ignored_and_ends_the_older_one() -> None:
    table = table_with(("acct-1", decision_record("acct-1", "block", ts=T0, ttl_s=3600)))
    stale = decision_record("acct-1", "block", ts=T0 - 7200, ttl_s=3600, n=2)
    assert table.apply("acct-1", stale, T0) == "expired"
    assert table.check("acct-1", T0).status == 200


@pytest.mark.parametrize("lift", [None, "allow"])
def test_a_tombstone_or_an_allow_lifts(lift: str | None) -> None:
    table = table_with(("acct-1", decision_record("acct-1", "block", ts=T0)))
    value = None if lift is None else decision_record("acct-1", "allow", ts=T0 + 1,
                                                      reason_codes=("operator_allow",))
    assert table.apply("acct-1", value, T0 + 1) == "lifted"
    assert table.check("acct-1", T0 + 1).status == 200 and len(table) == 0


def test_a_shadow_decision_is_never_applied_only_counted() -> None:
    table = table_with(("acct-1", decision_record("acct-1", "block", ts=T0)),
                       ("acct-2", decision_record("acct-2", "throttle", ts=T0, rpm=0)))
    # The newest record of acct-1 is a shadow one: what it replaces no longer holds either
    # (a gate started later reads only that record, compaction keeps no other).
    assert table.apply("acct-1", decision_record("acct-1", "block", ts=T0, mode="shadow",
                                                 n=2), T0) == "shadow"
    assert table.apply("acct-3", decision_record("acct-3", "block", ts=T0, mode="shadow"),
                       T0) == "shadow"
    assert [table.check(a, T0).status for a in ("acct-1", "acct-3", "acct-3")] == \
        [200, 200, 200]
    assert table.check("acct-2", T0).status == 429
    assert table.shadow_checks == {"block": 3}
    assert table.in_force() == {"throttle": 1} and len(table.shadow) == 2
    assert table.sweep(T0 + 600) == 3  # shadow entries end as the others do


def test_the_same_decision_delivered_again_keeps_its_bucket() -> None:
    throttle = decision_record("acct-1", "throttle", ts=T0, rpm=6)  # burst 1 at 10 s
    table = table_with(("acct-1", throttle))
    assert table.check("acct-1", T0).status == 200
    table.apply("acct-1", throttle, T0)  # at-least-once: the same record again
    assert table.check("acct-1", T0).status == 429


def test_a_new_throttle_does_not_hand_out_a_fresh_burst() -> None:
    table = table_with(("acct-1", decision_record("acct-1", "throttle", ts=T0, rpm=60)))
    for _ in range(10):
        table.check("acct-1", T0)
    table.apply("acct-1", decision_record("acct-1", "throttle", ts=T0, rpm=120, n=2), T0)
    assert table.check("acct-1", T0).status == 429
    # ... but a block that becomes a throttle starts with its bucket full.
    table.apply("acct-2", decision_record("acct-2", "block", ts=T0), T0)
    table.apply("acct-2", decision_record("acct-2", "throttle", ts=T0, rpm=60, n=2), T0)
    assert table.check("acct-2", T0).status == 200


BAD = [
    ([1, 2], "not a JSON object"),
    ({"action": "ban"}, "action 'ban'"),
    ({"decision_id": ""}, "no decision_id"),
    ({"account_id": "someone-else"}, "not the record's key"),
    ({"ts": "yesterday"}, "ts 'yesterday'"),
    ({"ts": float("nan")}, "ts nan"),
    ({"ttl_s": 0}, "ttl_s 0"),
    ({"ttl_s": 1.5}, "ttl_s 1.5"),
    ({"rate_limit_rpm": None}, "rate_limit_rpm None"),
    ({"rate_limit_rpm": -1}, "rate_limit_rpm -1"),
    ({"mode": "dry-run"}, "mode 'dry-run'"),
]


@pytest.mark.parametrize(("change", "message"), BAD, ids=[m for _, m in BAD])
def test_a_record_the_gate_cannot_read_is_refused_with_why(change: Any, message: str) -> None:
    value = change if isinstance(change, list) else \
        {**decision_record("acct-1", "throttle", ts=T0, rpm=6), **change}
    with pytest.raises(DecisionError, match=message.replace("(", r"\(")):
        parse_decision("acct-1", value)


def test_an_unreadable_record_ends_what_its_key_held() -> None:
    table = table_with(("acct-1", decision_record("acct-1", "block", ts=T0)))
    assert table.forget("acct-1") == "unreadable"
    assert table.check("acct-1", T0).status == 200 and table.applied["unreadable"] == 1


def test_response_headers_carry_only_printable_ascii() -> None:
    record = {**decision_record("acct-1", "block", ts=T0), "decision_id": "d\r\nx-evil: 1é"}
    answer = table_with(("acct-1", record)).check("acct-1", T0)
    assert answer.decision_id == "d??x-evil: 1?"


def test_an_organisation_s_decision_applies_to_a_check_that_names_it() -> None:
    table = table_with((ORG_KEY_PREFIX + "org-9", decision_record("org-9", "block", ts=T0,
                                                                  reason_codes=("operator_block",))),
                       ("acct-1", decision_record("acct-1", "throttle", ts=T0, rpm=60)))
    assert table.check("acct-1", T0).status == 200  # no org named: the account's own
    answer = table.check("acct-1", T0, org="org-9")  # the stronger of the two
    assert (answer.status, answer.reason) == (403, "operator_block")
    assert table.check("acct-2", T0, org="org-1").status == 200


def test_ends_of_replaced_entries_cannot_pile_up() -> None:
    table = DecisionTable()
    for i in range(20_000):
        table.apply("acct-1", decision_record("acct-1", "block", ts=T0, n=i), T0)
    assert len(table._ends) <= 2 * len(table) + 1024


# ---- fail modes ----------------------------------------------------------------------------
def gate(fail_mode: str, caught_up: bool = True, broker_lost: bool = False) -> Gate:
    g = Gate(table_with(("acct-1", decision_record("acct-1", "block", ts=T0))), fail_mode)
    g.caught_up, g.broker_lost = caught_up, broker_lost
    return g


def test_a_current_gate_answers_from_its_table() -> None:
    for mode in ("open", "closed"):
        g = gate(mode)
        assert [g.check(a, T0).status for a in ("acct-1", "acct-2")] == [403, 200]
        assert g.check("acct-1", T0).degraded == ""


@pytest.mark.parametrize(("caught_up", "broker_lost", "why"),
                         [(False, False, "not_ready"), (True, True, "broker_lost")])
def test_fail_open_answers_from_what_it_holds_marked_degraded(
        caught_up: bool, broker_lost: bool, why: str) -> None:
    g = gate("open", caught_up, broker_lost)
    blocked, other = g.check("acct-1", T0), g.check("acct-2", T0)
    assert (blocked.status, blocked.degraded) == (403, why)
    assert (other.status, other.degraded) == (200, why)


@pytest.mark.parametrize(("caught_up", "broker_lost", "why"),
                         [(False, False, "not_ready"), (True, True, "broker_lost")])
def test_fail_closed_answers_503_to_every_check(caught_up: bool, broker_lost: bool,
                                                why: str) -> None:
    g = gate("closed", caught_up, broker_lost)
    answers = [g.check(a, T0) for a in ("acct-1", "acct-2", "")]
    assert {(a.status, a.reason) for a in answers} == {(503, f"gate_{why}")}
    assert g.checks == {"unavailable": 3}


def test_a_check_without_an_account_follows_the_fail_mode_and_is_counted() -> None:
    assert gate("open").check("", T0).status == 200
    closed = gate("closed")
    assert (closed.check("", T0).status, closed.check("", T0).reason) == (503, "no_account")
    assert closed.no_account == 2


def test_a_fail_mode_is_open_or_closed() -> None:
    with pytest.raises(ValueError, match="open or closed"):
        Gate(DecisionTable(), "half")


def test_the_module_s_example_holds() -> None:
    import doctest

    from distillguard.streams.gate import table

    result = doctest.testmod(table)
    assert result.attempted >= 5 and result.failed == 0


def test_the_table_does_no_io_and_reads_no_clock() -> None:
    # The pure part of the gate: what it may import (the reader and the server do the I/O).
    import ast
    from pathlib import Path

    from distillguard.streams.gate import table

    tree = ast.parse(Path(table.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "heapq", "math", "collections", "dataclasses", "typing"}, \
        imported
