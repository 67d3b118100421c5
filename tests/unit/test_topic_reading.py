"""`reading` (streams/edge/topics.py), the frame of the CLI's and the control topic's one-off
reads: the consumer is stopped whatever happens, and a timeout or a Kafka error becomes the
caller's error class with a message that says what was read from where."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError

from distillguard.streams.edge.control import ControlTopicError
from distillguard.streams.edge.topics import TopicError, reading


class FakeConsumer:
    def __init__(self, fail_start: BaseException | None = None) -> None:
        self.fail_start = fail_start
        self.started = self.stopped = False

    async def start(self) -> None:
        if self.fail_start is not None:
            raise self.fail_start
        self.started = True

    async def stop(self) -> None:
        self.stopped = True


def read(consumer: Any, body: Any, **kwargs: Any) -> None:
    async def run() -> None:
        async with reading(consumer, "the decisions topic t", "host:1", **kwargs):
            await body()
    asyncio.run(run())


async def nothing() -> None:
    pass


def test_the_block_runs_on_a_started_consumer_which_is_stopped_after() -> None:
    consumer = FakeConsumer()
    read(consumer, nothing, timeout_s=5)
    assert consumer.started and consumer.stopped


def test_a_timeout_says_what_took_too_long_with_the_callers_hint() -> None:
    consumer = FakeConsumer()
    with pytest.raises(TopicError) as err:
        read(consumer, asyncio.Event().wait, timeout_s=0.01, slow_hint="(is the broker up?)")
    assert str(err.value) == ("reading the decisions topic t at host:1 took over 0.01 s "
                              "(is the broker up?)")
    assert consumer.stopped
    with pytest.raises(TopicError) as err:
        read(FakeConsumer(), asyncio.Event().wait, timeout_s=0.01)
    assert str(err.value) == "reading the decisions topic t at host:1 took over 0.01 s"


def test_a_kafka_error_becomes_the_callers_error_class() -> None:
    consumer = FakeConsumer(fail_start=KafkaConnectionError("no broker"))
    with pytest.raises(ControlTopicError) as err:
        read(consumer, nothing, timeout_s=5, error=ControlTopicError)
    assert str(err.value) == ("reading the decisions topic t at host:1 failed: "
                              "KafkaConnectionError: no broker")
    assert err.value.__cause__ is None and consumer.stopped


def test_an_error_of_the_block_passes_through_unchanged() -> None:
    consumer = FakeConsumer()

    async def missing() -> None:
        raise TopicError("the decisions topic t does not exist")
    with pytest.raises(TopicError, match="^the decisions topic t does not exist$"):
        read(consumer, missing, timeout_s=5)
    assert consumer.stopped
