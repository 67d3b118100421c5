"""`distillguard evaluate`: the whole detection-quality report in one command.

    runs: two scenario sets (streams/offline/scenario_sets.py names them)
      tuning    the legacy runs: the default scenario (seeds 7 and 11) and three robustness
                variants of seed 7 (campaigns over 10x the accounts, +-50% campaign timing
                jitter, a new IP on every campaign request); + every tuning family at the
                tuning seeds (streams/offline/scenario_sets.py)
      held-out  every scenario family at the held-out seeds
      ─▶ a process pool, one run per process, as many processes as cores
         per run: simulator.write_files to a temp dir ─▶ streams.offline.replay.replay with the labels
         (and, on the legacy runs or with --baselines, the baselines) ─▶ reports
      ─▶ per run the population table; a summary with one line per (run, campaign), per family
         run "all attack", and per run "all benign", each line checked against the targets
         (ok / MISSED); per set a population table pooled over its runs, and its targets met

The targets are checked on the computed numbers, never assumed. The legacy runs keep theirs
(`CAMPAIGN_TARGETS`, `BENIGN_TARGETS`, `MAX_RECALL_DROP_POINTS`): a campaign of a seed run is
held to its per-campaign targets (accounts acted on, requests served before the first action,
median minutes to it); a campaign of a robustness run only to its recall drop against that seed
(the robustness targets ask that recall holds when the campaigns change shape, not that every
target is met again). Every legacy run's benign line is held to the benign targets, and every
line must beat both baselines. "Beats a baseline" on a campaign line: serves a smaller share of
the campaign's requests in all, throttle allowance included (on a tie: acts on a larger share of
its accounts); on the benign line: acts on and blocks no larger a share of benign accounts.

A family run is held to the family targets (`FAMILY_*`): no account of any benign population
blocked; all benign accounts acted on <= 0.5%, and none at all in a framing family (whose few
harvesters copy a benign crowd's shared key, so a cluster on that key holds both); each
campaign acted on >= 70% of its accounts; all campaign accounts together >= 90% acted on, with
<= 10% of their requests served before action. Its baselines, when replayed (--baselines), are
shown beside it but not checked.

Progress goes to stderr (which run, events done, time left); Ctrl-C stops the pool cleanly and
prints what finished.
"""

from __future__ import annotations

import csv
import dataclasses
import multiprocessing
import multiprocessing.queues
import queue as queue_mod
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from distillguard.models.config import DetectorConfig
from distillguard.models.evaluation import GroupRow, Report, render
from distillguard.streams.offline.process_pool import WorkerDied, WorkerWatch
from distillguard.streams.offline.replay import Progress, load_labels, replay
from distillguard.streams.offline.replay_source import FileSource, ReplayError
from distillguard.streams.offline.scenario_sets import (
    LEGACY,
    SETS,
    TUNING,
    family_run_key,
    family_runs,
)
from distillguard.streams.offline.sweep import default_jobs

DETECTOR = "distillguard"

# Per campaign of a seed run: (figure, comparison, limit). Figures: acted / blocked (shares of
# accounts), before (share of requests served before the account's first action: the target's
# "served before action"), served (share served in all, throttle allowance included), median
# (minutes to first action). A campaign not listed gets DEFAULT_CAMPAIGN_TARGETS.
CAMPAIGN_TARGETS: dict[str, list[tuple[str, str, float]]] = {
    "campaign_burst": [("acted", ">=", 0.95), ("before", "<=", 0.05), ("median", "<=", 10.0)],
    "campaign_cot": [("acted", ">=", 0.95), ("before", "<=", 0.10)],
    "campaign_hydra": [("acted", ">=", 0.95), ("before", "<=", 0.10), ("median", "<=", 60.0)],
    "campaign_stealth": [("acted", ">=", 0.70), ("before", "<=", 0.10)],
}
DEFAULT_CAMPAIGN_TARGETS: list[tuple[str, str, float]] = [("acted", ">=", 0.95),
                                                          ("before", "<=", 0.10)]
# On "all benign": accounts blocked at least once, accounts throttled or blocked at least once.
BENIGN_TARGETS: list[tuple[str, str, float]] = [("blocked", "<=", 0.001), ("acted", "<=", 0.005)]
# Benign populations of which not a single account may be blocked.
NEVER_BLOCKED = ("enterprise", "nat", "launch_wave", "researchers")
# Campaign recall (acted share) of a robustness run against its seed, in points: the only
# campaign target of a robustness run.
MAX_RECALL_DROP_POINTS = 5.0

VARIANTS = ("accounts", "jitter", "ip")

# The targets of a family run (docs/tuning.md, "Held-out evaluation"). Each campaign population:
FAMILY_CAMPAIGN_TARGETS: list[tuple[str, str, float]] = [("acted", ">=", 0.70)]
# All the run's campaign accounts together ("all attack"): acted on, served before action.
FAMILY_ALL_ATTACK_TARGETS: list[tuple[str, str, float]] = [("acted", ">=", 0.90),
                                                           ("before", "<=", 0.10)]
# All the run's benign accounts ("all benign"); besides, no account of any benign population
# present may be blocked.
FAMILY_BENIGN_TARGETS: list[tuple[str, str, float]] = [("acted", "<=", 0.005)]
# A framing family's few harvesters copy one benign crowd's shared key, so a cluster on that
# key holds both: acting on the crowd for them is the very failure the family is there to show,
# so not one benign account may be acted on.
FRAMING_PREFIX = "frame_"


# --------------------------------------------------------------------------- the runs


@dataclass(frozen=True)
class EvalRun:
    key: str  # short name in the tables
    title: str
    seed: int
    account_multiplier: float | None = None
    jitter: float | None = None
    rotate_ip: bool = False
    # A robustness run: the seed run whose campaign recall it must keep (recall drop); None for
    # a seed run, whose campaigns are held to CAMPAIGN_TARGETS instead.
    base: str | None = None
    # A family run: the family (simulator.families) whose scenario at `seed` it replays, held
    # to the FAMILY_* targets; None for the legacy runs (the default scenario and its variants).
    family: str | None = None
    set_name: str = TUNING  # the scenario set it belongs to (streams/offline/scenario_sets.py)
    baselines: bool = True  # replay the two baselines beside it (they double the replay time)

    @property
    def framing(self) -> bool:
        return self.family is not None and self.family.startswith(FRAMING_PREFIX)


