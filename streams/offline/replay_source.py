"""Where a replay reads its events: a JSONL file, or a range of a Kafka topic.

    --input events.jsonl                        FileSource: lines in file order
    --topic T [--since A] [--until B]           TopicSource: record timestamps [A, B) resolved to
    --topic T [--from-offset N] [--to-offset M]              offsets on every partition, or
                                                             offsets [N, M) on every partition

A time range is resolved per partition with the broker's own index (`offsets_for_times`): the
start is the first offset whose record timestamp is at or after A, the end the first at or after
B (or the partition's end offset when none is). Ranges are snapshots: records written after the
range was resolved are not read.

Records of several partitions are merged into one sequence for the core. Each partition is read
in offset order (as the live fleet reads it) and the partitions are interleaved by record
timestamp, then event time, then partition and offset. That is the order in which the records
reached Kafka, which is the order a fleet keeping up with its input processes them; it is also
deterministic, so two replays of the same range see the same sequence.

A source yields `(event, done)` pairs, `done` counting progress in the source's unit (bytes of a
file, records of a topic range); records that are not valid events go to `on_bad` as dead-letter
JSON (the same reasons the live workers give) and are skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import heapq
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError

from distillguard.models.events import InvalidEvent, RequestEvent
from distillguard.streams.edge.codec import (
    DEFAULT_MAX_EVENT_AHEAD_S,
    DEFAULT_MAX_RECORD_BYTES,
    dead_letter_record,
    decode_request,
    decode_request_line,
    event_time_limit,
)

T = TypeVar("T")
BadSink = Callable[[bytes], None]


class ReplayError(Exception):
    """A replay that cannot run as asked; the message says what to fix."""


# --------------------------------------------------------------------------- file


class FileSource:
    """Events of a JSONL file (or a pipe: `--input /dev/stdin`) in order; progress in bytes."""

    unit = "bytes"

    def __init__(self, path: Path, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
                 max_event_ahead_s: float = DEFAULT_MAX_EVENT_AHEAD_S) -> None:
        if not path.exists() or path.is_dir():
            raise ReplayError(f"input file {path} does not exist")
        self.path = path
        self.max_record_bytes = max_record_bytes
        self.max_event_ahead_s = max_event_ahead_s
        # a pipe (--input /dev/stdin, a FIFO) has no size: progress then shows no time left
        self.total = path.stat().st_size if path.is_file() else 0
        self.name = f"input file {path}"

    def events(self, on_bad: BadSink) -> Iterator[tuple[RequestEvent, int]]:
        max_bytes = self.max_record_bytes
        # A line has no time it was written: the replay's start stands for it, and the file's
        # own time for what that lets through (`_followed`).
        not_after = event_time_limit(None, time.time(), self.max_event_ahead_s)

        def refuse(n: int, line: bytes, reason: str) -> None:
            on_bad(orjson.dumps({"reason": reason, "source": str(self.path), "line": n,
                                 "value": line.decode("utf-8", "replace")}))

        def valid_lines() -> Iterator[_Line]:
            done = 0
            with self.path.open("rb") as f:
                for n, line in enumerate(f, 1):
                    done += len(line)
                    if not line.strip():
                        continue
                    try:
                        yield _Line(n, done, line, decode_request_line(line.rstrip(b"\n"),
                                                                       max_bytes, not_after))
                    except InvalidEvent as exc:
                        refuse(n, line, exc.reason)

        for item, reason in _followed(valid_lines(), self.max_event_ahead_s):
            if reason is None:
                yield item.event, item.done
            else:
                refuse(item.n, item.line, reason)

    def close(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class _Line:
    n: int  # its line number
    done: int  # bytes read up to its end (progress)
    line: bytes
    event: RequestEvent


# The valid lines after a line that jumps ahead of the file's time, asked whether the file
# really moved there: a gap in the traffic is followed by lines at its new time, a line
# stamped ahead by a broken or forged writer by lines at the old one.
FOLLOWERS = 8


def _followed(lines: Iterator[_Line], max_ahead_s: float) -> Iterator[tuple[_Line, str | None]]:
    """Each valid line of a file with None, or with the reason it is refused.

    A file has no record timestamps, and the replay's clock lets through any time between the
    recording and now; yet one line stamped hours ahead of the others carries its partition's
    watermark there, and every honest line after it is late (a helper's attack: 19 of the small
    scenario's 48 acted-on accounts left with no decision). So a line more than `max_ahead_s`
    past the newest time accepted so far (for the first line: any) is accepted only when at
    least half of the next `FOLLOWERS` valid lines are at or after its time minus `max_ahead_s`.
    Lines come out in file order, `FOLLOWERS` lines late.

    >>> def at(*times):
    ...     return iter([_Line(i, i, b"", _Stamp(t)) for i, t in enumerate(times)])
    >>> [reason is None for _, reason in _followed(at(0, 10, 90_000, 20, 30, 40), 300)]
    [True, True, False, True, True, True]
    >>> [reason is None for _, reason in _followed(at(0, 10, 5_000, 5_010, 5_020), 300)]  # a gap
    [True, True, True, True, True]
    >>> [reason is None for _, reason in _followed(at(90_000, 0, 10, 20), 300)]  # the first line
    [False, True, True, True]
    """
    window: deque[_Line] = deque()
    newest: float | None = None

    def judge(item: _Line) -> str | None:
        nonlocal newest
        ts = item.event.ts
        if newest is None or ts > newest + max_ahead_s:
            following = [later.event.ts for later in window]
            confirming = sum(1 for t in following if t >= ts - max_ahead_s)
            if following and confirming * 2 < len(following):
                past = ts - (newest if newest is not None else min(following))
                return (f"field 'ts' is {past:.0f} s past the file's time, and {confirming} of "
                        f"the {len(following)} lines after it follow it there (at least half "
                        f"must, max_event_ahead_s {max_ahead_s:.0f} s)")
        newest = ts if newest is None else max(newest, ts)
        return None

    for item in lines:
        window.append(item)
        if len(window) > FOLLOWERS:
            first = window.popleft()
            yield first, judge(first)
    while window:
        first = window.popleft()
        yield first, judge(first)


@dataclass(frozen=True, slots=True)
class _Stamp:
    """(for the examples above: an event that has only a time)"""

    ts: float


# --------------------------------------------------------------------------- range specs

_RELATIVE = re.compile(r"^(?:now)?-(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, now: float | None = None) -> float:
    """A point in time as epoch seconds: ISO 8601, epoch seconds, `now`, `now-2h` or `-2h`.

    (On the command line `-2h` must be attached: `--since=-2h`; `--since now-2h` needs no `=`.)

    >>> parse_time("2026-01-01T00:00:00Z")
    1767225600.0
    >>> parse_time("2026-01-01 00:00")  # no zone: UTC
    1767225600.0
    >>> parse_time("1767225600.5")
    1767225600.5
    >>> parse_time("-90m", now=10_000.0), parse_time("now-90m", now=10_000.0)
    (4600.0, 4600.0)
    """
    text = text.strip()
    now = time.time() if now is None else now
    if text == "now":
        return now
    m = _RELATIVE.match(text)
    if m:
        return now - float(m.group(1)) * _UNIT_S[m.group(2)]
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if value > 1e11:
            raise ReplayError(f"time {text!r} looks like milliseconds; give epoch seconds")
        return value
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ReplayError(f"time {text!r} is not ISO 8601 (2026-01-01T00:00:00Z), epoch "
                          "seconds, 'now' or a time ago like now-2h")  from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def parse_offsets(text: str) -> int | dict[int, int]:
    """`N` (every partition) or `P:N,P:N` (per partition).

    >>> parse_offsets("100")
    100
    >>> parse_offsets("0:100, 3:7")
    {0: 100, 3: 7}
    """
    text = text.strip()
    try:
        if ":" not in text:
            value = int(text)
            if value < 0:
                raise ValueError
            return value
        out: dict[int, int] = {}
        for item in text.split(","):
            p, _, o = item.strip().partition(":")
            partition, offset = int(p), int(o)
            if partition < 0 or offset < 0:
                raise ValueError
            out[partition] = offset
        return out
    except ValueError:
        raise ReplayError(f"offsets {text!r}: give N (every partition) or P:N,P:N with "
                          "non-negative integers") from None


@dataclass(frozen=True)
class RangeSpec:
    """What the user asked for; resolved against a topic by `plan_range`."""

    since: float | None = None
    until: float | None = None
    from_offset: int | dict[int, int] | None = None
    to_offset: int | dict[int, int] | None = None

    def __post_init__(self) -> None:
        timed = self.since is not None or self.until is not None
        offsets = self.from_offset is not None or self.to_offset is not None
        if timed and offsets:
            raise ReplayError("give a time range (--since/--until) or an offset range "
                              "(--from-offset/--to-offset), not both")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ReplayError(f"--since ({_iso(self.since)}) must be before --until "
                              f"({_iso(self.until)})")

    def describe(self) -> str:
        if self.since is not None or self.until is not None:
            a = _iso(self.since) if self.since is not None else "the beginning"
            b = _iso(self.until) if self.until is not None else "the end"
            return f"record times from {a} to {b}"
        if self.from_offset is not None or self.to_offset is not None:
            return f"offsets from {_offsets_text(self.from_offset, 'the beginning')} to " \
                   f"{_offsets_text(self.to_offset, 'the end')}"
        return "the whole topic"


def _offsets_text(value: int | dict[int, int] | None, default: str) -> str:
    if value is None:
        return default
    if isinstance(value, dict):
        return ",".join(f"{p}:{o}" for p, o in sorted(value.items()))
    return str(value)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class PartitionRange:
    partition: int
    start: int  # first offset to read
    end: int  # first offset not to read

    @property
    def count(self) -> int:
        return max(0, self.end - self.start)


@dataclass(frozen=True)
class TopicRange:
    topic: str
    spec: RangeSpec
    partitions: tuple[PartitionRange, ...]
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return sum(p.count for p in self.partitions)

    def offsets(self) -> str:
        return " ".join(f"{p.partition}:{p.start}-{p.end}" for p in self.partitions)

    def describe(self) -> str:
        return (f"{self.topic}: {self.spec.describe()}, {self.total:,} records on "
                f"{sum(1 for p in self.partitions if p.count)} of {len(self.partitions)} "
                "partitions")


def _per_partition(value: int | dict[int, int] | None, partition: int) -> int | None:
    if isinstance(value, dict):
        return value.get(partition)
    return value


def plan_range(topic: str, spec: RangeSpec, beginning: dict[int, int], end: dict[int, int],
               at_since: dict[int, int | None] | None = None,
               at_until: dict[int, int | None] | None = None) -> TopicRange:
    """The offsets to read on every partition, from what the broker reported.

    `beginning`/`end`: each partition's earliest retained offset and end offset;
    `at_since`/`at_until`: `offsets_for_times` answers (None: no record at or after that time).
    Pure, so the rules are unit-tested without a broker. Raises ReplayError for an empty range.
    """
    notes: list[str] = []
    for name, value in (("--from-offset", spec.from_offset), ("--to-offset", spec.to_offset)):
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(end))
            if unknown:
                raise ReplayError(f"{name}: topic {topic} has no partition "
                                  f"{', '.join(map(str, unknown))} (it has 0-{len(end) - 1})")
    parts = []
    for p in sorted(end):
        lo, hi = beginning[p], end[p]
        start, stop = lo, hi
        if at_since is not None:
            found = at_since.get(p)
            start = hi if found is None else max(lo, found)
        if at_until is not None:
            found = at_until.get(p)
            stop = hi if found is None else min(hi, found)
        first = _per_partition(spec.from_offset, p)
        if first is not None:
            if first < lo:
                notes.append(f"partition {p}: offsets before {lo} are no longer retained; "
                             f"reading from {lo}, not {first}")
            start = min(max(first, lo), hi)
        last = _per_partition(spec.to_offset, p)
        if last is not None:
            stop = min(max(last, lo), hi)
        parts.append(PartitionRange(p, start, max(start, stop)))
    planned = TopicRange(topic, spec, tuple(parts), tuple(notes))
    if planned.total == 0:
        held = " ".join(f"{p}:{beginning[p]}-{end[p]}" for p in sorted(end))
        if all(beginning[p] == end[p] for p in end):
            what = ("holds no records any more: all it held is past its retention"
                    if any(end.values()) else "is empty")
        else:
            what = "holds no records"
        raise ReplayError(f"{spec.describe()} of topic {topic} {what} "
                          f"(the partitions hold offsets {held}): nothing to replay")
    return planned


# --------------------------------------------------------------------------- Kafka


class KafkaBridge:
    """One private event loop for the Kafka clients of a synchronous replay.

    The replay loop stays plain synchronous Python (the core is synchronous and CPU-bound);
    Kafka calls run to completion on this loop. Ctrl-C then lands in ordinary code and the
    clients are still closed cleanly.
    """

    def __init__(self, bootstrap: str, client_kwargs: dict[str, Any] | None = None) -> None:
        self.bootstrap = bootstrap
        self.client_kwargs = dict(client_kwargs or {})
        self.loop = asyncio.new_event_loop()
        self._closers: list[Callable[[], Awaitable[Any]]] = []

    def run(self, coro: Awaitable[T]) -> T:
        try:
            return self.loop.run_until_complete(coro)
        except KafkaConnectionError as exc:
            raise ReplayError(f"no Kafka broker at {self.bootstrap} ({exc}); start one with "
                              "`distillguard broker start`") from None

    def consumer(self) -> AIOKafkaConsumer:
        async def create() -> AIOKafkaConsumer:  # aiokafka clients bind to the running loop
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                auto_offset_reset="earliest", request_timeout_ms=15_000, **self.client_kwargs)
            await _start_with_timeout(consumer, self.bootstrap)
            return consumer

        consumer = self.run(create())
        self._closers.append(consumer.stop)
        return consumer

    def producer(self) -> AIOKafkaProducer:
        async def create() -> AIOKafkaProducer:
            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                                        linger_ms=10, **self.client_kwargs)
            await _start_with_timeout(producer, self.bootstrap)
            return producer

        producer = self.run(create())
        self._closers.append(producer.stop)
        return producer

    def close(self) -> None:
        for closer in reversed(self._closers):
            with contextlib.suppress(Exception):
                self.loop.run_until_complete(closer())
        self._closers.clear()
        pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            with contextlib.suppress(BaseException):
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()


async def _start_with_timeout(client: Any, bootstrap: str, timeout_s: float = 20.0) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            await client.start()
    except (TimeoutError, KafkaConnectionError) as exc:
        with contextlib.suppress(Exception):
            await client.stop()
        raise ReplayError(f"no Kafka broker answered at {bootstrap} within {timeout_s:g} s "
                          f"({type(exc).__name__}); start one with `distillguard broker start`"
                          ) from None


async def describe_partitions(bridge: KafkaBridge, topic: str
                              ) -> tuple[list[int] | None, set[str]]:
    """(the topic's partitions or None if it does not exist, the broker's topics if not)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bridge.bootstrap, request_timeout_ms=15_000,
                                **bridge.client_kwargs)
    try:
        await _start_with_timeout(admin, bridge.bootstrap)
        described = await admin.describe_topics([topic])
        if described and described[0]["error_code"] == 0:
            return sorted(p["partition"] for p in described[0]["partitions"]), set()
        return None, set(await admin.list_topics())
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


