"""Test runs leave the broker as they found it: a broker that served many runs held 1.9 GB of
their tables' changelogs, and the fault tests failed against it (tests/integration/conftest.py,
`delete_run_topics`)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from distillguard.streams.edge.settings import Settings
from distillguard.streams.edge.topics import TopicSpec, delete_topics, ensure_topics
from tests.integration.conftest import delete_run_topics

pytestmark = pytest.mark.broker


async def _topics(broker: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


def test_a_run_s_topics_and_its_workers_changelogs_are_deleted(broker: str, run: Settings) -> None:
    made = [f"{run.app_id}-accounts-changelog", f"{run.app_id}-__assignor-__leader"]
    other = f"dg-test-other-{run.app_id[-10:]}-accounts-changelog"  # another run's: kept
    asyncio.run(ensure_topics(broker, [TopicSpec(logical=n, name=n, partitions=1)
                                       for n in [*made, other]]))
    ours = {t.name for t in run.topics.values()} | set(made)
    assert ours | {other} <= asyncio.run(_topics(broker))
    asyncio.run(delete_run_topics(broker, run))
    left = asyncio.run(_topics(broker))
    assert not ours & left and other in left
    asyncio.run(delete_topics(broker, [other]))
