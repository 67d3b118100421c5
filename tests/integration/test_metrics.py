"""GET /metrics of a real worker on the real broker: every family there, and the counters moving
as simulated traffic is processed (events, decisions, the latency histogram)."""

from __future__ import annotations

import asyncio
import dataclasses
import urllib.request
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from distillguard.simulator import Scenario, generate_events
from tests.integration.conftest import Fleet, event_records, produce, wait_until
from tests.unit.test_metrics import EXPECTED, WITH_APP_ONLY

pytestmark = [pytest.mark.broker, pytest.mark.slow]

# As test_fleet's: campaigns large enough to be decided on within a few minutes of one worker.
SCENARIO = dataclasses.replace(Scenario.default(), scale=0.25, duration_h=1.5, seed=11)


def scrape(fleet: Fleet) -> dict[str, Any] | None:
    """The worker's /metrics parsed, None while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{fleet.ports[0]}/metrics",
                                    timeout=5) as r:
            # no Accept header: the classic text format
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers
            text = r.read().decode()
    except OSError:
        return None
    return {f.name: f for f in text_string_to_metric_families(text)}


def total(families: dict[str, Any], family: str, sample: str) -> float:
    return sum(s.value for s in families[family].samples if s.name == sample)


def moved(families: dict[str, Any] | None) -> tuple[float, float, float]:
    """events processed, decisions, decision latency observations"""
    if families is None:
        return (0.0, 0.0, 0.0)
    return (total(families, "distillguard_events_processed",
                  "distillguard_events_processed_total"),
            total(families, "distillguard_decisions", "distillguard_decisions_total"),
            total(families, "distillguard_decision_latency_seconds",
                  "distillguard_decision_latency_seconds_count"))


def test_metrics_of_a_worker_processing_traffic(run, fleet) -> None:
    fleet.start(count=1)
    events = list(generate_events(SCENARIO))
    half = len(events) // 2
    # a bad record too, so that the dead-letter family has a sample
    asyncio.run(produce(run, [(b"acct-bad", b"{not json"), *event_records(events[:half])]))

    def decided() -> dict[str, Any] | None:
        assert all(fleet.alive()), fleet.logs()
        families = scrape(fleet)
        return families if families is not None and moved(families)[1] > 0 else None

    first = wait_until(decided, 300, "a first decision in /metrics", fleet, interval_s=2.0)
    asyncio.run(produce(run, event_records(events[half:])))

    def moved_on() -> dict[str, Any] | None:
        assert all(fleet.alive()), fleet.logs()
        families = scrape(fleet)
        if families is None:
            return None
        return families if all(b > a for a, b in zip(moved(first), moved(families),
                                                     strict=True)) else None

    second = wait_until(moved_on, 300, "events, decisions and latencies to move in /metrics",
                        fleet, interval_s=2.0)

    for families in (first, second):
        missing = (set(EXPECTED) | WITH_APP_ONLY) - set(families)
        assert not missing, f"/metrics lacks {sorted(missing)}"
        assert {n: families[n].type for n in EXPECTED} == EXPECTED
    topics = {s.labels["topic"] for s in second["distillguard_events_processed"].samples}
    assert run.topic_requests in topics
    assert {s.labels["topic"] for s in second["distillguard_consumer_lag"].samples} <= {
        run.topic_requests, run.topic_cluster_summaries, run.topic_account_verdicts}
    assert second["distillguard_consumer_lag"].samples, "no partition's lag"
    dead = {(s.labels["topic"], s.labels["reason"]): s.value
            for s in second["distillguard_dead_letters"].samples}
    assert dead == {(run.topic_requests, "not_json"): 1.0}
    actions = {s.labels["action"] for s in second["distillguard_decisions"].samples}
    assert actions <= {"throttle", "block", "allow"} and actions & {"throttle", "block"}
    processing = total(second, "distillguard_record_processing_seconds",
                       "distillguard_record_processing_seconds_count")
    assert processing >= moved(second)[0] - 5  # every record timed (but those in flight)
    entries = {s.labels["table"]: s.value for s in second["distillguard_table_entries"].samples}
    assert entries.get("accounts", 0) > 0, entries
    (core,) = second["distillguard_core_info"].samples
    assert core.labels["build"] in ("compiled", "interpreted")
    assert core.labels["model_version"] == run.detector.model_version
    rss = second["distillguard_worker_resident_memory_bytes"].samples[0].value
    assert rss > 10_000_000
    # Prometheus asks for OpenMetrics first: that is what it gets, and it parses
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    request = urllib.request.Request(f"http://127.0.0.1:{fleet.ports[0]}/metrics",
                                     headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=5) as r:
        assert r.headers["Content-Type"].startswith("application/openmetrics-text"), r.headers
        open_metrics = {f.name for f in openmetrics_families(r.read().decode())}
    assert {n.removesuffix("_info") for n in EXPECTED} <= open_metrics
    # what /health says agrees with /metrics (both read the same objects)
    (health,) = fleet.health()
    assert health is not None
    assert health["dead_letters_total"] == sum(dead.values())
    assert health["alignment"].get("late_verdicts", 0) >= total(
        second, "distillguard_late_verdicts", "distillguard_late_verdicts_total")  # read later
    assert health["events_processed_total"] >= moved(second)[0]
