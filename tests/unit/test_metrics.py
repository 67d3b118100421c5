"""The worker's Prometheus collector (streams/worker/metrics.py) over a fake runtime: every family
present, Prometheus-valid names, and the values of the objects /health reads."""

from __future__ import annotations

import doctest
import re
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from distillguard.models._build import current_build
from distillguard.models.allowlist import Allowance, AllowList
from distillguard.models.operator import OperatorDecision, OperatorDecisions
from distillguard.streams.worker import dead_letter_log, metrics
from distillguard.streams.worker.dead_letter_log import DeadLetterLog
from distillguard.streams.worker.health import Progress
from distillguard.streams.worker.metrics import (
    PROCESSING_BUCKETS,
    Buckets,
    WorkerTallies,
    metrics_registry,
)

# What an operator's dashboard and alerts rely on: family name -> type. Written out here, not
# read from metrics.py, so that a family dropped there fails this test.
EXPECTED = {
    # an info metric: in Prometheus' text format, a gauge of value 1 named <name>_info
    "distillguard_core_info": "gauge",
    "distillguard_worker_status": "gauge",
    "distillguard_worker_no_progress_seconds": "gauge",
    "distillguard_worker_resident_memory_bytes": "gauge",
    "distillguard_events_processed": "counter",
    "distillguard_offset_commits": "counter",
    "distillguard_consumer_lag": "gauge",
    "distillguard_table_recovery_in_progress": "gauge",
    "distillguard_table_recovery_remaining_records": "gauge",
    "distillguard_late_verdicts": "counter",
    "distillguard_behind_summaries": "counter",
    "distillguard_judged_early_summaries": "counter",
    "distillguard_dead_letters": "counter",
    "distillguard_held_records": "gauge",
    "distillguard_idle_states": "counter",
    "distillguard_states_on_disk": "gauge",
    "distillguard_control_entries": "gauge",
    "distillguard_decisions": "counter",
    "distillguard_decision_latency_seconds": "histogram",
    "distillguard_record_processing_seconds": "histogram",
}
# Families that need a running Faust app (its tables and recovery service): absent here.
WITH_APP_ONLY = {"distillguard_table_entries", "distillguard_table_recovery_last_duration_seconds"}

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def fake_worker() -> tuple[Progress, Any]:
    """A Progress and a runtime as a worker that has done a little of everything has them."""
    progress = Progress(source_topics=frozenset({"req", "sums"}), stall_timeout_s=60.0)
    progress.processed.update({"req": 120, "sums": 7})
    progress.on_commit({("req", 0): 100})
    progress.on_commit({("req", 0): 120})
    progress.partitions = {("req", 0): {"highwater": 130, "committed": 120, "lag": 10},
                           ("req", 1): {"highwater": None, "committed": None, "lag": None},
                           ("sums", 3): {"highwater": 9, "committed": 7, "lag": 2}}
    progress.recovering, progress.recovery_remaining = True, 42
    progress.status = "ok"
    dead = DeadLetterLog(lambda event, **kw: None)
    dead.record("record value is not JSON: x", "req", 0, 5)
    dead.record("record value is not JSON: y", "req", 0, 6)
    dead.record("internal error: KeyError: 'a'", "sums", 3, 1)
    tallies = WorkerTallies()
    tallies.on_decision("block", ["score 0.9 -> block"], ["tpl:s:ab", "ip:1.2.3.0/24"],
                        event_ts=1000.0, published_wall=1002.0)
    tallies.on_decision("throttle", ["score 0.6 -> throttle"], ["ip:1.2.3.0/24"],
                        event_ts=1000.0, published_wall=1000.05)
    tallies.on_decision("allow", ["allow-listed account a (control): ok"], [],
                        event_ts=1000.0, published_wall=999.0)  # ahead of the clock: 0 s
    tallies.on_processed("req", 0.0004)
    tallies.on_processed("req", 0.002)
    runtime = SimpleNamespace(
        core_counts=Counter({"late_verdicts": 3, "behind_summaries": 2}),
        held=lambda: {"summaries": 4, "verdicts": 0, "account_states": 11},
        dead_letters=dead, tallies=tallies, allow=AllowList(), operator=OperatorDecisions(),
        states={"accounts": SimpleNamespace(encoded_idle=7, decodes=5, disk_failed=0,
                                            on_disk=lambda: 3)})
    runtime.allow.grant(Allowance("org", "org-1", "verified", "settings"))
    runtime.operator.put(OperatorDecision("a-1", "block", 60, None, "ticket", "alice", 0.0))
    runtime.operator.put(OperatorDecision("a-2", "allow", 60, None, "ticket", "alice", 0.0))
    return progress, runtime


class MemoryStore:
    """Stands for Faust's memory store (the collector counts only those: len of a dict)."""

    __module__ = "faust.stores.memory"

    def __init__(self, n: int) -> None:
        self.data = {i: None for i in range(n)}


