"""`streams.worker.held_writes`: table changes visible at once, one changelog record per key per batch,
on the partition of the event that made the change, keyed as the table's json serializer
keys it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from distillguard.streams.worker.held_writes import HeldWrites


class Table:
    """The parts of a Faust table the held writes use: its local store, its changelog topic."""

    def __init__(self) -> None:
        self.data: dict[Any, Any] = {}
        self.changelog_topic = self
        self.changelog: list[tuple[str, bytes, bytes | None, int]] = []

    def get_topic_name(self) -> str:
        return "app-accounts-changelog"

    async def produce(self, topic: str, key: bytes, value: bytes | None, partition: int) -> None:
        await asyncio.sleep(0)
        self.changelog.append((topic, key, value, partition))


def held(max_held: int = 10) -> tuple[Table, HeldWrites]:
    table = Table()
    return table, HeldWrites(table, table.produce, max_held=max_held)


def test_a_change_is_read_at_once_and_logged_once_per_batch_with_the_newest_bytes() -> None:
    table, writes = held()
    writes.put(3, "acct-1", {"requests": 1}, b"v1")
    writes.put(3, "acct-1", {"requests": 2}, b"v2")
    writes.put(5, 7, {"requests": 1}, b"w1")
    assert table.data == {"acct-1": {"requests": 2}, 7: {"requests": 1}}
    assert table.changelog == [] and writes.held == 2
    asyncio.run(writes.flush())
    assert table.changelog == [("app-accounts-changelog", b'"acct-1"', b"v2", 3),
                               ("app-accounts-changelog", b"7", b"w1", 5)]
    # the keys are what Faust's json key serializer makes, so a recovery reads them back
    assert [json.loads(k) for _, k, _, _ in table.changelog] == ["acct-1", 7]
    assert writes.held == 0 and writes.records_sent == 2 and writes.changes == 3
    asyncio.run(writes.flush())
    assert len(table.changelog) == 2  # nothing held, nothing sent


def test_a_deletion_removes_the_entry_and_logs_a_tombstone() -> None:
    table, writes = held()
    writes.put(1, "acct-9", "state", b"s")
    writes.delete(1, "acct-9")
    assert "acct-9" not in table.data
    asyncio.run(writes.flush())
    assert table.changelog == [("app-accounts-changelog", b'"acct-9"', None, 1)]


def test_the_writes_are_full_at_their_limit_of_keys() -> None:
    _, writes = held(max_held=2)
    writes.put(0, "a", 1, b"1")
    writes.put(0, "a", 2, b"2")
    assert not writes.full  # one key, changed twice
    writes.put(0, "b", 1, b"1")
    assert writes.full


def test_the_changelog_keys_are_the_bytes_faust_itself_writes_and_recovers() -> None:
    from faust.serializers import codecs

    table, writes = held()
    keys = ["acct-1", "ip:203.0.113.0/24", "ua:Mözilla/5.0 \"quoted\"", 11]
    for i, key in enumerate(keys):
        writes.put(0, key, i, b"x")
    asyncio.run(writes.flush())
    assert [k for _, k, _, _ in table.changelog] == [codecs.dumps("json", k) for k in keys]
    assert [codecs.loads("json", k) for _, k, _, _ in table.changelog] == keys


class SlowTable(Table):
    """A producer whose send waits a few loop turns, as aiokafka's does on a full batch."""

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.calls = 0
        self.fail_at = fail_at

    async def produce(self, topic: str, key: bytes, value: bytes | None, partition: int) -> None:
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise RuntimeError("broker gone")
        for _ in range(3):
            await asyncio.sleep(0)
        self.changelog.append((topic, key, value, partition))


def test_a_flush_waits_for_one_in_progress_so_no_older_state_lands_after_a_newer() -> None:
    table = SlowTable()
    writes = HeldWrites(table, table.produce, max_held=100)
    committed: list[str] = []

    async def scenario() -> None:
        for i in range(5):
            writes.put(0, f"k{i}", i, b"v1")
        first = asyncio.create_task(writes.flush())  # an agent's flush, paused in a send
        await asyncio.sleep(0)
        writes.put(0, "k4", 4, b"v2")  # the other agent changes a state meanwhile
        await writes.flush()  # the commit's flush
        committed.append(f"committed after {len(table.changelog)} records")
        await first

    asyncio.run(scenario())
    assert committed == ["committed after 6 records"]  # every state held before the commit
    assert [(k, v) for _, k, v, _ in table.changelog][-2:] == [(b'"k4"', b"v1"),
                                                               (b'"k4"', b"v2")]


