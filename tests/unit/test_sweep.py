"""Sweeps (grid validation, runs in processes, table/CSV/PNG with the current setting marked)
and the diff of two runs by account."""

from __future__ import annotations

import csv
from pathlib import Path

import orjson
import pytest

from distillguard.models.config import DetectorConfig
from distillguard.simulator import Scenario, write_files
from distillguard.streams.cli.main import main
from distillguard.streams.offline.diff import diff_runs, render_diff, summarise
from distillguard.streams.offline.replay import load_labels
from distillguard.streams.offline.replay_source import ReplayError
from distillguard.streams.offline.sweep import (
    grid_runs,
    parse_grid,
    render_table,
    run_sweep,
    write_outputs,
)

BASE = DetectorConfig()


@pytest.fixture(autouse=True)
def _no_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("DISTILLGUARD_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("small")
    write_files(Scenario.small(), out)
    return out


# --- the grid ---------------------------------------------------------------------------------


def test_grid_points_and_the_current_setting() -> None:
    grid = parse_grid(["block_score=0.8,0.9", "window_s=180,300"])
    runs = grid_runs(grid, BASE)
    # 4 grid points; the current block_score (0.85) is not among them: a 5th run, marked
    assert [r.params for r, _ in runs] == [
        {"block_score": 0.8, "window_s": 180}, {"block_score": 0.8, "window_s": 300},
        {"block_score": 0.9, "window_s": 180}, {"block_score": 0.9, "window_s": 300},
        {"block_score": BASE.block_score, "window_s": BASE.window_s}]
    assert [r.current for r, _ in runs] == [False] * 4 + [True]
    assert all(cfg.block_score == r.params["block_score"] and cfg.window_s == r.params["window_s"]
               for r, cfg in runs)
    assert isinstance(runs[0][1].window_s, int)
    # a grid that contains the current setting marks that point, no extra run
    runs = grid_runs(parse_grid([f"block_score=0.8,{BASE.block_score}"]), BASE)
    assert [r.current for r, _ in runs] == [False, True]


@pytest.mark.parametrize(("items", "match"), [
    (["block_scor=0.8"], "not a detector setting; did you mean block_score"),
    (["nonsense=1"], "not a detector setting"),
    (["block_score"], "NAME=V1,V2"),
    (["block_score="], "NAME=V1,V2"),
    (["block_score=0.8", "block_score=0.9"], "given twice"),
    (["block_score=0.8,0.8"], "repeated"),
    (["shadow=true,false"], "does not change"),
    ([], "at least one --grid"),
])
def test_bad_grids_are_clear_errors(items: list[str], match: str) -> None:
    with pytest.raises(ReplayError, match=match):
        parse_grid(items)


@pytest.mark.parametrize(("item", "match"), [
    ("window_s=abc", "window_s"),
    ("block_score=1.5", "block_score"),
])
def test_grid_values_are_converted_and_checked_like_settings(item: str, match: str) -> None:
    with pytest.raises(ReplayError, match=match):
        grid_runs(parse_grid([item]), BASE)


# --- a sweep ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def swept(files: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("sweep")
    labels = load_labels(files / "labels.jsonl")
    result = run_sweep(files / "events.jsonl", labels,
                       parse_grid(["throttle_score=0.5,0.8"]), BASE, partitions=12,
                       out_dir=out, jobs=2, stream=None)
    return result, out


@pytest.mark.slow
def test_sweep_scores_every_run_and_writes_table_csv_plot(swept) -> None:  # type: ignore[no-untyped-def]
    result, out = swept
    assert [s.run.params["throttle_score"] for s in result.scores] == [0.5, 0.8,
                                                                        BASE.throttle_score]
    assert not result.interrupted and result.total_runs == 3
    for s in result.scores:
        assert s.events > 5000 and s.attack_served_share is not None
        assert s.benign_hit_share is not None and Path(s.decisions_file).is_file()
    loose, strict, _current = result.scores
    # a throttle score of 0.8 acts on no more campaign accounts than 0.5 (on the small scenario
    # nearly every campaign account's evidence now clears both)
    assert strict.attack_acted_share <= loose.attack_acted_share
    assert strict.attack_served_share >= loose.attack_served_share
    csv_path, png_path = write_outputs(result, out)
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["throttle_score"] for r in rows] == ["0.5", "0.8", str(BASE.throttle_score)]
    assert [r["current"] for r in rows] == ["0", "0", "1"]
    assert {"benign_hit_share", "attack_served_share", "model_version"} <= set(rows[0])
    assert rows[2]["model_version"] == BASE.model_version
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png_path.stat().st_size > 10_000
    table = render_table(result)
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["run", "throttle_score"]
    assert [ln[0] for ln in lines[2:5]] == [" ", " ", "*"]  # the current setting is marked
    assert "benign hit" in lines[0] and "attack served" in lines[0]


@pytest.mark.slow
def test_a_sweeps_runs_equal_single_replays(swept, files: Path) -> None:  # type: ignore[no-untyped-def]
    # the run with the current setting is the plain replay, decision for decision
    result, out = swept
    from distillguard.streams.offline.replay import replay_file

    plain = out / "plain.jsonl"
    replay_file(files / "events.jsonl", plain, BASE)
    current = next(s for s in result.scores if s.run.current)
    ids = [orjson.loads(x)["decision_id"] for x in Path(current.decisions_file).read_bytes()
           .splitlines()]
    assert ids == [orjson.loads(x)["decision_id"] for x in plain.read_bytes().splitlines()]


