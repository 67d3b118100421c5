"""Is this worker making progress? A health view and a watchdog for one Faust worker.

Faust workers can silently stop consuming (faust-streaming/faust#175): an agent awaiting a send
that never completes, a fetcher that died, an event loop blocked by a bug. Such a worker still
holds its partitions, so nobody else processes them. This module makes that visible and fatal:

- `Progress` counts what the worker did (events processed per source topic, commits, the
  committed offsets) from Faust's sensor hooks, and computes the lag of every assigned source
  partition: the consumer's highwater minus the offset committed for it.
- `GET /health` (on the worker's web port) returns that as JSON: `status` (`starting`,
  `recovering`, `ok`, `idle`, `stalling`, `stalled`), per-partition highwater/committed/lag,
  the time of the last commit, events processed, and the process RSS. HTTP 200 unless stalled
  (503).
- `GET /ready` says whether the worker is doing its share: HTTP 200 when `ok` or `idle`, 503
  otherwise (`starting`, `recovering`, `stalling`, `stalled`), with the same `status` in a small
  JSON body. `/health` stays 200 through a recovery, which is right for a liveness check (a
  recovering worker must not be restarted) and wrong for readiness: a rolling update or an
  eviction that takes the next worker down while this one still reads its changelogs moves
  partitions again before the group has settled (deploy/k8s/).
- A watchdog exits the process with code 3 (`STALL_EXIT_CODE`) when it holds source
  partitions with lag > 0 and nothing has moved for `stall_timeout_s`: no offset committed,
  no table-recovery progress, no rebalance. Progress is a commit, not an event processed: a
  worker that processes but can no longer commit (its producer cannot deliver, so Faust's
  commit waits on the flush) would reprocess everything after a restart and its lag only grows.
  An idle worker (lag 0) is never stalled. The check runs in a thread, so an event loop that no longer turns (a blocking call)
  is caught too: the loop refreshes a heartbeat, and a heartbeat older than the timeout is a
  stall as well. Exiting lets the supervisor (systemd, Kubernetes, the test) restart the worker
  and the group move its partitions, instead of a worker that hangs forever.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import faust
import orjson
import structlog
from faust.sensors import Sensor

log = structlog.get_logger("distillguard")

STALL_EXIT_CODE = 3
# The statuses in which a worker holds its partitions and moves them forward (or has nothing to
# do): `GET /ready` answers 200 for these only.
READY_STATUSES = frozenset({"ok", "idle"})


def rss_bytes() -> int | None:
    """Resident set size of this process (Linux /proc), or None elsewhere."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@dataclass