def test_the_outputs_a_state_records_are_sent_before_it() -> None:
    table = SlowTable()
    order: list[str] = []

    async def outputs() -> None:
        order.append(f"outputs, {len(table.changelog)} states sent")

    writes = HeldWrites(table, table.produce, max_held=100, outputs_first=outputs)
    writes.put(0, "acct-1", 1, b"s")
    asyncio.run(writes.flush())
    assert order == ["outputs, 0 states sent"] and len(table.changelog) == 1


def test_a_failed_send_puts_back_what_was_not_sent_and_newer_changes_win() -> None:
    table = SlowTable(fail_at=2)
    writes = HeldWrites(table, table.produce, max_held=100)
    for i in range(3):
        writes.put(0, f"k{i}", i, b"old")

    async def scenario() -> None:
        flush = asyncio.create_task(writes.flush())
        await asyncio.sleep(0)
        writes.put(0, "k2", 2, b"new")
        try:
            await flush
        except RuntimeError:
            pass

    asyncio.run(scenario())
    assert [k for _, k, _, _ in table.changelog] == [b'"k0"']
    assert writes.held == 2
    table.fail_at = None
    asyncio.run(writes.flush())
    assert [(k, v) for _, k, v, _ in table.changelog] == [
        (b'"k0"', b"old"), (b'"k1"', b"old"), (b'"k2"', b"new")]


def test_a_key_put_last_is_sent_after_every_record_held_before_it() -> None:
    # A snapshot's manifest must reach the changelog after its pieces (a crash between them
    # then leaves the previous snapshot whole), also when an earlier manifest is still held.
    table, writes = held()
    writes.put(3, 3, {"manifest": 1}, b"m1")
    writes.put(3, "3/1/0", "piece", b"p0")
    writes.put(3, 3, {"manifest": 2}, b"m2", last=True)
    asyncio.run(writes.flush())
    assert [value for _, _, value, _ in table.changelog] == [b"p0", b"m2"]


# --- states the agents change: encoded once, at the flush ------------------------------------

