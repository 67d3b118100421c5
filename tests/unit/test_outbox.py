"""`streams.outbox`: summaries held per cluster partition, sent as one record each, never
overtaken by a tick and never left behind by an offset commit."""

from __future__ import annotations

import asyncio
from typing import Any

from models.messages import ClusterSummary, SourceTick
from models.partitioning import partition_for
from streams.codec import decode_cluster_record, encode_summary
from streams.outbox import SummaryOutbox, install_before_commit

PARTITIONS = 4
T0 = 1_700_000_000.0


def summary(key: str, account: str, n: int = 1) -> ClusterSummary:
    return ClusterSummary(key, account, "window", int(T0), T0, n, 0, 0, 10, True, T0, tick=1)


class Wire:
    """The cluster summaries topic: what was sent, in order, per partition. Each send yields
    to the event loop, as a real send may."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, bytes, Any]] = []

    async def send(self, partition: int, key: bytes, value: bytes) -> None:
        await asyncio.sleep(0)
        self.sent.append((partition, key, decode_cluster_record(value)))

    def on(self, partition: int) -> list[Any]:
        return [record for q, _, record in self.sent if q == partition]


def test_held_summaries_go_out_as_one_record_per_partition_in_the_order_made() -> None:
    wire = Wire()
    outbox = SummaryOutbox(wire.send, PARTITIONS, max_held=100)
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
    assert outbox.held == 0 and outbox.summaries_sent == 30
    asyncio.run(outbox.flush())  # nothing held: nothing sent
    assert len(wire.sent) == outbox.records_sent


def test_the_outbox_is_full_at_its_limit() -> None:
    outbox = SummaryOutbox(Wire().send, PARTITIONS, max_held=3)
    for i in range(2):
        outbox.hold(summary("ip:1", f"a{i}"))
    assert not outbox.full
    outbox.hold(summary("ip:1", "a2"))
    assert outbox.full


def test_a_tick_follows_every_summary_held_before_it_on_every_partition() -> None:
    wire = Wire()
    outbox = SummaryOutbox(wire.send, PARTITIONS, max_held=100)
    tick = SourceTick(source=2, tick=5)
    keys = [f"tpl:{i}" for i in range(12)]

    async def scenario() -> None:
        for k in keys:
            outbox.hold(summary(k, "acct-1"))
        # the commit's flush and the agent's tick race; neither may put the tick first
        await asyncio.gather(outbox.flush(), outbox.send_tick(encode_summary(tick)))

    asyncio.run(scenario())
    for q in range(PARTITIONS):
        records = wire.on(q)
        assert records[-1] == tick  # every partition gets the tick, after its summaries
        assert all(isinstance(r, list) for r in records[:-1])
        assert sum(len(r) for r in records[:-1]) == sum(
            1 for k in keys if partition_for(k, PARTITIONS) == q)


def test_the_producer_flush_before_a_commit_sends_what_is_held_first() -> None:
    wire = Wire()
    outbox = SummaryOutbox(wire.send, PARTITIONS, max_held=100)
    calls: list[str] = []

    class Producer:
        async def flush(self) -> None:
            calls.append(f"producer flush after {len(wire.sent)} records")

    producer = Producer()
    install_before_commit(producer, outbox.flush)
    outbox.hold(summary("pay:x", "acct-9"))
    asyncio.run(producer.flush())
    assert calls == ["producer flush after 1 records"] and outbox.held == 0