class Progress:
    """What one worker has done; written by Faust's sensor hooks, read by the view/watchdog."""

    source_topics: frozenset[str]
    stall_timeout_s: float
    started_mono: float = field(default_factory=time.monotonic)
    processed: Counter[str] = field(default_factory=Counter)
    commits: int = 0
    last_commit_wall: float | None = None
    last_commit_mono: float | None = None
    last_event_mono: float | None = None
    last_progress_mono: float = field(default_factory=time.monotonic)
    heartbeat_mono: float = field(default_factory=time.monotonic)
    committed: dict[tuple[str, int], int] = field(default_factory=dict)
    partitions: dict[tuple[str, int], dict[str, int | None]] = field(default_factory=dict)
    recovering: bool = False
    recovery_remaining: int = 0
    status: str = "starting"
    _marker: tuple[Any, ...] = ()

    # ---- written from Faust hooks (event loop) ---------------------------------------------
    def on_event_done(self, topic: str) -> None:
        self.processed[topic] += 1
        self.last_event_mono = time.monotonic()

    def on_commit(self, committed: dict[tuple[str, int], int]) -> None:
        advanced = any(self.committed.get(tp) != off for tp, off in committed.items())
        self.committed.update(committed)
        if advanced:
            self.commits += 1
            self.last_commit_wall = time.time()
            self.last_commit_mono = self.last_progress_mono = time.monotonic()

    def on_rebalance(self) -> None:
        self.last_progress_mono = time.monotonic()

    # ---- refreshed by the loop every few seconds -------------------------------------------
    def refresh(self, app: faust.App) -> None:
        now = time.monotonic()
        self.heartbeat_mono = now
        parts: dict[tuple[str, int], dict[str, int | None]] = {}
        consumer = app.consumer
        try:
            assignment = consumer.assignment()
        except Exception:  # noqa: BLE001 - not started or mid-rebalance
            assignment = set()
        for tp in assignment:
            if tp.topic not in self.source_topics:
                continue
            key = (tp.topic, tp.partition)
            try:
                highwater = consumer.highwater(tp)
            except Exception:  # noqa: BLE001 - no fetch for it yet
                highwater = None
            committed = self.committed.get(key)
            if committed is None:
                committed = getattr(consumer, "_committed_offset", {}).get(tp)
                if committed is not None:
                    self.committed[key] = committed
            lag = None if highwater is None else max(0, highwater - (committed or 0))
            parts[key] = {"highwater": highwater, "committed": committed, "lag": lag}
        self.partitions = parts
        recovery = getattr(app.tables, "recovery", None)
        self.recovering = bool(getattr(recovery, "in_recovery", False))
        try:
            self.recovery_remaining = int(recovery.active_remaining_total()) if recovery else 0
        except Exception:  # noqa: BLE001
            self.recovery_remaining = 0
        marker = (self.recovering, self.recovery_remaining, app.rebalancing)
        if marker != self._marker:
            self._marker = marker
            self.last_progress_mono = now
        self.status = self.evaluate(now)

    # ---- pure decisions --------------------------------------------------------------------
    def total_lag(self) -> int:
        return sum(p["lag"] or 0 for p in self.partitions.values())

    def stalled_for(self, now: float) -> float:
        return now - self.last_progress_mono

    def evaluate(self, now: float) -> str:
        if now - self.heartbeat_mono > self.stall_timeout_s:
            return "stalled"  # the event loop has not refreshed us: it is blocked
        idle_for = self.stalled_for(now)
        if self.recovering:  # a recovery that stops moving is a stall too (faust#651)
            return "stalled" if idle_for > self.stall_timeout_s else "recovering"
        if not self.partitions and self.commits == 0 and self.last_event_mono is None:
            return "starting"
        if self.total_lag() == 0:
            self.last_progress_mono = now  # nothing to do is not a stall
            return "idle" if self.partitions else "starting"
        if idle_for > self.stall_timeout_s:
            return "stalled"
        if idle_for > min(30.0, self.stall_timeout_s / 2):
            return "stalling"
        return "ok"

    def ready(self) -> bool:
        """Whether the worker does its share now (`GET /ready`): not while it starts, recovers
        its tables or makes no progress on its lag."""
        return self.status in READY_STATUSES

    def report(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "status": self.status,
            "pid": os.getpid(),
            "uptime_s": round(now - self.started_mono, 1),
            "stall_timeout_s": self.stall_timeout_s,
            "no_progress_for_s": round(self.stalled_for(now), 1),
            "events_processed": (processed := dict(self.processed)),
            "events_processed_total": sum(processed.values()),
            "commits": self.commits,
            "last_commit_ts": self.last_commit_wall,
            "last_commit_age_s": (None if self.last_commit_mono is None
                                  else round(now - self.last_commit_mono, 1)),
            "recovering": self.recovering,
            "recovery_remaining": self.recovery_remaining,
            "lag_total": self.total_lag(),
            "partitions": [{"topic": t, "partition": p, **v}
                           for (t, p), v in sorted(self.partitions.items())],
            "rss_bytes": rss_bytes(),
        }


class ProgressSensor(Sensor):
    """Faust sensor hooks feeding `Progress` (events done, commits)."""

    def __init__(self, progress: Progress, app: faust.App, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.progress = progress
        self.app_ref = app

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any,
                            state: dict | None = None) -> None:
        if tp.topic in self.progress.source_topics:
            self.progress.on_event_done(tp.topic)

    def on_commit_completed(self, consumer: Any, state: Any) -> None:
        # Faust keeps what it committed in `_committed_offset` (TP -> next offset to read).
        committed = getattr(consumer, "_committed_offset", {})
        self.progress.on_commit({(tp.topic, tp.partition): off
                                 for tp, off in list(committed.items())
                                 if off is not None and tp.topic in self.progress.source_topics})


def _await_chain(awaitable: Any, limit: int = 40) -> list[str]:
    """Where a suspended coroutine waits: its frame, then the frame of what it awaits, down the
    chain (`Task.get_stack` shows only the outermost frame)."""
    chain: list[str] = []
    while awaitable is not None and len(chain) < limit:
        frame = (getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
                 or getattr(awaitable, "ag_frame", None))
        if frame is not None:
            chain.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
        awaitable = (getattr(awaitable, "cr_await", None) or getattr(awaitable, "gi_yieldfrom", None)
                     or getattr(awaitable, "ag_await", None))
    return chain


def where_it_waits(loop: asyncio.AbstractEventLoop | None, timeout_s: float = 2.0
                   ) -> dict[str, Any]:
    """The stacks of every thread and the await chains of the loop's tasks, for a stall report.

    Called from the watchdog thread: the tasks are read on the loop itself (it runs while
    every task waits); a loop that does not answer in `timeout_s` is blocked, and the threads'
    stacks say where."""
    names = {t.ident: t.name for t in threading.enumerate()}
    threads = {names.get(ident, str(ident)): traceback.format_stack(frame, limit=25)
               for ident, frame in sys._current_frames().items()}
    tasks: list[dict[str, Any]] = []
    done = threading.Event()

    def collect() -> None:
        try:
            for task in asyncio.all_tasks(loop):
                tasks.append({"task": task.get_name(), "waits": _await_chain(task.get_coro())})
        finally:
            done.set()

    if loop is not None and loop.is_running():
        loop.call_soon_threadsafe(collect)
        done.wait(timeout_s)
    return {"threads": threads, "tasks": tasks if done.is_set() else "the loop did not answer"}