class Counted:
    """An encoder that counts its calls (the work the flush saves)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, value: Any) -> bytes:
        self.calls += 1
        return json.dumps(value).encode()


def changed(max_bytes: int = 0, refused: list[tuple[Any, str, list[Any]]] | None = None,
            ) -> tuple[Table, HeldWrites, Counted]:
    table, encode = Table(), Counted()

    async def refuse(key: Any, reason: str, causes: list[Any]) -> None:
        await asyncio.sleep(0)
        assert refused is not None
        refused.append((key, reason, causes))

    return table, HeldWrites(table, table.produce, max_held=100, encode=encode,
                             max_bytes=max_bytes, refuse=refuse), encode


def test_a_state_changed_many_times_is_encoded_once_at_the_flush_in_its_newest_form() -> None:
    table, writes, encode = changed()
    state = {"requests": 0}
    for i in range(50):
        state["requests"] = i + 1  # the core changes a state in place
        writes.change(3, "acct-1", state, cause=f"record-{i}")
    writes.change(5, "acct-2", {"requests": 1}, cause="record-x")
    assert encode.calls == 0 and table.data["acct-1"] is state
    asyncio.run(writes.flush())
    assert encode.calls == 2
    assert table.changelog == [("app-accounts-changelog", b'"acct-1"', b'{"requests": 50}', 3),
                               ("app-accounts-changelog", b'"acct-2"', b'{"requests": 1}', 5)]


def test_a_flush_waits_for_a_change_under_way_and_holds_new_ones_back() -> None:
    """Between the core's change of a state in place and its `change`, the agent awaits its
    outputs (a decision's ack): a flush must not encode the state then, or the changelog
    would record a decision that a crash could still lose."""
    table, writes, _ = changed()
    state = {"decisions": 0}
    order: list[str] = []

    async def agent() -> None:
        await writes.begin_change()
        state["decisions"] = 1  # the core decided, in place
        order.append("decided")
        for _ in range(5):  # awaiting the decision's ack
            await asyncio.sleep(0)
        order.append("acked")
        writes.change(0, "acct-1", state, cause="record-1")
        writes.end_change()

    async def other_agent() -> None:
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # the flush is waiting by now
        await writes.begin_change()
        order.append("other began")
        state["decisions"] = 2
        writes.change(0, "acct-1", state, cause="record-2")
        writes.end_change()

    async def commit() -> None:
        await asyncio.sleep(0)
        await writes.flush()
        order.append(f"flushed {table.changelog[-1][2]!r}")

    async def scenario() -> None:
        writes.change(0, "acct-1", state, cause="record-0")  # held from an earlier record
        await asyncio.gather(agent(), commit(), other_agent())

    asyncio.run(scenario())
    # the other agent tried to begin while the flush waited: held back until the flush had
    # encoded the state, which it did once the first change was whole (not before its ack,
    # not after the other's change)
    assert order == ["decided", "acked", "other began", "flushed b'{\"decisions\": 1}'"], order
    asyncio.run(writes.flush())
    assert table.changelog[-1][2] == b'{"decisions": 2}'


def test_a_state_over_the_bound_never_reaches_the_changelog_and_its_records_are_refused(
        ) -> None:
    refused: list[tuple[Any, str, list[Any]]] = []
    table, writes, _ = changed(max_bytes=40, refused=refused)
    big: dict[str, list[str]] = {"keys": []}
    records = [f"record-{i}" for i in range(6)]
    for i, record in enumerate(records):
        big["keys"].append(f"k{i}")  # grows past the bound at the 5th record
        writes.change(1, "acct-big", big, cause=record)
    writes.change(1, "acct-big", big, cause=records[-1])  # the same record again: once
    writes.change(2, "acct-ok", {"keys": []}, cause="record-9")
    asyncio.run(writes.flush())
    assert [k for _, k, _, _ in table.changelog] == [b'"acct-ok"']
    assert "acct-big" not in table.data and "acct-ok" in table.data
    [(key, reason, causes)] = refused
    assert key == "acct-big" and causes == records
    assert reason.startswith("StateTooLarge: table entry 'acct-big' is ")
    assert "over max_state_bytes 40" in reason
    assert writes.refused == 1 and writes.held == 0


def test_a_state_that_does_not_encode_is_refused_with_its_reason() -> None:
    refused: list[tuple[Any, str, list[Any]]] = []
    table, writes, _ = changed(refused=refused)
    writes.change(0, "acct-odd", {"when": object()}, cause="record-1")
    asyncio.run(writes.flush())
    assert table.changelog == [] and "acct-odd" not in table.data
    [(_, reason, causes)] = refused
    assert "could not be encoded (TypeError" in reason and causes == ["record-1"]


def test_a_refusal_whose_dead_letter_fails_is_sent_at_the_next_flush() -> None:
    table, encode = Table(), Counted()
    calls: list[str] = []

    async def refuse(key: Any, reason: str, causes: list[Any]) -> None:
        calls.append(key)
        if len(calls) == 1:
            raise RuntimeError("broker gone")

    writes = HeldWrites(table, table.produce, max_held=100, encode=encode, max_bytes=10,
                        refuse=refuse)
    writes.change(0, "acct-big", {"x": "y" * 20}, cause="record-1")
    try:
        asyncio.run(writes.flush())
    except RuntimeError:
        pass
    assert writes.refused == 0
    asyncio.run(writes.flush())
    assert calls == ["acct-big", "acct-big"] and writes.refused == 1
    assert table.changelog == []


def test_a_flush_within_a_long_change_sends_what_is_whole_and_the_change_goes_on() -> None:
    """A window close of thousands of accounts flushes between slices (models/due.py): what the
    change made so far reaches the changelog, and the change is still under way afterwards (a
    commit's flush waits for its end), its count balanced when the caller ends it."""
    table, writes, _ = changed()
    order: list[str] = []

    async def close_windows() -> None:
        await writes.begin_change()
        try:
            writes.change(0, "acct-1", {"closed": 1}, cause="record-1")
            await writes.flush_within_change()
            order.append(f"within: {[k for _, k, _, _ in table.changelog]}")
            writes.change(0, "acct-2", {"closed": 1}, cause="record-1")
            for _ in range(5):  # the next slice's decisions, awaited
                await asyncio.sleep(0)
            order.append("second slice done")
        finally:
            writes.end_change()

    async def commit() -> None:
        for _ in range(3):
            await asyncio.sleep(0)  # while the change is in its second slice
        await writes.flush()
        order.append(f"commit: {[k for _, k, _, _ in table.changelog]}")

    async def scenario() -> None:
        await asyncio.gather(close_windows(), commit())

    asyncio.run(scenario())
    assert order == ["within: [b'\"acct-1\"']", "second slice done",
                     "commit: [b'\"acct-1\"', b'\"acct-2\"']"], order
    asyncio.run(asyncio.wait_for(writes.flush(), 1.0))  # no change left counted: no wait


def test_a_flush_within_a_change_that_fails_leaves_the_change_counted_once() -> None:
    table = SlowTable(fail_at=1)
    writes = HeldWrites(table, table.produce, max_held=100)

    async def scenario() -> None:
        await writes.begin_change()
        try:
            writes.put(0, "k0", 0, b"v0")
            try:
                await writes.flush_within_change()
            except RuntimeError:
                pass
            writes.put(0, "k1", 1, b"v1")
        finally:
            writes.end_change()
        table.fail_at = None
        await asyncio.wait_for(writes.flush(), 1.0)  # would wait forever if still counted

    asyncio.run(scenario())
    assert [k for _, k, _, _ in table.changelog] == [b'"k0"', b'"k1"']
