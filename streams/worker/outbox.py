"""Records between the stages, held and sent as one record per destination partition.

Sending each cluster summary and each account verdict as its own record made ~2.4 records per
event, and the produce path (Faust's send, aiokafka's accumulator) was the largest share of a
worker's time; the receiving stage then paid Faust's per-record cost again. An outbox holds
them per destination partition (the partition their key maps to, as a keyed record's would)
and sends each partition's as one record, `[tag, [item, ...]]`, which the receiving stage
reads in order.

Nothing is lost or reordered by holding:
- the order within a partition is the order the items were held;
- a source tick says "every summary of an earlier tick has been sent", so `send_after_held`
  sends what is held first, then the tick, under one lock;
- the consumer commits an event's offset only after the producer's flush, and the worker
  flushes its outboxes first (`install_before_commit`), so no committed event's output is
  still held here when a worker dies;
- an item that cannot be encoded (a bug upstream: the core's values are bounded) is refused
  alone, with its reason (the worker dead-letters it); the batch it was held in is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from distillguard.models.partitioning import partition_for
from distillguard.streams.edge.codec import encode_batch

# partition, key, value -> awaitable send (the destination topic's)
Send = Callable[[int, bytes, bytes], Awaitable[Any]]
# reason, the item's wire form as far as it can be shown -> awaitable (the dead-letter topic)
Refuse = Callable[[str, bytes], Awaitable[Any]]
# An item's wire form that orjson cannot encode (an integer past 64 bits, a value of no JSON
# type): it goes to `refuse`, alone; the items held beside it are sent.
UNENCODABLE = (TypeError, ValueError, OverflowError)


class Outbox:
    def __init__(self, tag: str, send: Send, partitions: int, max_held: int,
                 key_of: Callable[[Any], str], max_record_bytes: int,
                 refuse: Refuse | None = None) -> None:
        self.tag = tag
        self._refuse = refuse
        self.refused = 0
        # refused items whose dead letter has not been sent yet (it failed): tried again first
        self._refusing: list[tuple[str, bytes]] = []
        self.max_record_bytes = max_record_bytes
        self._key = tag.encode()
        self._send = send
        self._key_of = key_of
        self.partitions = partitions
        self.max_held = max_held
        self._held: dict[int, list[list[Any]]] = {}
        self.held = 0
        self.records_sent = 0
        self.items_sent = 0
        # One sender at a time: the agents, the periodic flush and the commit's flush all
        # send, and a tick must never overtake items taken out before it.
        self._lock = asyncio.Lock()

    def hold(self, item: Any) -> None:
        """Hold `item` (a value with `to_wire()`) for the partition of its key."""
        self.hold_for(partition_for(self._key_of(item), self.partitions), item)

    def hold_for(self, partition: int, item: Any) -> None:
        """Hold `item` for one given partition."""
        self._held.setdefault(partition, []).append(item.to_wire())
        self.held += 1

    def hold_for_every_partition(self, item: Any) -> None:
        """Hold `item` for each partition (a broadcast), its wire form made once."""
        wire = item.to_wire()
        for q in range(self.partitions):
            self._held.setdefault(q, []).append(wire)
        self.held += self.partitions

    @property
    def full(self) -> bool:
        return self.held >= self.max_held

    async def flush(self) -> None:
        async with self._lock:
            await self._send_held()

    async def send_after_held(self, key: bytes, value: bytes) -> None:
        """What is held, then `value` to every partition (an account partition's tick)."""
        async with self._lock:
            await self._send_held()
            for q in range(self.partitions):
                await self._send(q, key, value)

    async def _send_held(self) -> None:
        """Send what is held; a send that fails puts back every item not yet sent, ahead of
        what was held meanwhile, so that nothing is lost and the order stays."""
        held, self._held = self._held, {}
        self.held = 0
        refused, self._refusing = self._refusing, []
        unsent = [(q, chunk, data) for q, wires in held.items()
                  for chunk, data in self._records(wires, refused)]
        try:
            while unsent:
                q, chunk, data = unsent[0]
                await self._send(q, self._key, data)
                unsent.pop(0)
                self.records_sent += 1
                self.items_sent += len(chunk)
            while refused:  # after the others: they must not wait on these
                reason, shown = refused[0]
                if self._refuse is None:
                    refused.pop(0)
                    self.refused += 1
                    raise TypeError(reason)
                await self._refuse(reason, shown)
                refused.pop(0)
                self.refused += 1
        except BaseException:
            self._refusing = refused + self._refusing
            back: dict[int, list[list[Any]]] = {}
            for q, chunk, _ in unsent:
                back.setdefault(q, []).extend(chunk)
            for q, wires in self._held.items():
                back.setdefault(q, []).extend(wires)
            self._held = back
            self.held = sum(len(w) for w in back.values())
            raise

    def _records(self, wires: list[list[Any]], refused: list[tuple[str, bytes]],
                 ) -> list[tuple[list[list[Any]], bytes]]:
        """`wires` as records of at most max_record_bytes (the receiver refuses larger ones),
        halved until they fit; an item too large on its own goes alone, as it always did. A
        batch that does not encode is halved too, until the item at fault is alone: that one
        goes to `refused` (reason, what can be shown of it), the others are sent."""
        try:
            data = encode_batch(self.tag, wires)
        except UNENCODABLE as exc:
            if len(wires) == 1:
                reason = (f"internal error: a {self.tag} item could not be encoded "
                          f"({type(exc).__name__}: {exc})")
                refused.append((reason, repr(wires[0])[:4096].encode()))
                return []
            data = b""
        if data and (len(data) <= self.max_record_bytes or len(wires) == 1):
            return [(wires, data)]
        half = len(wires) // 2
        return self._records(wires[:half], refused) + self._records(wires[half:], refused)


def install_before_commit(producer: Any, *flushes: Callable[[], Awaitable[None]]) -> None:
    """Make `producer.flush()`, which Faust awaits before every offset commit, await each of
    `flushes` first (the outboxes', the held table writes'), so that what the agents hold is
    delivered before the offsets of the events that made it are committed."""
    flush = producer.flush

    async def flush_held_first() -> None:
        for flush_held in flushes:
            await flush_held()
        await flush()

    producer.flush = flush_held_first
