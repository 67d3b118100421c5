"""`streams.worker.outbox`: items held per destination partition, sent as one record each (split to
stay under the record bound), never overtaken by a tick and never left behind by an offset
commit."""

from __future__ import annotations

import asyncio
from typing import Any

from distillguard.models.messages import ClusterSummary, SourceTick
from distillguard.models.partitioning import partition_for
from distillguard.streams.edge.codec import SUMMARY_BATCH_TAG, decode_cluster_record, encode_summary
from distillguard.streams.worker.outbox import Outbox, install_before_commit

PARTITIONS = 4
T0 = 1_700_000_000.0


def summary_outbox(wire: Wire, max_held: int = 100, max_record_bytes: int = 65536) -> Outbox:
    return Outbox(SUMMARY_BATCH_TAG, wire.send, PARTITIONS, max_held=max_held,
                  key_of=lambda s: s.cluster_key, max_record_bytes=max_record_bytes)


def summary(key: str, account: str, n: int = 1) -> ClusterSummary:
    return ClusterSummary(key, account, "window", int(T0), T0, n, 0, 0, 10, True, T0, tick=1)


class Wire:
    """The cluster summaries topic: what was sent, in order, per partition. Each send yields
    to the event loop, as a real send may."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, bytes, Any]] = []
        self.raw: list[tuple[int, bytes, bytes]] = []

    async def send(self, partition: int, key: bytes, value: bytes) -> None:
        await asyncio.sleep(0)
        self.raw.append((partition, key, value))
        self.sent.append((partition, key, decode_cluster_record(value)))

    def on(self, partition: int) -> list[Any]:
        return [record for q, _, record in self.sent if q == partition]


def test_held_summaries_go_out_as_one_record_per_partition_in_the_order_made() -> None:
    wire = Wire()
    outbox = summary_outbox(wire)
    made = [summary(f"tpl:{i % 7}", f"acct-{i}") for i in range(30)]
    for s in made:
        outbox.hold(s)
    assert wire.sent == [] and outbox.held == 30
    asyncio.run(outbox.flush())

    assert len(wire.sent) == len({partition_for(s.cluster_key, PARTITIONS) for s in made})
    for q in range(PARTITIONS):
        records = wire.on(q)
        assert len(records) <= 1
        expected = [s for s in made if partition_for(s.cluster_key, PARTITIONS) == q]
        assert (records[0] if records else []) == expected
    assert outbox.held == 0 and outbox.items_sent == 30
    asyncio.run(outbox.flush())  # nothing held: nothing sent
    assert len(wire.sent) == outbox.records_sent


def test_the_outbox_is_full_at_its_limit() -> None:
    outbox = summary_outbox(Wire(), max_held=3)
    for i in range(2):
        outbox.hold(summary("ip:1", f"a{i}"))
    assert not outbox.full
    outbox.hold(summary("ip:1", "a2"))
    assert outbox.full



def test_a_broadcast_is_held_for_every_partition_in_order_with_the_others() -> None:
    wire = Wire()
    outbox = summary_outbox(wire)
    before, everywhere = summary("tpl:a", "acct-1"), summary("tpl:b", "acct-2")
    outbox.hold(before)
    outbox.hold_for_every_partition(everywhere)
    assert outbox.held == 1 + PARTITIONS
    asyncio.run(outbox.flush())
    for q in range(PARTITIONS):
        expected = ([before] if partition_for(before.cluster_key, PARTITIONS) == q else []) + [
            everywhere]
        assert wire.on(q) == [expected]

def test_a_tick_follows_every_summary_held_before_it_on_every_partition() -> None:
    wire = Wire()
    outbox = summary_outbox(wire)
    tick = SourceTick(source=2, tick=5)
    keys = [f"tpl:{i}" for i in range(12)]

    async def scenario() -> None:
        for k in keys:
            outbox.hold(summary(k, "acct-1"))
        # the commit's flush and the agent's tick race; neither may put the tick first
        await asyncio.gather(outbox.flush(), outbox.send_after_held(b"tick", encode_summary(tick)))

    asyncio.run(scenario())
    for q in range(PARTITIONS):
        records = wire.on(q)
        assert records[-1] == tick  # every partition gets the tick, after its summaries
        assert all(isinstance(r, list) for r in records[:-1])
        assert sum(len(r) for r in records[:-1]) == sum(
            1 for k in keys if partition_for(k, PARTITIONS) == q)


def test_the_producer_flush_before_a_commit_sends_what_is_held_first() -> None:
    wire = Wire()
    outbox = summary_outbox(wire)
    calls: list[str] = []

    class Producer:
        async def flush(self) -> None:
            calls.append(f"producer flush after {len(wire.sent)} records")

    producer = Producer()
    install_before_commit(producer, outbox.flush)
    outbox.hold(summary("pay:x", "acct-9"))
    asyncio.run(producer.flush())
    assert calls == ["producer flush after 1 records"] and outbox.held == 0


def test_a_partition_with_more_than_a_record_holds_gets_several_records_in_order() -> None:
    wire = Wire()
    outbox = summary_outbox(wire, max_held=1000, max_record_bytes=2_000)
    made = [summary("ip:hot", f"acct-{i}") for i in range(60)]  # one partition, ~6 KB
    for s in made:
        outbox.hold(s)
    asyncio.run(outbox.flush())
    q = partition_for("ip:hot", PARTITIONS)
    records = wire.on(q)
    assert len(records) > 1 and [s for r in records for s in r] == made
    assert all(len(value) <= 2_000 for _, _, value in wire.raw)


def test_a_failed_send_puts_back_every_item_not_sent_ahead_of_newer_ones() -> None:
    wire = Wire()
    sends = 0

    async def failing_second_send(partition: int, key: bytes, value: bytes) -> None:
        nonlocal sends
        sends += 1
        if sends == 2:
            raise RuntimeError("broker gone")
        await wire.send(partition, key, value)

    outbox = Outbox(SUMMARY_BATCH_TAG, failing_second_send, PARTITIONS, max_held=100,
                    key_of=lambda s: s.cluster_key, max_record_bytes=65536)
    made = [summary(f"tpl:{i}", f"acct-{i}") for i in range(12)]
    for s in made:
        outbox.hold(s)
    try:
        asyncio.run(outbox.flush())
    except RuntimeError:
        pass
    first_sent = [s for r in wire.on(wire.sent[0][0]) for s in r]
    later = summary("tpl:0", "acct-late")
    outbox.hold(later)
    assert outbox.held == len(made) - len(first_sent) + 1
    asyncio.run(outbox.flush())
    got = [s for q in range(PARTITIONS) for r in wire.on(q) for s in r]
    assert sorted(got) == sorted([*made, later])  # nothing lost, nothing twice
    for q in range(PARTITIONS):  # and in each partition, in the order held
        expected = [s for s in [*made, later] if partition_for(s.cluster_key, PARTITIONS) == q]
        assert [s for r in wire.on(q) for s in r] == expected


def test_an_item_that_does_not_encode_is_refused_alone_and_the_rest_is_sent() -> None:
    # An integer past 64 bits (orjson refuses it) among 20 summaries held for one partition
    # once made the whole held batch vanish: encoding came before the send's try.
    wire = Wire()
    refused: list[tuple[str, bytes]] = []

    async def refuse(reason: str, shown: bytes) -> None:
        refused.append((reason, shown))

    outbox = Outbox(SUMMARY_BATCH_TAG, wire.send, PARTITIONS, max_held=100,
                    key_of=lambda s: s.cluster_key, max_record_bytes=65536, refuse=refuse)
    made = [summary("ip:hot", f"acct-{i}") for i in range(20)]
    bad = summary("ip:hot", "acct-bad", n=2**70)
    for s in [*made[:7], bad, *made[7:]]:
        outbox.hold(s)
    asyncio.run(outbox.flush())

    sent = [s for r in wire.on(partition_for("ip:hot", PARTITIONS)) for s in r]
    assert sent == made, "every other item is sent, in the order held"
    assert len(refused) == 1 and outbox.refused == 1 and outbox.held == 0
    reason, shown = refused[0]
    assert "could not be encoded" in reason and b"acct-bad" in shown


def test_without_a_refuse_callback_the_rest_is_sent_then_the_error_raised() -> None:
    wire = Wire()
    outbox = summary_outbox(wire)
    outbox.hold(summary("ip:a", "acct-1"))
    outbox.hold(summary("ip:a", "acct-bad", n=2**70))
    try:
        asyncio.run(outbox.flush())
    except TypeError as exc:
        assert "could not be encoded" in str(exc)
    else:
        raise AssertionError("an unencodable item without a refuse callback should raise")
    assert [s for r in wire.on(partition_for("ip:a", PARTITIONS)) for s in r] == [
        summary("ip:a", "acct-1")]


def test_a_refused_item_whose_dead_letter_fails_is_dead_lettered_at_the_next_flush() -> None:
    wire = Wire()
    refused: list[bytes] = []
    failures = [RuntimeError("dead-letter topic unavailable")]

    async def refuse(reason: str, shown: bytes) -> None:
        if failures:
            raise failures.pop()
        refused.append(shown)

    outbox = Outbox(SUMMARY_BATCH_TAG, wire.send, PARTITIONS, max_held=100,
                    key_of=lambda s: s.cluster_key, max_record_bytes=65536, refuse=refuse)
    outbox.hold(summary("ip:a", "acct-1"))
    outbox.hold(summary("ip:a", "acct-bad", n=2**70))
    try:
        asyncio.run(outbox.flush())
    except RuntimeError:
        pass
    else:
        raise AssertionError("the failed dead letter should surface")
    assert [s for r in wire.on(partition_for("ip:a", PARTITIONS)) for s in r] == [
        summary("ip:a", "acct-1")] and refused == []
    asyncio.run(outbox.flush())
    assert len(refused) == 1 and b"acct-bad" in refused[0] and outbox.refused == 1
