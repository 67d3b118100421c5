"""The RocksDB table store (`DISTILLGUARD_STORE=rocksdb://`, streams/worker/store.py) on the real
broker:

- a worker on rocksdb:// decides as a worker on memory:// on the same traffic, decision ids
  included (the two run side by side, each on its own topics);
- a worker killed with kill -9 and started again on its data directory recovers its tables
  and decides as an uninterrupted run (the replay), as the memory store's kill -9 test holds
  it (tests/integration/test_faults.py), and its partitions' contexts come back from their
  snapshots.

Each prints how long the restarted worker took to be ready; `bench/worker_memory.py --restart`
measures it with more state, for both stores.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from distillguard.models.decision import STRENGTH
from distillguard.simulator import generate_events
from distillguard.streams.cli.produce import produce_events
from distillguard.streams.edge.settings import Settings, load_settings
from distillguard.streams.edge.topics import ensure_topics
from distillguard.streams.worker import store
from tests.integration.conftest import Fleet, delete_run_topics, run_env, wait_until
from tests.integration.test_faults import (
    FAULT_ENV,
    assert_decided_as_uninterrupted,
    assert_duplicates_share_an_id,
    compare_campaign_decisions,
    decisions_in,
    log_lines,
    produce_paced,
    read_topic,
    scenario_events,
    strongest,
    uninterrupted_reference,
    wait_settled,
)
from tests.integration.test_replay_topic import PARITY_ENV, PARITY_RATE, PARITY_SCENARIO

pytestmark = [pytest.mark.broker, pytest.mark.slow,
              pytest.mark.skipif(not store.available(), reason="rocksdict not installed")]


@dataclasses.dataclass
class StoreRun:
    settings: Settings
    fleet: Fleet


@pytest.fixture
def store_runs(broker: str, tmp_path: Path) -> Iterator[dict[str, StoreRun]]:
    """One run per store (own topics, group, data directory), for the tests to fill."""
    made: dict[str, StoreRun] = {}

    def make(name: str, store_url: str, env: dict[str, str]) -> StoreRun:
        run_id = uuid.uuid4().hex[:10]
        settings = load_settings(env=run_env(run_id, broker, **env))
        asyncio.run(ensure_topics(broker, settings.topics.values()))
        log_dir = tmp_path / name
        log_dir.mkdir()
        fleet = Fleet(settings, log_dir, env={**env, "DISTILLGUARD_STORE": store_url,
                                               "DISTILLGUARD_DATA_DIR": str(log_dir / "data")})
        made[name] = StoreRun(settings, fleet)
        return made[name]

    yield make
    for r in made.values():
        r.fleet.stop()
        asyncio.run(delete_run_topics(broker, r.settings))


def ready(fleet: Fleet, worker: int, partitions: int) -> bool:
    h = fleet.health()[worker]
    return bool(h and h["status"] in ("ok", "idle") and {
        p["partition"] for p in h["partitions"] if p["topic"] == fleet.settings.topic_requests
    } == set(range(partitions)))


def by_account(decisions: list[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for d in decisions:
        if d["decision_id"] not in out[d["account_id"]]:  # a decision published again: once
            out[d["account_id"]].append(d["decision_id"])
    return out


def test_a_rocksdb_worker_decides_as_a_memory_worker(store_runs: Any) -> None:
    """The parity scenario of test_replay_topic, paced as there, into one worker per store."""
    runs = {name: store_runs(name, url, PARITY_ENV)
            for name, url in (("memory", "memory://"), ("rocksdb", "rocksdb://"))}
    for i, r in enumerate(runs.values()):
        r.fleet.start(count=1, base_port=16000 + (os.getpid() % 1000) * 10 + i * 5)
    for r in runs.values():
        wait_until(lambda r=r: ready(r.fleet, 0, r.settings.partitions), 120,
                   "the worker's partitions", r.fleet)
    events = list(generate_events(PARITY_SCENARIO))

    async def both() -> None:
        await asyncio.gather(*(produce_events(r.settings.kafka_bootstrap,
                                              r.settings.topic_requests, events,
                                              rate=PARITY_RATE, progress=False)
                               for r in runs.values()))
    asyncio.run(both())
    decided = {}
    for name, r in runs.items():
        asyncio.run(wait_settled(r.settings, 180, lambda r=r: all(r.fleet.alive()),
                                 r.fleet.ports))
        decided[name] = by_account(decisions_in(asyncio.run(read_topic(r.settings,
                                                                       "enforcement"))))
    mem, rocks = decided["memory"], decided["rocksdb"]
    assert len(mem) >= 50, f"too few accounts acted on for the comparison to mean much: {mem}"
    differ = sorted(a for a in set(mem) | set(rocks) if mem.get(a) != rocks.get(a))
    assert not differ, (f"{len(differ)} of {len(set(mem) | set(rocks))} accounts got other "
                        f"decision ids; first: {[(a, mem.get(a), rocks.get(a)) for a in differ[:3]]}")
    print(f"\n{len(mem)} accounts acted on, {sum(len(v) for v in mem.values())} decisions: "
          "the same ids from both stores")


# The kill -9 test's traffic: the fault tests' scenario, paced and delayed as the parity test
# paces it, so that one worker keeps up on a loaded machine and an uninterrupted worker decides
# as the replay; what is left to differ is what the kill and the restart lose.
KILL_ENV = {**FAULT_ENV, **PARITY_ENV}


@pytest.mark.parametrize("store_url", ["rocksdb://", "memory://"])
def test_a_worker_killed_and_restarted_recovers_its_tables(store_runs: Any,
                                                           store_url: str) -> None:
    """One worker streams the fault tests' scenario; at two thirds of it, once it has
    committed, it is killed with SIGKILL while events are still in flight, and another starts
    on the same data directory; once it has caught up, the rest of the stream follows.
    Decided as the uninterrupted run (the replay, with the fault tests' margins, every
    partition counted as the fault's), no decision lost, duplicates under one id, every
    partition's context restored from its snapshot. memory:// is the control: the same test
    on the store that recovers from the changelogs alone."""
    r = store_runs(store_url.removesuffix("://"), store_url, KILL_ENV)
    settings, fleet = r.settings, r.fleet
    partitions = settings.partitions
    fleet.start(count=1)
    wait_until(lambda: ready(fleet, 0, partitions), 120, "the worker's partitions", fleet)
    events = list(scenario_events())
    head, tail = events[:len(events) * 2 // 3], events[len(events) * 2 // 3:]
    asyncio.run(produce_paced(settings, head, PARITY_RATE))

    def committed() -> bool:
        h = fleet.health()[0]
        return bool(h and h["last_commit_ts"])
    wait_until(committed, 120, "a commit before the kill", fleet)
    fleet.procs[0].send_signal(signal.SIGKILL)
    assert fleet.procs[0].wait(timeout=10) == -signal.SIGKILL
    killed = time.monotonic()
    fleet.start(count=1)  # on the same data directory (the fleet's env)
    wait_until(lambda: ready(fleet, 1, partitions), 180, "the restarted worker ready", fleet)
    ready_s = time.monotonic() - killed
    caught_up = asyncio.run(wait_settled(settings, 300, lambda: fleet.alive()[1],
                                         [fleet.ports[1]]))
    print(f"\nkill -9 at 2/3 of the stream: the restarted worker ({store_url}) ready "
          f"{ready_s:.1f} s after the kill (the group's session timeout, "
          f"{settings.session_timeout_s:.0f} s, included); caught up "
          f"{caught_up - killed:.1f} s after the kill")
    asyncio.run(produce_paced(settings, tail, PARITY_RATE))
    asyncio.run(wait_settled(settings, 300, lambda: fleet.alive()[1], [fleet.ports[1]]))

    decisions = decisions_in(asyncio.run(read_topic(settings, "enforcement")))
    result = compare_campaign_decisions(uninterrupted_reference(settings), strongest(decisions),
                                        settings.detector.throttle_score)
    print(f"campaign accounts acted on: {result['live_acted']} (uninterrupted run "
          f"{result['reference_acted']}); missed {len(result['missed'])}, on the edge "
          f"{len(result['missed_on_the_edge'])}, weaker {len(result['weaker'])}")
    assert result["reference_acted"] >= 20, "the scenario should lead to campaign decisions"
    assert_decided_as_uninterrupted(result)

    acted = strongest(decisions)
    published = {d["decision_id"] for d in decisions}
    logged = log_lines(fleet, 0, "decision")
    lost = [line for line in logged if line["decision_id"] not in published
            and STRENGTH[acted.get(line["account_id"], "allow")] < STRENGTH[line["action"]]]
    assert not lost, f"decisions lost with the worker: {lost}"
    repeated = assert_duplicates_share_an_id(decisions)
    print(f"{len(decisions)} decisions, {repeated} published again with the same id")

    assert not any(line["count"] >= 100 for line in log_lines(fleet, 1, "late_verdicts")), \
        "the restarted worker applied verdicts late: it fell behind, not the store's doing"
    restored = log_lines(fleet, 1, "partition_context_restored")
    cold = log_lines(fleet, 1, "partition_context_cold")
    assert not cold and {line["partition"] for line in restored} == set(range(partitions)) \
        and all("model" in line["restored"] for line in restored), \
        f"the restarted worker should restore every partition's context: {restored}; {cold}"
