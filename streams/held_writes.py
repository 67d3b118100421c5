"""Table writes held in memory and sent to the changelog once per batch.

An account sends several requests in the time a worker drains its input, and a cluster gets a
summary in almost every batch of its partition; writing the whole state to the changelog after
each of them was one produced record per event and per summary. The agents now change the
table's local store at once (later reads see the new state) and hold the changelog record; the
newest state of each key is sent once, when `max_held` keys are held, and whenever Faust
flushes the producer: before every offset commit and when partitions are revoked
(`install_before_commit` in streams/outbox.py). So the offsets of an event are never committed
before the state it made, and a partition's next owner recovers every change.

The changelog record of a held key goes to the partition of the event that last changed it,
as Faust's own write would, and carries the bytes encoded when it was changed, so the size
check (`max_state_bytes`) still refuses the event that made a state too large.
"""

from __future__ import annotations

from typing import Any


class HeldWrites:
    def __init__(self, table: Any, max_held: int) -> None:
        self.table = table
        self.max_held = max_held
        # key -> (changelog partition, encoded state, or None for a deletion)
        self._held: dict[Any, tuple[int, bytes | None]] = {}
        self.changes = 0
        self.records_sent = 0

    def put(self, partition: int, key: Any, value: Any, data: bytes) -> None:
        self.table.data[key] = value
        self._held[key] = (partition, data)
        self.changes += 1

    def delete(self, partition: int, key: Any) -> None:
        self.table.data.pop(key, None)
        self._held[key] = (partition, None)
        self.changes += 1

    @property
    def held(self) -> int:
        return len(self._held)

    @property
    def full(self) -> bool:
        return len(self._held) >= self.max_held

    def flush(self) -> None:
        """Hand every held record to the producer's buffer (Faust flushes it before a commit)."""
        held, self._held = self._held, {}
        for key, (partition, data) in held.items():
            # raw: the bytes are already the table codec's encoding (or a tombstone)
            self.table.send_changelog(partition, key, data, value_serializer="raw")
        self.records_sent += len(held)
