"""`streams.worker.store`: the RocksDB store holds on disk only what reached the changelog.

A change is read back at once (from the overlay), reaches RocksDB when its changelog record is
sent (`HeldWrites.flush` -> `written`), and a worker that dies before that leaves nothing of it
on disk: the database reopened by the next process holds the changelog's state, and the offset
of the newest acknowledged record it covers (where Faust's recovery resumes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faust
import pytest
from faust.types import TP

from distillguard.streams.edge.settings import SettingsError, load_settings
from distillguard.streams.worker import store
from distillguard.streams.worker.held_writes import HeldWrites

pytestmark = pytest.mark.skipif(not store.available(), reason="rocksdict not installed")


class Delivered:
    """The producer's delivery future of a changelog record, acknowledged at `offset`."""

    def __init__(self, partition: int, offset: int) -> None:
        self.partition, self.offset = partition, offset

    def add_done_callback(self, callback: Any) -> None:
        callback(self)

    def cancelled(self) -> bool:
        return False

    def exception(self) -> None:
        return None

    def result(self) -> Delivered:
        return self


def open_table(datadir: Path) -> Any:
    store.install()
    app = faust.App("dg-store-test", store="rocksdb://", datadir=str(datadir))
    table = app.Table("accounts", partitions=2)
    table.key_serializer = "json"
    table.value_serializer = "json"
    table._changelog_topic = None
    data = table.data
    for p in (0, 1):  # as Faust does for the partitions assigned to the worker
        data._db_for_partition(p)
    # both partitions active (Faust asks its assignor, which no consumer group filled here)
    data._dbs_for_actives = lambda: iter(data._dbs.values())
    return table


@pytest.fixture
def datadir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"


def held(table: Any) -> tuple[HeldWrites, list[tuple[str, bytes, bytes | None, int]]]:
    sent: list[tuple[str, bytes, bytes | None, int]] = []
    offsets = iter(range(100, 10_000))

    async def produce(topic: str, key: bytes, value: bytes | None, partition: int) -> Any:
        sent.append((topic, key, value, partition))
        return Delivered(partition, next(offsets))
    return HeldWrites(table, produce, max_held=100), sent


def test_a_change_is_read_at_once_and_reaches_rocksdb_only_with_its_changelog_record(
        datadir: Path) -> None:
    table = open_table(datadir)
    data = table.data
    assert isinstance(data, store.RocksStore)
    writes, sent = held(table)
    writes.put(0, "acct-1", {"requests": 1}, b'{"requests":1}')
    writes.put(1, "acct-2", {"requests": 5}, b'{"requests":5}')
    assert data["acct-1"] == {"requests": 1} and "acct-2" in data
    assert data.overlay_size == 2 and not list(data._iteritems())  # nothing on disk yet
    asyncio.run(writes.flush())
    assert len(sent) == 2 and data.overlay_size == 0
    assert data["acct-1"] == {"requests": 1} and data["acct-2"] == {"requests": 5}  # from disk
    assert sorted(data.keys()) == ["acct-1", "acct-2"]
    writes.put(0, "acct-1", {"requests": 2}, b'{"requests":2}')
    writes.delete(1, "acct-2")
    assert data["acct-1"] == {"requests": 2} and "acct-2" not in data
    assert dict(data.items()) == {"acct-1": {"requests": 2}}
    asyncio.run(writes.flush())
    assert data["acct-1"] == {"requests": 2} and "acct-2" not in data
    assert [k for k in data._iterkeys()] == [b'"acct-1"']


def test_a_worker_that_dies_before_the_flush_leaves_the_changelog_state_on_disk(
        datadir: Path) -> None:
    table = open_table(datadir)
    writes, _ = held(table)
    writes.put(0, "acct-1", {"requests": 1}, b'{"requests":1}')
    asyncio.run(writes.flush())  # changelog offset 100, partition 0
    writes.put(1, "acct-3", {"requests": 1}, b'{"requests":1}')
    asyncio.run(writes.flush())  # offset 101, partition 1; 100 is persisted now
    writes.put(0, "acct-1", {"requests": 9}, b'{"requests":9}')  # never flushed: kill -9
    changelog = table.changelog_topic.get_topic_name()
    assert table.data.persisted_offset(TP(changelog, 0)) == 100
    assert table.data.persisted_offset(TP(changelog, 1)) is None  # acknowledged after its flush
    for db in table.data._dbs.values():
        db.close()

    reopened = open_table(datadir).data
    assert reopened["acct-1"] == {"requests": 1}  # the changelog's state, not the lost change
    assert reopened["acct-3"] == {"requests": 1}
    assert reopened.persisted_offset(TP(changelog, 0)) == 100


def test_a_change_made_while_its_flush_runs_stays_in_the_overlay(datadir: Path) -> None:
    table = open_table(datadir)
    data = table.data
    sent: list[bytes | None] = []

    async def produce(topic: str, key: bytes, value: bytes | None, partition: int) -> Any:
        sent.append(value)
        writes.put(0, "acct-1", {"requests": 3}, b'{"requests":3}')  # the agent, meanwhile
        return None
    writes = HeldWrites(table, produce, max_held=100)
    writes.put(0, "acct-1", {"requests": 2}, b'{"requests":2}')
    asyncio.run(writes.flush())
    assert sent == [b'{"requests":2}']
    assert data["acct-1"] == {"requests": 3} and writes.held == 1


def test_the_store_setting_is_memory_or_rocksdb() -> None:
    assert load_settings(env={"DISTILLGUARD_STORE": "rocksdb://"}).store == "rocksdb://"
    with pytest.raises(SettingsError, match="store must be one of"):
        load_settings(env={"DISTILLGUARD_STORE": "redis://"})


class ChangelogRecord:
    """A changelog record as Faust's recovery hands it to the store."""

    def __init__(self, partition: int, offset: int, key: bytes, value: bytes | None) -> None:
        self.message = self
        self.tp = TP("dg-store-test-accounts-changelog", partition)
        self.partition, self.offset, self.key, self.value = partition, offset, key, value


def test_a_state_recovered_from_the_changelog_replaces_the_one_read_before(
        datadir: Path) -> None:
    table = open_table(datadir)
    data = table.data
    writes, _ = held(table)
    writes.put(0, "acct-1", {"requests": 1}, b'{"requests":1}')
    asyncio.run(writes.flush())
    assert data["acct-1"] == {"requests": 1}  # read, and kept decoded
    # another worker's newer state, read by a recovery or a standby
    data.apply_changelog_batch([ChangelogRecord(0, 7, b'"acct-1"', b'{"requests":4}'),
                                ChangelogRecord(1, 3, b'"acct-5"', b'{"requests":2}')],
                               None, None)
    assert data["acct-1"] == {"requests": 4} and data["acct-5"] == {"requests": 2}
    data.apply_changelog_batch([ChangelogRecord(0, 8, b'"acct-1"', None)], None, None)
    assert "acct-1" not in data
