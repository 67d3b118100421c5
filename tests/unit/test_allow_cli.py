"""`distillguard allow` without a broker: its parser, the mistakes it refuses before writing
anything, and the --list table (the broker side: tests/integration/test_allow_list.py)."""

from __future__ import annotations

import argparse

import pytest

from distillguard.models.allowlist import Allowance
from distillguard.streams.cli.allow import add_allow_parser, cmd_allow, render_list
from distillguard.streams.edge.control import ControlRecord, ControlState
from distillguard.streams.edge.settings import load_settings
from tests.conftest import clear_settings_env


@pytest.fixture
def parser(monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    clear_settings_env(monkeypatch)
    # nothing listens there: a test that reached the broker would fail, not hang
    monkeypatch.setenv("DISTILLGUARD_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    p = argparse.ArgumentParser(prog="distillguard")
    sub = p.add_subparsers(dest="command", required=True)
    assert add_allow_parser(sub).prog == "distillguard allow"
    return p


def test_the_parser_and_its_command(parser: argparse.ArgumentParser) -> None:
    args = parser.parse_args(["allow", "--org", "org-1", "--reason", "verified", "--by", "ann"])
    assert (args.org, args.account, args.list, args.reason, args.by, args.revoke) == (
        "org-1", None, False, "verified", "ann", False)
    assert args.func is cmd_allow
    assert parser.parse_args(["allow", "--revoke", "--account", "a"]).revoke
    assert parser.parse_args(["allow", "--list"]).list


@pytest.mark.parametrize("argv", [
    ["allow"],
    ["allow", "--org", "o", "--account", "a", "--reason", "r"],
    ["allow", "--list", "--org", "o"],
])
def test_one_of_org_account_or_list(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parser.parse_args(argv)


@pytest.mark.parametrize(("argv", "message"), [
    (["--org", "org-1"], "--reason is required: say why the org is verified"),
    (["--account", "a", "--reason", "  "], "--reason is required"),
    (["--org", "", "--reason", "r"], "--org '' is empty"),
    (["--account", " a", "--reason", "r"], "--account ' a' has surrounding spaces"),
    (["--account", "a" * 129, "--reason", "r"], "is 129 characters, at most 128"),
    (["--account", "a", "--reason", "r" * 513], "reason is 513 characters, at most 512"),
    (["--revoke", "--org", "o", "--reason", "r"], "--revoke writes a tombstone"),
    (["--revoke", "--org", "o", "--by", "ann"], "--revoke writes a tombstone"),
    (["--list", "--reason", "r"], "--list takes no --reason"),
    (["--list", "--revoke"], "--list takes no --revoke"),
])
def test_mistakes_are_refused_before_anything_is_written(
        parser: argparse.ArgumentParser, argv: list[str], message: str) -> None:
    args = parser.parse_args(["allow", *argv])
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        cmd_allow(args)


def test_the_list_table() -> None:
    settings = load_settings(env={"DISTILLGUARD_ALLOW_ORGS": "org-s",
                                  "DISTILLGUARD_TOPIC_CONTROL": "t.control"})
    state = ControlState(read=5, bad=[(0, 3, "record value is not JSON")])
    for scope, id_, reason, by in (("account", "acct-1", "benchmark partner", "ann"),
                                   ("org", "org-s", "also in the settings", ""),
                                   ("org", "org-2", "x" * 100, "bob")):
        state.records[f"allow:{scope}:{id_}"] = ControlRecord(
            scope, id_, Allowance(scope, id_, reason, "control", by), 1_767_225_600.0)
    lines = render_list(settings, state).splitlines()
    assert lines[0].split() == ["scope", "id", "source", "by", "since", "reason"]
    rows = [line.split()[:3] for line in lines[2:6]]
    assert rows == [["account", "acct-1", "control"], ["org", "org-2", "control"],
                    ["org", "org-s", "settings"], ["org", "org-s", "control"]]
    assert "(settings" in lines[5] and "2026-01-01 00:00:00Z" in lines[2]
    assert lines[3].endswith("x" * 57 + "...")
    assert lines[6].startswith("in force: 2 organisations, 1 accounts; 1 from the settings, "
                               "3 from t.control (5 records read, 1 bad)")
    assert lines[7] == ("bad record t.control:0:3: record value is not JSON (the workers "
                        "dead-letter it)")