@dataclass(frozen=True)
class ScenarioOptions:
    # the legacy runs' scenario
    small: bool = False
    scale: float | None = None
    hours: float | None = None
    # the family runs' scale: multiplies every population's accounts (tests: ~0.05)
    family_scale: float = 1.0


def plan_runs(seeds: list[int], variants: list[str], account_multiplier: float = 10.0,
              jitter: float = 0.5) -> list[EvalRun]:
    """One run per seed, then the robustness variants of the first seed."""
    if not seeds:
        raise ReplayError("--seeds: give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ReplayError(f"--seeds: a seed is repeated in {seeds}")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ReplayError(f"--variants {','.join(unknown)}: not a variant "
                          f"(known: {', '.join(VARIANTS)}, or none)")
    if account_multiplier <= 0:
        raise ReplayError("--account-multiplier must be positive")
    if not 0.0 <= jitter < 1.0:
        raise ReplayError("--jitter must be in [0, 1)")
    runs = [EvalRun(f"seed{s}", f"seed {s}" + (", the default scenario" if i == 0 else ""), s)
            for i, s in enumerate(seeds)]
    s0 = seeds[0]
    for v in variants:
        if v == "accounts":
            runs.append(EvalRun(f"seed{s0}-x{account_multiplier:g}",
                                f"seed {s0}, campaigns over {account_multiplier:g}x the accounts",
                                s0, account_multiplier=account_multiplier, base=f"seed{s0}"))
        elif v == "jitter":
            runs.append(EvalRun(f"seed{s0}-jitter", f"seed {s0}, +-{jitter:.0%} campaign timing "
                                "jitter", s0, jitter=jitter, base=f"seed{s0}"))
        else:
            runs.append(EvalRun(f"seed{s0}-newip", f"seed {s0}, a new IP on every campaign "
                                "request", s0, rotate_ip=True, base=f"seed{s0}"))
    return runs


def plan_family_runs(set_name: str, families: Collection[str] | None = None,
                     baselines: bool = False) -> list[EvalRun]:
    """The set's family runs (streams/offline/scenario_sets.py), those of `families` only if given."""
    return [EvalRun(family_run_key(f, s), f"{set_name} set, family {f}, seed {s}", s, family=f,
                    set_name=set_name, baselines=baselines)
            for f, s in family_runs(set_name) if families is None or f in families]


def plan_evaluation(sets: list[str], families: list[str] | None, seeds: list[int],
                    variants: list[str], account_multiplier: float = 10.0, jitter: float = 0.5,
                    family_baselines: bool = False) -> list[EvalRun]:
    """Every run of the chosen sets: the legacy runs (`default`, part of the tuning set) first,
    then the tuning set's family runs, then the held-out set's.

    `families` filters the runs by family; the legacy runs go by the name `default` there, so
    `--families launch` runs launch alone and `--families default,launch` the legacy runs too.
    """
    from distillguard.simulator.families import FAMILIES

    known_sets = (*SETS, LEGACY)
    if not sets:
        raise ReplayError(f"--sets: give at least one of {', '.join(known_sets)}")
    unknown = [s for s in sets if s not in known_sets]
    if unknown:
        raise ReplayError(f"--sets {','.join(unknown)}: not a set (known: "
                          f"{', '.join(known_sets)}; {LEGACY}: the legacy runs alone)")
    if families is not None:
        if not families:
            raise ReplayError("--families: give at least one family")
        unknown = [f for f in families if f != LEGACY and f not in FAMILIES]
        if unknown:
            raise ReplayError(f"--families {','.join(unknown)}: not a family (families: "
                              f"{', '.join(FAMILIES)}; {LEGACY}: the legacy runs)")
    # the legacy options are checked whether or not the legacy runs are chosen
    legacy = plan_runs(seeds, variants, account_multiplier=account_multiplier, jitter=jitter)
    runs: list[EvalRun] = []
    if (LEGACY in sets or TUNING in sets) and (families is None or LEGACY in families):
        runs += legacy
    for set_name in SETS:
        if set_name in sets:
            runs += plan_family_runs(set_name, families, baselines=family_baselines)
    if not runs:
        raise ReplayError(f"no run: --families {','.join(families or [])} has none in "
                          f"--sets {','.join(sets)}")
    return runs


@dataclass
class RunOutcome:
    run: EvalRun
    events: int = 0
    accounts: int = 0
    simulate_seconds: float = 0.0
    replay_seconds: float = 0.0
    decisions: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # per-group events of the simulation
    # system name -> report: distillguard first, then the baselines by short name
    reports: dict[str, Report] = field(default_factory=dict)
    baseline_titles: dict[str, str] = field(default_factory=dict)  # short name -> full name


def baseline_short_name(title: str) -> str:
    if title.startswith("per-account rate limit"):
        return "rate limit"
    if title.startswith("HalfSpaceTrees"):
        return "HST alone"
    return title[:20]


