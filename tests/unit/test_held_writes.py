"""`streams.held_writes`: table changes visible at once, one changelog record per key per batch,
on the partition of the event that made the change."""

from __future__ import annotations

from typing import Any

from streams.held_writes import HeldWrites


class Table:
    """The parts of a Faust table the held writes use: its local store and changelog."""

    def __init__(self) -> None:
        self.data: dict[Any, Any] = {}
        self.changelog: list[tuple[int, Any, bytes | None, str]] = []

    def send_changelog(self, partition: int, key: Any, value: bytes | None,
                       value_serializer: str) -> None:
        self.changelog.append((partition, key, value, value_serializer))


def test_a_change_is_read_at_once_and_logged_once_per_batch_with_the_newest_bytes() -> None:
    table = Table()
    writes = HeldWrites(table, max_held=10)
    writes.put(3, "acct-1", {"requests": 1}, b"v1")
    writes.put(3, "acct-1", {"requests": 2}, b"v2")
    writes.put(5, "acct-2", {"requests": 1}, b"w1")
    assert table.data == {"acct-1": {"requests": 2}, "acct-2": {"requests": 1}}
    assert table.changelog == [] and writes.held == 2
    writes.flush()
    assert table.changelog == [(3, "acct-1", b"v2", "raw"), (5, "acct-2", b"w1", "raw")]
    assert writes.held == 0 and writes.records_sent == 2 and writes.changes == 3
    writes.flush()
    assert len(table.changelog) == 2  # nothing held, nothing sent


def test_a_deletion_removes_the_entry_and_logs_a_tombstone() -> None:
    table = Table()
    writes = HeldWrites(table, max_held=10)
    writes.put(1, "acct-9", "state", b"s")
    writes.delete(1, "acct-9")
    assert "acct-9" not in table.data
    writes.flush()
    assert table.changelog == [(1, "acct-9", None, "raw")]


def test_the_writes_are_full_at_their_limit_of_keys() -> None:
    writes = HeldWrites(Table(), max_held=2)
    writes.put(0, "a", 1, b"1")
    writes.put(0, "a", 2, b"2")
    assert not writes.full  # one key, changed twice
    writes.put(0, "b", 1, b"1")
    assert writes.full