async def topic_partitions(bridge: KafkaBridge, topic: str) -> list[int]:
    """The topic's partitions, or ReplayError naming topics like it."""
    parts, topics = await describe_partitions(bridge, topic)
    if parts is not None:
        return parts
    known = sorted(t for t in topics if not t.startswith("_"))
    near = difflib.get_close_matches(topic, known, n=5, cutoff=0.6)
    hint = f"; topics like it: {', '.join(near)}" if near else \
        f"; the broker has {len(known)} topics (kafka-topics --list)"
    raise ReplayError(f"topic {topic!r} does not exist on the broker at {bridge.bootstrap}{hint}")


async def resolve_range(bridge: KafkaBridge, consumer: AIOKafkaConsumer, topic: str,
                        spec: RangeSpec) -> TopicRange:
    """Resolve a time or offset range against the broker, on every partition of the topic."""
    parts = await topic_partitions(bridge, topic)
    tps = [TopicPartition(topic, p) for p in parts]
    beginning = {tp.partition: o for tp, o in (await consumer.beginning_offsets(tps)).items()}
    end = {tp.partition: o for tp, o in (await consumer.end_offsets(tps)).items()}

    async def at(ts: float | None) -> dict[int, int | None] | None:
        if ts is None:
            return None
        found = await consumer.offsets_for_times({tp: int(ts * 1000) for tp in tps})
        return {tp.partition: (None if hit is None else hit.offset) for tp, hit in found.items()}

    return plan_range(topic, spec, beginning, end, await at(spec.since), await at(spec.until))