class _QueueProgress(Progress):
    """The replay's progress, sent to the parent process instead of printed."""

    def __init__(self, key: str, total: int, sink: Any) -> None:
        super().__init__(total, stream=sys.stderr, label=key)
        self.key = key
        self.sink = sink

    def update(self, events: int, done: int, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self.last < 0.5:
            return
        self.last = now
        _send(self.sink, (self.key, "replay", events, done / self.total if self.total else 0.0))


def _send(sink: Any, message: tuple[str, str, int, float]) -> None:
    if sink is not None:
        try:
            sink.put_nowait(message)
        except (queue_mod.Full, OSError, ValueError):
            pass  # progress is best effort


def evaluate_run(run: EvalRun, opts: ScenarioOptions, cfg: DetectorConfig, partitions: int,
                 workdir: Path, max_record_bytes: int = 65536, progress: Any = None
                 ) -> RunOutcome:
    """Simulate one run's traffic into `workdir`, replay it with labels (and baselines)."""
    from distillguard.simulator import write_files
    from distillguard.simulator.families import FAMILIES
    from distillguard.simulator.scenario import scenario_for

    if run.family is not None:
        scenario = FAMILIES[run.family].scenario(run.seed, opts.family_scale)
    else:
        scenario = scenario_for(seed=run.seed, small=opts.small, scale=opts.scale,
                                duration_h=opts.hours, account_multiplier=run.account_multiplier,
                                jitter=run.jitter, rotate_ip=run.rotate_ip)
    out = workdir / run.key
    _send(progress, (run.key, "simulate", 0, 0.0))
    started = time.monotonic()
    try:
        counts = write_files(scenario, out)
        simulated = time.monotonic() - started
        events = sum(c.get("events", 0) for c in counts.values())
        _send(progress, (run.key, "replay", 0, 0.0))
        labels = load_labels(out / "labels.jsonl")
        source = FileSource(out / "events.jsonl", max_record_bytes)
        result = replay(source, cfg, labels=labels, partitions=partitions,
                        baselines=run.baselines,
                        progress=_QueueProgress(run.key, source.total, progress)
                        if progress is not None else None)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    assert result.report is not None
    outcome = RunOutcome(run=run, events=result.events, accounts=len(labels),
                         simulate_seconds=simulated, replay_seconds=result.seconds,
                         decisions=result.decisions, actions=dict(result.actions),
                         counts={g: c.get("events", 0) for g, c in counts.items()})
    outcome.reports[DETECTOR] = result.report
    for title, report in result.baselines.items():
        short = baseline_short_name(title)
        outcome.reports[short] = report
        outcome.baseline_titles[short] = title
    if result.events != events:
        raise ReplayError(f"{run.key}: simulated {events:,} events but replayed "
                          f"{result.events:,} ({result.bad_lines} bad lines)")
    return outcome


_WORKER: dict[str, Any] = {}


def _init_worker(opts: ScenarioOptions, cfg: DetectorConfig, partitions: int, workdir: Path,
                 max_record_bytes: int, progress: Any) -> None:
    # The parent handles Ctrl-C and terminates the pool; workers must not each print a trace.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if progress is not None:
        progress.cancel_join_thread()  # a worker never waits at exit for the parent to read
    _WORKER.update(opts=opts, cfg=cfg, partitions=partitions, workdir=workdir,
                   max_record_bytes=max_record_bytes, progress=progress)


def _run_in_worker(run: EvalRun) -> RunOutcome:
    w = _WORKER
    return evaluate_run(run, w["opts"], w["cfg"], w["partitions"], w["workdir"],
                        w["max_record_bytes"], w["progress"])


# --------------------------------------------------------------------------- progress


@dataclass
class _RunState:
    phase: str = "queued"
    started: float | None = None
    replay_started: float | None = None
    events: int = 0
    fraction: float = 0.0
    finished: float | None = None


class Board:
    """What each run is doing and an estimate of the time left, for stderr."""

    def __init__(self, runs: list[EvalRun], processes: int, stream: IO[str] | None,
                 clock: Any = time.monotonic, interval: float | None = None) -> None:
        self.runs = runs
        self.processes = processes
        self.stream = stream
        self.clock = clock
        self.started = clock()
        self.state = {r.key: _RunState() for r in runs}
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self.interval = interval if interval is not None else (1.0 if self.tty else 15.0)
        self.last_line = self.started
        self.pending_cr = False

    def say(self, text: str) -> None:
        if self.stream is None:
            return
        if self.pending_cr:
            self.stream.write("\r" + " " * 150 + "\r")
            self.pending_cr = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def message(self, key: str, phase: str, events: int, fraction: float) -> None:
        st = self.state[key]
        now = self.clock()
        if st.started is None:
            st.started = now
        if phase == "replay" and st.replay_started is None:
            st.replay_started = now
        if phase != st.phase and phase == "simulate":
            self.say(f"evaluate: {key}: simulating")
        st.phase, st.events, st.fraction = phase, events, fraction

    def finished(self, outcome: RunOutcome) -> None:
        st = self.state[outcome.run.key]
        st.phase, st.finished, st.fraction = "done", self.clock(), 1.0
        st.events = outcome.events
        done = sum(s.phase == "done" for s in self.state.values())
        left = self.seconds_left()
        self.say(f"evaluate: {outcome.run.key} done ({done}/{len(self.runs)}): "
                 f"{outcome.events:,} events simulated in {outcome.simulate_seconds:.0f} s, "
                 f"replayed{' with both baselines' if outcome.run.baselines else ''} in "
                 f"{outcome.replay_seconds:.0f} s; "
                 f"{self.clock() - self.started:,.0f} s elapsed"
                 + ("" if left is None or done == len(self.runs) else f", ~{left:,.0f} s left"))

    def _duration(self, st: _RunState, now: float) -> float | None:
        """The whole run's expected wall time, once it can be told."""
        if st.finished is not None and st.started is not None:
            return st.finished - st.started
        if st.phase == "replay" and st.replay_started is not None and st.started is not None \
                and st.fraction > 0.02:
            replay_s = (now - st.replay_started) / st.fraction
            return (st.replay_started - st.started) + replay_s
        return None

    def seconds_left(self) -> float | None:
        now = self.clock()
        known = {k: self._duration(st, now) for k, st in self.state.items()}
        measured = [d for d in known.values() if d is not None]
        if not measured:
            return None
        typical = sum(measured) / len(measured)
        # A family run is a fraction of a legacy run (fewer events, no baselines by default):
        # a queued run is estimated from runs of its own kind once one can be told.
        kind = {r.key: r.family is None for r in self.runs}
        by_kind: dict[bool, list[float]] = {}
        for k, d in known.items():
            if d is not None:
                by_kind.setdefault(kind[k], []).append(d)
        slots: list[float] = []
        queued: list[float] = []
        for k, st in self.state.items():
            if st.phase == "done":
                continue
            same = by_kind.get(kind[k])
            d = known[k] if known[k] is not None else (
                sum(same) / len(same) if same else typical)
            assert d is not None
            if st.started is not None:
                slots.append(max(0.0, d - (now - st.started)))
            else:
                queued.append(d)
        slots += [0.0] * max(0, self.processes - len(slots))
        for d in queued:  # each queued run takes the first process to free up
            slots.sort()
            slots[0] += d
        return max(slots) if slots else 0.0

    def tick(self, force: bool = False) -> None:
        if self.stream is None:
            return
        now = self.clock()
        if not force and now - self.last_line < self.interval:
            return
        self.last_line = now
        parts = []
        for r in self.runs:
            st = self.state[r.key]
            if st.phase == "simulate":
                parts.append(f"{r.key} simulating")
            elif st.phase == "replay":
                parts.append(f"{r.key} {st.events:,} events ({st.fraction:.0%})")
        queued = sum(s.phase == "queued" for s in self.state.values())
        done = sum(s.phase == "done" for s in self.state.values())
        left = self.seconds_left()
        text = (f"evaluate: {' | '.join(parts) or 'starting'}"
                + (f" | {queued} queued" if queued else "")
                + f" | {done}/{len(self.runs)} done, {now - self.started:,.0f} s elapsed, "
                + ("time left: estimating" if left is None else f"~{left:,.0f} s left"))
        if self.tty:
            self.stream.write("\r" + text[:150].ljust(150 if self.pending_cr else 0))
            self.stream.flush()
            self.pending_cr = True
        else:
            self.stream.write(text + "\n")
            self.stream.flush()


# --------------------------------------------------------------------------- the evaluation


@dataclass
class EvaluationResult:
    runs: list[EvalRun]
    outcomes: list[RunOutcome]
    seconds: float
    processes: int
    model_version: str
    interrupted: bool = False


def run_evaluation(runs: list[EvalRun], opts: ScenarioOptions, cfg: DetectorConfig, *,
                   partitions: int, jobs: int | None = None, max_record_bytes: int = 65536,
                   workdir: Path | None = None, stream: IO[str] | None = sys.stderr
                   ) -> EvaluationResult:
    """Every run in its own process, `jobs` at a time (default: the cores available)."""
    processes = max(1, min(jobs or default_jobs(), len(runs)))
    board = Board(runs, processes, stream)
    board.say(f"evaluate: {len(runs)} runs ({_run_list(runs)}) on {processes} processes, "
              f"model {cfg.model_version}")
    outcomes: list[RunOutcome] = []
    interrupted = False
    # spawn: a clean interpreter per worker (no inherited Kafka clients or threads)
    ctx = multiprocessing.get_context("spawn")
    messages: multiprocessing.queues.Queue[Any] = ctx.Queue()
    with tempfile.TemporaryDirectory(prefix="distillguard-evaluate-", dir=workdir) as tmp:
        pool = ctx.Pool(processes, initializer=_init_worker,
                        initargs=(opts, cfg, partitions, Path(tmp), max_record_bytes, messages))
        watch = WorkerWatch()  # at once: it takes the pool's workers as started
        try:
            # The longest first (campaigns over more accounts replay slowest), so it does not
            # start last and run alone at the end. The legacy runs (~400,000 events each at the
            # default scale, with baselines) come before the family runs (40,000-150,000) in
            # the plan, and the sort keeps that order otherwise.
            longest_first = sorted(runs, key=lambda r: -(r.account_multiplier or 1.0))
            results = pool.imap_unordered(_run_in_worker, longest_first)
            while True:
                try:
                    outcome = results.next(timeout=0.25)
                except multiprocessing.TimeoutError:
                    _drain(messages, board)
                    board.tick()
                    watch.check()
                    continue
                except StopIteration:
                    break
                _drain(messages, board)
                outcomes.append(outcome)
                board.finished(outcome)
            pool.close()
        except KeyboardInterrupt:
            interrupted = True
            pool.terminate()
            board.say(f"evaluate: interrupted; {len(outcomes)} of {len(runs)} runs finished")
        except WorkerDied as exc:
            pool.terminate()
            raise WorkerDied(f"{exc}; {len(outcomes)} of {len(runs)} runs finished") from None
        except BaseException:
            pool.terminate()
            raise
        finally:
            pool.join()
            messages.close()
    order = {r.key: i for i, r in enumerate(runs)}
    outcomes.sort(key=lambda o: order[o.run.key])
    return EvaluationResult(runs=runs, outcomes=outcomes, seconds=time.monotonic() - board.started,
                            processes=processes, model_version=cfg.model_version,
                            interrupted=interrupted)


def _run_list(runs: list[EvalRun]) -> str:
    """The runs by key, or by set when there are too many to read in one line."""
    if len(runs) <= 8:
        return ", ".join(r.key for r in runs)
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.set_name] = counts.get(r.set_name, 0) + 1
    return ", ".join(f"{n} {name}" for name, n in counts.items())


