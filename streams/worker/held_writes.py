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
as Faust's own write would. A state the agents change (`change`) is encoded once, at the
flush, in its newest form: encoded at every change instead, a campaign account told a
verdict per cluster key and a crowd's card that gets a summary in every record were encoded
once per change, a fifth of an aligned worker's time draining a backlog (py-spy,
docs/operations.md). Deferring the encoding keeps both guarantees:

- the outputs a state records go before it: a state is encoded only while no change is
  half-made (between the core's call, which changes the state in place, and `change`, the
  agent awaits the sends of the outputs: a decision's ack), so the bytes never record an
  output not yet sent or held; an agent marks that stretch with `begin_change` and
  `end_change`, and a flush waits for the ones under way (and holds new ones back meanwhile);
  then it encodes every held state at once, before `outputs_first` sends what they record;
- a state over `max_bytes` never reaches the changelog: it is checked at the flush, dropped
  from the local store (the next change starts it afresh, as when a new entry was refused
  at once), and every record that changed it since its last write goes to `refuse` (the
  worker's dead-letter topic) with the reason, before the commit of their offsets. The core
  bounds its states (models/cluster.py's byte caps, the account's bounded keys and
  verdicts): this is the backstop that keeps one entry from ever reaching the changelog over
  the producer's request limit, which would crash the worker at every restart.

With `idle` (the accounts and clusters tables), each flush also lets streams/worker/
idle_states.py encode the states unused for a while, at the one moment no change is half-made.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from distillguard.streams.worker.idle_states import IdleStates

# topic, key, value (None: a tombstone), partition -> awaitable send
Produce = Callable[[str, bytes, bytes | None, int], Awaitable[Any]]
# key, why it was not written, the records that changed it since its last write -> awaitable
Refuse = Callable[[Any, str, list[Any]], Awaitable[Any]]


class _Change:
    """A state changed by the agents, encoded at the next flush; the records that changed it."""

    __slots__ = ("causes", "partition", "value")

    def __init__(self, partition: int, value: Any, cause: Any) -> None:
        self.partition = partition
        self.value = value
        self.causes = [cause]


class HeldWrites:
    def __init__(self, table: Any, produce: Produce, max_held: int,
                 outputs_first: Callable[[], Awaitable[None]] | None = None,
                 encode: Callable[[Any], bytes] = orjson.dumps, max_bytes: int = 0,
                 refuse: Refuse | None = None, idle: IdleStates | None = None) -> None:
        self.table = table
        # The table's states held encoded while idle (streams/worker/idle_states.py): told of
        # each change, and asked at each flush to encode the idle ones.
        self._idle = idle
        self._produce = produce
        self.max_held = max_held
        # What the held states say was sent (the account stage's summaries, the cluster
        # stage's verdicts): sent before them, or a restart would find a state that records
        # an output nobody received, and never send it again.
        self._outputs_first = outputs_first
        # `change`: the value's bytes at the flush, refused over max_bytes (0: no bound)
        self._encode = encode
        self.max_bytes = max_bytes
        self._refuse = refuse
        # key -> _Change (encoded at the flush), or (changelog partition, the bytes already
        # encoded, None for a deletion)
        self._held: dict[Any, _Change | tuple[int, bytes | None]] = {}
        # refused states whose dead letters have not been sent yet (that failed): sent first
        self._refusing: list[tuple[Any, str, list[Any]]] = []
        self.changes = 0
        self.records_sent = 0
        self.refused = 0
        # One flush at a time (agents, the commit's flush): a commit must not pass a flush
        # still sending, and an older state must never reach the changelog after a newer one.
        self._lock = asyncio.Lock()
        # Changes under way (begin_change .. end_change), and a flush waiting for them to end
        # (new ones wait for it).
        self._changing = 0
        self._flushes_waiting = 0
        self._settled: list[asyncio.Future[None]] = []
        self._gate: list[asyncio.Future[None]] = []

    # ---- the agents' side --------------------------------------------------------------

    async def begin_change(self) -> None:
        """Before the core changes a held state in place: no flush encodes states until the
        matching `end_change` (once every output of the change is sent or held)."""
        while self._flushes_waiting:
            gate = asyncio.get_running_loop().create_future()
            self._gate.append(gate)
            await gate
        self._changing += 1

    def end_change(self) -> None:
        self._changing -= 1
        if self._settled and not self._changing:
            _wake(self._settled)

    def change(self, partition: int, key: Any, value: Any, cause: Any,
               settled: bool = False) -> None:
        """Change the table now; its changelog record, `value` as it is at the next flush,
        encoded then. `cause`: the record that made the change (dead-lettered if the state
        cannot be written). `settled`: nothing will use the state again soon, so the idle
        states may encode it at the next flush (IdleStates.settled)."""
        self.table.data[key] = value
        if self._idle is not None:
            if settled:
                self._idle.settled(key)
            else:
                self._idle.touched(key)
        entry = self._held.get(key)
        if isinstance(entry, _Change):
            entry.partition = partition
            entry.value = value
            if entry.causes[-1] is not cause:
                entry.causes.append(cause)
        else:
            self._held[key] = _Change(partition, value, cause)
        self.changes += 1

    def put(self, partition: int, key: Any, value: Any, data: bytes, last: bool = False) -> None:
        """Change the table now, its changelog record `data` (already encoded and checked) at
        the next flush; `last`: sent after every record held so far (a key held before would
        keep its place)."""
        self.table.data[key] = value
        if last:
            self._held.pop(key, None)
        self._held[key] = (partition, data)
        self.changes += 1

    def delete(self, partition: int, key: Any) -> None:
        self.table.data.pop(key, None)
        if self._idle is not None:
            self._idle.forget(key)
        self._held[key] = (partition, None)
        self.changes += 1

    async def flush_within_change(self) -> None:
        """Flush in the middle of a long change (a window close of thousands of accounts),
        at a point where every state it changed so far is whole and every output they record
        is sent or held: the change ends, the flush runs (and waits for other agents' changes,
        as any flush does), and the change begins again. The caller still ends it once, as
        if it had never paused, whatever this raises."""
        self.end_change()
        try:
            await self.flush()
        finally:
            # Back in the change, as the caller's `end_change` expects. Not through
            # `begin_change`'s wait for a flush waiting meanwhile: cancelled there, the count
            # would be left one short.
            self._changing += 1

    @property
    def held(self) -> int:
        return len(self._held)

    @property
    def full(self) -> bool:
        return len(self._held) >= self.max_held

    # ---- the flush ---------------------------------------------------------------------

    async def flush(self) -> None:
        """Send every held record to the table's changelog topic, after `outputs_first`.

        The key is encoded as the table's json key serializer would (orjson gives the same
        bytes for the str and int keys of our tables), the value as the table's codec would.
        Straight to the producer: Faust's changelog path (a future and a buffer per
        record) cost the worker a sixth of its throughput. The records reach the broker before
        the next commit (`install_before_commit`, which ends with the producer's flush). A
        send that fails puts back what was not sent (newer changes made meanwhile win).

        Never from inside a change (between `begin_change` and `end_change`): it would wait for
        itself. (Not checked: asking asyncio for the current task at every change cost ~3% of
        a worker's time, py-spy; the agents flush only between records.)
        """
        async with self._lock:
            await self._wait_settled()
            # No await from here to the encoding: every state as no change has half-made it.
            held, self._held = self._held, {}
            records = self._records(held)
            if self._idle is not None:  # (its states are as no change has half-made them)
                self._idle.after_flush()
            sent = 0
            try:
                if self._outputs_first is not None:
                    await self._outputs_first()
                topic = self.table.changelog_topic.get_topic_name()
                for key, partition, data in records:
                    await self._produce(topic, orjson.dumps(key), data, partition)
                    sent += 1
                while self._refusing:
                    key, reason, causes = self._refusing[0]
                    if self._refuse is None:
                        self._refusing.pop(0)
                        raise ValueError(reason)
                    await self._refuse(key, reason, causes)
                    self._refusing.pop(0)
                    self.refused += 1
            except BaseException:
                rest: dict[Any, _Change | tuple[int, bytes | None]] = {
                    key: (partition, data)
                    for key, partition, data in itertools.islice(records, sent, None)}
                rest.update(self._held)
                self._held = rest
                raise
            finally:
                self.records_sent += sent

    async def _wait_settled(self) -> None:
        self._flushes_waiting += 1
        try:
            while self._changing:
                settled = asyncio.get_running_loop().create_future()
                self._settled.append(settled)
                await settled
        finally:
            self._flushes_waiting -= 1
            if not self._flushes_waiting:
                _wake(self._gate)

    def _records(self, held: dict[Any, _Change | tuple[int, bytes | None]],
                 ) -> list[tuple[Any, int, bytes | None]]:
        """(key, partition, bytes) of each held entry; a change that does not encode, or
        encodes over max_bytes, goes to `_refusing` instead and leaves the local store."""
        records: list[tuple[Any, int, bytes | None]] = []
        name = getattr(self.table, "name", "table")
        for key, change in held.items():
            if not isinstance(change, _Change):
                records.append((key, *change))
                continue
            reason = None
            try:
                data = self._encode(change.value)
            except Exception as exc:  # noqa: BLE001 - a bug upstream: refused with its reason, not a dead worker
                reason = (f"internal error: {name} entry {str(key)[:80]!r} could "
                          f"not be encoded ({type(exc).__name__}: {exc})")
            else:
                if self.max_bytes and len(data) > self.max_bytes:
                    reason = (f"StateTooLarge: {name} entry {str(key)[:80]!r} is "
                              f"{len(data)} bytes, over max_state_bytes {self.max_bytes}")
            if reason is None:
                records.append((key, change.partition, data))
                continue
            if self.table.data.get(key) is change.value:
                del self.table.data[key]
                if self._idle is not None:
                    self._idle.forget(key)
            self._refusing.append((key, reason, change.causes))
        return records


def _wake(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)
    waiters.clear()
