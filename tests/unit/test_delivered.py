"""`streams.worker.topology.delivered`: the acks of a step's decisions, awaited together at the
end of the step. The step's change must not end while any decision it records is still
unacknowledged, even when another one's delivery failed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError

from distillguard.streams.worker.topology import delivered


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
