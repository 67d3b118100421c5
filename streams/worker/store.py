"""The worker's RocksDB table store (`store = "rocksdb://"`): state on disk, encoded.

With Faust's memory store every account's and cluster's state lives as Python objects in a
dict, about 10x its encoded size, and every rebalance re-reads every changelog from its start.
With this store a table partition is a RocksDB database (rocksdict, Faust's own
`faust.stores.rocksdb` underneath) in the worker's data directory: an idle state is its
codec's bytes on disk, decoded when it is read again.

What it changes from Faust's RocksDB store, and why:

- **Written at the flush, never before the changelog.** The agents change a state at once and
  hold its changelog record until the next commit (streams/worker/held_writes.py). Written to
  RocksDB at once, as Faust's store would, a worker killed with kill -9 would leave states on
  disk newer than the changelog and than the committed offsets: after a restart the events
  since the last commit would be applied to them a second time. Here a change goes to an
  overlay (the objects, as the agents made them) and reaches RocksDB when `HeldWrites.flush`
  has sent its changelog record (`written`): the database holds the changelog's states,
  never more. Reads look at the overlay first. The overlay holds what changed since the last
  flush: at most `STATES_HELD_MAX` keys per table.
- **Persisted offsets kept.** Faust's recovery reads a partition's changelog from the offset
  its database says it holds (`persisted_offset`). Faust sets it only for its own changelog
  writes, which the agents no longer use; `written` records the offsets the broker
  acknowledged and stores them with the next flush (after the states they cover are written),
  so a restarted worker reads only the changelog written since, not the whole of it.
- **One memory budget for every database.** Faust gives each database (one per partition per
  table: 36 with 12 partitions) its own 2 GiB block cache and three 64 MiB memtables, so
  RocksDB's own buffers could hold the whole state in memory. Here every database of the
  process shares one block cache (`BLOCK_CACHE_BYTES`, index and filter blocks charged to it)
  and one write buffer manager (`MEMTABLE_BYTES` of memtables in all).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Container, Iterator, Mapping
from typing import Any

from faust.stores import STORES
from faust.stores import rocksdb as faust_rocksdb
from faust.streams import current_event
from faust.types import TP

# RocksDB's memory in a worker, for all its databases together: the block cache (recently read
# blocks of state, their indexes and filters) and the memtables (recent writes, flushed to
# files when they fill). A database's own memtable is at most MEMTABLE_DB_BYTES.
BLOCK_CACHE_BYTES = 64 * 2**20
MEMTABLE_BYTES = 64 * 2**20
MEMTABLE_DB_BYTES = 4 * 2**20
OPTIONS: Mapping[str, int] = {
    "write_buffer_size": MEMTABLE_DB_BYTES,
    "max_write_buffer_number": 2,
    "target_file_size_base": 16 * 2**20,
}

# Decoded states kept per table besides the overlay, the most recently used (see `_cache`).
CACHED_STATES = 10_000

_shared: dict[str, Any] = {}


def _shared_budget() -> tuple[Any, Any]:
    """The process's one block cache and write buffer manager (made at the first open)."""
    if not _shared:
        rd = faust_rocksdb.rocksdict
        _shared["cache"] = rd.Cache(BLOCK_CACHE_BYTES)
        _shared["memtables"] = rd.WriteBufferManager(MEMTABLE_BYTES, False)
    return _shared["cache"], _shared["memtables"]


