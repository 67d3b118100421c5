"""`distillguard evaluate`: every run (seeds and robustness variants) replayed with both
baselines in processes, a summary line per (run, campaign) and per run "all benign", each checked
against the targets from the computed numbers; Ctrl-C stops cleanly."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from models.evaluation import GroupRow, Report
from streams.cli import main
from streams.evaluate import (
    DETECTOR,
    MAX_RECALL_DROP_POINTS,
    EvalRun,
    EvaluationResult,
    RunOutcome,
    plan_runs,
    render_summary,
    summarise,
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
        code = main(["evaluate", "--small", "--jobs", "2", "--out", str(out)])
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
])
def test_evaluate_mistakes_are_one_line_errors(args: list[str], message: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--small", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


# --- Ctrl-C -----------------------------------------------------------------------------------


def test_ctrl_c_stops_the_pool_cleanly_and_removes_the_traffic(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLGUARD_")}
    env["TMPDIR"] = str(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "evaluate", "--small", "--jobs", "1"],
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