def test_sweep_with_labels_that_match_no_account_stops_before_running(files: Path,
                                                                      tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="match no account"):
        run_sweep(files / "events.jsonl", {"someone-else": ("attack", "x")},
                  parse_grid(["block_score=0.9"]), BASE, partitions=12, out_dir=tmp_path,
                  stream=None)


@pytest.mark.slow
def test_sweep_cli(files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sw"
    code = main(["sweep", "--input", str(files / "events.jsonl"), "--labels",
                 str(files / "labels.jsonl"), "--grid", f"block_score={BASE.block_score},0.95",
                 "--out", str(out), "--jobs", "2"])
    assert code == 0
    text = capsys.readouterr().out
    assert "* run-01" in text and "2 of 2 runs" in text
    assert (out / "sweep.csv").is_file() and (out / "sweep.png").is_file()
    assert (out / "runs" / "run-02.jsonl").is_file()
    code = main(["sweep", "--input", str(files / "events.jsonl"), "--labels",
                 str(files / "labels.jsonl"), "--grid", "window=60", "--out", str(out)])
    assert code == 2
    assert "window: not a detector setting; did you mean window_s" in capsys.readouterr().err


# --- diff -------------------------------------------------------------------------------------


def _decision(account: str, action: str, n: int, clusters: list[str] | None = None,
              mv: str = "mv-a") -> dict:
    return {"decision_id": f"dg-{account}-{action}-{n}-{mv}", "account_id": account,
            "action": action, "score": 0.5 + n / 10, "event_ts": 1_767_225_600.0 + n,
            "ttl_s": 600, "rate_limit_rpm": None, "cluster_ids": clusters or [],
            "reasons": [f"score -> {action}", *(f"cluster {c} ..." for c in clusters or [])],
            "model_version": mv, "mode": "enforce", "ts": 0.0}


def _write(path: Path, decisions: list[dict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in decisions))
    return path


def test_summarise_strongest_and_final() -> None:
    run = summarise([_decision("a", "throttle", 1, ["ip:1"]), _decision("a", "block", 2, ["pay:x"]),
                     _decision("a", "allow", 3)])
    assert (run.strongest, run.final, run.decisions) == ("block", "allow", 3)
    assert run.cluster_ids == ["pay:x"] and run.reasons == ["score -> block", "cluster pay:x ..."]


def test_diff_lists_accounts_that_change_with_their_evidence(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.jsonl", [
        _decision("same", "throttle", 1, ["tpl:0:aa"]),
        _decision("up", "throttle", 1, ["tpl:0:aa"]),
        _decision("gone", "block", 2, ["pay:x", "tpl:0:aa"]),
        _decision("lifted", "throttle", 1), _decision("lifted", "allow", 2)])
    b = _write(tmp_path / "b.jsonl", [
        _decision("same", "throttle", 1, ["tpl:0:aa"]),
        _decision("up", "throttle", 1, ["tpl:0:aa"]), _decision("up", "block", 2, ["pay:y"]),
        _decision("lifted", "throttle", 1),
        _decision("new", "throttle", 4, ["ip:10.0.0.0/24"])])
    diff = diff_runs(a, b, labels={"gone": ("benign", "nat")})
    assert diff.same_ids == 1  # "same"
    changed = {c.account_id: c for c in diff.changes}
    assert set(changed) == {"gone", "up", "lifted", "new"}
    assert diff.changes[0].account_id == "gone"  # block -> no decision: the largest change
    assert (changed["gone"].a.strongest, changed["gone"].b.strongest) == ("block", "-")
    assert changed["gone"].label == "benign/nat"
    assert changed["up"].b.cluster_ids == ["pay:y"]
    assert (changed["lifted"].a.final, changed["lifted"].b.final) == ("allow", "throttle")
    assert diff.matrix[("throttle", "throttle")] == 2 and diff.matrix[("-", "throttle")] == 1
    text = render_diff(diff)
    assert "gone  [benign/nat]: block -> -" in text
    assert "cluster pay:x ..." in text and "no decision: allowed throughout" in text


def test_diff_cli_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _write(tmp_path / "a.jsonl", [_decision("x", "block", 1, ["pay:x"])])
    b = _write(tmp_path / "b.jsonl", [_decision("x", "throttle", 1, ["pay:x"], mv="mv-b")])
    assert main(["diff", str(a), str(b), "--csv", str(tmp_path / "d.csv")]) == 0
    out = capsys.readouterr().out
    assert "x: block -> throttle" in out and "differ between settings" in out
    rows = list(csv.DictReader((tmp_path / "d.csv").open()))
    assert rows[0]["a_strongest"] == "block" and rows[0]["b_clusters"] == "pay:x"
    assert main(["diff", str(a), str(tmp_path / "nope.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "bad.jsonl").write_text('{"account_id": "x"}\n')
    assert main(["diff", str(a), str(tmp_path / "bad.jsonl")]) == 2
    assert "bad.jsonl:1: not an enforcement decision" in capsys.readouterr().err
