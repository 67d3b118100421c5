"""A live, readable view of the enforcement topic: totals, rate, and the latest decisions.

On a terminal the view redraws in place twice a second; elsewhere (CI, a pipe) it prints one
status line every few seconds, so it never floods a log.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import IO, Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

ACTION_MARK = {"block": "BLOCK   ", "throttle": "THROTTLE", "allow": "allow   "}


class LiveView:
    def __init__(self, latest: int = 12, clock: Callable[[], float] = time.monotonic,
                 keep_records: bool = False) -> None:
        """`keep_records`: keep every decision (the demo evaluates them); off for `watch`."""
        self.keep_records = keep_records
        self.title = "distillguard: decisions as they happen"
        self.counts: Counter[str] = Counter()
        self.accounts: dict[str, str] = {}
        self.latest: deque[dict[str, Any]] = deque(maxlen=latest)
        self.records: list[dict[str, Any]] = []
        self.clock = clock
        self.started = clock()
        self.last_decision_at = self.started

    def add(self, record: dict[str, Any]) -> None:
        self.counts[record.get("action", "?")] += 1
        self.accounts[record.get("account_id", "?")] = record.get("action", "?")
        self.latest.append(record)
        if self.keep_records:
            self.records.append(record)
        self.last_decision_at = self.clock()

    def render(self, title: str | None = None, status: str = "") -> str:
        elapsed = max(1e-9, self.clock() - self.started)
        total = sum(self.counts.values())
        acting = Counter(self.accounts.values())
        lines = [
            title or self.title,
            (f"decisions {total:,} ({total / elapsed:,.1f}/s)   "
             f"block {self.counts['block']:,}   throttle {self.counts['throttle']:,}   "
             f"allow {self.counts['allow']:,}"),
            f"accounts now blocked {acting['block']:,}, throttled {acting['throttle']:,}"
            + (f"   | {status}" if status else ""),
            "",
            f"{'action':<8}  {'account':<16} {'score':>5}  reason",
        ]
        for r in reversed(self.latest):
            reasons = r.get("reasons") or [""]
            detail = reasons[1] if len(reasons) > 1 else reasons[0]
            lines.append(f"{ACTION_MARK.get(r.get('action', ''), '?'):<8}  "
                         f"{str(r.get('account_id'))[:16]:<16} {r.get('score', 0):>5.2f}  "
                         f"{detail[:90]}")
        return "\n".join(lines)

    def status_line(self, status: str = "") -> str:
        total = sum(self.counts.values())
        acting = Counter(self.accounts.values())
        return (f"decisions {total:,} (block {self.counts['block']:,}, throttle "
                f"{self.counts['throttle']:,}, allow {self.counts['allow']:,}); accounts "
                f"blocked {acting['block']:,}, throttled {acting['throttle']:,}"
                + (f" | {status}" if status else ""))


class Screen:
    """Draws a LiveView: in place on a terminal, as sparse status lines otherwise."""

    def __init__(self, out: IO[str] = sys.stdout) -> None:
        self.out = out
        self.tty = out.isatty()
        self.last = 0.0

    def draw(self, view: LiveView, status: str = "", force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < (0.5 if self.tty else 5.0):
            return
        self.last = now
        if self.tty:
            self.out.write("\x1b[H\x1b[2J" + view.render(status=status) + "\n")
        else:
            self.out.write(view.status_line(status) + "\n")
        self.out.flush()


async def end_offsets(consumer: AIOKafkaConsumer, topic: str) -> dict[TopicPartition, int]:
    parts = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    return await consumer.end_offsets(tps) if tps else {}


def topic_reader(bootstrap: str, topics: list[str], from_beginning: bool,
                 client_kwargs: dict[str, Any] | None = None, **extra: Any) -> AIOKafkaConsumer:
    """A reader of whole topics: no consumer group and no commits, so it never moves anyone's
    offsets and every reader (watch, demo, status page) sees every partition."""
    return AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=None,
                            enable_auto_commit=False,
                            auto_offset_reset="earliest" if from_beginning else "latest",
                            **(client_kwargs or {}), **extra)


async def read_records(consumer: AIOKafkaConsumer, on_record: Callable[[Any], None],
                       stop: Callable[[], bool],
                       after_batch: Callable[[], None] = lambda: None) -> None:
    """Hand every record of a started reader to `on_record` until `stop()` says so."""
    while not stop():
        batches = await consumer.getmany(timeout_ms=200, max_records=2000)
        for records in batches.values():
            for rec in records:
                on_record(rec)
        after_batch()


def decode_json(value: bytes | None) -> Any:
    """A record's JSON value; ValueError for one that is not JSON (a tombstone included)."""
    if value is None:
        raise ValueError("a record without a value")
    return orjson.loads(value)  # orjson.JSONDecodeError is a ValueError


async def watch_decisions(bootstrap: str, topic: str, *, view: LiveView, screen: Screen,
                          stop: Callable[[], bool], status: Callable[[], str] = lambda: "",
                          from_beginning: bool = False,
                          client_kwargs: dict[str, Any] | None = None) -> None:
    """Consume decisions into `view` until `stop()` says so (no consumer group, no commits)."""
    consumer = topic_reader(bootstrap, [topic], from_beginning, client_kwargs)

    def add(rec: Any) -> None:
        try:
            view.add(decode_json(rec.value))
        except ValueError:
            view.counts["unreadable"] += 1

    await consumer.start()
    try:
        await read_records(consumer, add, stop, lambda: screen.draw(view, status()))
        screen.draw(view, status(), force=True)
    finally:
        await consumer.stop()


def run_watch(bootstrap: str, topic: str, from_beginning: bool,
              client_kwargs: dict[str, Any] | None = None) -> None:
    view, screen = LiveView(), Screen()
    try:
        asyncio.run(watch_decisions(bootstrap, topic, view=view, screen=screen,
                                    stop=lambda: False, from_beginning=from_beginning,
                                    client_kwargs=client_kwargs))
    except KeyboardInterrupt:
        screen.draw(view, force=True)
