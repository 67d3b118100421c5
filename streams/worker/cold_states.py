"""Idle table states on the worker's disk (RocksDB, through rocksdict) instead of its memory.

IdleStates (idle_states.py) holds a state nothing has used for a while as its changelog bytes:
~490 B for an idle account and ~1.8 KB for its share of the clusters (bench/idle_memory.py), so
a worker tracking a million accounts still holds gigabytes of them. With the setting
`idle_states_on_disk` those bytes go to a RocksDB database of the worker's own, and the tables'
stores keep only the states in use.

It is a cache, never a source of truth: the changelog is. So:

- each worker process opens databases of its own under `<data_dir>/idle-states/`, empty (two
  workers may share a data directory, as the demo's do); one left by a killed worker is removed
  at the next start, found by its owner lock being free;
- no write-ahead log and no sync: a crash loses nothing the changelog does not hold;
- keys are stored under their partition's prefix, so a partition that leaves this worker has
  its states dropped here at once (its next owner recovers them from the changelog; kept,
  they would outlive a deletion made there and come back when the partition does).
"""

from __future__ import annotations

import atexit
import fcntl
import os
import shutil
import struct
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

# RocksDB's in-memory write buffer per database (its default is 64 MB, up to two of them):
# the spilled states arrive in bursts of a few thousand at a flush, and this is memory the
# worker was spilling to save.
WRITE_BUFFER_BYTES = 8 << 20
OWNER_LOCK = "owner.lock"
# A worker's directory is hidden from its creation to its rename, a few milliseconds.
STARTING_AT_MOST_S = 60.0


class ColdStates:
    """key -> bytes on disk, by partition. `partition_of(key)` names a key's partition."""

    def __init__(self, path: Path, partition_of: Callable[[Any], int]) -> None:
        from rocksdict import Options, Rdict, WriteOptions

        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_write_buffer_size(WRITE_BUFFER_BYTES)
        options.set_max_write_buffer_number(2)
        self.path = path
        self._db = Rdict(str(path), options)
        no_log = WriteOptions()
        no_log.disable_wal = True
        self._db.set_write_options(no_log)
        self._partition_of = partition_of
        # states held here per partition: counted at each put and take (a look before
        # each put, ~5 us, keeps it exact)
        self._counts: Counter[int] = Counter()

    def put(self, key: Any, data: bytes) -> None:
        p = self._partition_of(key)
        k = _prefix(p) + orjson.dumps(key)
        new = self._db.get(k) is None
        self._db.put(k, data)
        if new:
            self._counts[p] += 1

    def take(self, key: Any) -> bytes | None:
        """The key's bytes, removed from here (the caller holds the state from now on)."""
        p = self._partition_of(key)
        k = _prefix(p) + orjson.dumps(key)
        data = self._db.get(k)
        if data is not None:
            self._db.delete(k)
            self._counts[p] -= 1
        return data

    def items(self, partition: int | None = None) -> Iterator[tuple[Any, bytes]]:
        """(key, bytes) of the partition's states (every partition's with None); the caller
        must not put or take while it reads."""
        partitions = sorted(self._counts) if partition is None else [partition]
        for p in partitions:
            prefix = _prefix(p)
            for k, data in self._db.items(from_key=prefix):
                if not k.startswith(prefix):
                    break
                yield orjson.loads(k[len(prefix):]), data

    def keep_partitions(self, partitions: set[int]) -> None:
        """Drop every state of a partition not in `partitions` (it left this worker)."""
        for p in [p for p in self._counts if p not in partitions]:
            self._db.delete_range(_prefix(p), _prefix(p + 1))
            del self._counts[p]

    def __len__(self) -> int:
        return sum(self._counts.values())

    def close(self) -> None:
        self._db.close()


def _prefix(partition: int) -> bytes:
    return struct.pack(">H", partition)


class WorkerColdStates:
    """The databases of one worker process: a directory of its own under `root`, removed when
    the process exits (and, after a kill, by the next worker to start)."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        remove_abandoned(root)
        name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        # Locked under a hidden name (which remove_abandoned passes over), then renamed: a
        # worker starting beside it never sees it unlocked.
        hidden = root / f".{name}"
        hidden.mkdir()
        # Held open for the process's life: a free lock means an abandoned directory.
        self._lock: IO[bytes] | None = open(hidden / OWNER_LOCK, "wb")  # noqa: SIM115
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.dir = root / name
        hidden.rename(self.dir)
        self.tables: dict[str, ColdStates] = {}
        atexit.register(self.close)

    def open(self, table: str, partition_of: Callable[[Any], int]) -> ColdStates:
        cold = self.tables[table] = ColdStates(self.dir / table, partition_of)
        return cold

    def close(self) -> None:
        if self._lock is None:
            return
        for cold in self.tables.values():
            cold.close()
        self._lock.close()
        self._lock = None
        shutil.rmtree(self.dir, ignore_errors=True)


def remove_abandoned(root: Path) -> list[Path]:
    """Remove the directories under `root` whose worker is gone (their owner lock is free)."""
    removed = []
    now = time.time()
    for d in root.iterdir():
        if not d.is_dir():
            continue
        # A hidden one is a worker's while it starts; left for longer, one killed then.
        if d.name.startswith(".") and now - d.stat().st_mtime < STARTING_AT_MOST_S:
            continue
        lock_path = d / OWNER_LOCK
        try:
            with open(lock_path, "rb") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except FileNotFoundError:
            if not d.name.startswith("."):
                continue  # not one of ours: left alone
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
        except BlockingIOError:
            continue  # a live worker's
        else:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed
