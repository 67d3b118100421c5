"""`distillguard evaluate`: every run (the legacy seeds and robustness variants, the tuning and
held-out family runs) replayed in processes, a summary line per (run, campaign), per family run
"all attack" and per run "all benign", each checked against the targets from the computed
numbers; per scenario set a population table pooled over its runs; Ctrl-C stops cleanly.

Nothing here asserts detection figures (the detector changes): only that the targets are
computed from the numbers and rendered."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from distillguard.models.evaluation import GroupRow, Report
from distillguard.simulator.families import FAMILIES
from distillguard.streams.cli.main import main
from distillguard.streams.offline import evaluate as evaluate_mod
from distillguard.streams.offline.evaluate import (
    DETECTOR,
    MAX_RECALL_DROP_POINTS,
    EvalRun,
    EvaluationResult,
    RunOutcome,
    ScenarioOptions,
    plan_evaluation,
    plan_runs,
    pool_populations,
    render_set,
    render_set_totals,
    render_summary,
    summarise,
    summarise_sets,
    write_outputs,
)
from distillguard.streams.offline.scenario_sets import (
    HELD_OUT_FAMILIES,
    HELD_OUT_SEEDS,
    TUNING_FAMILIES,
    TUNING_SEEDS,
    family_runs,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SEED_RUNS = ["seed7", "seed11"]
ROBUSTNESS_RUNS = ["seed7-x10", "seed7-jitter", "seed7-newip"]
RUNS = [*SEED_RUNS, *ROBUSTNESS_RUNS]
CAMPAIGNS = ["campaign_burst", "campaign_cot", "campaign_hydra", "campaign_stealth"]


@pytest.fixture(autouse=True)
def _no_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DISTILLGUARD_"):
            monkeypatch.delenv(name)


# --- the whole command on the small scenario --------------------------------------------------


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, Path]:
    out = tmp_path_factory.mktemp("evaluate")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["evaluate", "--sets", "default", "--small", "--jobs", "2", "--out",
                     str(out)])
    return code, buf.getvalue(), out


def _summary_lines(text: str) -> dict[tuple[str, str], str]:
    summary = text.split("== summary:", 1)[1]
    rows = {}
    for line in summary.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in RUNS:
            rows[(parts[0], parts[1] if parts[1] != "all" else "all benign")] = line
    return rows


@pytest.mark.slow
def test_evaluate_prints_every_run_and_a_summary_line_per_run_and_campaign(
        evaluated: tuple[int, str, Path]) -> None:
    code, text, _ = evaluated
    assert code == 0
    for run in RUNS:  # each run's population table
        assert f"== {run}: " in text
    assert text.count("all benign           benign") == len(RUNS)
    rows = _summary_lines(text)
    assert set(rows) == {(r, p) for r in RUNS for p in [*CAMPAIGNS, "all benign"]}
    header = text.split("== summary:", 1)[1].splitlines()[1]
    assert "distillguard" in header and "rate limit" in header and "HST alone" in header
    for line in rows.values():  # three systems side by side, then the mark
        assert line.count("|") == 4
        mark = line.rsplit("|", 1)[1].strip()
        assert mark == "ok" or mark.startswith("MISSED ")
    assert "targets met:" in text and "wrote " in text
    # the legacy runs are the tuning set: its pooled table, its targets met, no held-out set
    assert "== tuning set: the default scenario (seed7, seed11, seed7-x10, seed7-jitter, " \
           "seed7-newip); 5 of 5 runs ==" in text
    assert "held-out" not in text


@pytest.mark.slow
def test_evaluate_targets_are_computed_from_the_numbers(evaluated: tuple[int, str, Path]) -> None:
    _, text, out = evaluated
    data = orjson.loads((out / "evaluation.json").read_bytes())
    assert [r["key"] for r in data["runs"]] == RUNS
    reports = {r["key"]: {s: {row["group"]: row for row in rep["rows"]}
                          for s, rep in r["reports"].items()} for r in data["runs"]}
    assert all(set(rep) == {DETECTOR, "rate limit", "HST alone"} for rep in reports.values())
    rows = _summary_lines(text)
    n_checks = 0
    for line in data["lines"]:
        dg = reports[line["run"]][DETECTOR][line["population"]]
        assert line["systems"][DETECTOR]["acted_share"] == dg["acted_share"]
        for check in line["checks"]:
            n_checks += 1
            if check["op"] in (">=", "<="):
                v, lim = check["value"], check["limit"]
                expected = v is not None and (v >= lim if check["op"] == ">=" else v <= lim)
                assert check["ok"] == expected, check
                if check["what"] in ("acted", "before", "served", "blocked", "median"):
                    key = {"acted": "acted_share", "before": "served_before_action_share",
                           "served": "served_share", "blocked": "blocked_share",
                           "median": "median_minutes_to_action"}[check["what"]]
                    assert v == dg[key]
            else:  # beats a baseline: on the campaign's whole harvest, throttle allowance included
                base = reports[line["run"]][check["what"].removeprefix("beats ")][
                    line["population"]]
                if line["label"] == "attack":
                    assert check["ok"] == (dg["served_share"] < base["served_share"] or (
                        dg["served_share"] == base["served_share"]
                        and dg["acted_share"] > base["acted_share"]))
                else:
                    assert check["ok"] == (dg["acted_share"] <= base["acted_share"]
                                           and dg["blocked_share"] <= base["blocked_share"])
        assert line["ok"] == all(c["ok"] for c in line["checks"])
        mark = rows[(line["run"], line["population"])].rsplit("|", 1)[1].strip()
        assert (mark == "ok") == line["ok"]
        if not line["ok"]:
            for c in line["checks"]:
                assert (c["note"] in mark) != c["ok"] or not c["note"]
        # a check against each baseline on every line; a seed run's campaign is held to the
        # targets (served before action, not the harvest), a robustness run's to its recall drop
        whats = {c["what"] for c in line["checks"]}
        assert {"beats rate limit", "beats HST alone"} <= whats
        if line["label"] == "benign":
            assert {"acted", "blocked", "enterprise blocked"} <= whats
        elif line["run"] in SEED_RUNS:
            assert {"acted", "before"} <= whats and not {"served", "recall drop"} & whats
        else:
            assert whats == {"recall drop", "beats rate limit", "beats HST alone"}
    assert data["targets"] == n_checks
    assert data["targets_met"] == sum(c["ok"] for ln in data["lines"] for c in ln["checks"])
    assert f"targets met: {data['targets_met']} of {data['targets']}" in text
    assert list(data["sets"]) == ["tuning"]
    assert data["sets"]["tuning"]["runs"] == RUNS
    assert data["sets"]["tuning"]["targets"] == data["targets"]
    assert f"tuning set: targets met {data['targets_met']} of {data['targets']}; 5 of 5 runs" \
           in text
    # the recall drop of each robustness run, against its seed, per campaign
    for run in ROBUSTNESS_RUNS:
        for campaign in CAMPAIGNS:
            line = next(ln for ln in data["lines"]
                        if ln["run"] == run and ln["population"] == campaign)
            drop = 100 * (reports["seed7"][DETECTOR][campaign]["acted_share"]
                          - reports[run][DETECTOR][campaign]["acted_share"])
            assert line["recall_drop_points"] == pytest.approx(drop)
            check = next(c for c in line["checks"] if c["what"] == "recall drop")
            assert check["ok"] == (drop <= MAX_RECALL_DROP_POINTS)
            assert f"{drop:+.1f}" in rows[(run, campaign)]
    assert all(ln["recall_drop_points"] is None for ln in data["lines"]
               if ln["run"] in SEED_RUNS or ln["label"] == "benign")
    with (out / "evaluation.csv").open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(RUNS) * 5
    assert {"distillguard_acted", "distillguard_served_before_action", "rate_limit_served",
            "hst_alone_median_min", "ok"} <= set(table[0])
    first = data["lines"][0]["systems"][DETECTOR]
    assert float(table[0]["distillguard_served_before_action"]) == pytest.approx(
        first["served_before_action_share"], abs=1e-6)


# --- the checks on chosen numbers ---------------------------------------------------------------


def _row(group: str, label: str, acted: float, blocked: float, served: float,
         median: float | None, accounts: int = 1000, before: float | None = None) -> GroupRow:
    """`served`: the whole harvest; `before`: served before the first action (default: all)."""
    return GroupRow(group=group, label=label, accounts=accounts, acted_share=acted,
                    blocked_share=blocked, median_minutes_to_action=median, requests=10_000,
                    served_before_action_share=served if before is None else before,
                    served_share=served, denied_requests=int(10_000 * (1 - served)))


def _outcome(run: EvalRun, dg: list[GroupRow], base: list[GroupRow]) -> RunOutcome:
    o = RunOutcome(run=run, events=1, accounts=1)
    o.reports = {DETECTOR: Report(rows=dg), "rate limit": Report(rows=base)}
    o.baseline_titles = {"rate limit": "per-account rate limit (20/min)"}
    return o


def test_a_missed_target_shows_missed_and_a_met_one_ok() -> None:
    seed, x10 = EvalRun("seed7", "seed 7", 7), EvalRun("seed7-x10", "x10", 7, 10.0, base="seed7")
    # the baseline acts on no campaign account, and on 1% of benign ones in the first run only
    idle = [_row("campaign_burst", "attack", 0.0, 0.0, 1.0, None),
            _row("campaign_stealth", "attack", 0.0, 0.0, 1.0, None),
            _row("enterprise", "benign", 0.0, 0.0, 1.0, None)]
    result = EvaluationResult(runs=[seed, x10], outcomes=[
        # the harvest (served) is over the limits: the targets are on served before action
        _outcome(seed, [_row("campaign_burst", "attack", 0.96, 0.9, 0.30, 9.0, before=0.04),
                        _row("campaign_stealth", "attack", 0.75, 0.5, 0.40, 300.0, before=0.10),
                        _row("enterprise", "benign", 0.0, 0.0, 1.0, None),
                        _row("all benign", "benign", 0.004, 0.001, 0.999, 5.0)],
                 [*idle, _row("all benign", "benign", 0.01, 0.01, 0.99, 1.0)]),
        # a robustness run: its campaigns are judged by the recall drop alone
        _outcome(x10, [_row("campaign_burst", "attack", 0.90, 0.9, 0.50, 11.0, before=0.06),
                       _row("campaign_stealth", "attack", 0.71, 0.5, 0.90, None, before=0.50),
                       _row("enterprise", "benign", 0.02, 0.02, 0.9, 3.0, accounts=50),
                       _row("all benign", "benign", 0.006, 0.002, 0.99, 5.0)],
                 [*idle, _row("all benign", "benign", 0.0, 0.0, 1.0, None)]),
    ], seconds=1.0, processes=1, model_version="mv")
    lines = {(ln.run, ln.population): ln for ln in summarise(result)}
    assert set(lines) == {(r, p) for r in ("seed7", "seed7-x10")
                          for p in ("campaign_burst", "campaign_stealth", "all benign")}
    # exactly at or inside every limit: all met (stealth has no time target)
    assert lines[("seed7", "campaign_burst")].ok
    assert lines[("seed7", "campaign_stealth")].ok
    assert lines[("seed7", "all benign")].ok
    failed = {(ln.run, ln.population): {c.what for c in ln.checks if not c.ok}
              for ln in lines.values()}
    assert failed[("seed7-x10", "campaign_burst")] == {"recall drop"}  # 6 points lost
    assert failed[("seed7-x10", "campaign_stealth")] == set()  # 4 points lost: within 5
    assert lines[("seed7-x10", "campaign_stealth")].recall_drop_points == pytest.approx(4.0)
    assert failed[("seed7-x10", "all benign")] == {"blocked", "acted", "enterprise blocked",
                                                   "beats rate limit"}
    table = render_summary(result, list(lines.values()))
    by_line = {tuple(ln.split()[:2]): ln for ln in table.splitlines() if ln.startswith("seed7")}
    assert by_line[("seed7", "campaign_burst")].endswith("| ok")
    x10_burst = by_line[("seed7-x10", "campaign_burst")]
    assert x10_burst.endswith("| MISSED recall drop 6.0 points > 5 (acted 90.0% vs 96.0% in "
                              "seed7)")
    assert " -6.0 " not in x10_burst and " +6.0 " in x10_burst
    # distillguard's acted, blocked, before, served (in percent) and median
    assert "|   90.0   90.0    6.0   50.0   11.0 |" in x10_burst
    benign = by_line[("seed7-x10", "all")]
    assert "MISSED" in benign and "1 enterprise account blocked" in benign
    assert "not better than rate limit (acted on 6 vs 0 accounts, blocked 2 vs 0)" in benign
    assert "|    0.6    0.2 " in benign  # distillguard's benign acted / blocked, in percent
    assert "targets met:" in table and "lines ok: 4 of 6" in table


def test_a_robustness_run_is_judged_by_recall_drop_and_a_seed_run_by_the_targets() -> None:
    seed7, seed11 = EvalRun("seed7", "seed 7", 7), EvalRun("seed11", "seed 11", 11)
    jitter = EvalRun("seed7-jitter", "jitter", 7, jitter=0.5, base="seed7")
    newip = EvalRun("seed7-newip", "new ip", 7, rotate_ip=True, base="seed7")
    good = _row("campaign_hydra", "attack", 0.96, 0.9, 0.50, 30.0, before=0.08)
    # misses every hydra target (acted, before, median), 3 points of recall below seed7's
    weak = _row("campaign_hydra", "attack", 0.93, 0.5, 0.30, 90.0, before=0.20)
    lost = _row("campaign_hydra", "attack", 0.90, 0.9, 0.05, 5.0, before=0.01)  # 6 points
    idle = [_row("campaign_hydra", "attack", 0.0, 0.0, 1.0, None)]
    # harvests less than `lost` (served 4% vs 5%) though it served more before acting
    tight = [_row("campaign_hydra", "attack", 0.5, 0.5, 0.04, 1.0, before=0.5)]
    result = EvaluationResult(runs=[seed7, seed11, jitter, newip], outcomes=[
        _outcome(seed7, [good], idle), _outcome(seed11, [weak], idle),
        _outcome(jitter, [weak], idle), _outcome(newip, [lost], tight),
    ], seconds=1.0, processes=1, model_version="mv")
    lines = {ln.run: ln for ln in summarise(result)}
    whats = {run: {c.what for c in ln.checks} for run, ln in lines.items()}
    failed = {run: {c.what for c in ln.checks if not c.ok} for run, ln in lines.items()}
    assert whats["seed7"] == whats["seed11"] == {"acted", "before", "median", "beats rate limit"}
    assert failed["seed7"] == set()  # 50% harvested, but 8% served before action: met
    assert next(c.value for c in lines["seed7"].checks if c.what == "before") == 0.08
    assert failed["seed11"] == {"acted", "before", "median"}
    assert whats["seed7-jitter"] == whats["seed7-newip"] == {"recall drop", "beats rate limit"}
    assert failed["seed7-jitter"] == set()  # the same numbers as seed11, 3 points lost: ok
    assert lines["seed7-jitter"].recall_drop_points == pytest.approx(3.0)
    assert failed["seed7-newip"] == {"recall drop", "beats rate limit"}  # baselines still apply
    assert lines["seed7-newip"].recall_drop_points == pytest.approx(6.0)
    assert all(lines[r].recall_drop_points is None for r in ("seed7", "seed11"))
    table = render_summary(result, list(lines.values()))
    by_run = {ln.split()[0]: ln for ln in table.splitlines() if ln.startswith("seed")}
    assert "MISSED acted 93.0% < 95%; before 20.0% > 10%; median 90.0 min > 60 min" in by_run[
        "seed11"]
    assert by_run["seed7-jitter"].endswith("| ok") and " +3.0 " in by_run["seed7-jitter"]
    assert "not better than rate limit (served 5.0% vs 4.0%" in by_run["seed7-newip"]
    assert table.splitlines()[1].count(" acted  block before served median |") == 2
    assert "before: % of its requests served before the account's first action" in table
    assert "robustness runs' campaigns: recall drop <= 5 points only" in table
    # a robustness run whose seed did not finish cannot be judged: it misses
    alone = EvaluationResult(runs=[seed7, jitter], outcomes=[_outcome(jitter, [weak], idle)],
                             seconds=1.0, processes=1, model_version="mv")
    (line,) = summarise(alone)
    assert [(c.what, c.ok, c.note) for c in line.checks if not c.ok] == [
        ("recall drop", False, "recall drop: no seed7 result to compare with")]
    assert line.recall_drop_points is None


def test_a_campaign_that_no_account_is_acted_on_misses_its_time_target() -> None:
    run = EvalRun("seed7", "seed 7", 7)
    hydra = _row("campaign_hydra", "attack", 0.0, 0.0, 1.0, None)
    result = EvaluationResult(runs=[run], outcomes=[_outcome(run, [hydra], [hydra])],
                              seconds=1.0, processes=1, model_version="mv")
    (line,) = summarise(result)
    missed = {c.what: c.note for c in line.checks if not c.ok}
    assert missed == {"acted": "acted 0.0% < 95%", "before": "before 100.0% > 10%",
                      "median": "median: no account acted on",
                      "beats rate limit": missed["beats rate limit"]}  # a tie does not beat


def test_a_small_share_is_not_shown_as_zero() -> None:
    run = EvalRun("seed7", "seed 7", 7)
    one_in_5000 = _row("all benign", "benign", 0.0002, 0.0, 1.0, 0.0, accounts=5000)
    result = EvaluationResult(runs=[run], outcomes=[_outcome(run, [one_in_5000], [])],
                              seconds=1.0, processes=1, model_version="mv")
    table = render_summary(result, summarise(result))
    line = next(ln for ln in table.splitlines() if ln.startswith("seed7"))
    assert "|   0.02    0.0 " in line and line.endswith("| ok")


def test_plan_runs_and_bad_options() -> None:
    runs = plan_runs([7, 11], ["accounts", "jitter", "ip"])
    assert [r.key for r in runs] == RUNS
    assert runs[2].account_multiplier == 10.0 and runs[2].base == "seed7"
    assert runs[3].jitter == 0.5 and runs[4].rotate_ip
    # the robustness runs are judged against the first seed; the seed runs against the targets
    assert [r.base for r in runs] == [None, None, "seed7", "seed7", "seed7"]
    assert [r.key for r in plan_runs([3], [])] == ["seed3"]


@pytest.mark.parametrize(("args", "message"), [
    (["--variants", "x10"], "not a variant"),
    (["--seeds", "7,7"], "repeated"),
    (["--seeds", "seven"], "write seeds as 7,11"),
    (["--jitter", "1.5"], "--jitter must be in [0, 1)"),
    (["--families", "mixed,nope"], "--families nope: not a family (families: mixed, launch, "),
    (["--families", ""], "--families: give at least one family"),
    (["--sets", ""], "--sets: give at least one of tuning, held-out, default"),
    (["--sets", " , "], "--sets: give at least one of tuning, held-out, default"),
    (["--sets", "heldout"], "--sets heldout: not a set (known: tuning, held-out, default"),
    (["--sets", "held-out", "--families", "default"], "no run: --families default has none"),
    (["--family-scale", "0"], "--family-scale must be positive"),
])
def test_evaluate_mistakes_are_one_line_errors(args: list[str], message: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--small", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.count("\n") == 1  # one line


def test_an_unknown_family_lists_every_family(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--families", "frame_cards"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("distillguard evaluate: --families frame_cards: not a family")
    assert all(name in err for name in FAMILIES)


# --- the scenario sets ------------------------------------------------------------------------


TUNING_KEYS = [f"{f}-s{s}" for f in TUNING_FAMILIES for s in TUNING_SEEDS]
HELD_OUT_KEYS = [f"{f}-s{s}" for f in (*TUNING_FAMILIES, *HELD_OUT_FAMILIES)
                 for s in HELD_OUT_SEEDS]


def test_the_tuning_and_held_out_sets_share_no_run() -> None:
    tuning, held_out = set(family_runs("tuning")), set(family_runs("held-out"))
    assert not tuning & held_out
    assert not set(TUNING_SEEDS) & set(HELD_OUT_SEEDS)
    # every family in exactly one of the two family tuples
    named = [*TUNING_FAMILIES, *HELD_OUT_FAMILIES]
    assert sorted(named) == sorted(FAMILIES) and len(set(named)) == len(named)
    # the tuning set runs its own families; the held-out set every family
    assert {f for f, _ in tuning} == set(TUNING_FAMILIES)
    assert {f for f, _ in held_out} == set(FAMILIES)
    assert len(tuning) == len(TUNING_FAMILIES) * len(TUNING_SEEDS)
    assert len(held_out) == len(FAMILIES) * len(HELD_OUT_SEEDS)


def test_the_docs_name_the_sets_as_the_code_does() -> None:
    # docs/tuning.md is where a user learns which families must not be looked at while tuning;
    # a family moved in streams/offline/scenario_sets.py and not in the docs would be tuned on.
    docs = (Path(__file__).resolve().parents[2] / "docs" / "tuning.md").read_text()
    rows = {m.group(1): m.group(2)
            for m in re.finditer(r"^\| (tuning|held-out) \|(.*)$", docs, re.MULTILINE)}
    tuning_row, held_out_row = rows["tuning"], rows["held-out"]
    assert set(re.findall(r"`(\w+)`", tuning_row)) == set(TUNING_FAMILIES)
    assert set(re.findall(r"`(\w+)`", held_out_row)) == set(HELD_OUT_FAMILIES)
    assert f"({len(TUNING_FAMILIES) * len(TUNING_SEEDS)} runs)" in tuning_row
    assert f"({len(FAMILIES) * len(HELD_OUT_SEEDS)} runs)" in held_out_row


def test_the_default_flags_plan_the_legacy_runs_and_both_sets(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    def nothing_runs(runs: list[EvalRun], opts: ScenarioOptions, cfg: object,
                     **kwargs: object) -> EvaluationResult:
        seen.update(runs=runs, opts=opts)
        return EvaluationResult(runs=runs, outcomes=[], seconds=0.0, processes=1,
                                model_version="mv")

    monkeypatch.setattr(evaluate_mod, "run_evaluation", nothing_runs)
    assert main(["evaluate"]) == 130  # nothing finished
    runs = seen["runs"]
    assert isinstance(runs, list)
    assert [r.key for r in runs] == [*RUNS, *TUNING_KEYS, *HELD_OUT_KEYS]
    assert [r.set_name for r in runs] == (["tuning"] * (len(RUNS) + len(TUNING_KEYS))
                                          + ["held-out"] * len(HELD_OUT_KEYS))
    legacy, families = runs[:len(RUNS)], runs[len(RUNS):]
    assert all(r.family is None and r.baselines for r in legacy)
    assert all(r.key == f"{r.family}-s{r.seed}" and not r.baselines and r.base is None
               for r in families)
    assert seen["opts"] == ScenarioOptions(family_scale=1.0)
    # --baselines and --family-scale reach the family runs
    assert main(["evaluate", "--sets", "held-out", "--families", "oss", "--baselines",
                 "--family-scale", "0.5"]) == 130
    runs = seen["runs"]
    assert isinstance(runs, list)
    assert [(r.key, r.baselines) for r in runs] == [(f"oss-s{s}", True) for s in HELD_OUT_SEEDS]
    assert seen["opts"] == ScenarioOptions(family_scale=0.5)


def test_sets_and_families_choose_the_runs() -> None:
    def keys(sets: list[str], families: list[str] | None = None) -> list[str]:
        return [r.key for r in plan_evaluation(sets, families, [7, 11],
                                               ["accounts", "jitter", "ip"])]

    assert keys(["default"]) == RUNS  # the legacy runs alone, as before
    assert keys(["tuning"]) == [*RUNS, *TUNING_KEYS]
    assert keys(["held-out"]) == HELD_OUT_KEYS
    assert keys(["tuning"], ["launch"]) == ["launch-s1", "launch-s2"]
    assert keys(["tuning", "held-out"], ["default", "classroom"]) == [
        *RUNS, *(f"classroom-s{s}" for s in HELD_OUT_SEEDS)]
    assert keys(["held-out", "tuning"]) == keys(["tuning", "held-out"])  # the plan's order


# --- the family targets on chosen numbers -------------------------------------------------------


def _pop(group: str, label: str, accounts: int, acted: float, blocked: float = 0.0,
         before: float = 1.0, median: float | None = None, requests: int = 10_000) -> GroupRow:
    return GroupRow(group=group, label=label, accounts=accounts, acted_share=acted,
                    blocked_share=blocked, median_minutes_to_action=median, requests=requests,
                    served_before_action_share=before, served_share=before,
                    denied_requests=int(requests * (1 - before)))


def _family_run(family: str, seed: int = 101, set_name: str = "held-out") -> EvalRun:
    return EvalRun(f"{family}-s{seed}", f"{set_name} set, family {family}, seed {seed}", seed,
                   family=family, set_name=set_name, baselines=False)


def _family_outcome(run: EvalRun, rows: list[GroupRow],
                    baseline: list[GroupRow] | None = None) -> RunOutcome:
    o = RunOutcome(run=run, events=1, accounts=1, simulate_seconds=1.0, replay_seconds=2.0)
    o.reports = {DETECTOR: Report(rows=rows)}
    if baseline is not None:
        o.reports["rate limit"] = Report(rows=baseline)
        o.baseline_titles = {"rate limit": "per-account rate limit (20/min)"}
    return o


def test_family_runs_are_held_to_the_family_targets() -> None:
    teams = _family_run("teams", 1, "tuning")
    framing, egress = _family_run("frame_card"), _family_run("egress")
    # exactly at every limit; one reseller account blocked (0.5% of 200)
    teams_rows = [_pop("campaign_burst", "attack", 100, 0.70, 0.7, 0.05, 3.0),
                  _pop("ordinary", "benign", 790, 0.0),
                  _pop("reseller", "benign", 200, 0.005, 0.005),
                  _pop("team_card", "benign", 10, 0.0),
                  _pop("all attack", "attack", 100, 0.90, 0.9, 0.10, 3.0),
                  _pop("all benign", "benign", 1000, 0.005, 0.001)]
    # one reseller account throttled, none blocked; a campaign at 69% acted; 11% before action
    framed_rows = [_pop("campaign_framing", "attack", 100, 0.69, 0.5, 0.02, 1.0),
                   _pop("ordinary", "benign", 800, 0.0),
                   _pop("reseller", "benign", 200, 0.005),
                   _pop("all attack", "attack", 100, 0.92, 0.5, 0.11, 1.0),
                   _pop("all benign", "benign", 1000, 0.001)]
    # a better baseline changes nothing: a family run's baselines are not checked
    idle = [_pop(r.group, r.label, r.accounts, 0.0) for r in teams_rows]
    result = EvaluationResult(runs=[teams, framing, egress], outcomes=[
        _family_outcome(teams, teams_rows, idle), _family_outcome(framing, framed_rows),
        _family_outcome(egress, framed_rows)], seconds=1.0, processes=1, model_version="mv")
    lines = {(ln.run, ln.population): ln for ln in summarise(result)}
    assert list(lines) == [(r, p) for r, c in (("teams-s1", "campaign_burst"),
                                              ("frame_card-s101", "campaign_framing"),
                                              ("egress-s101", "campaign_framing"))
                           for p in (c, "all attack", "all benign")]
    whats = {k: [c.what for c in ln.checks] for k, ln in lines.items()}
    failed = {k: {c.what: c.note for c in ln.checks if not c.ok} for k, ln in lines.items()}
    assert whats[("teams-s1", "campaign_burst")] == ["acted"]
    assert whats[("teams-s1", "all attack")] == ["acted", "before"]
    # one check per benign population present, on the "all benign" line
    assert whats[("teams-s1", "all benign")] == ["acted", "ordinary blocked", "reseller blocked",
                                                 "team_card blocked"]
    assert whats[("frame_card-s101", "all benign")] == [
        "acted", "benign acted (framing)", "ordinary blocked", "reseller blocked"]
    assert whats[("egress-s101", "all benign")] == ["acted", "ordinary blocked",
                                                    "reseller blocked"]
    assert failed[("teams-s1", "campaign_burst")] == {}  # 70% acted: met
    assert failed[("teams-s1", "all attack")] == {}  # 90% acted, 10% before: met
    assert failed[("teams-s1", "all benign")] == {"reseller blocked": "1 reseller account blocked"}
    assert failed[("frame_card-s101", "campaign_framing")] == {"acted": "acted 69.0% < 70%"}
    assert failed[("frame_card-s101", "all attack")] == {"before": "before 11.0% > 10%"}
    assert failed[("frame_card-s101", "all benign")] == {
        "benign acted (framing)": "1 benign account acted on (a framing family: none may be)"}
    assert failed[("egress-s101", "all benign")] == {}  # the same throttle: not a framing family
    assert lines[("teams-s1", "all benign")].set_name == "tuning"
    assert lines[("egress-s101", "all benign")].set_name == "held-out"
    # 89% of all campaign accounts acted on misses
    short = EvaluationResult(runs=[egress], outcomes=[_family_outcome(egress, [
        _pop("all attack", "attack", 100, 0.89, 0.5, 0.01, 1.0)])], seconds=1.0, processes=1,
        model_version="mv")
    (line,) = summarise(short)
    assert [c.note for c in line.checks if not c.ok] == ["acted 89.0% < 90%"]
    table = render_summary(result, list(lines.values()))
    rows = table.splitlines()
    assert rows.index("[tuning set]") < rows.index("[held-out set]")
    by_line = {(ln.split()[0], ln.split("|")[0].split(None, 1)[1].strip()): ln
               for ln in rows if ln.startswith(("teams", "frame", "egress"))}
    assert by_line[("frame_card-s101", "campaign_framing")].endswith(
        "| MISSED acted 69.0% < 70%")
    assert by_line[("frame_card-s101", "all benign")].endswith(
        "| MISSED 1 benign account acted on (a framing family: none may be)")
    assert by_line[("egress-s101", "all benign")].endswith("| ok")
    assert "| MISSED 1 reseller account blocked" in by_line[("teams-s1", "all benign")]
    assert "targets of a family run: each campaign acted >= 70%; all attack acted >= 90%, " \
           "before <= 10%; all benign acted <= 0.5% (none in a frame_* family)" in table
    assert "seed runs' campaigns" not in table  # no legacy run, no legacy legend
    checks = [c for ln in lines.values() for c in ln.checks]
    assert f"targets met: {sum(c.ok for c in checks)} of {len(checks)}" in table


# --- the population table of a set ------------------------------------------------------------


def _pooled_result() -> EvaluationResult:
    seed7 = EvalRun("seed7", "seed 7", 7)
    s1, s2 = _family_run("launch", 1, "tuning"), _family_run("launch", 2, "tuning")
    oss101, oss102 = _family_run("oss", 101), _family_run("oss", 102)
    outcomes = [
        _family_outcome(seed7, [
            _pop("campaign_hydra", "attack", 1460, 1.0, 1.0, 0.06, 30.0, requests=20_000),
            _pop("ordinary", "benign", 4000, 0.0, requests=100_000),
            _pop("all benign", "benign", 4000, 0.0, requests=100_000)]),
        _family_outcome(s1, [
            _pop("campaign_hydra", "attack", 100, 0.8, 0.5, 0.05, 10.0, requests=10_000),
            _pop("launch_wave", "benign", 1000, 0.002, 0.001, 0.99, 5.0, requests=5_000),
            _pop("ordinary", "benign", 2000, 0.0, requests=50_000),
            _pop("all benign", "benign", 3000, 2 / 3000, 1 / 3000, 0.999, 5.0,
                 requests=55_000)]),
        _family_outcome(s2, [
            _pop("campaign_hydra", "attack", 300, 0.9, 0.9, 0.09, 20.0, requests=30_000),
            _pop("launch_wave", "benign", 500, 0.004, 0.0, 0.99, 7.0, requests=2_000),
            _pop("ordinary", "benign", 1000, 0.0, requests=20_000),
            _pop("all benign", "benign", 1500, 2 / 1500, 0.0, 0.999, 7.0, requests=22_000)]),
        _family_outcome(oss101, [
            _pop("campaign_hydra", "attack", 200, 0.5, 0.5, 0.3, 40.0, requests=4_000),
            _pop("oss_tool", "benign", 500, 0.0, requests=30_000)]),
    ]
    # oss-s102 was planned and did not finish (an interrupted evaluation)
    return EvaluationResult(runs=[seed7, s1, s2, oss101, oss102], outcomes=outcomes,
                            seconds=9.0, processes=2, model_version="mv")


def test_a_set_pools_each_population_over_its_runs() -> None:
    result = _pooled_result()
    tuning = {p.group: p for p in pool_populations(result.outcomes[:3])}
    assert list(tuning) == ["campaign_hydra", "launch_wave", "ordinary", "all benign"]
    hydra = tuning["campaign_hydra"]
    assert (hydra.runs, hydra.accounts, hydra.acted, hydra.blocked) == (3, 1860, 1810, 1780)
    assert hydra.requests == 60_000
    # request-weighted: (6% of 20,000 + 5% of 10,000 + 9% of 30,000) / 60,000
    assert hydra.served_before_action_share == pytest.approx(4400 / 60_000)
    assert hydra.median_minutes == 20.0  # the median of the runs' medians 30, 10, 20
    assert (hydra.worst_run, hydra.worst_acted) == ("launch-s1", 0.8)  # the least acted on
    wave = tuning["launch_wave"]
    assert (wave.runs, wave.accounts, wave.acted, wave.blocked) == (2, 1500, 4, 1)
    assert wave.acted_share == pytest.approx(4 / 1500)
    assert wave.median_minutes == 6.0
    # launch-s2 acted on more of it (0.4%), but launch-s1 blocked one: blocks weigh first
    assert (wave.worst_run, wave.worst_acted, wave.worst_blocked) == ("launch-s1", 0.002, 0.001)
    ordinary = tuning["ordinary"]
    assert (ordinary.runs, ordinary.accounts, ordinary.acted) == (3, 7000, 0)
    assert ordinary.worst_run is None and ordinary.median_minutes is None
    assert ordinary.served_before_action_share == 1.0

    lines = summarise(result)
    sets = summarise_sets(result, lines)
    assert [st.name for st in sets] == ["tuning", "held-out"]
    tuning_set, held_out = sets
    assert [o.run.key for o in tuning_set.outcomes] == ["seed7", "launch-s1", "launch-s2"]
    assert [r.key for r in held_out.runs] == ["oss-s101", "oss-s102"]
    assert len(held_out.outcomes) == 1
    # each set's targets are its runs' checks, and the two sets hold them all
    assert len(tuning_set.checks) + len(held_out.checks) == sum(len(ln.checks) for ln in lines)
    assert all(c.run in ("seed7", "launch-s1", "launch-s2") for c in tuning_set.checks)
    assert held_out.seconds == 3.0  # simulate + replay of its finished run

    text = render_set(tuning_set)
    rows = text.splitlines()
    assert rows[0] == ("== tuning set: the default scenario (seed7) + 1 family (launch) at seeds "
                       "1, 2; 3 of 3 runs ==")
    by_group = {ln.split()[0]: ln.split() for ln in rows[3:] if ln and ln[0] != "-"
                and not ln.startswith(("accounts,", "targets"))}
    assert by_group["campaign_hydra"][:9] == ["campaign_hydra", "attack", "3", "1860", "97.3%",
                                              "95.7%", "7.3%", "7.3%", "20.0"]
    assert " ".join(by_group["campaign_hydra"][9:]) == "launch-s1 (acted 80.0%)"
    assert " ".join(by_group["launch_wave"][9:]) == "launch-s1 (acted 0.2%, blocked 0.1%)"
    assert by_group["ordinary"][-1] == "-"
    assert rows[-1] == f"targets met: {tuning_set.targets_met} of {len(tuning_set.checks)}"
    assert render_set(held_out).splitlines()[0] == (
        "== held-out set: 1 family (oss) at seeds 101, 102; 1 of 2 runs ==")
    totals = render_set_totals(sets).splitlines()
    assert totals == [
        (f"tuning set: targets met {tuning_set.targets_met} of {len(tuning_set.checks)}; 3 of 3 "
         "runs; 9 s of simulation and replay, summed over its runs"),
        (f"held-out set: targets met {held_out.targets_met} of {len(held_out.checks)}; 1 of 2 "
         "runs; 3 s of simulation and replay, summed over its runs")]


def test_out_writes_both_sets_tables(tmp_path: Path) -> None:
    result = _pooled_result()
    lines = summarise(result)
    json_path, csv_path, populations_path = write_outputs(result, lines, tmp_path)
    data = orjson.loads(json_path.read_bytes())
    assert list(data["sets"]) == ["tuning", "held-out"]
    held_out = data["sets"]["held-out"]
    assert held_out["runs"] == ["oss-s101"] and held_out["planned_runs"] == ["oss-s101",
                                                                            "oss-s102"]
    assert held_out["families"] == ["oss"] and held_out["seeds"] == [101, 102]
    assert [p["group"] for p in held_out["populations"]] == ["campaign_hydra", "oss_tool"]
    assert data["sets"]["tuning"]["targets"] + held_out["targets"] == data["targets"]
    assert [r["set"] for r in data["runs"]] == ["tuning"] * 3 + ["held-out"]
    with populations_path.open() as f:
        table = list(csv.DictReader(f))
    assert [(r["set"], r["population"]) for r in table] == [
        ("tuning", "campaign_hydra"), ("tuning", "launch_wave"), ("tuning", "ordinary"),
        ("tuning", "all benign"), ("held-out", "campaign_hydra"), ("held-out", "oss_tool")]
    assert float(table[0]["served_before_action"]) == pytest.approx(4400 / 60_000, abs=1e-6)
    assert table[0]["worst_run"] == "launch-s1" and table[2]["worst_run"] == ""
    with csv_path.open() as f:
        assert {r["set"] for r in csv.DictReader(f)} == {"tuning", "held-out"}


def test_the_time_left_counts_a_queued_family_run_as_long_as_other_family_runs() -> None:
    now = [0.0]
    seed7, a, b = EvalRun("seed7", "seed 7", 7), _family_run("oss"), _family_run("oss", 102)
    board = evaluate_mod.Board([seed7, a, b], 1, None, clock=lambda: now[0])
    board.message("seed7", "simulate", 0, 0.0)
    now[0] = 100.0
    board.finished(RunOutcome(run=seed7))
    assert board.seconds_left() == 200.0  # nothing of its kind known yet: as long as seed7
    board.message("oss-s101", "simulate", 0, 0.0)
    now[0] = 110.0
    board.finished(RunOutcome(run=a))
    assert board.seconds_left() == 10.0  # as long as the other family run, not the legacy one


# --- a held-out family, end to end ------------------------------------------------------------


@pytest.mark.slow
def test_evaluate_a_held_out_family_end_to_end(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["evaluate", "--sets", "held-out", "--families", "frame_card",
                 "--family-scale", "0.05", "--jobs", "1", "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    keys = [f"frame_card-s{s}" for s in HELD_OUT_SEEDS]
    for key, seed in zip(keys, HELD_OUT_SEEDS, strict=True):  # each run's population table
        assert f"== {key}: held-out set, family frame_card, seed {seed} (" in out
    assert "[held-out set]" in out and "tuning set" not in out
    seeds = ", ".join(map(str, HELD_OUT_SEEDS))
    assert f"== held-out set: 1 family (frame_card) at seeds {seeds}; 2 of 2 runs ==" in out
    data = orjson.loads((tmp_path / "evaluation.json").read_bytes())
    assert [r["key"] for r in data["runs"]] == keys
    assert all(set(r["reports"]) == {DETECTOR} for r in data["runs"])  # no baselines
    st = data["sets"]["held-out"]
    assert list(data["sets"]) == ["held-out"] and st["runs"] == keys
    assert st["targets"] == data["targets"]
    assert st["targets_met"] == sum(c["ok"] for ln in data["lines"] for c in ln["checks"])
    assert f"targets met: {st['targets_met']} of {st['targets']}" in out
    assert f"held-out set: targets met {st['targets_met']} of {st['targets']}; 2 of 2 runs" in out
    reports = {r["key"]: {row["group"]: row for row in r["reports"][DETECTOR]["rows"]}
               for r in data["runs"]}
    for line in data["lines"]:  # the family targets, computed from the run's numbers
        rows = reports[line["run"]]
        whats = [c["what"] for c in line["checks"]]
        if line["population"] == "all benign":
            benign = sorted(g for g, r in rows.items()
                            if r["label"] == "benign" and not g.startswith("all "))
            assert whats == ["acted", "benign acted (framing)", *(f"{g} blocked" for g in benign)]
        elif line["population"] == "all attack":
            assert whats == ["acted", "before"]
        else:
            assert line["population"] == "campaign_framing" and whats == ["acted"]
        for c in line["checks"]:
            v, lim = c["value"], c["limit"]
            assert c["ok"] == (v is not None and (v >= lim if c["op"] == ">=" else v <= lim))
            if c["what"] == "acted":
                assert v == rows[line["population"]]["acted_share"]
    with (tmp_path / "populations.csv").open() as f:
        pooled = {r["population"]: r for r in csv.DictReader(f)}
    assert set(pooled) == set(reports[keys[0]]) | set(reports[keys[1]])
    for group, row in pooled.items():
        assert row["set"] == "held-out"
        assert int(row["accounts"]) == sum(r[group]["accounts"] for r in reports.values()
                                           if group in r)


# --- Ctrl-C -----------------------------------------------------------------------------------


def test_ctrl_c_stops_the_pool_cleanly_and_removes_the_traffic(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLGUARD_")}
    env["TMPDIR"] = str(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "distillguard", "evaluate", "--small", "--jobs", "1"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509
    try:
        assert proc.stderr is not None
        seen = b""
        while b"simulating" not in seen:  # a worker is at work
            line = proc.stderr.readline()
            assert line, seen.decode()
            seen += line
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = seen + stderr
    assert proc.returncode == 130, stderr.decode()
    assert b"Traceback" not in stderr
    assert b"evaluate: interrupted;" in stderr
    assert b"runs finished" in stdout or b"no run finished" in stdout
    assert not list(tmp_path.glob("distillguard-evaluate-*")), "the simulated traffic is removed"