def _drain(messages: Any, board: Board) -> None:
    while True:
        try:
            key, phase, events, fraction = messages.get_nowait()
        except queue_mod.Empty:
            return
        board.message(key, phase, events, fraction)


# --------------------------------------------------------------------------- the targets


@dataclass(frozen=True)
class Check:
    run: str
    population: str
    what: str  # e.g. "acted", "before", "beats HST alone", "recall drop"
    value: float | None
    op: str  # ">=", "<=" or "beats"
    limit: float | None
    ok: bool
    note: str = ""  # how it missed, for the table

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class SummaryLine:
    run: str
    population: str
    label: str
    accounts: int
    rows: dict[str, GroupRow | None]  # system -> its row for this population
    recall_drop_points: float | None = None
    checks: list[Check] = field(default_factory=list)
    set_name: str = TUNING  # the scenario set of its run

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


def _figure(row: GroupRow, name: str) -> float | None:
    return {"acted": row.acted_share, "blocked": row.blocked_share,
            "before": row.served_before_action_share, "served": row.served_share,
            "median": row.median_minutes_to_action}[name]


def _fmt_value(name: str, v: float | None) -> str:
    if v is None:
        return "none"
    if name == "median":
        return f"{v:.1f} min"
    return f"{v:.1%}" if v == 0 or v >= 0.01 else f"{v:.2%}"


def _fmt_limit(name: str, v: float) -> str:
    if name == "median":
        return f"{v:g} min"
    return f"{100 * v:g}%"


def _check(run: str, population: str, row: GroupRow, name: str, op: str, limit: float) -> Check:
    value = _figure(row, name)
    if value is None:  # no account acted on: no median to meet a time target
        return Check(run, population, name, None, op, limit, False,
                     f"{name}: no account acted on")
    ok = value >= limit if op == ">=" else value <= limit
    note = "" if ok else (f"{name} {_fmt_value(name, value)} {'<' if op == '>=' else '>'} "
                          f"{_fmt_limit(name, limit)}")
    return Check(run, population, name, value, op, limit, ok, note)


def _beats(run: str, line: str, dg: GroupRow, base: GroupRow, name: str) -> Check:
    if dg.label == "attack":
        ok = dg.served_share < base.served_share or (
            dg.served_share == base.served_share and dg.acted_share > base.acted_share)
        note = "" if ok else f"not better than {name} (served {dg.served_share:.1%} vs " \
                             f"{base.served_share:.1%}, acted {dg.acted_share:.1%} vs " \
                             f"{base.acted_share:.1%})"
        value = dg.served_share
    else:
        ok = dg.acted_share <= base.acted_share and dg.blocked_share <= base.blocked_share
        note = "" if ok else (
            f"not better than {name} (acted on {_count(dg, 'acted')} vs "
            f"{_count(base, 'acted')} accounts, blocked {_count(dg, 'blocked')} vs "
            f"{_count(base, 'blocked')})")
        value = dg.acted_share
    return Check(run, line, f"beats {name}", value, "beats", None, ok, note)


def _count(row: GroupRow, name: str) -> int:
    """Accounts behind a share of the row (acted or blocked)."""
    return round((row.acted_share if name == "acted" else row.blocked_share) * row.accounts)


def _row(report: Report | None, group: str) -> GroupRow | None:
    if report is None:
        return None
    return next((r for r in report.rows if r.group == group), None)


def _recall_drop(run: EvalRun, row: GroupRow, outcomes: dict[str, RunOutcome]) -> Check:
    """A robustness run's campaign against the same campaign in its seed run."""
    base = outcomes.get(run.base) if run.base else None
    base_row = _row(base.reports[DETECTOR], row.group) if base is not None else None
    if base_row is None:  # the seed run did not finish: the line cannot be judged, so it misses
        return Check(run.key, row.group, "recall drop", None, "<=", MAX_RECALL_DROP_POINTS,
                     False, f"recall drop: no {run.base} result to compare with")
    drop = 100 * (base_row.acted_share - row.acted_share)
    ok = drop <= MAX_RECALL_DROP_POINTS
    return Check(run.key, row.group, "recall drop", drop, "<=", MAX_RECALL_DROP_POINTS, ok,
                 "" if ok else f"recall drop {drop:.1f} points > {MAX_RECALL_DROP_POINTS:g} "
                               f"(acted {row.acted_share:.1%} vs {base_row.acted_share:.1%} "
                               f"in {run.base})")


def _none_blocked(run: str, g: GroupRow) -> Check:
    """Not one account of the benign population `g` blocked."""
    blocked = _count(g, "blocked")
    return Check(run, g.group, f"{g.group} blocked", blocked, "<=", 0, blocked == 0,
                 "" if blocked == 0 else
                 f"{blocked} {g.group} account{'s' if blocked > 1 else ''} blocked")


def _family_checks(run: EvalRun, r: GroupRow, report: Report) -> list[Check]:
    """A family run's line against the FAMILY_* targets: a campaign, "all attack" or "all
    benign" (which carries the per-population checks of every benign population present)."""
    key = run.key
    if r.group == "all attack":
        return [_check(key, r.group, r, name, op, limit)
                for name, op, limit in FAMILY_ALL_ATTACK_TARGETS]
    if r.label == "attack":
        return [_check(key, r.group, r, name, op, limit)
                for name, op, limit in FAMILY_CAMPAIGN_TARGETS]
    checks = [_check(key, r.group, r, name, op, limit) for name, op, limit in FAMILY_BENIGN_TARGETS]
    if run.framing:
        acted = _count(r, "acted")
        checks.append(Check(key, r.group, "benign acted (framing)", acted, "<=", 0, acted == 0,
                            "" if acted == 0 else
                            f"{acted} benign account{'s' if acted > 1 else ''} acted on "
                            "(a framing family: none may be)"))
    checks += [_none_blocked(key, g) for g in report.rows
               if g.label == "benign" and not g.group.startswith("all ")]
    return checks


def summarise(result: EvaluationResult) -> list[SummaryLine]:
    """One line per (run, campaign), per family run "all attack", and per run "all benign",
    each with its checks."""
    lines: list[SummaryLine] = []
    by_key = {o.run.key: o for o in result.outcomes}
    for o in result.outcomes:
        key = o.run.key
        dg = o.reports[DETECTOR]
        systems = list(o.reports)
        campaigns = [r for r in dg.rows if r.label == "attack" and not r.group.startswith("all ")]
        # a family run's campaigns are also held to targets together; a legacy run's are not
        totals = ["all attack", "all benign"] if o.run.family is not None else ["all benign"]
        for r in [*campaigns, *(t for t in (_row(dg, g) for g in totals) if t is not None)]:
            line = SummaryLine(key, r.group, r.label, r.accounts,
                               {s: _row(o.reports[s], r.group) for s in systems},
                               set_name=o.run.set_name)
            lines.append(line)
            if o.run.family is not None:  # its baselines, if any, are shown, not checked
                line.checks += _family_checks(o.run, r, dg)
                continue
            if r.label == "attack" and o.run.base is None:
                for name, op, limit in CAMPAIGN_TARGETS.get(r.group, DEFAULT_CAMPAIGN_TARGETS):
                    line.checks.append(_check(key, r.group, r, name, op, limit))
            elif r.label == "attack":  # a robustness run: its campaigns must keep their recall
                drop = _recall_drop(o.run, r, by_key)
                line.recall_drop_points = drop.value
                line.checks.append(drop)
            else:
                for name, op, limit in BENIGN_TARGETS:
                    line.checks.append(_check(key, r.group, r, name, op, limit))
                for group in NEVER_BLOCKED:
                    g = _row(dg, group)
                    if g is not None:
                        line.checks.append(_none_blocked(key, g))
            for s in systems[1:]:
                base_line = line.rows[s]
                if base_line is not None:
                    line.checks.append(_beats(key, r.group, r, base_line, s))
    return lines