@dataclass(order=True)
class _Head:
    """A partition's next record: merge key, then the decoded event or the reason it is bad."""

    key: tuple[float, float, int, int]  # record timestamp, event time, partition, offset
    event: RequestEvent | None = field(compare=False)
    record: Any = field(compare=False)
    reason: str = field(default="", compare=False)


class TopicSource:
    """Events of a resolved topic range, partitions merged deterministically (module doc)."""

    unit = "records"
    FETCH_PATIENCE_S = 60.0

    def __init__(self, bridge: KafkaBridge, topic: str, spec: RangeSpec,
                 max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
                 max_event_ahead_s: float = DEFAULT_MAX_EVENT_AHEAD_S) -> None:
        self.bridge = bridge
        self.max_record_bytes = max_record_bytes
        self.max_event_ahead_s = max_event_ahead_s
        self.consumer = bridge.consumer()
        self.range = bridge.run(resolve_range(bridge, self.consumer, topic, spec))
        self.partition_count = len(self.range.partitions)
        self.total = self.range.total
        self.name = self.range.describe()

    def events(self, on_bad: BadSink) -> Iterator[tuple[RequestEvent, int]]:
        topic = self.range.topic
        for done, head in enumerate(self._merged(self._decoded), 1):
            if head.event is None:
                rec = head.record
                on_bad(dead_letter_record(head.reason, rec.value, rec.key, topic, rec.partition,
                                          rec.offset, time.time()))
                continue
            yield head.event, done

    def write_jsonl(self, path: Path, on_bad: BadSink) -> int:
        """The range's valid events as an events file, in the merged order; returns the count."""
        written = 0
        with path.open("wb") as out:
            for head in self._merged(self._decoded):
                rec = head.record
                if head.event is None:
                    on_bad(dead_letter_record(head.reason, rec.value, rec.key, self.range.topic,
                                              rec.partition, rec.offset, time.time()))
                    continue
                out.write(orjson.dumps(orjson.loads(rec.value)) + b"\n")  # one line per event
                written += 1
        return written

    def records(self) -> Iterator[Any]:
        """The raw records of the range, in the same merged order."""
        for head in self._merged(lambda r: _Head((r.timestamp, 0.0, r.partition, r.offset),
                                                 None, r)):
            yield head.record

    def _decoded(self, rec: Any) -> _Head:
        try:
            # the record's own timestamp (ms), as the worker that read it live used it
            written = rec.timestamp / 1000.0 if rec.timestamp is not None else None
            ev = decode_request(rec.value, rec.key, self.max_record_bytes,
                                event_time_limit(written, time.time(), self.max_event_ahead_s))
        except InvalidEvent as exc:
            return _Head((rec.timestamp, float("-inf"), rec.partition, rec.offset), None, rec,
                         exc.reason)
        return _Head((rec.timestamp, ev.ts, rec.partition, rec.offset), ev, rec)

    def _merged(self, make_head: Callable[[Any], _Head]) -> Iterator[_Head]:
        consumer, topic = self.consumer, self.range.topic
        ends = {pr.partition: pr.end for pr in self.range.partitions if pr.count}

        async def assign() -> None:  # aiokafka wants its loop running for this
            consumer.assign([TopicPartition(topic, p) for p in ends])
            for pr in self.range.partitions:
                if pr.count:
                    consumer.seek(TopicPartition(topic, pr.partition), pr.start)

        self.bridge.run(assign())
        buffers: dict[int, deque[Any]] = {p: deque() for p in ends}
        open_parts = set(ends)  # partitions with records left to fetch
        dry: set[int] = set(ends)  # open partitions whose next record is not buffered yet
        heads: list[_Head] = []
        while heads or open_parts:
            # Before choosing the next record, every partition that may still hold an earlier
            # one must show its head: that is what makes the merge independent of fetch timing.
            if dry:
                self.bridge.run(self._fetch(dry & open_parts, buffers, ends, open_parts))
                for p in list(dry):
                    if buffers[p]:
                        heapq.heappush(heads, make_head(buffers[p].popleft()))
                        dry.discard(p)
                    elif p not in open_parts:
                        dry.discard(p)
                continue
            head = heapq.heappop(heads)
            p = head.record.partition
            if buffers[p]:
                heapq.heappush(heads, make_head(buffers[p].popleft()))
            elif p in open_parts:
                dry.add(p)
            yield head

    async def _fetch(self, wanted: set[int], buffers: dict[int, deque[Any]],
                     ends: dict[int, int], open_parts: set[int]) -> None:
        """Fetch until a wanted partition has records buffered or every wanted one is done."""
        consumer, topic = self.consumer, self.range.topic
        tps = [TopicPartition(topic, p) for p in sorted(wanted)]
        deadline = time.monotonic() + self.FETCH_PATIENCE_S
        while tps:
            batches = await consumer.getmany(*tps, timeout_ms=500)
            got = False
            for tp, records in batches.items():
                end = ends[tp.partition]
                for rec in records:
                    if rec.offset >= end:
                        break
                    buffers[tp.partition].append(rec)
                    got = True
            for tp in tps:
                if await consumer.position(tp) >= ends[tp.partition]:
                    open_parts.discard(tp.partition)
                    consumer.pause(tp)
            tps = [tp for tp in tps if tp.partition in open_parts]
            if got:
                return
            if time.monotonic() > deadline:
                missing = ", ".join(str(tp.partition) for tp in tps)
                raise ReplayError(f"topic {topic}: partition(s) {missing} returned no records "
                                  f"for {self.FETCH_PATIENCE_S:g} s before the end of the range "
                                  "(deleted by retention meanwhile?)")

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- labels topic


def read_topic_values(bridge: KafkaBridge, topic: str) -> Iterator[tuple[str, bytes | None]]:
    """Every record value of a topic (as of now), with its position `topic:partition:offset`."""
    try:
        source = TopicSource(bridge, topic, RangeSpec())
    except ReplayError as exc:
        raise ReplayError(str(exc).replace("nothing to replay", "no labels")) from None
    for rec in source.records():
        yield f"{topic}:{rec.partition}:{rec.offset}", rec.value


__all__ = ["FileSource", "KafkaBridge", "PartitionRange", "RangeSpec",
           "ReplayError", "TopicRange", "TopicSource", "parse_offsets", "parse_time",
           "plan_range", "read_topic_values", "resolve_range"]
