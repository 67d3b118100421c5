"""Idle states on the worker's disk (streams/worker/cold_states.py, idle_states_on_disk): a
key is in the store or on disk, never lost, never brought back once deleted, and a partition
that leaves takes its states with it."""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from distillguard.models.account import AccountState
from distillguard.models.config import DetectorConfig
from distillguard.models.events import event_from_mapping
from distillguard.models.partitioning import partition_for
from distillguard.models.pipeline import Pipeline
from distillguard.simulator import Scenario, generate_events
from distillguard.streams.edge.codec import (
    decode_account_state,
    decode_cluster_state,
    encode_account_state,
    encode_cluster_state,
    encode_decision,
)
from distillguard.streams.worker.cold_states import (
    OWNER_LOCK,
    ColdStates,
    WorkerColdStates,
    remove_abandoned,
)
from distillguard.streams.worker.held_writes import HeldWrites
from distillguard.streams.worker.idle_states import IdleStates, IdleTable
from tests.unit.test_idle_states import ChangelogTable

PARTITIONS = 12
REPO = Path(__file__).resolve().parents[2]


def of(key: str) -> int:
    return partition_for(key, PARTITIONS)


def on_disk(tmp_path: Path, data: dict[str, Any]) -> IdleStates:
    """Generations of no length (a state unused since the previous flush goes to disk)."""
    return IdleStates(data, encode_account_state, decode_account_state, idle_after_s=0,
                      cold=ColdStates(tmp_path / "accounts", of), partition_of=of)


def test_an_idle_state_leaves_the_store_for_the_disk_and_comes_back_at_its_next_use(
        tmp_path: Path) -> None:
    a, b = AccountState.new("a", 10.0), AccountState.new("b", 20.0)
    data: dict[str, Any] = {"a": a, "b": b}
    idle = on_disk(tmp_path, data)
    idle.get("a"), idle.get("b")
    idle.after_flush()
    assert data == {"a": a, "b": b}  # both used in the generation that ended
    idle.get("b")
    idle.after_flush()
    assert list(data) == ["b"] and idle.on_disk() == 1
    again = idle.get("a")
    assert again == a and data["a"] is again and idle.on_disk() == 0
    assert idle.counts()["decodes"] == 1 and idle.counts()["encoded_idle"] == 1
    assert idle.get("never") is None


def test_a_deleted_key_is_not_brought_back_from_the_disk(tmp_path: Path) -> None:
    """A state on disk while the store gets the key again (a recovery writes the changelog's
    bytes): deleting the key must delete both, or the next `get` returns the old state."""
    old = AccountState.new("a", 10.0)
    data: dict[str, Any] = {"a": old}
    idle = on_disk(tmp_path, data)
    idle.touched("a")
    idle.after_flush()
    idle.after_flush()
    assert "a" not in data and idle.on_disk() == 1
    newer = AccountState.new("a", 99.0)
    data["a"] = encode_account_state(newer)  # recovered from the changelog
    assert idle.get("a") == newer  # the store wins over the copy on disk

    table = ChangelogTable(data)

    async def produce(topic: str, key: bytes, value: bytes | None, partition: int) -> None:
        table.sent.append((key, value))

    held = HeldWrites(table, produce, max_held=100, encode=encode_account_state, idle=idle)
    held.delete(of("a"), "a")
    asyncio.run(held.flush())
    assert table.sent == [(b'"a"', None)]
    assert idle.get("a") is None and idle.on_disk() == 0


def test_recovered_bytes_unused_go_to_disk_too(tmp_path: Path) -> None:
    states = {f"acct-{i}": AccountState.new(f"acct-{i}", float(i)) for i in range(20)}
    data: dict[str, Any] = {k: encode_account_state(v) for k, v in states.items()}
    idle = on_disk(tmp_path, data)
    idle.get("acct-3")
    idle.after_flush()
    assert list(data) == ["acct-3"] and idle.on_disk() == 19
    assert dict(idle.items()) == states
    for p in range(PARTITIONS):
        assert dict(idle.states_of(p)) == {k: v for k, v in states.items() if of(k) == p}


def test_a_partition_that_leaves_takes_its_states_on_disk_with_it(tmp_path: Path) -> None:
    states = {f"acct-{i}": AccountState.new(f"acct-{i}", float(i)) for i in range(40)}
    data: dict[str, Any] = dict(states)
    idle = on_disk(tmp_path, data)
    for key in states:
        idle.touched(key)
    idle.after_flush()
    idle.after_flush()
    assert not data and idle.on_disk() == 40
    kept = {of(k) for k in states if of(k) % 2 == 0}
    idle.keep_partitions(kept)
    left = {k for k in states if of(k) not in kept}
    assert left and all(idle.get(k) is None for k in left)
    assert {k for k, _ in idle.items()} == set(states) - left
    assert idle.on_disk() == 40 - len(left)


