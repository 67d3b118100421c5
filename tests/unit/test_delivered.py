"""`streams.worker.topology.delivered`: the acks of a step's decisions, awaited together at the
end of the step. The step's change must not end while any decision it records is still
unacknowledged, even when another one's delivery failed. And `SliceFlush`, which flushes
between slices of a step's due keys only what records acknowledged decisions."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError

from distillguard.streams.worker.held_writes import HeldWrites
from distillguard.streams.worker.topology import SliceFlush, delivered
from tests.unit.test_held_writes import Table


def test_every_decision_acked_is_counted_in_order() -> None:
    async def scenario() -> list[Any]:
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in range(3)]
        for n, future in enumerate(futures):
            loop.call_later(0.01 * (3 - n), future.set_result, n)  # acked in reverse order
        acked: list[Any] = []
        await delivered([("first", [futures[0]]), ("second", [futures[1], futures[2]]),
                         ("shadow, no future", [])], acked.append)
        assert all(f.done() for f in futures)
        return acked

    assert asyncio.run(scenario()) == ["first", "second", "shadow, no future"]


def test_a_failed_delivery_is_raised_only_once_every_other_ack_is_in() -> None:
    """A batch fails one partition at a time: the decisions on other partitions may still be in
    flight, and the change that records them must wait for them before it ends."""

    async def scenario() -> tuple[list[Any], Any]:
        loop = asyncio.get_running_loop()
        failed, late = loop.create_future(), loop.create_future()
        failed.set_exception(KafkaTimeoutError("the enforcement partition's batch expired"))
        loop.call_later(0.05, late.set_result, None)
        acked: list[Any] = []
        with pytest.raises(KafkaTimeoutError):
            await delivered([("lost", [failed]), ("in flight", [late])], acked.append)
        return acked, late

    acked, late = asyncio.run(scenario())
    assert late.done(), "raised while a decision of the step was still in flight"
    assert acked == ["in flight"]  # the failed one is not counted as decided


class Held:
    """The parts of HeldWrites a SliceFlush uses: each flush within the change is recorded,
    with whether every ack of `futures` was in by then."""

    def __init__(self, fail: bool = False, futures: list[Any] | None = None) -> None:
        self.table = None
        self.flushes = 0
        self.fail = fail
        self.futures = futures or []
        self.acked_at_flush: list[bool] = []

    async def flush_within_change(self) -> None:
        self.flushes += 1
        self.acked_at_flush.append(all(f.done() for f in self.futures))
        if self.fail:
            raise RuntimeError("broker gone")


def never() -> bool:
    return False


def test_between_slices_the_flush_comes_only_once_the_acks_are_in() -> None:
    async def scenario() -> tuple[list[Any], Held, list[Any]]:
        loop = asyncio.get_running_loop()
        acked: list[Any] = []
        future = loop.create_future()
        loop.call_later(0.01, future.set_result, None)
        held = Held(futures=[future])
        sent: list[Any] = [("decided in slice 1", [future])]
        slices = SliceFlush(held, sent, acked.append, never)  # type: ignore[arg-type]
        await slices.between()
        slices.raise_failure()  # nothing failed
        return acked, held, sent

    acked, held, sent = asyncio.run(scenario())
    assert held.acked_at_flush == [True]
    assert acked == ["decided in slice 1"] and sent == []  # not awaited twice at the step's end


def test_after_a_failed_delivery_nothing_more_is_flushed_and_the_step_raises_at_its_end() -> None:
    """A state that records a decision not acknowledged must not reach the changelog: the
    step goes on through its due keys (popped from the index), flushes nothing more, and
    raises the failure once done (its event dead-lettered, as for any failed delivery)."""

    async def scenario() -> list[Any]:
        loop = asyncio.get_running_loop()
        failed = loop.create_future()
        failed.set_exception(KafkaTimeoutError("the enforcement partition's batch expired"))
        acked: list[Any] = []
        held = Held()
        sent: list[Any] = [("lost", [failed])]
        slices = SliceFlush(held, sent, acked.append, never)  # type: ignore[arg-type]
        await slices.between()
        sent.append(("decided in slice 2", []))
        await slices.between()
        assert held.flushes == 0
        with pytest.raises(KafkaTimeoutError):
            slices.raise_failure()
        return acked

    assert asyncio.run(scenario()) == []


def test_a_flush_that_fails_between_slices_is_left_to_the_agent_s_next_flush() -> None:
    async def scenario() -> Held:
        held = Held(fail=True)
        slices = SliceFlush(held, None, lambda d: None, never)  # type: ignore[arg-type]
        await slices.between()
        await slices.between()  # not tried again within the step
        slices.raise_failure()  # its records are held again: nothing to raise
        return held

    assert asyncio.run(scenario()).flushes == 1


@pytest.mark.parametrize("begins", ["before the slice ends", "while its acks come in"])
def test_during_a_rebalance_the_step_stays_one_change_and_the_revocation_waits_for_it(
        begins: str) -> None:
    """Faust's revocation flushes the producer (and so the held writes) before it hands the
    partition on, after waiting for the records it delivered; a held-back record the account
    stage drains itself is not one of them. Flushed at a slice, the revocation would pass the
    step, and its later slices would reach the changelog after the partition moved, older
    than its next owner's records (helper-47's review). While `app.rebalancing` is set there
    is no flush between slices."""
    table = Table()
    writes = HeldWrites(table, table.produce, max_held=100)
    changed_after_revocation: list[str] = []
    revoked = asyncio.Event()
    rebalancing = False

    async def drained_step() -> None:  # process_request of a held-back record
        await writes.begin_change()
        try:
            writes.change(7, "acct-1", {"closed": 1}, cause="held-back record")
            loop = asyncio.get_running_loop()
            ack = loop.create_future()
            loop.call_later(0.02, ack.set_result, None)
            if begins == "before the slice ends":
                await asyncio.sleep(0.01)
            sent: list[Any] = [("decided in slice 1", [ack])]
            await SliceFlush(writes, sent, lambda d: None, lambda: rebalancing).between()
            writes.change(7, "acct-2", {"closed": 1}, cause="held-back record")  # slice 2
            if revoked.is_set():
                changed_after_revocation.append("acct-2")
        finally:
            writes.end_change()

    async def revocation() -> None:
        nonlocal rebalancing
        await asyncio.sleep(0.005)
        rebalancing = True
        await writes.flush()
        revoked.set()

    async def scenario() -> None:
        await asyncio.gather(drained_step(), revocation())

    asyncio.run(scenario())
    assert changed_after_revocation == [] and writes.held == 0
    assert sorted(k for _, k, _, _ in table.changelog) == [b'"acct-1"', b'"acct-2"']