# --------------------------------------------------------------------------- the sets


@dataclass
class PopulationRow:
    """One population (or "all attack" / "all benign") pooled over a set's runs, from
    distillguard's decisions: accounts and requests summed, shares weighted by them."""

    group: str
    label: str
    runs: int  # runs it appears in
    accounts: int
    acted: int  # accounts acted on (throttled or blocked), summed over the runs
    blocked: int
    requests: int
    served_before_action: float  # requests, summed over the runs
    served: float
    median_minutes: float | None  # the median of the per-run medians (runs that acted at all)
    # benign: the run with the largest blocked (then acted) share, None if nothing was acted on;
    # a campaign: the run with the smallest acted share (then the most served before action)
    worst_run: str | None
    worst_acted: float | None
    worst_blocked: float | None

    @property
    def acted_share(self) -> float:
        return self.acted / self.accounts if self.accounts else 0.0

    @property
    def blocked_share(self) -> float:
        return self.blocked / self.accounts if self.accounts else 0.0

    @property
    def served_before_action_share(self) -> float:
        return self.served_before_action / self.requests if self.requests else 1.0

    @property
    def served_share(self) -> float:
        return self.served / self.requests if self.requests else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "acted_share": self.acted_share,
                "blocked_share": self.blocked_share,
                "served_before_action_share": self.served_before_action_share,
                "served_share": self.served_share}


def pool_populations(outcomes: list[RunOutcome]) -> list[PopulationRow]:
    """Every population of the runs' distillguard reports, pooled over the runs, in the order
    of a run's table: campaigns, benign populations, then "all attack" and "all benign"."""
    per_group: dict[str, list[tuple[str, GroupRow]]] = {}
    for o in outcomes:
        for r in o.reports[DETECTOR].rows:
            per_group.setdefault(r.group, []).append((o.run.key, r))
    rows = []
    for group, runs in sorted(per_group.items(), key=lambda kv: (
            kv[0].startswith("all "), kv[1][0][1].label, kv[0])):
        label = runs[0][1].label
        medians = [r.median_minutes_to_action for _, r in runs
                   if r.median_minutes_to_action is not None]
        if label == "attack":
            worst_key, worst = min(runs, key=lambda kr: (kr[1].acted_share,
                                                         -kr[1].served_before_action_share))
        else:
            worst_key, worst = max(runs, key=lambda kr: (kr[1].blocked_share, kr[1].acted_share))
        shown = label == "attack" or worst.acted_share > 0 or worst.blocked_share > 0
        rows.append(PopulationRow(
            group=group, label=label, runs=len(runs), accounts=sum(r.accounts for _, r in runs),
            acted=sum(_count(r, "acted") for _, r in runs),
            blocked=sum(_count(r, "blocked") for _, r in runs),
            requests=sum(r.requests for _, r in runs),
            served_before_action=sum(r.served_before_action_share * r.requests for _, r in runs),
            served=sum(r.served_share * r.requests for _, r in runs),
            median_minutes=statistics.median(medians) if medians else None,
            worst_run=worst_key if shown else None,
            worst_acted=worst.acted_share if shown else None,
            worst_blocked=worst.blocked_share if shown else None))
    return rows


@dataclass
class SetSummary:
    """One scenario set of an evaluation: its runs, its pooled populations, its targets."""

    name: str
    runs: list[EvalRun]  # planned
    outcomes: list[RunOutcome]  # finished
    populations: list[PopulationRow]
    checks: list[Check]

    @property
    def targets_met(self) -> int:
        return sum(c.ok for c in self.checks)

    @property
    def seconds(self) -> float:
        """Simulate and replay time summed over its finished runs (they share the processes
        with the other set's runs, so the set has no wall time of its own)."""
        return sum(o.simulate_seconds + o.replay_seconds for o in self.outcomes)

    def to_dict(self) -> dict[str, Any]:
        return {"runs": [o.run.key for o in self.outcomes],
                "planned_runs": [r.key for r in self.runs],
                "families": _families(self.runs),
                "seeds": _family_seeds(self.runs),
                "seconds": self.seconds,
                "populations": [p.to_dict() for p in self.populations],
                "targets_met": self.targets_met, "targets": len(self.checks)}


def _families(runs: list[EvalRun]) -> list[str]:
    return list(dict.fromkeys(r.family for r in runs if r.family is not None))


def _family_seeds(runs: list[EvalRun]) -> list[int]:
    return sorted({r.seed for r in runs if r.family is not None})


def summarise_sets(result: EvaluationResult, lines: list[SummaryLine]) -> list[SetSummary]:
    """Per scenario set with planned runs (tuning, then held-out): its finished runs pooled."""
    sets = []
    for name in SETS:
        runs = [r for r in result.runs if r.set_name == name]
        if not runs:
            continue
        outcomes = [o for o in result.outcomes if o.run.set_name == name]
        sets.append(SetSummary(name, runs, outcomes, pool_populations(outcomes),
                               [c for ln in lines if ln.set_name == name for c in ln.checks]))
    return sets


# --------------------------------------------------------------------------- output


def _cell_share(v: float | None) -> str:
    """A share in percent; a small non-zero one keeps two decimals so it does not read as 0."""
    if v is None:
        return "-"
    return f"{100 * v:.2f}" if 0 < v < 0.001 else f"{100 * v:.1f}"