class RocksStore:
    __module__ = "faust.stores.rocksdb"


class Tables(dict):
    recovery = SimpleNamespace(in_recovery=False, active_remaining_total=lambda: 0,
                               _recovery_started_at=10.0, _recovery_ended_at=12.5)


def fake_app() -> Any:
    """What the collector reads of a Faust app: its consumer (no assignment), tables, recovery."""
    tables = Tables(accounts=SimpleNamespace(data=MemoryStore(5)),
                    clusters=SimpleNamespace(data=MemoryStore(2)),
                    on_disk=SimpleNamespace(data=RocksStore()))
    return SimpleNamespace(consumer=SimpleNamespace(assignment=lambda: set()), tables=tables,
                           rebalancing=False)


def scrape(progress: Progress, runtime: Any, app: Any = None) -> dict[str, Any]:
    text = generate_latest(metrics_registry(progress, runtime, app, "mv-test")).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def exported_sample_names() -> set[str]:
    """Every sample name /metrics exports (<counter>_total, <histogram>_bucket ...): what the
    dashboard's expressions may name (tests/unit/test_compose.py)."""
    # without the app (partitions with lag) and with it (table entries, the last recovery)
    return {s.name for app in (None, fake_app())
            for f in scrape(*fake_worker(), app=app).values() for s in f.samples}


def samples(family: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}


def test_every_family_is_exported_with_its_type() -> None:
    families = scrape(*fake_worker())
    missing = set(EXPECTED) - set(families)
    assert not missing, f"/metrics lacks {sorted(missing)}"
    assert {n: families[n].type for n in EXPECTED} == EXPECTED
    assert set(families) - set(EXPECTED) <= WITH_APP_ONLY, "a family not listed in EXPECTED"


def test_names_follow_prometheus_conventions() -> None:
    for name, family in scrape(*fake_worker()).items():
        assert NAME.fullmatch(name) and name.startswith("distillguard_"), name
        assert family.documentation.strip(), f"{name} has no help text"
        for s in family.samples:
            assert all(LABEL.fullmatch(k) and not k.startswith("__") for k in s.labels), s
            if family.type == "counter":
                assert s.name.endswith(("_total", "_created")), s.name
        # base units spelt out: no milliseconds, kilobytes, etc.
        assert not re.search(r"_(ms|milliseconds|kb|mb|kilobytes|megabytes|minutes)(_|$)", name)
        if family.type == "histogram":
            assert name.endswith("_seconds"), f"{name}: a histogram of time in seconds"


def test_values_are_read_from_the_worker() -> None:
    progress, runtime = fake_worker()
    f = scrape(progress, runtime)
    assert samples(f["distillguard_events_processed"]) == {
        ("distillguard_events_processed_total", (("topic", "req"),)): 120.0,
        ("distillguard_events_processed_total", (("topic", "sums"),)): 7.0}
    assert samples(f["distillguard_offset_commits"]) == {
        ("distillguard_offset_commits_total", ()): 2.0}
    # a partition not fetched yet has no lag to show: no sample, not a 0
    assert samples(f["distillguard_consumer_lag"]) == {
        ("distillguard_consumer_lag", (("partition", "0"), ("topic", "req"))): 10.0,
        ("distillguard_consumer_lag", (("partition", "3"), ("topic", "sums"))): 2.0}
    assert samples(f["distillguard_late_verdicts"]) == {
        ("distillguard_late_verdicts_total", ()): 3.0}
    assert samples(f["distillguard_behind_summaries"]) == {
        ("distillguard_behind_summaries_total", ()): 2.0}
    assert samples(f["distillguard_judged_early_summaries"]) == {
        ("distillguard_judged_early_summaries_total", ()): 0.0}
    assert samples(f["distillguard_dead_letters"]) == {
        ("distillguard_dead_letters_total", (("reason", "not_json"), ("topic", "req"))): 2.0,
        ("distillguard_dead_letters_total", (("reason", "internal_error"), ("topic", "sums"))):
            1.0}
    assert samples(f["distillguard_held_records"])[
        ("distillguard_held_records", (("kind", "account_states"),))] == 11.0
    assert samples(f["distillguard_idle_states"]) == {
        ("distillguard_idle_states_total", (("event", "encoded"), ("table", "accounts"))): 7.0,
        ("distillguard_idle_states_total", (("event", "decoded"), ("table", "accounts"))): 5.0,
        ("distillguard_idle_states_total", (("event", "disk_failed"), ("table", "accounts"))):
            0.0}
    assert samples(f["distillguard_states_on_disk"]) == {
        ("distillguard_states_on_disk", (("table", "accounts"),)): 3.0}
    assert samples(f["distillguard_decisions"]) == {
        ("distillguard_decisions_total", (("action", "allow"), ("reason", "allow_listed"))): 1.0,
        ("distillguard_decisions_total", (("action", "block"), ("reason", "cluster_tpl"))): 1.0,
        ("distillguard_decisions_total", (("action", "throttle"), ("reason", "cluster_ip"))):
            1.0}
    latency = samples(f["distillguard_decision_latency_seconds"])
    assert latency[("distillguard_decision_latency_seconds_count", ())] == 3.0
    assert latency[("distillguard_decision_latency_seconds_sum", ())] == pytest.approx(2.05)
    assert latency[("distillguard_decision_latency_seconds_bucket", (("le", "0.1"),))] == 2.0
    assert latency[("distillguard_decision_latency_seconds_bucket", (("le", "2.5"),))] == 3.0
    processing = samples(f["distillguard_record_processing_seconds"])
    assert processing[("distillguard_record_processing_seconds_count", (("topic", "req"),))] == 2
    assert processing[("distillguard_record_processing_seconds_bucket",
                       (("le", "0.0005"), ("topic", "req")))] == 1.0
    assert samples(f["distillguard_table_recovery_in_progress"]) == {
        ("distillguard_table_recovery_in_progress", ()): 1.0}
    assert samples(f["distillguard_table_recovery_remaining_records"]) == {
        ("distillguard_table_recovery_remaining_records", ()): 42.0}
    status = samples(f["distillguard_worker_status"])
    assert status[("distillguard_worker_status", (("status", "ok"),))] == 1.0
    assert sum(status.values()) == 1.0
    (core,) = f["distillguard_core_info"].samples
    assert core.name == "distillguard_core_info" and core.value == 1.0
    assert core.labels == {"build": current_build(), "model_version": "mv-test"}


