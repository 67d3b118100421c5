"""Parameter sweeps: the core over the same traffic once per setting, each run scored on labels.

    distillguard sweep --input events.jsonl --labels labels.jsonl \\
        --grid block_score=0.8,0.85,0.9 --grid window_s=180,300 --out sweep/

    grid (names checked against DetectorConfig) ─▶ one DetectorConfig per point (+ the current
    setting when the grid misses it) ─▶ a process pool, one replay per run, as many processes
    as cores ─▶ per run: the evaluation's headline numbers and the decisions file
    ─▶ sweep/sweep.csv, sweep/sweep.png, a table on the terminal, sweep/runs/run-NN.jsonl

A topic range is read once (in the replay's deterministic merge order) into
sweep/events.jsonl, so every run sees exactly the same sequence of events.

The plot puts benign accounts hit (throttled or blocked at least once, as a share of benign
accounts) on x and campaign requests served (the share of campaign requests the gateway would
still have served) on y: both are harm, so lower-left is better. The current setting is marked.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from distillguard.models.config import DetectorConfig
from distillguard.models.evaluation import GroupRow, Report
from distillguard.streams.offline.process_pool import WorkerDied, WorkerWatch
from distillguard.streams.offline.replay import Labels, check_labels_match, replay_file
from distillguard.streams.offline.replay_source import ReplayError

# Tunables that change how decisions are published, not which are made.
NOT_SWEEPABLE = {"shadow": "shadow only marks decisions, it does not change them"}


@dataclass(frozen=True)
class SweepRun:
    index: int
    params: dict[str, Any]  # the swept names and their values in this run
    current: bool  # the setting the fleet runs now (the base settings)

    @property
    def name(self) -> str:
        return f"run-{self.index:02d}"

    def label(self) -> str:
        return " ".join(f"{k}={_fmt(v)}" for k, v in self.params.items())


@dataclass
class RunScore:
    run: SweepRun
    model_version: str = ""
    events: int = 0
    decisions: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    benign_accounts: int = 0
    benign_hit_share: float | None = None
    benign_blocked_share: float | None = None
    benign_denied_requests: int = 0
    attack_accounts: int = 0
    attack_acted_share: float | None = None
    attack_blocked_share: float | None = None
    attack_served_share: float | None = None
    attack_median_minutes: float | None = None
    decisions_file: str = ""


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


# --------------------------------------------------------------------------- the grid


def parse_grid(items: Iterable[str]) -> dict[str, list[str]]:
    """`name=v1,v2` items -> {name: [raw values]}; names checked against DetectorConfig."""
    known = DetectorConfig.field_names()
    grid: dict[str, list[str]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip()
        if not sep or not name or not values.strip():
            raise ReplayError(f"--grid {item!r}: write NAME=V1,V2,... "
                              "(e.g. --grid block_score=0.8,0.85,0.9)")
        if name in NOT_SWEEPABLE:
            raise ReplayError(f"--grid {name}: {NOT_SWEEPABLE[name]}")
        if name not in known:
            import difflib

            near = difflib.get_close_matches(name, sorted(known), n=3)
            hint = f"; did you mean {' or '.join(near)}?" if near else ""
            raise ReplayError(f"--grid {name}: not a detector setting{hint} (known: "
                              f"{', '.join(sorted(known - set(NOT_SWEEPABLE)))})")
        if name in grid:
            raise ReplayError(f"--grid {name} is given twice; list all its values in one --grid")
        raw = [v.strip() for v in values.split(",") if v.strip()]
        if len(set(raw)) != len(raw):
            raise ReplayError(f"--grid {name}: a value is repeated in {values!r}")
        grid[name] = raw
    if not grid:
        raise ReplayError("a sweep needs at least one --grid NAME=V1,V2,...")
    return grid


def grid_runs(grid: dict[str, list[str]], base: DetectorConfig
              ) -> list[tuple[SweepRun, DetectorConfig]]:
    """Every point of the grid as a config over `base`, plus `base` itself if it is missed."""
    from distillguard.streams.edge.settings import SettingsError, checked_detector

    names = list(grid)
    current_values = tuple(getattr(base, n) for n in names)
    out: list[tuple[SweepRun, DetectorConfig]] = []
    seen: set[tuple[Any, ...]] = set()
    for combo in itertools.product(*(grid[n] for n in names)):
        try:
            cfg = checked_detector(dict(zip(names, combo, strict=True)), "--grid", base)
        except SettingsError as exc:
            raise ReplayError(str(exc)) from None
        values = tuple(getattr(cfg, n) for n in names)
        if values in seen:
            raise ReplayError(f"--grid: {dict(zip(names, combo, strict=True))} repeats another "
                              "point (the same value written twice?)")
        seen.add(values)
        run = SweepRun(len(out) + 1, dict(zip(names, values, strict=True)),
                       values == current_values)
        out.append((run, cfg))
    if current_values not in seen:
        out.append((SweepRun(len(out) + 1, dict(zip(names, current_values, strict=True)), True),
                    base))
    return out


# --------------------------------------------------------------------------- one run


def _row(report: Report, group: str) -> GroupRow | None:
    return next((r for r in report.rows if r.group == group), None)


def score_run(run: SweepRun, cfg: DetectorConfig, input_path: Path, labels: Labels,
              partitions: int, decisions_path: Path | None) -> RunScore:
    """One replay with `cfg`, scored on `labels` (runs in a worker process)."""
    result = replay_file(input_path, decisions_path, cfg, labels=labels, partitions=partitions)
    score = RunScore(run=run, model_version=cfg.model_version, events=result.events,
                     decisions=result.decisions, actions=dict(result.actions),
                     seconds=result.seconds,
                     decisions_file=str(decisions_path) if decisions_path else "")
    report = result.report
    assert report is not None
    benign, attack = _row(report, "all benign"), _row(report, "all attack")
    if benign is not None:
        score.benign_accounts = benign.accounts
        score.benign_hit_share = benign.acted_share
        score.benign_blocked_share = benign.blocked_share
        score.benign_denied_requests = benign.denied_requests
    if attack is not None:
        score.attack_accounts = attack.accounts
        score.attack_acted_share = attack.acted_share
        score.attack_blocked_share = attack.blocked_share
        score.attack_served_share = attack.served_share
        score.attack_median_minutes = attack.median_minutes_to_action
    return score


_WORKER: dict[str, Any] = {}


def _init_worker(input_path: Path, labels: Labels, partitions: int) -> None:
    # The parent handles Ctrl-C and terminates the pool; workers must not each print a trace.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER.update(input_path=input_path, labels=labels, partitions=partitions)


def _run_in_worker(job: tuple[SweepRun, DetectorConfig, Path | None]) -> RunScore:
    run, cfg, decisions_path = job
    return score_run(run, cfg, _WORKER["input_path"], _WORKER["labels"],
                     _WORKER["partitions"], decisions_path)


# --------------------------------------------------------------------------- the sweep


@dataclass
class SweepResult:
    names: list[str]
    scores: list[RunScore]
    total_runs: int
    seconds: float
    interrupted: bool = False


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_sweep(input_path: Path, labels: Labels, grid: dict[str, list[str]],
              base: DetectorConfig, *, partitions: int, out_dir: Path | None,
              jobs: int | None = None, stream: IO[str] | None = sys.stderr) -> SweepResult:
    """Every run of the grid over `input_path`, `jobs` processes at a time (default: cores)."""
    if not input_path.is_file():
        raise ReplayError(f"input file {input_path} does not exist")
    runs = grid_runs(grid, base)
    check_labels_match(input_path, labels)
    if out_dir is not None:
        (out_dir / "runs").mkdir(parents=True, exist_ok=True)
    jobs_list = [(run, cfg, out_dir / "runs" / f"{run.name}.jsonl" if out_dir else None)
                 for run, cfg in runs]
    processes = max(1, min(jobs or default_jobs(), len(runs)))
    started = time.monotonic()
    scores: list[RunScore] = []
    interrupted = False

    def say(text: str) -> None:
        if stream is not None:
            stream.write(text + "\n")
            stream.flush()

    say(f"sweep: {len(runs)} runs over {input_path} on {processes} processes")
    # spawn: a clean interpreter per worker (no inherited Kafka clients or threads)
    ctx = multiprocessing.get_context("spawn")
    pool = ctx.Pool(processes, initializer=_init_worker,
                    initargs=(input_path, labels, partitions))
    watch = WorkerWatch()  # at once: it takes the pool's workers as started
    try:
        results = pool.imap_unordered(_run_in_worker, jobs_list)
        while len(scores) < len(jobs_list):
            try:
                score = results.next(timeout=0.5)
            except multiprocessing.TimeoutError:
                watch.check()
                continue
            scores.append(score)
            elapsed = time.monotonic() - started
            left = elapsed / len(scores) * (len(runs) - len(scores))
            say(f"sweep: {len(scores)}/{len(runs)} runs done ({score.run.name} "
                f"{score.run.label()}: {score.events:,} events in {score.seconds:.1f} s), "
                f"{elapsed:,.0f} s elapsed, ~{left:,.0f} s left")
        pool.close()
    except KeyboardInterrupt:
        interrupted = True
        pool.terminate()
        say(f"sweep: interrupted; {len(scores)} of {len(runs)} runs finished")
    except WorkerDied as exc:
        pool.terminate()
        raise WorkerDied(f"{exc}; {len(scores)} of {len(runs)} runs finished") from None
    except ReplayError:
        pool.terminate()
        raise
    finally:
        pool.join()
    scores.sort(key=lambda s: s.run.index)
    return SweepResult(names=list(grid), scores=scores, total_runs=len(runs),
                       seconds=time.monotonic() - started, interrupted=interrupted)


# --------------------------------------------------------------------------- output

CSV_FIELDS = ["run", "current", "model_version", "events", "decisions", "throttle", "block",
              "allow", "benign_accounts", "benign_hit_share", "benign_blocked_share",
              "benign_denied_requests", "attack_accounts", "attack_acted_share",
              "attack_blocked_share", "attack_served_share", "attack_median_minutes",
              "seconds", "decisions_file"]


def _csv_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return round(v, 6)
    return v


def write_csv(result: SweepResult, path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*result.names, *CSV_FIELDS])
        for s in result.scores:
            row = {"run": s.run.name, "current": int(s.run.current),
                   "model_version": s.model_version, "events": s.events,
                   "decisions": s.decisions, "throttle": s.actions.get("throttle", 0),
                   "block": s.actions.get("block", 0), "allow": s.actions.get("allow", 0),
                   **{k: getattr(s, k) for k in CSV_FIELDS if hasattr(s, k)}}
            writer.writerow([*(s.run.params[n] for n in result.names),
                             *(_csv_value(row.get(k)) for k in CSV_FIELDS)])


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.1%}"


def render_table(result: SweepResult) -> str:
    params = [[_fmt(s.run.params[n]) for n in result.names] for s in result.scores]
    widths = [max([len(n), *(len(p[i]) for p in params)]) for i, n in enumerate(result.names)]
    head = ("  run    " + " ".join(f"{n:>{w}}" for n, w in zip(result.names, widths, strict=True))
            + f" {'benign hit':>10} {'benign denied':>13} {'attack acted':>12} "
              f"{'attack served':>13} {'median min':>10} {'decisions':>9}")
    lines = [head, "-" * len(head)]
    for s, p in zip(result.scores, params, strict=True):
        med = "-" if s.attack_median_minutes is None else f"{s.attack_median_minutes:.1f}"
        lines.append(f"{'*' if s.run.current else ' '} {s.run.name} "
                     + " ".join(f"{v:>{w}}" for v, w in zip(p, widths, strict=True))
                     + f" {_pct(s.benign_hit_share):>10} {s.benign_denied_requests:>13,} "
                       f"{_pct(s.attack_acted_share):>12} {_pct(s.attack_served_share):>13} "
                       f"{med:>10} {s.decisions:>9,}")
    lines.append("* the current setting.  benign hit: benign accounts throttled or blocked at "
                 "least once; attack served: campaign requests the gateway still served.")
    return "\n".join(lines)


def plot(result: SweepResult, path: Path, title: str = "") -> None:
    """Benign accounts hit (x) against campaign requests served (y), one point per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [s for s in result.scores
              if s.benign_hit_share is not None and s.attack_served_share is not None]
    fig, ax = plt.subplots(figsize=(8, 6), dpi=100)
    others = [s for s in points if not s.run.current]
    current = [s for s in points if s.run.current]
    ax.scatter([100 * s.benign_hit_share for s in others],  # type: ignore[operator]
               [100 * s.attack_served_share for s in others],  # type: ignore[operator]
               s=36, color="tab:blue", label="grid settings", zorder=2)
    ax.scatter([100 * s.benign_hit_share for s in current],  # type: ignore[operator]
               [100 * s.attack_served_share for s in current],  # type: ignore[operator]
               s=220, marker="*", color="tab:red", edgecolor="black", zorder=3,
               label="current setting")
    # Both axes start at 0 (no harm) and end a little past the worst run, so close settings
    # are told apart; at least 1% wide.
    xmax = max(1.0, 1.2 * max([100 * s.benign_hit_share for s in points] or [0.0]))  # type: ignore[operator]
    ymax = min(105.0, max(1.0, 1.2 * max([100 * s.attack_served_share  # type: ignore[operator]
                                          for s in points] or [0.0])))
    ax.set_xlim(0, xmax)
    ax.set_ylim(0, ymax)
    # Points are labelled with their run numbers; runs within 2% of the axes of each other share
    # one label, so close settings stay readable. The key to the numbers is in the box / table.
    groups: list[tuple[float, float, list[RunScore]]] = []
    for s in sorted(points, key=lambda s: s.run.index):
        x, y = 100 * s.benign_hit_share, 100 * s.attack_served_share  # type: ignore[operator]
        for gx, gy, members in groups:
            if abs(gx - x) <= 0.03 * xmax and abs(gy - y) <= 0.03 * ymax:
                members.append(s)
                break
        else:
            groups.append((x, y, [s]))
    for x, y, members in groups:
        ax.annotate(", ".join(m.run.name.removeprefix("run-") for m in members), (x, y),
                    textcoords="offset points", xytext=(7, 5), fontsize=8)
    if len(points) <= 16:
        key = "\n".join(f"{s.run.name.removeprefix('run-')}: {s.run.label()}"
                        + ("  (current)" if s.run.current else "") for s in points)
        ax.text(0.98, 0.97, key, transform=ax.transAxes, ha="right", va="top", fontsize=7,
                multialignment="left",
                family="monospace", bbox={"boxstyle": "round", "facecolor": "white",
                                          "alpha": 0.85})
    ax.set_xlabel("benign accounts hit (throttled or blocked), % of benign accounts")
    ax.set_ylabel("campaign requests served, % of campaign requests")
    ax.set_title(title or f"sweep over {', '.join(result.names)} (lower left is better)\n"
                          "points: run numbers of the table (sweep.csv)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def write_outputs(result: SweepResult, out_dir: Path) -> tuple[Path, Path]:
    csv_path, png_path = out_dir / "sweep.csv", out_dir / "sweep.png"
    write_csv(result, csv_path)
    plot(result, png_path)
    (out_dir / "sweep.json").write_bytes(orjson.dumps(
        {"names": result.names, "runs": [dataclasses.asdict(s) for s in result.scores],
         "total_runs": result.total_runs, "interrupted": result.interrupted},
        option=orjson.OPT_INDENT_2))
    return csv_path, png_path
