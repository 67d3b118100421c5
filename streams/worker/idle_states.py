"""A table's states kept as Python objects while in use and as their changelog bytes when idle.

The worker keeps every state its partitions own in memory (Faust's memory store). As Python
objects an idle account's state takes ~2.5x its encoding and a cluster's ~4x (compiled core,
bench/idle_memory.py): most accounts and clusters are idle at any moment, and a worker
tracking a million accounts needs gigabytes for what the changelog holds in a few hundred
megabytes. So a state that nothing has used for IDLE_AFTER_S (below) is replaced in the table
by its encoding, the bytes the changelog holds for it, and decoded again at its next use: an
event, a verdict, a window or expiry due.

    get(key)          the state as an object, decoded (and kept as one) when it was idle
    decoded(k, v)     a stored value as an object, without keeping it (a read-only look)
    touched(key)      the agents changed the key's state (HeldWrites.change)
    settled(key)      ... and its use ends there (a window closed in a burst of them): it
                      goes encoded at the next flush, however young its generation
    forget(key)       the agents deleted the key from the table (HeldWrites.delete)
    after_flush()     at a flush: the states unused for IDLE_AFTER_S (wall clock) go
                      encoded
    states_of(p)      (key, state) of partition p's stored states, decoded for the look

With `cold` (streams/worker/cold_states.py, the setting idle_states_on_disk) an idle state's
bytes go to the worker's disk instead, and leave the table's store: a key is then in one of
the two, and `get` brings it back. A key the store holds wins over a copy on disk (a
recovery writes the changelog's bytes into the store), and `forget` removes both.

Decisions are the same either way: a state's bytes decode to a state equal to the one encoded
(the changelog's recovery rests on that already; tests/unit/test_idle_states.py replays a
scenario with every state round-tripped every few events). The changelog is not touched:
what is written, and when, is HeldWrites' business; this only changes what stays in memory.

A state is encoded only at a flush, where HeldWrites has waited until no change is half-made
(held_writes.py: the core changes states in place between `begin_change` and `end_change`),
so the bytes kept are the state as its last change left it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distillguard.streams.worker.cold_states import ColdStates

# A state goes encoded once unused for this long by default (the setting idle_state_after_s;
# wall clock, checked at each flush: after between it and twice that). Decoding costs ~95 us for an active account's state
# (~2 KB), ~30 us for a cluster's, against ~1-2 ms a worker spends per event in a backlog: a
# state in use every few seconds stays an object; one idle for longer is what there are a
# million of. A backlog flushes every 2.8 s (Faust's commit interval) or sooner (held states
# full): with one flush interval instead of this, states were decoded again at their next
# event within seconds (one worker, bench/backlog.py --hours 1: 0.10x the replay against
# 0.17x; with 10 s, 0.18x against 0.19x).
IDLE_AFTER_S = 10.0


class IdleStates:
    def __init__(self, data: MutableMapping[Any, Any], encode: Callable[[Any], bytes],
                 decode: Callable[[bytes], Any], idle_after_s: float = IDLE_AFTER_S,
                 undecodable: Callable[[Any, Exception], None] | None = None,
                 cold: ColdStates | None = None,
                 partition_of: Callable[[Any], int] | None = None,
                 disk_failed: Callable[[Exception], None] | None = None) -> None:
        # The table's store: Faust's memory Store (a mapping over a dict), or any dict.
        self.data = data
        # Where idle states' bytes go when on disk; a key's partition (states_of).
        self.cold = cold
        self._partition_of = partition_of
        # The partitions this worker owns (keep_partitions; None: every one). Faust's memory
        # store keeps the keys the agents wrote after their partition left: those never go
        # to disk, where they would outlive a deletion made by the partition's next owner.
        self._owned: set[int] | None = None
        # Told once when the disk fails (a full or broken disk: RocksDB then refuses every
        # write, deletes included): the states on disk come back to memory, and stay there.
        self._disk_failed = disk_failed
        self._encode = encode
        self._decode = decode
        # Told of a stored value that does not decode (a changelog record of another core's
        # format, a corrupt one), which is then dropped: the key starts afresh, as Faust's
        # recovery skipped such a record when it decoded the changelog itself.
        self._undecodable = undecodable
        self.idle_after_s = idle_after_s
        # Keys used in this generation, and in the one before it; a generation ends at the
        # first flush `idle_after_s` after it began.
        self._touched: set[Any] = set()
        self._previous: set[Any] = set()
        # Keys settled since the last flush (`settled`); those used again since are in
        # `_touched` (the check is at the flush, not at every use: `get` is per event).
        self._settled: set[Any] = set()
        self._began: float | None = None
        self.decodes = 0
        self.encoded_idle = 0
        self.unencodable = 0
        self.undecodable = 0
        self.disk_failed = 0

    def get(self, key: Any) -> Any:
        """The key's state as an object (None when there is none); one held encoded is decoded
        and kept as the object from now on."""
        value = self.data.get(key)
        if value is None:
            if self.cold is None:
                return None
            try:
                value = self.cold.take(key)
            except Exception as exc:  # noqa: BLE001 - the disk failed: its states to memory
                self._back_to_memory(exc)
                value = self.data.get(key)
            if value is None:
                return None
        if type(value) is bytes:
            value = self.decoded(key, value)
            if value is None:
                return None
            self.data[key] = value
            self.decodes += 1
        self._touched.add(key)
        return value

    def decoded(self, key: Any, value: Any) -> Any:
        """A stored value as an object, not kept: for a look that changes nothing (a
        partition's recovered states re-registered with its due index). None, the entry
        dropped, when it does not decode."""
        if type(value) is not bytes:
            return value
        try:
            return self._decode(value)
        except Exception as exc:  # noqa: BLE001 - a bad record must not stop the partition
            self.undecodable += 1
            if self.data.get(key) is value:
                del self.data[key]
            if self._undecodable is not None:
                self._undecodable(key, exc)
            return None

    def items(self) -> Iterator[tuple[Any, Any]]:
        """(key, state) of every stored state that decodes, decoded for the look and not
        kept."""
        yield from self._decoded_all(list(self.data.items()), None)

    def states_of(self, partition: int) -> Iterator[tuple[Any, Any]]:
        """(key, state) of the partition's stored states, decoded for the look and not kept:
        a partition's recovered states, re-registered with its due index."""
        assert self._partition_of is not None, "states_of needs partition_of"
        of = self._partition_of
        yield from self._decoded_all([(k, v) for k, v in self.data.items() if of(k) == partition],
                                     partition)

    def _decoded_all(self, stored: list[tuple[Any, Any]],
                     partition: int | None) -> Iterator[tuple[Any, Any]]:
        for key, value in stored:
            state = self.decoded(key, value)
            if state is not None:
                yield key, state
        if self.cold is None:
            return
        in_store = {key for key, _ in stored}
        try:
            on_disk = [(k, v) for k, v in self.cold.items(partition) if k not in in_store]
        except Exception as exc:  # noqa: BLE001 - the disk failed: its states to memory
            self._back_to_memory(exc)
            of = self._partition_of
            on_disk = [(k, v) for k, v in self.data.items() if k not in in_store
                       and (partition is None or (of is not None and of(k) == partition))]
        for key, value in on_disk:
            if type(value) is not bytes:
                yield key, value
                continue
            try:
                yield key, self._decode(value)
            except Exception as exc:  # noqa: BLE001 - as decoded(): dropped, told
                self.undecodable += 1
                self.forget(key)
                self.data.pop(key, None)
                if self._undecodable is not None:
                    self._undecodable(key, exc)

    def touched(self, key: Any) -> None:
        self._touched.add(key)

    def settled(self, key: Any) -> None:
        """The agents changed the key's state, and nothing will use it again soon: a window
        closed by the watermark in a step that closes more than `models.due.SLICE` of them
        (the worker flushes between slices). It goes encoded at the next flush, whatever the
        age of its generation, unless something uses it before: otherwise every state a
        window close brought back stays an object for `idle_after_s`, and a close of every
        window a partition holds (aligned windows close together) holds them all at once."""
        self._touched.discard(key)
        self._settled.add(key)

    def forget(self, key: Any) -> None:
        """The key left the table (deleted, or refused): its copy on disk goes too, or a
        later `get` would bring back what was deleted."""
        if self.cold is not None and not self._use_disk(lambda cold: cold.take(key)):
            self.data.pop(key, None)  # (brought back with the others: deleted all the same)

    def keep_partitions(self, partitions: set[int]) -> None:
        """The partitions this worker owns now: the states on disk of any other are dropped
        (its next owner recovers them from the changelog), and no other partition's key goes
        to disk from now on."""
        self._owned = set(partitions)
        self._use_disk(lambda cold: cold.keep_partitions(partitions))

    def _owns(self, key: Any) -> bool:
        return (self._owned is None or self._partition_of is None
                or self._partition_of(key) in self._owned)

    def _back_to_memory(self, exc: Exception) -> None:
        """The disk failed: every state of an owned partition on it comes back to the store
        as its bytes (what it would have been without the disk), and the disk is used no
        more by this worker. States that cannot be read back are counted (`disk_failed`);
        the changelog still holds them, for the partition's next owner."""
        cold, self.cold = self.cold, None
        self.disk_failed += 1
        if cold is None:
            return
        try:
            for key, value in cold.items():
                if self._owns(key) and key not in self.data:
                    self.data[key] = value
        except Exception:  # noqa: BLE001 - what could not be read is lost to this worker
            self.disk_failed += 1
        with contextlib.suppress(Exception):  # closing a broken database: nothing more to do
            cold.close()
        if self._disk_failed is not None:
            self._disk_failed(exc)

    def after_flush(self, now: float | None = None) -> None:
        """Encode the states settled since the last flush and not used since; once the
        generation is `idle_after_s` old, the states used in the previous generation and not
        in this one too, and begin the next.

        Called by a flush with no change of a state half-made (HeldWrites waits for them) and
        before anything else runs, so the bytes are the state as its last change left it: the
        bytes that change's flush wrote. Encoded here rather than kept from that flush: a
        backlog changes most states in every generation, and keeping their bytes meanwhile
        cost more memory than encoding the few that go idle costs time (~15 us an account).
        A state that does not encode stays an object (the flush refuses it when it changes).
        """
        now = time.monotonic() if now is None else now
        if self._began is None:
            self._began = now
        settled, self._settled = self._settled - self._touched, set()
        self._encode_idle(settled)
        if now - self._began < self.idle_after_s:
            return
        self._encode_idle(self._previous - self._touched)
        data = self.data
        if self.cold is not None:
            # The bytes a recovery wrote into the store, unused since: to disk as well. The
            # store holds the states in use by now, so the look is short.
            touched = self._touched
            for key in [k for k, v in data.items()
                        if type(v) is bytes and k not in touched and self._owns(k)]:
                if not self._to_disk(key, data[key]):
                    break
                del data[key]
        self._previous, self._touched = self._touched, set()
        self._began = now

    def _encode_idle(self, keys: set[Any]) -> None:
        """The states of `keys` held as their bytes (or on disk) from now on."""
        data = self.data
        for key in keys:
            value = data.get(key)
            if value is None or type(value) is bytes:
                continue
            try:
                encoded = compact(self._encode(value))
            except Exception:  # noqa: BLE001 - kept as an object: the flush refuses it when changed
                self.unencodable += 1
                continue
            if self.cold is not None and self._owns(key) and self._to_disk(key, encoded):
                del data[key]
            else:
                data[key] = encoded
            self.encoded_idle += 1

    def _to_disk(self, key: Any, encoded: bytes) -> bool:
        """Whether the bytes went to disk."""
        return self._use_disk(lambda cold: cold.put(key, encoded))

    def _use_disk(self, use: Callable[[ColdStates], object]) -> bool:
        """`use` done on the disk; False when there is none, or when it failed (a full or
        broken disk): its states are then back in memory (`_back_to_memory`) and the worker
        goes on."""
        if self.cold is None:
            return False
        try:
            use(self.cold)
        except Exception as exc:  # noqa: BLE001 - memory instead of a dead worker
            self._back_to_memory(exc)
            return False
        return True

    def counts(self) -> dict[str, int]:
        return {"decodes": self.decodes, "encoded_idle": self.encoded_idle,
                "unencodable": self.unencodable, "undecodable": self.undecodable,
                "disk_failed": self.disk_failed}

    def on_disk(self) -> int:
        """How many states are held on disk now."""
        return 0 if self.cold is None else len(self.cold)


class IdleTable(MutableMapping[Any, Any]):
    """A dict of states read and written through IdleStates, as the worker's agents use the
    table: for the replay's Pipeline in measurements and tests (bench/idle_memory.py,
    tests/unit/test_cold_states.py; the core's sources only: the compiled core reads a
    Pipeline's dicts with its own dict operations). Iterating it sees the store's keys only,
    not those on disk."""

    def __init__(self, idle: IdleStates) -> None:
        self.idle = idle

    def __getitem__(self, key: Any) -> Any:
        value = self.idle.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: Any, default: Any = None) -> Any:
        value = self.idle.get(key)
        return default if value is None else value

    def __setitem__(self, key: Any, value: Any) -> None:
        self.idle.data[key] = value
        self.idle.touched(key)

    def __delitem__(self, key: Any) -> None:
        self.idle.data.pop(key, None)
        self.idle.forget(key)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.idle.data)

    def __len__(self) -> int:
        return len(self.idle.data)


def compact(data: bytes) -> bytes:
    """`data` in a bytes object of its own size. orjson returns its output in the buffer it
    wrote it in: ~4 KB allocated for a 450-byte account state (tracemalloc), which kept as
    the idle form would have taken more memory than the objects it replaces."""
    return memoryview(data).tobytes()