class SharedBudgetOptions(faust_rocksdb.RocksDBOptions):
    """Faust's options for a rocksdict database, its caches replaced by the shared ones."""

    def as_options(self) -> Any:
        rd = faust_rocksdb.rocksdict
        cache, memtables = _shared_budget()
        options = rd.Options(raw_mode=True)
        options.create_if_missing(True)
        if self.max_open_files is not None:
            options.set_max_open_files(self.max_open_files)
        options.set_write_buffer_size(self.write_buffer_size)
        options.set_max_write_buffer_number(self.max_write_buffer_number)
        options.set_target_file_size_base(self.target_file_size_base)
        options.set_write_buffer_manager(memtables)
        table = rd.BlockBasedOptions()
        table.set_bloom_filter(self.bloom_filter_size, True)
        table.set_block_cache(cache)
        table.set_cache_index_and_filter_blocks(True)
        table.set_index_type(rd.BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(table)
        return options

_DELETED = object()
_MISSING = object()


def available() -> bool:
    """Whether the RocksDB bindings (rocksdict) are installed."""
    return faust_rocksdb.rocksdict is not None


class RocksStore(faust_rocksdb.Store):
    """Faust's RocksDB store with a write-behind overlay (see the module's docstring)."""

    def __init__(self, url: Any, app: Any, table: Any, *, options: Mapping[str, Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(url, app, table, options={**OPTIONS, **(options or {})}, **kwargs)
        if self.use_rocksdict:
            self.rocksdb_options = SharedBudgetOptions(**self.options,
                                                       use_rocksdict=True)
        self._overlay: dict[Any, Any] = {}  # key -> the value object, or _DELETED
        # The states read or written last, decoded (key -> object; oldest first): an account
        # sends several requests and a cluster gets summaries in batch after batch, and each
        # read from RocksDB decodes the whole state again.
        self._cache: OrderedDict[Any, Any] = OrderedDict()
        self._acked: dict[int, int] = {}  # changelog partition -> newest acknowledged offset

    # ---- the overlay in front of RocksDB ------------------------------------------------------
    def __getitem__(self, key: Any) -> Any:
        value = self._overlay.get(key, _MISSING)
        if value is _DELETED:
            raise KeyError(key)
        if value is not _MISSING:
            return value
        cache = self._cache
        value = cache.get(key, _MISSING)
        if value is not _MISSING:
            cache.move_to_end(key)
            return value
        value = super().__getitem__(key)
        self._remember(key, value)
        return value

    def _remember(self, key: Any, value: Any) -> None:
        cache = self._cache
        cache[key] = value
        cache.move_to_end(key)
        if len(cache) > CACHED_STATES:
            cache.popitem(last=False)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._overlay[key] = value
        self._cache.pop(key, None)

    def __delitem__(self, key: Any) -> None:
        if key not in self:
            raise KeyError(key)
        self._overlay[key] = _DELETED
        self._cache.pop(key, None)

    def __contains__(self, key: object) -> bool:
        value = self._overlay.get(key, _MISSING)
        if value is not _MISSING:
            return value is not _DELETED
        return super().__contains__(key)

    def __len__(self) -> int:
        return sum(1 for _ in self._keys_decoded())

    def _items_decoded(self) -> Iterator[tuple[Any, Any]]:
        overlay = self._overlay
        for key, value in overlay.items():
            if value is not _DELETED:
                yield key, value
        for raw_key, raw_value in self._raw_items():
            key = self._decode_key(raw_key)
            if key not in overlay:
                yield key, self._decode_value(raw_value)

    def _keys_decoded(self) -> Iterator[Any]:
        overlay = self._overlay
        for key, value in overlay.items():
            if value is not _DELETED:
                yield key
        for raw_key, _ in self._raw_items():
            key = self._decode_key(raw_key)
            if key not in overlay:
                yield key

    def _raw_items(self) -> Iterator[tuple[bytes, bytes]]:
        """The database's entries: during an event, of the event's partition only (as Faust
        reads a key: a table is partitioned as the stream that writes it), else of every
        active partition. A worker registers a partition's states when it first gets an
        event of it (streams/worker/topology.py): read from every database, that decoded
        every state of the worker once per partition, and a worker restarted with 100,000
        accounts stalled."""
        event = current_event()
        if event is not None and not self.table.is_global and not self.table.use_partitioner:
            db = self._dbs.get(event.message.partition)
            if db is not None:
                yield from self._visible_items(db)
            return
        yield from self._iteritems()

    def _values_decoded(self) -> Iterator[Any]:
        for _, value in self._items_decoded():
            yield value

    @property
    def overlay_size(self) -> int:
        """Keys changed since the last flush (held as objects)."""
        return len(self._overlay)

    # ---- the flush: what reached the changelog reaches RocksDB -----------------------------
    def written(self, sent: Mapping[Any, tuple[int, bytes | None]], still_held: Container[Any],
                deliveries: list[Any]) -> None:
        """`sent`: the changelog records just sent (key -> partition, encoded state or None
        for a deletion); `still_held`: keys changed again meanwhile (their newer value stays
        in the overlay); `deliveries`: the producer's futures of those records."""
        # First the offsets acknowledged before this flush: their states are in the database
        # since the last `written`.
        self._persist_acked_offsets()
        batches: dict[int, Any] = {}
        for key, (partition, data) in sent.items():
            db = self._dbs.get(partition)
            if db is not None:  # else revoked meanwhile: its next owner reads the changelog
                batch = batches.get(partition)
                if batch is None:
                    batch = batches[partition] = faust_rocksdb.rocksdict.WriteBatch(
                        raw_mode=True)
                raw_key = self._encode_key(key)
                if data is None:
                    batch.delete(raw_key)
                else:
                    batch.put(raw_key, data)
        for partition, batch in batches.items():
            self._dbs[partition].write(batch)
        overlay = self._overlay
        for key in sent:  # now read from the database, unless changed again meanwhile
            if key not in still_held:
                value = overlay.pop(key, _DELETED)
                if value is not _DELETED:
                    self._remember(key, value)
        for future in deliveries:
            if future is not None and hasattr(future, "add_done_callback"):
                future.add_done_callback(self._on_delivered)

    def apply_changelog_batch(self, batch: Any, to_key: Any, to_value: Any) -> None:
        """A recovery's or a standby's changelog records: their keys' cached states are stale."""
        events = list(batch)
        for event in events:
            if event.message.key is not None:
                self._cache.pop(self._decode_key(event.message.key), None)
        super().apply_changelog_batch(events, to_key, to_value)

    def _on_delivered(self, future: Any) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        meta = future.result()
        partition, offset = meta.partition, meta.offset
        if offset > self._acked.get(partition, -1):
            self._acked[partition] = offset

    def _persist_acked_offsets(self) -> None:
        acked, self._acked = self._acked, {}
        topic = self.table.changelog_topic.get_topic_name()
        for partition, offset in acked.items():
            if partition in self._dbs:
                current = self.persisted_offset(TP(topic, partition))
                if current is None or offset > current:
                    self.set_persisted_offset(TP(topic, partition), offset)

    def revoke_partitions(self, table: Any, tps: Any) -> None:
        self._cache.clear()  # (revoked keys could come back stale with a later assignment)
        for tp in tps:
            if tp.topic in table.changelog_topic.topics:
                self._acked.pop(tp.partition, None)
        super().revoke_partitions(table, tps)

    def reset_state(self) -> None:
        self._overlay.clear()
        self._cache.clear()
        self._acked.clear()
        super().reset_state()


def install() -> None:
    """`rocksdb://` in the settings means this store (in this process)."""
    STORES.aliases["rocksdb"] = f"{__name__}:RocksStore"
