"""The decisions topic, read whole into the gate's table, then followed.

Every partition is assigned by hand (no consumer group, no commits: a gate moves nobody's
offsets, and every gate reads every account), from the beginning of the topic. The ends of the
partitions are taken at the start; the gate has caught up once it has read up to them, and
only then is it ready (`Gate.caught_up`), so a restarted gate does not take a half-read table
for the state in force. After that it follows new records as they come.

The broker is asked for the partitions' ends every `probe_s`; when no answer has come for
`lost_after_s` the gate counts the broker as lost (`Gate.broker_lost`, the fail mode answers)
until one comes again. A reader that fails is replaced by a new one that goes on from the
offsets already read (the table stays as it is).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from distillguard.streams.gate.table import MAX_KEY_CHARS, DecisionError, Gate

log = structlog.get_logger("distillguard")

# Unreadable records: the first ones are logged one line each, then one line per interval
# with how many more came and the last of them (a topic of a million bad records must not
# write a million lines, nor slow the catch-up by as much); /health counts them all.
UNREADABLE_LOGGED_WHOLE = 20
UNREADABLE_LOG_INTERVAL_S = 10.0


class RepeatFilter(logging.Filter):
    """Lets the same message of a logger through once per `interval_s`. aiokafka logs `Topic
    ... not found in cluster metadata` about a thousand times a second while the topic a gate
    follows is deleted (measured: 11,580 lines in 12 s)."""

    def __init__(self, interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 max_messages: int = 1024) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.clock = clock
        self.max_messages = max_messages
        self.last: dict[str, float] = {}
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now, text = self.clock(), record.getMessage()
        seen = self.last.get(text)
        if seen is not None and now - seen < self.interval_s:
            self.suppressed += 1
            return False
        if len(self.last) >= self.max_messages:
            self.last.clear()
        self.last[text] = now
        return True


def quiet_repeats(logger_names: tuple[str, ...] = ("aiokafka", "aiokafka.cluster",
                                                   "aiokafka.consumer.fetcher")) -> None:
    """The same message of these loggers once per 10 s (idempotent)."""
    for name in logger_names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(RepeatFilter())


@dataclass
class ReaderState:
    """How far the reader has come, for /health."""

    topic: str
    partitions: int = 0
    read: int = 0  # records applied or refused
    unreadable: int = 0
    next_offsets: dict[int, int] = field(default_factory=dict)  # partition -> next to read
    start_ends: dict[int, int] = field(default_factory=dict)  # the ends to catch up with
    ends: dict[int, int] = field(default_factory=dict)  # the newest ends the probe saw
    caught_up_after_s: float | None = None
    last_problem: str = ""

    def lag(self) -> int:
        return sum(max(0, end - self.next_offsets.get(p, 0)) for p, end in self.ends.items())


class DecisionsReader:
    def __init__(self, gate: Gate, bootstrap: str, topic: str,
                 client_kwargs: dict[str, Any] | None = None, *, probe_s: float = 1.0,
                 lost_after_s: float = 10.0, retry_s: float = 2.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.gate = gate
        self.bootstrap = bootstrap
        self.topic = topic
        self.client_kwargs = client_kwargs or {}
        self.probe_s = probe_s
        self.lost_after_s = lost_after_s
        self.retry_s = retry_s
        self.clock = clock
        self.state = ReaderState(topic)
        self.stopping = False
        self.started_mono = time.monotonic()
        self.last_answer_mono = time.monotonic()
        self._suppressed = 0  # unreadable records not logged since the last line
        self._suppressed_last: dict[str, Any] = {}
        self._logged_mono = 0.0

    # ---- one record ------------------------------------------------------------------------
    def on_record(self, rec: Any) -> None:
        self.state.read += 1
        self.state.next_offsets[rec.partition] = rec.offset + 1
        where = {"partition": rec.partition, "offset": rec.offset}
        if rec.key is None:
            self._unreadable(where, "a record without a key (the key is the account id)")
            return
        try:
            key = rec.key.decode("utf-8")
        except UnicodeDecodeError:
            self._unreadable(where, "its key is not UTF-8")
            return
        if not key or len(key) > MAX_KEY_CHARS:
            self._unreadable(where, f"its key has {len(key)} characters (1 to {MAX_KEY_CHARS})")
            return
        table = self.gate.table
        ahead = table.ts_ahead
        try:
            value = None if rec.value is None else orjson.loads(rec.value)
            if value is None and rec.value is not None:
                raise DecisionError("JSON null, not a decision (a tombstone has no value)")
            now = self.clock()
            table.apply(key, value, now)
        except Exception as exc:  # noqa: BLE001 - no record may stop the gate
            if isinstance(exc, orjson.JSONDecodeError):
                why = f"not JSON: {exc}"
            elif isinstance(exc, DecisionError):
                why = f"not a decision: {exc}"
            else:
                why = f"internal error: {_describe(exc)}"
            table.forget(key)
            self._unreadable({**where, "key": key[:140]}, why)
            return
        if table.ts_ahead != ahead and isinstance(value, dict):
            log.warning("gate_record_ts_ahead", topic=self.topic, key=key[:140],
                        ahead_s=round(value["ts"] - now), **where,
                        hint="the producer's clock is ahead: the action ends ttl_s from now")

    def _unreadable(self, where: dict[str, Any], why: str) -> None:
        self.state.unreadable += 1
        if self.state.unreadable <= UNREADABLE_LOGGED_WHOLE:
            log.warning("gate_record_unreadable", topic=self.topic, reason=why, **where)
            return
        self._suppressed += 1
        self._suppressed_last = {"last_reason": why, **{f"last_{k}": v for k, v in where.items()}}
        self.flush_log()

    def flush_log(self, force: bool = False) -> None:
        """The line for the unreadable records not logged yet, once an interval has passed
        since the last (or now, `force`)."""
        now = time.monotonic()
        if self._suppressed and (force or now - self._logged_mono >= UNREADABLE_LOG_INTERVAL_S):
            log.warning("gate_records_unreadable_suppressed", topic=self.topic,
                        suppressed=self._suppressed, unreadable_total=self.state.unreadable,
                        **self._suppressed_last)
            self._suppressed = 0
            self._logged_mono = now

    # ---- the reader ------------------------------------------------------------------------
    async def run(self) -> None:
        """Read and follow the topic until `stopping`; a failed reader is replaced."""
        while not self.stopping:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                auto_offset_reset="earliest", metadata_max_age_ms=5000,
                request_timeout_ms=10000, **self.client_kwargs)
            try:
                await asyncio.wait_for(consumer.start(), timeout=30)
                tps = await self._assign(consumer)
            except asyncio.CancelledError:
                await _stop_quietly(consumer)
                raise
            except Exception as exc:  # noqa: BLE001 - any failure to start: retried, reported
                self._problem(f"cannot read {self.topic} from {self.bootstrap}: "
                              f"{_describe(exc)}")
                await _stop_quietly(consumer)
                self._note_broker(answered=False)
                await asyncio.sleep(self.retry_s)
                continue
            probe = asyncio.create_task(self._probe(consumer, tps))
            try:
                await self._follow(consumer, tps)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a new reader goes on from here
                self._problem(f"reading {self.topic} failed: {_describe(exc)}")
                await asyncio.sleep(self.retry_s)
            finally:
                probe.cancel()
                await asyncio.gather(probe, return_exceptions=True)
                await _stop_quietly(consumer)

    async def _assign(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        parts = await self._partitions()
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        fresh = [tp for tp in tps if tp.partition not in self.state.next_offsets]
        if fresh:  # one request for them all (one per partition takes half a second each)
            await consumer.seek_to_beginning(*fresh)
        for tp in tps:
            if tp.partition in self.state.next_offsets:
                consumer.seek(tp, self.state.next_offsets[tp.partition])
        if not self.state.start_ends:
            ends = await consumer.end_offsets(tps)
            self.state.start_ends = {tp.partition: end for tp, end in ends.items()}
            self.state.ends = dict(self.state.start_ends)
            self.state.partitions = len(tps)
            log.info("gate_reading", topic=self.topic, partitions=len(tps),
                     records_to_catch_up=sum(ends.values()))
        self._note_broker(answered=True)
        return tps

    async def _partitions(self) -> list[int]:
        """The topic's partitions, from the broker (a consumer's own metadata may not know a
        topic it has not subscribed to yet)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10000,
                                    **self.client_kwargs)
        try:
            await asyncio.wait_for(admin.start(), timeout=30)
            described = await admin.describe_topics([self.topic])
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        if not described or described[0]["error_code"] != 0 or not described[0]["partitions"]:
            raise LookupError(f"topic {self.topic} not found (not created yet?)")
        return sorted(p["partition"] for p in described[0]["partitions"])

    async def _follow(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        while not self.stopping:
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            for records in batches.values():
                for rec in records:
                    self.on_record(rec)
            self.flush_log(force=not batches)
            if not self.gate.caught_up:
                await self._check_caught_up(consumer, tps)

    async def _check_caught_up(self, consumer: AIOKafkaConsumer,
                               tps: list[TopicPartition]) -> None:
        for tp in tps:
            end = self.state.start_ends.get(tp.partition, 0)
            if end and await consumer.position(tp) < end:
                return
        self.gate.caught_up = True
        self.state.caught_up_after_s = round(time.monotonic() - self.started_mono, 3)
        log.info("gate_caught_up", topic=self.topic, records=self.state.read,
                 in_force=dict(self.gate.table.in_force()), seconds=self.state.caught_up_after_s)

    async def _probe(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
        """Every probe_s: the partitions' ends. aiokafka retries a lost broker silently; this is
        what notices, and the fail mode answers while it lasts."""
        while True:
            try:
                ends = await asyncio.wait_for(consumer.end_offsets(tps),
                                              max(1.0, self.lost_after_s / 2))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a timeout, a lost connection
                self.state.last_problem = (f"no answer for the ends of {self.topic} from "
                                           f"{self.bootstrap} (the broker lost, or the topic "
                                           f"deleted): {_describe(exc)}")
                self._note_broker(answered=False)
            else:
                self.state.ends = {tp.partition: end for tp, end in ends.items()}
                self._note_broker(answered=True)
            await asyncio.sleep(self.probe_s)

    def _note_broker(self, answered: bool) -> None:
        now = time.monotonic()
        if answered:
            self.last_answer_mono = now
            self.state.last_problem = ""  # what it was is over: /health must not show it
            if self.gate.broker_lost:
                self.gate.broker_lost = False
                log.info("gate_broker_back", bootstrap=self.bootstrap)
        elif not self.gate.broker_lost and now - self.last_answer_mono >= self.lost_after_s:
            self.gate.broker_lost = True
            log.warning("gate_broker_lost", bootstrap=self.bootstrap,
                        silent_s=round(now - self.last_answer_mono, 1),
                        fail_mode=self.gate.fail_mode, problem=self.state.last_problem)

    def _problem(self, message: str) -> None:
        if message != self.state.last_problem:
            log.warning("gate_reader_problem", problem=message)
        self.state.last_problem = message


def _describe(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}".rstrip(": ")


async def _stop_quietly(consumer: AIOKafkaConsumer) -> None:
    try:
        await consumer.stop()
    except Exception:  # noqa: BLE001, S110 - a reader that never started has nothing to stop
        pass