def _die(progress: Progress, reason: str, loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Log one line the operator can find, then leave at once (a clean stop may hang too).

    Runs in the watchdog thread while the event loop may still update `progress`: the report
    is retried, and a minimal line is written if it cannot be built."""
    line: dict[str, Any] = {"event": "worker_stalled", "level": "critical", "reason": reason,
                            "exit_code": STALL_EXIT_CODE}
    for _ in range(3):
        try:
            report = progress.report()
        except RuntimeError:  # a dict changed size under us: try again
            continue
        line.update({k: v for k, v in report.items() if k != "partitions"},
                    lagging=[p for p in report["partitions"] if p["lag"]])
        break
    try:
        # Where the worker waits, so that a stall can be diagnosed after the fact (Faust workers
        # are known to stop consuming silently: reference/faust-pitfalls.md, 17).
        line["where"] = where_it_waits(loop)
    except Exception as exc:  # noqa: BLE001 - the exit must happen whatever the report does
        line["where"] = f"not available: {exc!r}"
    try:
        # a leading newline: another thread may be between a log line and its newline
        sys.stdout.write("\n" + orjson.dumps(line, default=str).decode() + "\n")
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(STALL_EXIT_CODE)


def watchdog_thread(progress: Progress, interval_s: float,
                    event_loop: asyncio.AbstractEventLoop | None = None) -> threading.Thread:
    def loop() -> None:
        while True:
            time.sleep(interval_s)
            now = time.monotonic()
            if now - progress.heartbeat_mono > progress.stall_timeout_s:
                _die(progress, f"event loop blocked for {now - progress.heartbeat_mono:.0f} s",
                     event_loop)
            if progress.status == "stalled":
                _die(progress, f"lag {progress.total_lag()} and no progress for "
                               f"{progress.stalled_for(now):.0f} s", event_loop)

    t = threading.Thread(target=loop, name="distillguard-watchdog", daemon=True)
    return t


def readiness(progress: Progress) -> tuple[dict[str, Any], int]:
    """`GET /ready`'s body and HTTP status for what `progress` last saw."""
    ready = progress.ready()
    return {"status": progress.status, "ready": ready}, 200 if ready else 503


def install_health(app: faust.App, source_topics: list[str], stall_timeout_s: float,
                   watchdog: bool = True) -> Progress:
    """Register the /health and /ready views, the progress sensor, the refresher and the
    watchdog."""
    progress = Progress(source_topics=frozenset(source_topics), stall_timeout_s=stall_timeout_s)
    app.sensors.add(ProgressSensor(progress, app))
    interval = max(0.5, min(5.0, stall_timeout_s / 6))

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        progress.refresh(app)
        body = progress.report()
        runtime = getattr(app, "runtime", None)  # a WorkerApp's (runtime.py); none in tests
        if runtime is not None:
            # Where the worker strayed from what a replay computes (topology.py).
            body["alignment"] = dict(runtime.core_counts)
            # What the agents hold until the next batch or commit (outbox.py, held_writes.py)
            body["held"] = runtime.held()
            # Every record refused since start (the log shows only a sample: dead_letter_log.py)
            body["dead_letters_total"] = runtime.dead_letters.total
        return web.json(body, status=503 if body["status"] == "stalled" else 200)

    @app.page("/ready")
    async def ready(web: Any, request: Any) -> Any:
        progress.refresh(app)
        body, status = readiness(progress)
        return web.json(body, status=status)

    @app.on_partitions_assigned.connect
    async def _assigned(sender: Any, assigned: set[Any], **_: Any) -> None:
        progress.on_rebalance()

    @app.on_partitions_revoked.connect
    async def _revoked(sender: Any, revoked: set[Any], **_: Any) -> None:
        progress.on_rebalance()

    @app.task
    async def _refresh() -> None:
        if watchdog:
            watchdog_thread(progress, interval, asyncio.get_running_loop()).start()
        while True:
            try:
                progress.refresh(app)
            except Exception:  # never let health reporting kill the worker
                log.exception("health_refresh_error")
            if progress.status in ("stalling", "stalled"):
                log.warning("worker_stalling", status=progress.status,
                            lag=progress.total_lag(),
                            no_progress_for_s=round(progress.stalled_for(time.monotonic()), 1))
            await asyncio.sleep(interval)

    return progress
