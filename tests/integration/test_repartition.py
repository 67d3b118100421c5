"""Re-partitioning (docs/operations.md): a fleet of 48 partitions under its own app id, fed the
old 12-partition requests topic by `distillguard copy-topic`, decides as the replay at 48.

The old fleet's requests topic holds a backlog; the new fleet's topics (48 partitions,
DISTILLGUARD_PARTITIONS=48) and app id are new. Two workers share the 48 partitions, then the
copy writes the whole backlog at once; event-time alignment makes their decisions the offline
replay's at 48 partitions, ids included (the helpers of test_backlog_parity).

The backlog is the test scenario's populations at full scale over half an hour (30,734 events,
~0.36 per second per partition): the 1.5 h at a quarter scale of the 12-partition test is too
sparse for 48 partitions, a partition's event-time gaps holding the cluster tick back so that
the replay itself applies verdicts late (90,592 of them, 0 at 12 partitions) where the aligned
fleet waits, and the two then differ (docs/operations.md, "Re-partitioning").
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import tests.integration.test_faults as faults
from distillguard.simulator import generate_events
from distillguard.streams.edge.settings import Settings, load_settings
from distillguard.streams.edge.topics import TopicMismatchError, check_topics, ensure_topics
from tests.integration.conftest import (
    REPO_ROOT,
    Fleet,
    delete_run_topics,
    event_records,
    produce,
    run_env,
)
from tests.integration.test_backlog_parity import (
    assert_decided_as_replayed,
    replayed,
    start_aligned,
)

pytestmark = [pytest.mark.broker]

PARTITIONS = 48
# Dense enough that every one of 48 partitions passes each cluster tick in time (module doc).
BACKLOG = dataclasses.replace(faults.SCENARIO, scale=1.0, duration_h=0.5)


@pytest.fixture
def run48(broker: str) -> Iterator[Settings]:
    """The new fleet's settings: its own topics at 48 partitions and its own app id."""
    settings = load_settings(env=run_env(uuid.uuid4().hex[:10], broker,
                                         DISTILLGUARD_PARTITIONS=str(PARTITIONS)))
    asyncio.run(ensure_topics(broker, settings.topics.values()))
    yield settings
    asyncio.run(delete_run_topics(broker, settings))


def test_a_fleet_re_partitioned_to_48_decides_as_the_replay_at_48(
        run: Settings, run48: Settings, tmp_path: Path) -> None:
    assert run.partitions == 12 and run48.topics["account_verdicts"].partitions == PARTITIONS
    # The old topics at another count are refused, with what to do.
    with pytest.raises(TopicMismatchError, match="DISTILLGUARD_PARTITIONS"):
        asyncio.run(check_topics(run.kafka_bootstrap,
                                 run.with_overrides(partitions=PARTITIONS).topics.values()))
    events = list(generate_events(BACKLOG))
    asyncio.run(produce(run, event_records(events)))  # the old fleet's retained requests
    expected = replayed(run48, events)

    fleet = Fleet(run48, tmp_path, env={"DISTILLGUARD_PARTITIONS": str(PARTITIONS)})
    try:
        ports = start_aligned(fleet, count=2)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLGUARD_")}
        copy = subprocess.run(
            [sys.executable, "-m", "distillguard", "copy-topic", "--quiet",
             "--from", run.topic_requests, "--to", run48.topic_requests],
            cwd=REPO_ROOT, env={**env, "DISTILLGUARD_KAFKA_BOOTSTRAP": run.kafka_bootstrap},
            capture_output=True, text=True, timeout=300, check=False)
        assert copy.returncode == 0, copy.stderr
        assert f"copied {len(events):,} records" in copy.stdout, copy.stdout
        assert_decided_as_replayed(run48, fleet, ports, expected)
    finally:
        fleet.stop()
