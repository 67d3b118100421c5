"""Table writes held in memory and sent to the changelog once per batch.

An account sends several requests in the time a worker drains its input, and a cluster gets a
summary in almost every batch of its partition; writing the whole state to the changelog after
each of them was one produced record per event and per summary. The agents now change the
table's local store at once (later reads see the new state) and hold the changelog record; the
newest state of each key is sent once, when `max_held` keys are held, and whenever Faust
flushes the producer: before every offset commit and when partitions are revoked
(`install_before_commit` in streams/worker/outbox.py). So the offsets of an event are never committed
before the state it made, and a partition's next owner recovers every change.

The changelog record of a held key goes to the partition of the event that last changed it,
as Faust's own write would, and carries the bytes encoded when it was changed, so the size
check (`max_state_bytes`) still refuses the event that made a state too large.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

# topic, key, value (None: a tombstone), partition -> awaitable send
Produce = Callable[[str, bytes, bytes | None, int], Awaitable[Any]]


class HeldWrites:
    def __init__(self, table: Any, produce: Produce, max_held: int,
                 outputs_first: Callable[[], Awaitable[None]] | None = None) -> None:
        self.table = table
        self._produce = produce
        self.max_held = max_held
        # What the held states say was sent (the account stage's summaries, the cluster
        # stage's verdicts): sent before them, or a restart would find a state that records
        # an output nobody received, and never send it again.
        self._outputs_first = outputs_first
        # key -> (changelog partition, encoded state, or None for a deletion)
        self._held: dict[Any, tuple[int, bytes | None]] = {}
        self.changes = 0
        self.records_sent = 0
        # One flush at a time (agents, the commit's flush): a commit must not pass a flush
        # still sending, and an older state must never reach the changelog after a newer one.
        self._lock = asyncio.Lock()

    def put(self, partition: int, key: Any, value: Any, data: bytes, last: bool = False) -> None:
        """Change the table now, its changelog record at the next flush; `last`: sent after
        every record held so far (a key held before would keep its place)."""
        self.table.data[key] = value
        if last:
            self._held.pop(key, None)
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

    async def flush(self) -> None:
        """Send every held record to the table's changelog topic, after `outputs_first`.

        The key is encoded as the table's json key serializer would (orjson gives the same
        bytes for the str and int keys of our tables), the value is already the table codec's
        bytes. Straight to the producer: Faust's changelog path (a future and a buffer per
        record) cost the worker a sixth of its throughput. The records reach the broker before
        the next commit (`install_before_commit`, which ends with the producer's flush). A
        send that fails puts back what was not sent (newer changes made meanwhile win).
        """
        async with self._lock:
            held, self._held = self._held, {}
            sent = 0
            try:
                if self._outputs_first is not None:
                    await self._outputs_first()
                topic = self.table.changelog_topic.get_topic_name()
                for key, (partition, data) in held.items():
                    await self._produce(topic, orjson.dumps(key), data, partition)
                    sent += 1
            except BaseException:
                rest = dict(itertools.islice(held.items(), sent, None))
                rest.update(self._held)
                self._held = rest
                raise
            finally:
                self.records_sent += sent
