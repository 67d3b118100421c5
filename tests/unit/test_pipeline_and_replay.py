"""The whole core in one process (`Pipeline`), offline replay, and the evaluation of decisions.

Runs on `simulator.Scenario.small()` (about 5,000 events, well under a second per pass).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from distillguard.models.config import DetectorConfig
from distillguard.models.decision import Decision
from distillguard.models.evaluation import Evaluation, evaluate_recorded, render
from distillguard.models.events import RequestEvent, event_from_mapping
from distillguard.models.pipeline import Pipeline
from distillguard.simulator import Scenario, account_labels, generate_events, write_files
from distillguard.streams.offline.replay import ReplayError, ReplayResult, load_labels, replay_file

CFG = DetectorConfig()


@pytest.fixture(scope="module")
def events() -> list[RequestEvent]:
    return [event_from_mapping(e) for e in generate_events(Scenario.small())]


@pytest.fixture(scope="module")
def labels() -> dict[str, tuple[str, str]]:
    return {r["account_id"]: (r["label"], r["group"] or r["label"])
            for r in account_labels(Scenario.small())}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("small")
    write_files(Scenario.small(), out)
    return out


@pytest.fixture(scope="module")
def decided(events: list[RequestEvent]) -> list[tuple[int, Decision]]:
    """Each decision with the index of the event that led to it."""
    pipeline = Pipeline(CFG)
    return [(i, d) for i, e in enumerate(events) for d in pipeline.process(e)]


@pytest.fixture(scope="module")
def decisions(decided: list[tuple[int, Decision]]) -> list[Decision]:
    return [d for _, d in decided]


@pytest.fixture(scope="module")
def labelled_replay(files: Path, tmp_path_factory: pytest.TempPathFactory
                    ) -> tuple[ReplayResult, Path, dict[str, tuple[str, str]]]:
    """One replay of the small scenario with its labels: the result, the decisions file."""
    out = tmp_path_factory.mktemp("replay") / "decisions.jsonl"
    labels = load_labels(files / "labels.jsonl")
    return replay_file(files / "events.jsonl", out, CFG, labels=labels), out, labels


# --- Pipeline ---------------------------------------------------------------------------------


def test_pipeline_is_deterministic(events: list[RequestEvent], decisions: list[Decision]) -> None:
    assert decisions, "the small scenario should lead to some decisions"
    pipeline = Pipeline(CFG)
    again = list(pipeline.run(events))
    assert [d.decision_id for d in again] == [d.decision_id for d in decisions]
    assert [d.to_record(0.0) for d in again] == [d.to_record(0.0) for d in decisions]
    assert pipeline.counts["events"] == len(events) and pipeline.counts["summaries"] > 0


def test_pipeline_decisions_are_contract_valid(decisions: list[Decision],
                                               validate: Callable[[str, Any], None]) -> None:
    for d in decisions:
        record = d.to_record(1_800_000_000.0)
        validate("enforcement-decision", record)
        assert record["model_version"] == CFG.model_version and record["mode"] == "enforce"
        assert len(record["reasons"]) >= 2  # the summary line and the evidence behind it


# --- replay_file ------------------------------------------------------------------------------


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def test_replay_writes_the_pipelines_decisions(
        files: Path, labelled_replay: tuple[ReplayResult, Path, Any], decisions: list[Decision],
        validate: Callable[[str, Any], None]) -> None:
    result, out, _ = labelled_replay
    records = _read_jsonl(out)
    assert result.events == len(_read_jsonl(files / "events.jsonl"))
    assert result.bad_lines == 0 and result.decisions == len(records)
    assert [r["decision_id"] for r in records] == [d.decision_id for d in decisions]
    for r in records:
        validate("enforcement-decision", r)
    assert sum(result.actions.values()) == len(records)
    assert not out.with_name("decisions.dead-letter.jsonl").exists()


def test_replay_sends_bad_lines_to_dead_letter_file(
        files: Path, tmp_path: Path, decided: list[tuple[int, Decision]]) -> None:
    lines = (files / "events.jsonl").read_bytes().splitlines()
    n = len(lines)
    missing_ts = orjson.loads(lines[0])
    del missing_ts["ts"]
    bad = [b"this is not json", orjson.dumps(missing_ts), b'{"event_id": "\xff"}',
           orjson.dumps([1, 2])]
    mixed = [bad[0], *lines[:100], bad[1], b"", bad[2], *lines[100:], bad[3]]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(mixed) + b"\n")
    out = tmp_path / "out.jsonl"
    result = replay_file(path, out, CFG)
    assert result.bad_lines == 4 and result.events == n  # the blank line is not bad
    dead = _read_jsonl(tmp_path / "out.dead-letter.jsonl")
    assert [d["line"] for d in dead] == [1, 102, 104, len(mixed)]
    assert all(d["reason"] and d["source"] == str(path) for d in dead)
    assert "not JSON" in dead[0]["reason"]
    assert "'ts'" in dead[1]["reason"]
    assert "object" in dead[3]["reason"]
    assert dead[0]["value"].startswith("this is not json")
    # bad input changes nothing else: the decisions of the same events without it
    expected = [d.decision_id for i, d in decided if i < n]
    assert expected and [r["decision_id"] for r in _read_jsonl(out)] == expected


def test_replay_of_a_missing_input_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="does not exist"):
        replay_file(tmp_path / "nope.jsonl", tmp_path / "out.jsonl", CFG)


def test_replay_of_an_input_without_valid_events_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"garbage\n{}\n\n")
    with pytest.raises(ReplayError, match="no valid events") as info:
        replay_file(path, tmp_path / "out.jsonl", CFG)
    assert "2 bad lines" in str(info.value)
    assert len(_read_jsonl(tmp_path / "out.dead-letter.jsonl")) == 2


def test_replay_with_labels_matching_no_account_is_an_error(files: Path, tmp_path: Path) -> None:
    path = tmp_path / "few.jsonl"
    path.write_bytes(b"\n".join((files / "events.jsonl").read_bytes().splitlines()[:200]))
    with pytest.raises(ReplayError, match="match no account"):
        replay_file(path, tmp_path / "out.jsonl", CFG,
                    labels={"somebody-else": ("attack", "x")})


def test_replay_with_labels_reports_per_group(
        labelled_replay: tuple[ReplayResult, Path, dict[str, tuple[str, str]]]) -> None:
    result, _, labels = labelled_replay
    assert result.report is not None
    groups = {r.group for r in result.report.rows}
    assert {"all attack", "all benign"} <= groups
    assert {g for _, g in labels.values()} <= groups
    assert sum(r.accounts for r in result.report.rows if not r.group.startswith("all ")) == \
        sum(r.accounts for r in result.report.rows if r.group.startswith("all "))


# --- load_labels ------------------------------------------------------------------------------


def test_load_labels(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text('{"account_id": "a", "label": "attack", "group": "camp"}\n\n'
                    '{"account_id": "b", "label": "benign"}\n'
                    '{"account_id": "c", "label": "benign", "group": null}\n')
    assert load_labels(path) == {"a": ("attack", "camp"), "b": ("benign", "benign"),
                                 "c": ("benign", "benign")}


@pytest.mark.parametrize("line", [
    "not json", '{"label": "attack"}', '{"account_id": "a"}',
    '{"account_id": "a", "label": "maybe"}', '["a", "attack"]', '"a"'])
def test_malformed_label_lines_are_errors_with_position(tmp_path: Path, line: str) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text('{"account_id": "ok", "label": "benign"}\n' + line + "\n")
    with pytest.raises(ReplayError) as info:
        load_labels(path)
    assert f"{path}:2" in str(info.value)


def test_missing_or_empty_labels_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="does not exist"):
        load_labels(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ReplayError, match="no labels"):
        load_labels(tmp_path / "empty.jsonl")


# --- Evaluation -------------------------------------------------------------------------------

T = 1_700_000_040.0  # 40 s into a minute

LABELS = {"bot-1": ("attack", "camp-a"), "bot-2": ("attack", "camp-a"),
          "bot-3": ("attack", "camp-b"), "user-1": ("benign", "users"),
          "user-2": ("benign", "users")}


def test_blocked_requests_are_not_served_until_ttl_or_allow() -> None:
    ev = Evaluation(LABELS)
    assert ev.observe_event("bot-1", T)
    ev.observe_decision("bot-1", "block", T, 600, None)
    assert not ev.observe_event("bot-1", T + 1)
    assert not ev.observe_event("bot-1", T + 599)
    assert ev.observe_event("bot-1", T + 600)  # the TTL ran out
    ev.observe_decision("bot-1", "block", T + 700, 600, None)
    assert not ev.observe_event("bot-1", T + 701)
    ev.observe_decision("bot-1", "allow", T + 702, None, None)
    assert ev.observe_event("bot-1", T + 703)  # allow lifts the block


def test_throttled_account_is_served_up_to_the_rate_per_minute() -> None:
    ev = Evaluation(LABELS)
    ev.observe_event("bot-1", T - 30)
    ev.observe_decision("bot-1", "throttle", T - 30, 3600, 2)
    minute_end = (T // 60 + 1) * 60
    served = [ev.observe_event("bot-1", t) for t in (T, T + 1, T + 2, T + 3)]
    assert served == [True, True, False, False]
    served = [ev.observe_event("bot-1", minute_end + dt) for dt in (0, 1, 2)]
    assert served == [True, True, False]  # a new minute, a new allowance
    ev.observe_decision("bot-1", "allow", minute_end + 3, None, None)
    assert all(ev.observe_event("bot-1", minute_end + 4 + i) for i in range(5))


def test_requests_served_under_a_throttle_are_harvest_but_not_served_before_action() -> None:
    ev = Evaluation(LABELS)
    for dt in (-120, -90, -30):  # bot-1: three requests before any action, all served
        assert ev.observe_event("bot-1", T + dt)
    ev.observe_decision("bot-1", "throttle", T - 30, 3600, 2)
    minute_end = (T // 60 + 1) * 60
    served = [ev.observe_event("bot-1", t) for t in (T, T + 1, T + 2, T + 3)]
    served += [ev.observe_event("bot-1", minute_end + dt) for dt in (0, 1, 2)]
    assert served == [True, True, False, False, True, True, False]  # 4 of 7 at the allowance
    ev.observe_decision("bot-1", "allow", minute_end + 3, None, None)
    assert ev.observe_event("bot-1", minute_end + 4)  # served after an action: harvest only
    for dt in (0, 1):  # bot-2 is never acted on: all it is served is before action
        assert ev.observe_event("bot-2", T + dt)
    a = ev.report().row("camp-a")
    # 3 + 7 + 1 requests of bot-1 and 2 of bot-2; served 3 + 4 + 1 and 2; before 3 and 2
    assert (a.requests, a.denied_requests) == (13, 3)
    assert a.served_share == pytest.approx(10 / 13)
    assert a.served_before_action_share == pytest.approx(5 / 13)
    assert ev.report().row("all attack").served_before_action_share == pytest.approx(5 / 13)
    head, _, row = render(ev.report()).splitlines()[:3]
    assert head.split()[-3:] == ["before", "served", "denied"]
    assert row.split()[-3:] == ["38.5%", "76.9%", "3"]


def test_report_rows_per_group_and_overall() -> None:
    ev = Evaluation(LABELS)
    for account, first in (("bot-1", T), ("bot-2", T + 60), ("bot-3", T), ("user-1", T)):
        ev.observe_event(account, first)
    ev.observe_decision("bot-1", "throttle", T + 600, 1800, 2)  # 10 minutes after its first
    ev.observe_decision("bot-2", "block", T + 60 + 1200, 3600, None)  # 20 minutes after
    ev.observe_decision("bot-3", "block", T + 300, 3600, None)  # 5 minutes after
    for account in ("bot-2", "bot-3"):
        assert not ev.observe_event(account, T + 3000)
    ev.observe_event("stranger", T)
    ev.observe_decision("stranger", "block", T, 60, None)
    report = ev.report()
    assert [r.group for r in report.rows] == ["camp-a", "camp-b", "users", "all attack",
                                              "all benign"]
    a = report.row("camp-a")
    assert (a.label, a.accounts, a.acted_share, a.blocked_share) == ("attack", 2, 1.0, 0.5)
    assert a.median_minutes_to_action == pytest.approx(15.0)
    assert (a.requests, a.denied_requests) == (3, 1)
    assert a.served_share == pytest.approx(2 / 3)
    # bot-1's request came before its throttle; bot-2's only request before its block
    assert a.served_before_action_share == pytest.approx(2 / 3)
    assert report.row("camp-b").median_minutes_to_action == pytest.approx(5.0)
    attack = report.row("all attack")
    assert attack.accounts == 3 and attack.median_minutes_to_action == pytest.approx(10.0)
    benign = report.row("all benign")
    assert benign.accounts == 1  # user-2 sent nothing: not in the population
    assert (benign.acted_share, benign.served_share, benign.denied_requests) == (0.0, 1.0, 0)
    assert benign.median_minutes_to_action is None
    assert report.unlabelled_accounts == 1
    text = render(report)
    assert "camp-a" in text and "all benign" in text and "1 accounts in the events had no label" in text
    assert report.to_dict()["rows"][0]["group"] == "camp-a"


def test_evaluate_recorded_equals_the_in_loop_evaluation(
        events: list[RequestEvent],
        labelled_replay: tuple[ReplayResult, Path, dict[str, tuple[str, str]]]) -> None:
    # replay evaluates in the loop; the decisions file is what the enforcement topic records
    result, out, labels = labelled_replay
    assert result.report is not None and any(r.acted_share > 0 for r in result.report.rows)
    later = evaluate_recorded([(e.account_id, e.ts) for e in events], _read_jsonl(out), labels)
    assert later.to_dict() == result.report.to_dict()
