"""`distillguard override`, `overrides` and `review` without a broker: the command line's
refusals (each before anything is written), what the gateway gets for an organisation's decision
(the gate's table applies it to checks naming that organisation), and which records `review`
shows (those in force, newest first)."""

from __future__ import annotations

import argparse
import time
from typing import Any

import orjson
import pytest

from distillguard.models.operator import OperatorDecision, revoked_decision
from distillguard.streams.cli.override import add_override_parsers, gateway_records
from distillguard.streams.cli.review import add_review_parser, in_force_now
from distillguard.streams.gate.table import DecisionTable
from tests.gateway import decision_record

T0 = 1_800_000_000.0


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    for name in ("DISTILLGUARD_SETTINGS_FILE",):
        monkeypatch.delenv(name, raising=False)
    parser = argparse.ArgumentParser(prog="distillguard")
    sub = parser.add_subparsers(dest="command", required=True)
    add_override_parsers(sub)
    add_review_parser(sub)
    return parser


@pytest.mark.parametrize(("argv", "message"), [
    (["block", "--account", "a", "--reason", "r", "--by", "x"],
     "override block: --for is required"),
    (["block", "--account", "a", "--for", "31d", "--reason", "r", "--by", "x"],
     "from 1 s to 30 days"),
    (["block", "--account", "a", "--for", "soon", "--reason", "r", "--by", "x"],
     "is not a duration"),
    (["block", "--account", "a", "--for", "1h", "--by", "x"],
     "override block: --reason is required"),
    (["block", "--account", "a", "--for", "1h", "--rpm", "3", "--reason", "r"],
     "--rpm is for override throttle, not block"),
    (["throttle", "--account", "a", "--for", "1h", "--rpm", "-1", "--reason", "r"],
     "--rpm -1: requests per minute, 0 or more"),
    (["block", "--account", " a", "--for", "1h", "--reason", "r"], "surrounding spaces"),
    (["block", "--org", "", "--for", "1h", "--reason", "r"], "--org ''"),
    (["block", "--for", "1h", "--reason", "r"],
     r"override block: --account ID \(may repeat\) or --org ID is required"),
    (["lift"], r"override lift: --account ID \(may repeat\) or --org ID is required"),
    (["block", "--account", "a", "--org", "o", "--for", "1h", "--reason", "r"],
     "--account or --org, not both"),
    (["lift", "--account", "a", "--for", "1h"], "override lift takes no --for or --rpm"),
    (["lift", "--account", "a", "--reason", " "], "--reason is empty"),
    (["block", "--account", "a", "--for", "1h", "--reason", "r", "--by", " "],
     "--by is required"),
])
def test_override_refuses_a_wrong_command_before_writing_anything(
        cli: argparse.ArgumentParser, argv: list[str], message: str) -> None:
    args = cli.parse_args(["override", *argv])
    with pytest.raises(ValueError, match=message):
        args.func(args)  # no broker here: it must refuse before it connects


def test_override_takes_one_of_four_verbs_and_review_its_filters(
        cli: argparse.ArgumentParser, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["override", "ban", "--account", "a"], ["override", "--account", "a"],
                 ["review", "--source", "robot"], ["review", "--action", "allow"]):
        with pytest.raises(SystemExit):
            cli.parse_args(argv)
    assert "invalid choice: 'ban'" in capsys.readouterr().err
    args = cli.parse_args(["review", "--limit", "-1"])
    with pytest.raises(ValueError, match="--limit must be 0"):
        args.func(args)


def apply_as_the_gate(table: DecisionTable, key: str,
                      records: list[tuple[str, bytes | None]], now: float) -> None:
    for topic, value in records:
        if topic == "decisions":
            table.apply(key, None if value is None else orjson.loads(value), now)


def test_an_organisations_decision_as_written_is_applied_by_the_gate_to_its_checks() -> None:
    manual = OperatorDecision("acme", "block", 3600, None, "abuse, I-9", "hana", T0, "org")
    records = gateway_records(manual.to_decision("mv"), manual.key, T0)
    assert [topic for topic, _ in records] == ["decisions"]  # not the enforcement topic
    table = DecisionTable(burst_s=0)
    apply_as_the_gate(table, manual.key, records, T0)
    assert table.check("acct-of-acme", T0 + 1, org="acme").status == 403
    assert table.check("acct-of-acme", T0 + 1, org="acme").reason == "operator_block"
    assert table.check("acct-of-acme", T0 + 1).status == 200  # no org header: not known
    assert table.check("acct-elsewhere", T0 + 1, org="globex").status == 200
    # lifted: the org key's tombstone
    lift = revoked_decision("acme", "hana", "wrong org", T0 + 5, "mv", "org")
    apply_as_the_gate(table, manual.key, gateway_records(lift, manual.key, T0 + 5), T0 + 5)
    assert table.check("acct-of-acme", T0 + 6, org="acme").status == 200


def test_an_accounts_decision_goes_to_both_topics_and_its_lift_is_a_tombstone() -> None:
    manual = OperatorDecision("acct-1", "throttle", 600, 0, "noisy", "ivan", T0)
    records = gateway_records(manual.to_decision("mv"), manual.key, T0)
    assert [topic for topic, _ in records] == ["enforcement", "decisions"]
    table = DecisionTable(burst_s=0)
    apply_as_the_gate(table, "acct-1", records, T0)
    assert table.check("acct-1", T0 + 1).status == 429
    lift = revoked_decision("acct-1", "ivan", "wrong", T0 + 2, "mv")
    lifted = gateway_records(lift, "acct-1", T0 + 2)
    assert lifted[1] == ("decisions", None)
    assert orjson.loads(lifted[0][1] or b"")["action"] == "allow"
    apply_as_the_gate(table, "acct-1", lifted, T0 + 2)
    assert table.check("acct-1", T0 + 3).status == 200


def test_review_shows_what_is_in_force_newest_first() -> None:
    now = time.time()

    def value(account: str, action: str, ts: float, **fields: Any) -> bytes:
        return orjson.dumps({**decision_record(account, action, ts=ts), **fields})
    latest = {
        b"old-block": value("old-block", "block", now - 500, ttl_s=3600),
        b"new-throttle": value("new-throttle", "throttle", now - 10, rpm=3),
        b"ran-out": value("ran-out", "block", now - 700, ttl_s=600),
        b"allowed": value("allowed", "allow", now - 5),
        b"shadow": value("shadow", "block", now - 5, mode="shadow"),
        b"no-end": value("no-end", "block", now - 100, ttl_s=None),
        b"org:acme": value("acme", "block", now - 50),
        b"junk": b"{oops",
    }
    shown, unreadable = in_force_now(latest, now)
    assert [key for key, _ in shown] == ["new-throttle", "org:acme", "no-end", "old-block"]
    assert unreadable == 1
