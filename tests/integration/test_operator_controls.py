"""Operator controls against a running gate on the real broker: `distillguard override block`
makes the gate answer 403 for the account, `override lift` makes it answer 200 again within
5 s (the issue's bound); an organisation's override reaches every check that names it (the
gate's --org-header); `review` lists the accounts under action newest first and `overrides`
the operators' decisions in force."""

from __future__ import annotations

import argparse
import asyncio
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from distillguard.streams.cli.override import add_override_parsers
from distillguard.streams.cli.review import add_review_parser
from distillguard.streams.edge.settings import Settings
from distillguard.streams.gate.server import CHECK_PATH, DEFAULT_ACCOUNT_HEADER
from tests.gateway import decision_record
from tests.integration.conftest import command_line, produce, wait_until
from tests.integration.test_gateway_nginx import REACH_S, gate_service, wait_ready
from tests.integration.test_operator_decisions import override, overrides

pytestmark = pytest.mark.broker
ORG_HEADER = "x-distillguard-org"


@pytest.fixture
def cli(run: Settings, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """`override`, `overrides` and `review` as the console script registers them, on this
    test's topics."""
    return command_line(run, monkeypatch, add_override_parsers, add_review_parser)


def check(gate_url: str, account: str, org: str = "") -> int:
    headers = {DEFAULT_ACCOUNT_HEADER: account, **({ORG_HEADER: org} if org else {})}
    req = urllib.request.Request(gate_url.rstrip("/") + CHECK_PATH, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def answers(gate_url: str, account: str, status: int, org: str = "") -> bool:
    return check(gate_url, account, org) == status


def test_override_block_then_lift_at_the_gate_and_an_organisations_override(
        run: Settings, cli: argparse.ArgumentParser, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    with gate_service(run, tmp_path / "gate.log", "--org-header", ORG_HEADER) as gate_url:
        wait_ready(gate_url)
        assert check(gate_url, "acct-wrong") == 200

        # An account blocked by hand: 403 at the gate; lifted by one command: 200 within 5 s.
        assert override(cli, "block", "--account", "acct-wrong", "--for", "1h", "--reason",
                        "looked like the campaign", "--by", "ana") == 0
        wait_until(lambda: answers(gate_url, "acct-wrong", 403), REACH_S, "the gate's 403")
        started = time.monotonic()
        assert override(cli, "lift", "--account", "acct-wrong", "--reason", "a customer",
                        "--by", "ana") == 0
        wait_until(lambda: answers(gate_url, "acct-wrong", 200, ""), REACH_S,
                   "the gate's 200 after the lift", interval_s=0.05)
        with capsys.disabled():
            print(f"\nthe gate served acct-wrong {time.monotonic() - started:.2f} s after "
                  "`override lift` started (in process)", end="")

        # The detector's block is lifted the same way (the gateway gets allow + tombstone).
        asyncio.run(produce(run, [(b"acct-detected", orjson.dumps(decision_record(
            "acct-detected", "block", ts=time.time(), ttl_s=3600)))],
                            topic=run.topic_decisions))
        wait_until(lambda: answers(gate_url, "acct-detected", 403), REACH_S, "the 403")
        assert override(cli, "lift", "--account", "acct-detected", "--by", "ana") == 0
        wait_until(lambda: answers(gate_url, "acct-detected", 200), REACH_S, "the 200")

        # An organisation throttled to 0/min: every check naming it is over its budget; a
        # check that does not name it, or names another, is served.
        assert override(cli, "throttle", "--org", "acme", "--rpm", "0", "--for", "30m",
                        "--reason", "org-wide harvesting, I-21", "--by", "ben") == 0
        wait_until(lambda: answers(gate_url, "acct-of-acme", 429, org="acme"), REACH_S,
                   "the organisation's 429")
        assert check(gate_url, "acct-of-acme") == 200
        assert check(gate_url, "acct-of-globex", org="globex") == 200
        capsys.readouterr()
        assert overrides(cli, "--json") == 0
        rows = [orjson.loads(x) for x in capsys.readouterr().out.splitlines()]
        assert [(r["kind"], r["scope"], r["id"], r["action"], r["rate_limit_rpm"])
                for r in rows] == [("decision", "org", "acme", "throttle", 0)]

        # review: what is under action now, newest first (the organisation's as org:acme).
        asyncio.run(produce(run, [(b"acct-old", orjson.dumps(decision_record(
            "acct-old", "throttle", ts=time.time() - 300, ttl_s=3600, rpm=6)))],
                            topic=run.topic_decisions))
        args = cli.parse_args(["review", "--json"])
        assert args.func(args) == 0
        shown = [orjson.loads(x) for x in capsys.readouterr().out.splitlines()]
        assert [r["account_id"] for r in shown] == ["acme", "acct-old"]
        assert shown[0]["source"] == "operator" and shown[0]["by"] == "ben"
        args = cli.parse_args(["review"])
        assert args.func(args) == 0
        table = capsys.readouterr().out
        assert table.index("org:acme") < table.index("acct-old")
        assert "operator/ben" in table and "operator_throttle" in table
        assert "under action: 2;" in table
        args = cli.parse_args(["review", "--source", "detector", "--json"])
        assert args.func(args) == 0
        assert [orjson.loads(x)["account_id"]
                for x in capsys.readouterr().out.splitlines()] == ["acct-old"]

        # The organisation's override lifted: its checks are served again.
        assert override(cli, "lift", "--org", "acme", "--by", "ben") == 0
        wait_until(lambda: answers(gate_url, "acct-of-acme", 200, org="acme"), REACH_S,
                   "the organisation's 200 after the lift")
