"""Prometheus metrics of one worker: `GET /metrics` on its web port, beside `/health`.

Why collected at scrape time: the worker already keeps most of what an operator graphs, for
/health (health.py's `Progress`: events per source topic, commits, the lag of every assigned
partition, table recovery, status) and on its runtime (runtime.py: late verdicts and behind
summaries, dead letters, what is held). A custom collector (`WorkerCollector`) reads those
objects when Prometheus scrapes, instead of a second set of counters kept beside them on the
hot path: /metrics and /health cannot disagree, and an idle scrape interval costs nothing.

Only what nothing else keeps is recorded as it happens, into plain objects of this module
(`WorkerTallies`, no locks: everything runs on the worker's event loop): the decisions by
action and reason code with their latency (one call where the decision is published,
topology.py), and the processing time of every record (a Faust sensor, as health.py's, so the
agents stay as they are).

Why a registry per app: tests run several apps in one process, and prometheus_client's global
registry refuses a second collector exporting the same names; it would also mix in the
process and platform collectors of the library's default set.

Names follow Prometheus' conventions: the `distillguard_` prefix, `_total` for counters, base
units in the name (`_seconds`, `_bytes`). README.md, "Metrics", lists them; the Grafana
dashboard (deploy/grafana/) reads them, and tests/unit/test_compose.py checks that every panel
names a metric exported here.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.sensors import Sensor
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from distillguard.models._build import current_build
from distillguard.models.decision import ALLOW
from distillguard.models.keys import KINDS, key_kind
from distillguard.streams.worker.health import Progress

PREFIX = "distillguard_"

# Event time -> decision published. Live, a verdict's round trip is seconds; traffic replayed
# from the past (the simulator's events start on 2026-01-01) lands in the last buckets: the
# histogram then measures how old the traffic is, not the worker.
DECISION_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                            600.0, 1800.0, 3600.0, 21600.0, 86400.0)
# One record of an agent, from Faust's delivery to the agent until it asks for the next one
# (sends awaited included): ~1 ms on a 2-core machine, more when a batch of held records
# or table writes is flushed on that record.
PROCESSING_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                      0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# /health's statuses (health.py `Progress.evaluate`): one gauge per status, 1 for the current.
STATUSES = ("starting", "recovering", "ok", "idle", "stalling", "stalled")
# The runtime's counters of where live processing strays from a replay (topology.py
# `core_counts`, /health `alignment`), each a counter family of its own.
CORE_COUNTS = (
    ("late_verdicts", ("Verdicts applied later in event time than verdict_delay_s: where live "
                       "decisions may differ from a replay.")),
    ("behind_summaries", ("Summaries that reached the cluster stage after it had judged "
                          "their tick.")),
    ("judged_early_summaries", ("Summaries judged before every partition passed their tick "
                                "(cluster_pending_bytes outgrown).")),
)


class Buckets:
    """A histogram's counts, kept as plain numbers and exported at scrape time."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Iterable[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last: above every bound (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: the first bound >= value, as Prometheus' `le` (less or equal) means
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        """[(le, count of observations <= le), ..., ("+Inf", count)] as Prometheus wants."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*map(repr, self.bounds), "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, float(running)))
        return out


def reason_code(action: str, reasons: list[str], cluster_ids: list[str]) -> str:
    """A short, stable code for why a decision was made: a label of bounded values.

    A decision's reasons are text for people (scores, shares, cluster keys): unusable as a
    label. What is stable is how the core builds them (models/policy.py `decide`): an action
    rests on the clusters it names strongest first, so the code is the kind of the strongest
    cluster (models/keys.py: pay, ip, sys, asnua, tpl); with none it rests on the account's
    own behaviour. An allow lifts an action: for an allowance (its only reason is the
    allowance's `describe`, "allow-listed ...") or because the evidence decayed.

    >>> reason_code("block", ["score 0.93 -> block", "..."], ["tpl:s:ab12", "ip:203.0.113.0/24"])
    'cluster_tpl'
    >>> reason_code("throttle", ["score 0.61 -> throttle", "window score ..."], [])
    'account_behaviour'
    >>> reason_code("allow", ["allow-listed org o1 (control by ops): vetted"], [])
    'allow_listed'
    >>> reason_code("allow", ["score 0.20 -> allow (below release score 0.35)"], ["ip:x"])
    'evidence_decayed'
    """
    if action == ALLOW:
        if not cluster_ids and reasons and reasons[0].startswith("allow-listed "):
            return "allow_listed"
        return "evidence_decayed"
    if not cluster_ids:
        return "account_behaviour"
    kind = key_kind(cluster_ids[0])
    return f"cluster_{kind}" if kind in KINDS else "cluster_other"


@dataclass
class WorkerTallies:
    """What the worker counts as it happens, for /metrics (everything else is read from the
    objects /health reads)."""

    decisions: Counter[tuple[str, str]] = field(default_factory=Counter)  # (action, code)
    decision_latency: Buckets = field(
        default_factory=lambda: Buckets(DECISION_LATENCY_BUCKETS))
    processing: dict[str, Buckets] = field(default_factory=dict)  # source topic -> seconds

    def on_decision(self, action: str, reasons: list[str], cluster_ids: list[str],
                    event_ts: float, published_wall: float) -> None:
        """A decision the broker acknowledged on the enforcement topic."""
        self.decisions[(action, reason_code(action, reasons, cluster_ids))] += 1
        # An event may be up to max_event_ahead_s ahead of the wall clock: counted as 0 s
        # rather than as a negative latency that would lower the sum.
        self.decision_latency.observe(max(0.0, published_wall - event_ts))

    def on_processed(self, topic: str, seconds: float) -> None:
        buckets = self.processing.get(topic)
        if buckets is None:
            buckets = self.processing[topic] = Buckets(PROCESSING_BUCKETS)
        buckets.observe(seconds)


class ProcessingSensor(Sensor):
    """Faust's hooks around each record an agent processes: the time between them."""

    def __init__(self, tallies: WorkerTallies, topics: frozenset[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tallies = tallies
        self.topics = topics

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> Any:
        return time.perf_counter()

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any,
                            state: Any = None) -> None:
        # state: what on_stream_event_in returned for this record (Faust passes it back)
        if state is not None and tp.topic in self.topics:
            self.tallies.on_processed(tp.topic, time.perf_counter() - state)


def _name(base: str) -> str:
    return PREFIX + base


class WorkerCollector(Collector):
    """Every family of /metrics, read at scrape time.

    `app`: the Faust app, to refresh `progress` as /health does and to read its tables and
    recovery; None in unit tests (the families that need it are then absent or zero).
    `runtime`: the app's WorkerRuntime (runtime.py), or any object with its `core_counts`,
    `held`, `dead_letters` and `tallies`."""

    def __init__(self, progress: Progress, runtime: Any, app: faust.App | None = None,
                 model_version: str = "") -> None:
        self.progress = progress
        self.runtime = runtime
        self.app = app
        self.model_version = model_version

    def describe(self) -> Iterable[Metric]:
        # The families without reading the worker: the registry checks names on register.
        return []

    def collect(self) -> Iterator[Metric]:
        progress, runtime = self.progress, self.runtime
        if self.app is not None:
            progress.refresh(self.app)  # what /health does before it answers
        report = progress.report()

        info = InfoMetricFamily(_name("core"), "The build of the detection core this worker "
                                "runs (models/_build.py) and its model version.")
        info.add_metric([], {"build": current_build(), "model_version": self.model_version})
        yield info

        status = GaugeMetricFamily(_name("worker_status"), "1 for the worker's /health "
                                   "status now, 0 for the others.", labels=["status"])
        for s in STATUSES:
            status.add_metric([s], 1.0 if report["status"] == s else 0.0)
        yield status
        yield GaugeMetricFamily(_name("worker_no_progress_seconds"), "Seconds since the worker "
                                "last made progress (an offset commit, a recovery step, a "
                                "rebalance); the watchdog exits at stall_timeout_s.",
                                value=report["no_progress_for_s"])
        rss = report["rss_bytes"]
        if rss is not None:  # None off Linux: no /proc/self/status to read
            yield GaugeMetricFamily(_name("worker_resident_memory_bytes"), "Resident set "
                                    "size of the worker process.", value=rss)

        events = CounterMetricFamily(_name("events_processed"), "Records the agents "
                                     "finished, by source topic.", labels=["topic"])
        for topic, n in sorted(progress.processed.items()):
            events.add_metric([topic], n)
        yield events
        yield CounterMetricFamily(_name("offset_commits"), "Offset commits that advanced a "
                                  "source partition.", value=progress.commits)

        lag = GaugeMetricFamily(_name("consumer_lag"), "Records of an assigned source "
                                "partition not committed yet (highwater - committed offset); "
                                "absent until the consumer has fetched the partition.",
                                labels=["topic", "partition"])
        for p in report["partitions"]:
            if p["lag"] is not None:
                lag.add_metric([p["topic"], str(p["partition"])], p["lag"])
        yield lag

        yield GaugeMetricFamily(_name("table_recovery_in_progress"), "1 while the worker "
                                "recovers its tables from their changelogs.",
                                value=1.0 if progress.recovering else 0.0)
        yield GaugeMetricFamily(_name("table_recovery_remaining_records"), "Changelog records "
                                "still to read before the recovery ends.",
                                value=progress.recovery_remaining)
        duration = self._last_recovery_seconds()
        if duration is not None:
            yield GaugeMetricFamily(_name("table_recovery_last_duration_seconds"), "How long "
                                    "the last finished table recovery took.", value=duration)
        yield from self._tables()

        if runtime is None:
            return
        counts = runtime.core_counts
        for key, help_text in CORE_COUNTS:
            yield CounterMetricFamily(_name(key), help_text, value=counts.get(key, 0))

        dead = CounterMetricFamily(_name("dead_letters"), "Records refused to the dead-letter "
                                   "topic, by source topic and reason code "
                                   "(dead_letter_log.py dead_letter_code).",
                                   labels=["topic", "reason"])
        for (topic, code), n in sorted(runtime.dead_letters.by_code.items()):
            dead.add_metric([topic, code], n)
        yield dead

        held = GaugeMetricFamily(_name("held_records"), "Records the agents hold until the "
                                 "next batch or commit, by kind.", labels=["kind"])
        for kind, n in sorted(runtime.held().items()):
            held.add_metric([kind], n)
        yield held

        idle = CounterMetricFamily(_name("idle_states"), "States of a table held as their "
                                   "changelog bytes after a flush interval unused (encoded), "
                                   "and decoded again at their next use (idle_states.py).",
                                   labels=["table", "event"])
        for table, states in sorted(runtime.states.items()):
            idle.add_metric([table, "encoded"], states.encoded_idle)
            idle.add_metric([table, "decoded"], states.decodes)
            idle.add_metric([table, "disk_failed"], states.disk_failed)
        yield idle
        disk = GaugeMetricFamily(_name("states_on_disk"), "Idle states of a table held on "
                                 "this worker's disk (idle_states_on_disk, cold_states.py).",
                                 labels=["table"])
        for table, states in sorted(runtime.states.items()):
            disk.add_metric([table], states.on_disk())
        yield disk

        control = GaugeMetricFamily(_name("control_entries"), "What the worker holds from the "
                                    "settings and the control topic: allowances and operators' "
                                    "decisions (run out or not).", labels=["kind"])
        control.add_metric(["allowance"], len(runtime.allow))
        control.add_metric(["operator_decision"], len(runtime.operator))
        yield control

        tallies: WorkerTallies = runtime.tallies
        decisions = CounterMetricFamily(_name("decisions"), "Decisions the broker acknowledged "
                                        "on the enforcement topic, by action and reason code.",
                                        labels=["action", "reason"])
        for (action, code), n in sorted(tallies.decisions.items()):
            decisions.add_metric([action, code], n)
        yield decisions
        latency = HistogramMetricFamily(_name("decision_latency_seconds"), "Wall clock when a "
                                        "decision is acknowledged minus its event time.")
        latency.add_metric([], tallies.decision_latency.cumulative(),
                           tallies.decision_latency.sum)
        yield latency
        processing = HistogramMetricFamily(_name("record_processing_seconds"), "Time an agent "
                                           "spent on one record, by source topic.",
                                           labels=["topic"])
        for topic, buckets in sorted(tallies.processing.items()):
            processing.add_metric([topic], buckets.cumulative(), buckets.sum)
        yield processing

    def _tables(self) -> Iterator[Metric]:
        if self.app is None:
            return
        entries = GaugeMetricFamily(_name("table_entries"), "Entries of a table held by this "
                                    "worker (memory store only).", labels=["table"])
        for name, table in sorted(self.app.tables.items()):
            store = table.data
            # Counting a memory store is len() of a dict; a RocksDB store would iterate every
            # key on each scrape, so it is left out rather than slowing the event loop.
            if type(store).__module__ == "faust.stores.memory":
                # with its idle states on this worker's disk (idle_states_on_disk)
                states = self.runtime.states.get(name) if self.runtime is not None else None
                on_disk = states.on_disk() if states is not None else 0
                entries.add_metric([name], len(store.data) + on_disk)
        yield entries

    def _last_recovery_seconds(self) -> float | None:
        # Faust keeps no public record of a finished recovery: its Recovery service notes the
        # start and end times (faust/tables/recovery.py, _set_recovery_started/_ended).
        recovery = getattr(getattr(self.app, "tables", None), "recovery", None)
        started = getattr(recovery, "_recovery_started_at", None)
        ended = getattr(recovery, "_recovery_ended_at", None)
        if isinstance(started, float) and isinstance(ended, float) and ended >= started:
            return ended - started
        return None


def metrics_registry(progress: Progress, runtime: Any, app: faust.App | None = None,
                     model_version: str = "") -> CollectorRegistry:
    """A registry of its own holding the worker's collector (why: the module's docstring)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkerCollector(progress, runtime, app, model_version))
    return registry


def install_metrics(app: faust.App, progress: Progress, model_version: str = ""
                    ) -> CollectorRegistry:
    """Register the processing-time sensor and `GET /metrics`; the app's runtime must exist
    (create_app builds it)."""
    runtime = getattr(app, "runtime", None)
    if runtime is None:
        raise RuntimeError("install_metrics needs the app of create_app (app.runtime is None)")
    app.sensors.add(ProcessingSensor(runtime.tallies, progress.source_topics))
    registry = metrics_registry(progress, runtime, app, model_version)

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        # The format the scraper asks for (Prometheus prefers OpenMetrics); without an Accept
        # header, the classic text format 0.0.4 that every version reads.
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.bytes(encode(registry), headers={"Content-Type": content_type})

    return registry
