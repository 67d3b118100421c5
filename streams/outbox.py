"""The account stage's cluster summaries, held and sent as one record per cluster partition.

Sending each summary as its own record made ~2 records per event, and the produce path (Faust's
send, aiokafka's accumulator) was the largest share of a worker's time; the cluster stage then
paid Faust's per-record cost again, and wrote the cluster's whole state once per summary. The
outbox holds summaries per destination partition (the partition their cluster key maps to, as
the keyed record's would) and sends each partition's as one record, `["summaries", [...]]`,
which the cluster stage folds in order and whose touched states it writes once.

Nothing is lost or reordered by holding:
- a source tick says "every summary of an earlier tick has been sent", so `send_tick` sends
  what is held first, then the tick, under one lock;
- the consumer commits an event's offset only after the producer's flush, and the worker
  flushes the outbox first (`install_before_commit`), so no committed event's summaries are
  still held here when a worker dies;
- order within a partition is the order the summaries were made, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from models.messages import ClusterSummary
from models.partitioning import partition_for
from streams.codec import encode_summary_batch

# partition, key, value -> awaitable send (the cluster summaries topic's)
Send = Callable[[int, bytes, bytes], Awaitable[Any]]

BATCH_KEY = b"summaries"


class SummaryOutbox:
    def __init__(self, send: Send, partitions: int, max_held: int) -> None:
        self._send = send
        self.partitions = partitions
        self.max_held = max_held
        self._held: dict[int, list[list[Any]]] = {}
        self.held = 0
        self.records_sent = 0
        self.summaries_sent = 0
        # One sender at a time: the agent (flushes, ticks) and the commit's flush both send,
        # and a tick must never overtake summaries taken out before it.
        self._lock = asyncio.Lock()

    def hold(self, summary: ClusterSummary) -> None:
        q = partition_for(summary.cluster_key, self.partitions)
        self._held.setdefault(q, []).append(summary.to_wire())
        self.held += 1

    @property
    def full(self) -> bool:
        return self.held >= self.max_held

    async def flush(self) -> None:
        async with self._lock:
            await self._send_held()

    async def send_tick(self, tick: bytes) -> None:
        """What is held, then `tick` to every cluster partition."""
        async with self._lock:
            await self._send_held()
            for q in range(self.partitions):
                await self._send(q, b"tick", tick)

    async def _send_held(self) -> None:
        held, self._held, n = self._held, {}, self.held
        self.held = 0
        for q, wires in held.items():
            await self._send(q, BATCH_KEY, encode_summary_batch(wires))
        self.records_sent += len(held)
        self.summaries_sent += n


def install_before_commit(producer: Any, *flushes: Callable[[], Awaitable[None]]) -> None:
    """Make `producer.flush()`, which Faust awaits before every offset commit, await each of
    `flushes` first (the outbox's, the held table writes'), so that what the agents hold is
    delivered before the offsets of the events that made it are committed."""
    flush = producer.flush

    async def flush_held_first() -> None:
        for flush_held in flushes:
            await flush_held()
        await flush()

    producer.flush = flush_held_first