CELLS = ("acted", "block", "before", "served", "median")  # per system in the summary table


def _cells(row: GroupRow | None) -> str:
    if row is None:
        return " ".join(f"{'-':>6}" for _ in CELLS)
    med = row.median_minutes_to_action
    return (f"{_cell_share(row.acted_share):>6} {_cell_share(row.blocked_share):>6} "
            f"{_cell_share(row.served_before_action_share):>6} "
            f"{_cell_share(row.served_share):>6} {'-' if med is None else f'{med:.1f}':>6}")


def render_summary(result: EvaluationResult, lines: list[SummaryLine]) -> str:
    systems: list[str] = []
    titles: dict[str, str] = {}
    for o in result.outcomes:
        for s in o.reports:
            if s not in systems:
                systems.append(s)
        titles.update(o.baseline_titles)
    run_w = max([len("run"), *(len(ln.run) for ln in lines)])
    pop_w = max([len("population"), *(len(ln.population) for ln in lines)])
    group_w = 7 * len(CELLS) - 1
    lead = " " * (run_w + pop_w + 2 + 6)
    head1 = lead + "".join(f" | {s:^{group_w}}" for s in systems) + " | targets"
    head2 = (f"{'run':<{run_w}} {'population':<{pop_w}} {'drop':>6}"
             + "".join(" | " + " ".join(f"{c:>6}" for c in CELLS) for _ in systems) + " |")
    out = [head1, head2, "-" * max(len(head1), len(head2))]
    previous, previous_set = None, None
    for ln in lines:  # in run order: the legacy runs, the tuning families, the held-out set
        if ln.set_name != previous_set:
            out += [""] if previous is not None else []
            out.append(f"[{ln.set_name} set]")
        elif ln.run != previous:
            out.append("")
        previous, previous_set = ln.run, ln.set_name
        drop = "" if ln.recall_drop_points is None else f"{ln.recall_drop_points:+.1f}"
        mark = "ok" if ln.ok else "MISSED " + "; ".join(c.note for c in ln.checks if not c.ok)
        out.append(f"{ln.run:<{run_w}} {ln.population:<{pop_w}} {drop:>6}"
                   + "".join(f" | {_cells(ln.rows.get(s))}" for s in systems) + f" | {mark}")
    checks = [c for ln in lines for c in ln.checks]
    met = sum(c.ok for c in checks)
    out.append("-" * max(len(head1), len(head2)))
    out.append("acted, block(ed): % of the population's accounts acted on (throttled or blocked) "
               "/ blocked at least once; before: % of its requests served before the account's "
               "first action; served: % of its requests the gateway would serve, throttle "
               "allowance included; median: minutes from an account's first request to its "
               "first action; drop: campaign recall (acted) lost against the run's seed, in "
               "points (robustness runs).")
    for s in systems[1:]:
        out.append(f"{s}: {titles.get(s, s)}.")
    family = {o.run.key for o in result.outcomes if o.run.family is not None}
    if any(ln.run not in family for ln in lines):
        out.append(_targets_legend())
    if any(ln.run in family for ln in lines):
        out.append(_family_targets_legend())
    out.append(f"targets met: {met} of {len(checks)}; lines ok: "
               f"{sum(ln.ok for ln in lines)} of {len(lines)}")
    return "\n".join(out)


def _targets_legend() -> str:
    parts = []
    for group, targets in CAMPAIGN_TARGETS.items():
        parts.append(f"{group.removeprefix('campaign_')} "
                     + ", ".join(f"{n} {op} {_fmt_limit(n, lim)}" for n, op, lim in targets))
    benign = ", ".join(f"{n} {op} {_fmt_limit(n, lim)}" for n, op, lim in BENIGN_TARGETS)
    return ("targets of the legacy runs: seed runs' campaigns: " + "; ".join(parts)
            + f"; robustness runs' campaigns: recall drop <= {MAX_RECALL_DROP_POINTS:g} points "
            f"only; every legacy run's all benign {benign}, no {'/'.join(NEVER_BLOCKED)} account "
            "blocked; every legacy line beats every baseline (campaign: serves less of it in "
            "all; benign: acts on and blocks no more accounts).")


def _family_targets_legend() -> str:
    def fmt(targets: list[tuple[str, str, float]]) -> str:
        return ", ".join(f"{n} {op} {_fmt_limit(n, lim)}" for n, op, lim in targets)

    return (f"targets of a family run: each campaign {fmt(FAMILY_CAMPAIGN_TARGETS)}; all attack "
            f"{fmt(FAMILY_ALL_ATTACK_TARGETS)}; all benign {fmt(FAMILY_BENIGN_TARGETS)} (none "
            f"in a {FRAMING_PREFIX}* family), no account of any benign population blocked; "
            "baselines (--baselines) shown, not checked.")


def _set_heading(st: SetSummary) -> str:
    """What the set ran: its legacy runs, its families and their seeds."""
    parts = []
    legacy = [r.key for r in st.runs if r.family is None]
    if legacy:
        parts.append(f"the default scenario ({', '.join(legacy)})")
    families = _families(st.runs)
    if families:
        seeds = ", ".join(str(x) for x in _family_seeds(st.runs))
        parts.append(f"{len(families)} famil{'y' if len(families) == 1 else 'ies'} "
                     f"({', '.join(families)}) at seed{'s' if ',' in seeds else ''} {seeds}")
    return (f"== {st.name} set: {' + '.join(parts)}; {len(st.outcomes)} of {len(st.runs)} runs "
            "==")


def render_set(st: SetSummary) -> str:
    """The set's population table (distillguard, pooled over its runs) and its targets met."""
    rows = st.populations
    runs = max([len("runs"), *(len(f"{p.runs}") for p in rows)])
    pop_w = max([len("population"), *(len(p.group) for p in rows)])
    head = (f"{'population':<{pop_w}} {'label':<7} {'runs':>{runs}} {'accounts':>8} "
            f"{'acted':>7} {'blocked':>8} {'before':>7} {'served':>7} {'median*':>8}  worst run")
    out = [_set_heading(st), head, "-" * len(head)]
    for i, p in enumerate(rows):
        if p.group.startswith("all ") and (i == 0 or not rows[i - 1].group.startswith("all ")):
            out.append("-" * len(head))
        med = "-" if p.median_minutes is None else f"{p.median_minutes:.1f}"
        if p.worst_run is None:
            worst = "-"
        elif p.label == "attack":
            worst = f"{p.worst_run} (acted {_cell_share(p.worst_acted)}%)"
        else:
            worst = (f"{p.worst_run} (acted {_cell_share(p.worst_acted)}%, blocked "
                     f"{_cell_share(p.worst_blocked)}%)")
        out.append(f"{p.group:<{pop_w}} {p.label:<7} {p.runs:>{runs}} {p.accounts:>8} "
                   f"{_cell_share(p.acted_share):>6}% {_cell_share(p.blocked_share):>7}% "
                   f"{_cell_share(p.served_before_action_share):>6}% "
                   f"{_cell_share(p.served_share):>6}% {med:>8}  {worst}")
    out.append("-" * len(head))
    out.append("accounts, acted, blocked: summed over the runs it appears in; before, served: "
               "shares of its requests over those runs; median*: the median of the runs' "
               "median minutes to the first action (runs that acted on it at all); worst run: "
               "benign, the run with the largest share blocked (then acted on), - if none; "
               "campaign, the run with the smallest share acted on.")
    out.append(f"targets met: {st.targets_met} of {len(st.checks)}")
    return "\n".join(out)


def render_set_totals(sets: list[SetSummary]) -> str:
    """One line per set: targets met, runs, and the time its runs took."""
    return "\n".join(
        f"{st.name} set: targets met {st.targets_met} of {len(st.checks)}; "
        f"{len(st.outcomes)} of {len(st.runs)} runs; {st.seconds:,.0f} s of simulation and "
        "replay, summed over its runs" for st in sets)


def render_runs(result: EvaluationResult) -> str:
    out = []
    for o in result.outcomes:
        out.append(f"== {o.run.key}: {o.run.title} ({o.events:,} events, {o.accounts:,} "
                   f"accounts; {o.decisions:,} decisions) ==")
        out.append(render(o.reports[DETECTOR]))
        out.append("")
    return "\n".join(out)


def _system_field(system: str) -> str:
    return system.lower().replace(" ", "_")


def write_outputs(result: EvaluationResult, lines: list[SummaryLine], out_dir: Path
                  ) -> tuple[Path, Path, Path]:
    """evaluation.json (everything), evaluation.csv (the summary lines) and populations.csv
    (each set's population table)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = out_dir / "evaluation.json", out_dir / "evaluation.csv"
    populations_path = out_dir / "populations.csv"
    sets = summarise_sets(result, lines)
    systems: list[str] = []
    for o in result.outcomes:
        systems += [s for s in o.reports if s not in systems]
    checks = [c for ln in lines for c in ln.checks]
    json_path.write_bytes(orjson.dumps({
        "model_version": result.model_version,
        "seconds": result.seconds,
        "processes": result.processes,
        "interrupted": result.interrupted,
        "runs": [{"key": o.run.key, "title": o.run.title, "set": o.run.set_name,
                  "family": o.run.family, "scenario": dataclasses.asdict(o.run),
                  "events": o.events, "accounts": o.accounts, "decisions": o.decisions,
                  "actions": o.actions, "simulate_seconds": o.simulate_seconds,
                  "replay_seconds": o.replay_seconds, "events_by_group": o.counts,
                  "baselines": o.baseline_titles,
                  "reports": {s: r.to_dict() for s, r in o.reports.items()}}
                 for o in result.outcomes],
        "lines": [{"run": ln.run, "set": ln.set_name, "population": ln.population,
                   "label": ln.label,
                   "accounts": ln.accounts, "ok": ln.ok,
                   "recall_drop_points": ln.recall_drop_points,
                   "systems": {s: (None if r is None else dataclasses.asdict(r))
                               for s, r in ln.rows.items()},
                   "checks": [c.to_dict() for c in ln.checks]} for ln in lines],
        "targets_met": sum(c.ok for c in checks),
        "targets": len(checks),
        "sets": {st.name: st.to_dict() for st in sets},
    }, option=orjson.OPT_INDENT_2))
    fields = ["run", "set", "population", "label", "accounts"]
    for s in systems:
        f = _system_field(s)
        fields += [f"{f}_acted", f"{f}_blocked", f"{f}_served_before_action", f"{f}_served",
                   f"{f}_median_min"]
    fields += ["recall_drop_points", "ok", "missed"]
    with csv_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(fields)
        for ln in lines:
            row: list[Any] = [ln.run, ln.set_name, ln.population, ln.label, ln.accounts]
            for s in systems:
                r = ln.rows.get(s)
                row += ["", "", "", "", ""] if r is None else [
                    round(r.acted_share, 6), round(r.blocked_share, 6),
                    round(r.served_before_action_share, 6), round(r.served_share, 6),
                    "" if r.median_minutes_to_action is None
                    else round(r.median_minutes_to_action, 3)]
            row += ["" if ln.recall_drop_points is None else round(ln.recall_drop_points, 3),
                    int(ln.ok), "; ".join(c.note for c in ln.checks if not c.ok)]
            writer.writerow(row)
    with populations_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["set", "population", "label", "runs", "accounts", "acted", "blocked",
                         "served_before_action", "served", "median_of_run_median_min",
                         "worst_run", "worst_run_acted", "worst_run_blocked"])
        for st in sets:
            for p in st.populations:
                writer.writerow([
                    st.name, p.group, p.label, p.runs, p.accounts, round(p.acted_share, 6),
                    round(p.blocked_share, 6), round(p.served_before_action_share, 6),
                    round(p.served_share, 6),
                    "" if p.median_minutes is None else round(p.median_minutes, 3),
                    p.worst_run or "", "" if p.worst_acted is None else round(p.worst_acted, 6),
                    "" if p.worst_blocked is None else round(p.worst_blocked, 6)])
    return json_path, csv_path, populations_path