def test_counters_move_between_scrapes() -> None:
    progress, runtime = fake_worker()
    before = scrape(progress, runtime)
    progress.on_event_done("req")
    runtime.tallies.on_decision("block", ["x"], ["pay:abc"], 5.0, 6.0)
    runtime.dead_letters.record("record has no key (the key must be the account_id)",
                                "req", 1, 9)
    after = scrape(progress, runtime)
    assert (samples(after["distillguard_events_processed"])[
        ("distillguard_events_processed_total", (("topic", "req"),))] == 121.0)
    assert (samples(after["distillguard_decisions"])[
        ("distillguard_decisions_total", (("action", "block"), ("reason", "cluster_pay")))]
        == 1.0)
    assert (samples(after["distillguard_dead_letters"])[
        ("distillguard_dead_letters_total", (("reason", "bad_key"), ("topic", "req")))] == 1.0)
    assert len(after["distillguard_decisions"].samples) == \
        len(before["distillguard_decisions"].samples) + 1


def test_a_worker_without_a_runtime_still_exports_what_health_knows() -> None:
    progress, _ = fake_worker()
    families = scrape(progress, None)
    assert "distillguard_events_processed" in families
    assert "distillguard_decisions" not in families


def test_with_the_app_memory_tables_are_counted_and_the_last_recovery_timed() -> None:
    progress, runtime = fake_worker()
    families = scrape(progress, runtime, fake_app())
    assert set(EXPECTED) | WITH_APP_ONLY <= set(families)
    # a RocksDB table is left out: counting it would iterate every key on each scrape; the
    # accounts' idle states on the worker's disk (3) are entries of the table all the same
    assert samples(families["distillguard_table_entries"]) == {
        ("distillguard_table_entries", (("table", "accounts"),)): 8.0,
        ("distillguard_table_entries", (("table", "clusters"),)): 2.0}
    assert samples(families["distillguard_table_recovery_last_duration_seconds"]) == {
        ("distillguard_table_recovery_last_duration_seconds", ()): 2.5}
    # refreshed from the app as /health does: no assignment, no lag, no recovery
    assert not families["distillguard_consumer_lag"].samples
    assert samples(families["distillguard_table_recovery_in_progress"]) == {
        ("distillguard_table_recovery_in_progress", ()): 0.0}


def test_buckets_count_a_value_equal_to_a_bound_in_that_bucket() -> None:
    b = Buckets((0.1, 1.0))
    for v in (0.1, 0.5, 1.0, 7.0):
        b.observe(v)
    assert b.cumulative() == [("0.1", 1.0), ("1.0", 3.0), ("+Inf", 4.0)]
    assert b.count == 4 and b.sum == pytest.approx(8.6)
    assert list(PROCESSING_BUCKETS) == sorted(PROCESSING_BUCKETS)


@pytest.mark.parametrize("module", [metrics, dead_letter_log])
def test_docstring_examples(module: Any) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


def test_what_the_worker_holds_from_the_control_topic_is_counted() -> None:
    family = scrape(*fake_worker())["distillguard_control_entries"]
    assert samples(family) == {
        ("distillguard_control_entries", (("kind", "allowance"),)): 1.0,
        ("distillguard_control_entries", (("kind", "operator_decision"),)): 2.0}
