"""`distillguard evaluate`: the whole detection-quality report in one command.

    runs: the default scenario (seed 7), a second seed (11), and three robustness variants of
    the first seed (campaigns over 10x the accounts, +-50% campaign timing jitter, a new IP on
    every campaign request)
      ─▶ a process pool, one run per process, as many processes as cores
         per run: simulator.write_files to a temp dir ─▶ streams.replay.replay with the labels
         and the baselines (models.pipeline, models.evaluation, models.baselines) ─▶ reports
      ─▶ per run the population table; a summary with one line per (run, campaign) and per run
         "all benign": distillguard and both baselines side by side, each line checked against
         the targets (ok / MISSED); each robustness run's recall drop against its seed

The targets (`CAMPAIGN_TARGETS`, `BENIGN_TARGETS`, `MAX_RECALL_DROP_POINTS`) are checked on the
computed numbers, never assumed. A campaign of a seed run is held to its per-campaign targets
(accounts acted on, requests served before the first action, median minutes to it); a campaign
of a robustness run only to its recall drop against that seed (the robustness targets ask that
recall holds when the campaigns change shape, not that every target is met again). Every run's
benign line is held to the benign targets, and every line must beat both baselines. "Beats a
baseline" on a campaign line: serves a smaller share of the campaign's requests in all, throttle
allowance included (on a tie: acts on a larger share of its accounts); on the benign line: acts
on and blocks no larger a share of benign accounts.

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
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from models.config import DetectorConfig
from models.evaluation import GroupRow, Report, render
from streams.replay import Progress, load_labels, replay
from streams.replay_source import FileSource, ReplayError
from streams.sweep import default_jobs
from streams.worker_pool import WorkerDied, WorkerWatch

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


@dataclass(frozen=True)
class ScenarioOptions:
    small: bool = False
    scale: float | None = None
    hours: float | None = None


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
    """Simulate one run's traffic into `workdir`, replay it with labels and baselines."""
    from simulator import write_files
    from simulator.scenario import scenario_for

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
        result = replay(source, cfg, labels=labels, partitions=partitions, baselines=True,
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
                 f"replayed with both baselines in {outcome.replay_seconds:.0f} s; "
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
        slots: list[float] = []
        queued: list[float] = []
        for k, st in self.state.items():
            if st.phase == "done":
                continue
            d = known[k] if known[k] is not None else typical
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
    board.say(f"evaluate: {len(runs)} runs ({', '.join(r.key for r in runs)}) on {processes} "
              f"processes, model {cfg.model_version}")
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
            # start last and run alone at the end.
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


def summarise(result: EvaluationResult) -> list[SummaryLine]:
    """One line per (run, campaign) and per run "all benign", each with its checks."""
    lines: list[SummaryLine] = []
    by_key = {o.run.key: o for o in result.outcomes}
    for o in result.outcomes:
        key = o.run.key
        dg = o.reports[DETECTOR]
        systems = list(o.reports)
        campaigns = [r for r in dg.rows if r.label == "attack" and not r.group.startswith("all ")]
        benign_all = _row(dg, "all benign")
        for r in [*campaigns, *([benign_all] if benign_all is not None else [])]:
            line = SummaryLine(key, r.group, r.label, r.accounts,
                               {s: _row(o.reports[s], r.group) for s in systems})
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
                    if g is None:
                        continue
                    blocked = round(g.blocked_share * g.accounts)
                    line.checks.append(Check(
                        key, group, f"{group} blocked", blocked, "<=", 0, blocked == 0,
                        "" if blocked == 0 else
                        f"{blocked} {group} account{'s' if blocked > 1 else ''} blocked"))
            for s in systems[1:]:
                base_line = line.rows[s]
                if base_line is not None:
                    line.checks.append(_beats(key, r.group, r, base_line, s))
            lines.append(line)
    return lines


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
    previous = None
    for ln in lines:
        if previous is not None and ln.run != previous:
            out.append("")
        previous = ln.run
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
    out.append(_targets_legend())
    out.append(f"targets met: {met} of {len(checks)}; lines ok: "
               f"{sum(ln.ok for ln in lines)} of {len(lines)}")
    return "\n".join(out)


def _targets_legend() -> str:
    parts = []
    for group, targets in CAMPAIGN_TARGETS.items():
        parts.append(f"{group.removeprefix('campaign_')} "
                     + ", ".join(f"{n} {op} {_fmt_limit(n, lim)}" for n, op, lim in targets))
    benign = ", ".join(f"{n} {op} {_fmt_limit(n, lim)}" for n, op, lim in BENIGN_TARGETS)
    return ("targets: seed runs' campaigns: " + "; ".join(parts) + "; robustness runs' "
            f"campaigns: recall drop <= {MAX_RECALL_DROP_POINTS:g} points only; every run's all "
            f"benign {benign}, no {'/'.join(NEVER_BLOCKED)} account blocked; every line beats "
            "every baseline (campaign: serves less of it in all; benign: acts on and blocks no "
            "more accounts).")


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
                  ) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = out_dir / "evaluation.json", out_dir / "evaluation.csv"
    systems: list[str] = []
    for o in result.outcomes:
        systems += [s for s in o.reports if s not in systems]
    checks = [c for ln in lines for c in ln.checks]
    json_path.write_bytes(orjson.dumps({
        "model_version": result.model_version,
        "seconds": result.seconds,
        "processes": result.processes,
        "interrupted": result.interrupted,
        "runs": [{"key": o.run.key, "title": o.run.title, "scenario": dataclasses.asdict(o.run),
                  "events": o.events, "accounts": o.accounts, "decisions": o.decisions,
                  "actions": o.actions, "simulate_seconds": o.simulate_seconds,
                  "replay_seconds": o.replay_seconds, "events_by_group": o.counts,
                  "baselines": o.baseline_titles,
                  "reports": {s: r.to_dict() for s, r in o.reports.items()}}
                 for o in result.outcomes],
        "lines": [{"run": ln.run, "population": ln.population, "label": ln.label,
                   "accounts": ln.accounts, "ok": ln.ok,
                   "recall_drop_points": ln.recall_drop_points,
                   "systems": {s: (None if r is None else dataclasses.asdict(r))
                               for s, r in ln.rows.items()},
                   "checks": [c.to_dict() for c in ln.checks]} for ln in lines],
        "targets_met": sum(c.ok for c in checks),
        "targets": len(checks),
    }, option=orjson.OPT_INDENT_2))
    fields = ["run", "population", "label", "accounts"]
    for s in systems:
        f = _system_field(s)
        fields += [f"{f}_acted", f"{f}_blocked", f"{f}_served_before_action", f"{f}_served",
                   f"{f}_median_min"]
    fields += ["recall_drop_points", "ok", "missed"]
    with csv_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(fields)
        for ln in lines:
            row: list[Any] = [ln.run, ln.population, ln.label, ln.accounts]
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
    return json_path, csv_path