class _FullDisk:
    """RocksDB once a write has failed for want of space: it refuses every later write,
    deletes included, and still reads (found by the adversary on a 2 MB tmpfs)."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def get(self, k: bytes) -> Any:
        return self.db.get(k)

    def items(self, **kwargs: Any) -> Any:
        return self.db.items(**kwargs)

    def close(self) -> None:
        self.db.close()

    def _refuse(self, *_: Any) -> None:
        raise Exception("IO error: No space left on device")  # noqa: TRY002 - rocksdict's kind

    put = delete = delete_range = _refuse


def _filling(tmp_path: Path) -> tuple[IdleStates, dict[str, Any], list[Exception]]:
    """Two states on disk, one in use; then the disk is full."""
    told: list[Exception] = []
    data: dict[str, Any] = {k: AccountState.new(k, 1.0) for k in ("a", "b", "c")}
    idle = IdleStates(data, encode_account_state, decode_account_state, idle_after_s=0,
                      cold=ColdStates(tmp_path / "accounts", of), partition_of=of,
                      disk_failed=told.append)
    for key in data:
        idle.touched(key)
    idle.after_flush()
    idle.get("c")
    idle.after_flush()
    assert list(data) == ["c"] and idle.on_disk() == 2
    assert idle.cold is not None
    idle.cold._db = _FullDisk(idle.cold._db)
    return idle, data, told


@pytest.mark.parametrize("first", ["spill", "read", "delete", "rebalance"])
def test_a_full_disk_brings_its_states_back_to_memory_and_the_worker_goes_on(
        tmp_path: Path, first: str) -> None:
    """A full or broken disk must cost memory, never a state nor the worker: whichever use
    of the disk fails first (a spill, a read of an idle state, a deletion, a rebalance that
    drops a partition), every state on it of a partition still owned comes back to the
    store and the disk is used no more. (Reads still work on a full disk.)"""
    idle, data, told = _filling(tmp_path)
    if first == "spill":
        idle.after_flush()  # c, unused for a generation, fails to go out
        assert idle.get("a") == AccountState.new("a", 1.0)
    elif first == "read":
        assert idle.get("a") == AccountState.new("a", 1.0)
    elif first == "delete":
        data.pop("a", None)
        idle.forget("a")  # HeldWrites.delete
        assert idle.get("a") is None, "a deleted state came back with the others"
    else:  # a's partition leaves
        idle.keep_partitions(set(range(PARTITIONS)) - {of("a")})
    assert idle.cold is None and len(told) == 1 and idle.counts()["disk_failed"] == 1
    assert "No space" in str(told[0])
    expected = {"b", "c"} if first in ("delete", "rebalance") else {"a", "b", "c"}
    assert {k for k, _ in idle.items()} == expected
    idle.after_flush()
    idle.after_flush()  # the disk is used no more: idle states stay in memory, as bytes
    assert set(data) == expected and idle.on_disk() == 0


def test_a_count_on_disk_is_not_raised_by_a_write_that_failed(tmp_path: Path) -> None:
    cold = ColdStates(tmp_path / "accounts", of)
    real = cold._db
    cold._db = _FullDisk(real)
    with pytest.raises(Exception, match="No space"):
        cold.put("a", b"x")
    cold._db = real
    assert len(cold) == 0


def test_a_key_of_a_partition_that_left_never_goes_to_disk(tmp_path: Path) -> None:
    """Faust's memory store keeps the keys the agents wrote after their partition left. On
    disk such a state would outlive a deletion by the partition's next owner and come back
    with the partition (found by the adversary): it stays in memory, as before the disk."""
    data: dict[str, Any] = {}
    idle = on_disk(tmp_path, data)
    k = "acct-7"
    data[k] = AccountState.new(k, 1.0)  # written by this worker's agent
    idle.touched(k)
    idle.after_flush()
    idle.keep_partitions(set(range(PARTITIONS)) - {of(k)})  # the partition leaves
    idle.after_flush()  # k unused since: encoded, but not to disk
    assert idle.on_disk() == 0 and type(data[k]) is bytes
    # the next owner deletes k; the partition comes back; its recovery replays the changelog
    idle.keep_partitions(set(range(PARTITIONS)))
    data[k] = encode_account_state(AccountState.new(k, 1.0))
    data.pop(k)  # the tombstone
    assert idle.get(k) is None and list(idle.states_of(of(k))) == []


def test_a_state_on_disk_that_does_not_decode_is_dropped_and_reported(tmp_path: Path) -> None:
    told: list[Any] = []
    cold = ColdStates(tmp_path / "accounts", of)
    cold.put("bad", b"\xff")
    cold.put("good", encode_account_state(AccountState.new("good", 1.0)))
    idle = IdleStates({}, encode_account_state, decode_account_state, cold=cold,
                      partition_of=of, undecodable=lambda key, exc: told.append(key))
    assert [k for k, _ in idle.items()] == ["good"]
    assert idle.get("bad") is None and told == ["bad"] and idle.on_disk() == 1


def test_the_replay_decides_the_same_with_every_idle_state_on_disk(tmp_path: Path) -> None:
    """Every account and cluster state not used since the last flush goes to disk, every 29
    events and every 3 keys of a step's window closes or a tick's judgements (the worker's
    flush between slices, models/due.py), and comes back at its next use: byte-identical
    decisions, every state still there at the end. In a process running the core's sources: the compiled core reads the
    Pipeline's dicts with its own dict operations, which no mapping can stand in for."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLGUARD_")}
    env["DISTILLGUARD_CORE"] = "interpreted"
    proc = subprocess.run([sys.executable, "-c", (
        "import sys; from tests.unit.test_cold_states import replay_with_states_on_disk; "
        "replay_with_states_on_disk(sys.argv[1])"), str(tmp_path)],
        check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "same", proc.stdout


def replay_with_states_on_disk(directory: str) -> None:
    from distillguard.models import pipeline as pipeline_module

    assert not str(pipeline_module.__file__).endswith(".so"), "the core's sources"
    events = [event_from_mapping(e) for e in generate_events(Scenario.small())]
    plain, spilled = Pipeline(DetectorConfig()), Pipeline(DetectorConfig())
    expected = [encode_decision(d, 0.0) for ev in events for d in plain.process(ev)]
    accounts = IdleStates({}, encode_account_state, decode_account_state, idle_after_s=0,
                          cold=ColdStates(Path(directory) / "a", of), partition_of=of)
    clusters = IdleStates({}, encode_cluster_state, decode_cluster_state, idle_after_s=0,
                          cold=ColdStates(Path(directory) / "c", of), partition_of=of)
    spilled.accounts = IdleTable(accounts)  # type: ignore[assignment]
    spilled.clusters = IdleTable(clusters)  # type: ignore[assignment]
    within_steps = 0

    def flush_within_step() -> None:
        nonlocal within_steps
        within_steps += 1
        accounts.after_flush()
        clusters.after_flush()
    spilled.between_slices = flush_within_step
    spilled.slice_keys = 3
    got: list[bytes] = []
    for i, ev in enumerate(events):
        got.extend(encode_decision(d, 0.0) for d in spilled.process(ev))
        if i % 29 == 0:
            accounts.after_flush()
            clusters.after_flush()
    assert within_steps > 100, within_steps
    assert accounts.counts()["decodes"] > 100, accounts.counts()
    assert clusters.counts()["decodes"] > 100, clusters.counts()
    assert accounts.on_disk() > 0 and clusters.on_disk() > 0
    assert len(expected) > 10 and plain.counts["verdicts"], "decisions and verdicts to compare"
    assert got == expected
    assert spilled.counts == plain.counts
    assert dict(accounts.items()) == plain.accounts
    assert dict(clusters.items()) == plain.clusters
    print("same")


def test_a_workers_directory_is_its_own_and_removed_when_it_is_gone(tmp_path: Path) -> None:
    root = tmp_path / "idle-states"
    mine = WorkerColdStates(root)
    mine.open("accounts", of).put("a", b"x")
    # a worker killed earlier left its directory, its lock free
    abandoned = root / "123-deadbeef"
    (abandoned / "accounts").mkdir(parents=True)
    (abandoned / OWNER_LOCK).touch()
    # a live worker in another process holds its lock
    other = subprocess.Popen([sys.executable, "-c", (
        "import sys; from pathlib import Path; "
        "from distillguard.streams.worker.cold_states import WorkerColdStates; "
        "w = WorkerColdStates(Path(sys.argv[1])); print(w.dir.name, flush=True); "
        "sys.stdin.read()"), str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True)  # alive, its lock held, until killed
    try:
        assert other.stdout is not None
        live = root / other.stdout.readline().strip()
        assert live.is_dir()
        assert abandoned not in {mine.dir, live}
        assert not abandoned.exists(), "the other worker's start removed it"
        assert remove_abandoned(root) == []
        assert mine.dir.is_dir() and live.is_dir()
        with open(mine.dir / OWNER_LOCK, "rb") as f:  # held: another look finds it taken
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                raise AssertionError("the lock of a live worker was free")
            except BlockingIOError:
                pass
    finally:
        other.kill()
        other.wait()
    assert remove_abandoned(root) == [live]  # killed: its directory goes at the next look
    mine.close()
    assert not mine.dir.exists()


def test_a_worker_killed_while_it_started_leaves_nothing_for_long(tmp_path: Path) -> None:
    """A kill between a directory's creation (hidden) and its rename: once older than a start
    can take, the next start removes it; a fresh one (a worker starting now) is left."""
    root = tmp_path / "idle-states"
    old, fresh = root / ".4242-deadbeef", root / ".4343-feedface"
    for d in (old, fresh):
        (d / "accounts").mkdir(parents=True)
    (old / OWNER_LOCK).touch()
    long_ago = time.time() - 3600
    os.utime(old, (long_ago, long_ago))
    assert remove_abandoned(root) == [old]
    assert fresh.is_dir()
