"""`distillguard review`: the accounts under action now, newest first, with their evidence.

    distillguard review [--json] [--limit N] [--source detector|operator] [--action throttle|block]

It reads the compacted decisions topic (the latest decision per account, `org:<org_id>` for an
organisation's) whole, from its beginning to its end offsets as of now, with no consumer group
(it moves nobody's offsets): a key's newest record is what is in force, a tombstone or an
`allow` means nothing is, and a throttle or block whose `ts + ttl_s` has passed ran out (left
out). Shadow decisions are not in force and are left out too. The rest is printed newest first:
account, action, since (its ts), until, source (and the operator), reason codes and the first
line of its evidence; `--json` prints the records themselves, one a line.

streams/cli/main.py registers the command with `add_review_parser(sub)`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from distillguard.models.decision import BLOCK, DETECTOR, OPERATOR, THROTTLE
from distillguard.streams.cli.allow import _when
from distillguard.streams.edge.settings import Settings, load_settings
from distillguard.streams.edge.topics import TopicError, check_topics_exist, reading

# Characters of the first line of evidence shown in the table (--json has all of it).
EVIDENCE_CHARS = 70
# The records one fetch may bring per partition (bytes): the topic read whole, in few round trips.
FETCH_BYTES = 8 * 1024 * 1024


@dataclass(repr=False)
class Review:
    """The decisions topic read whole: the records in force, newest first."""

    def __repr__(self) -> str:
        # Short: asyncio reprs the task that returns it, and 100,000 records took seconds.
        return (f"Review(in_force={len(self.in_force)}, read={self.read}, keys={self.keys}, "
                f"seconds={self.seconds:.2f})")

    in_force: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (key, record)
    read: int = 0  # records read, tombstones included
    keys: int = 0  # keys with a record (a tombstone included)
    unreadable: int = 0  # newest records that are not decision objects
    seconds: float = 0.0


def add_review_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "review", help="the accounts under action now, newest first, with their evidence",
        description="Read the decisions topic whole (no consumer group) and list the accounts "
                    "(and organisations, org:<id>) under a throttle or block now, newest first, "
                    "with their source, reason codes and evidence.")
    p.add_argument("--settings", help="TOML settings file (else $DISTILLGUARD_SETTINGS_FILE)")
    p.add_argument("--json", action="store_true", help="the decision records, one a line")
    p.add_argument("--limit", type=int, default=50,
                   help="show the newest N (default 50; 0: all)")
    p.add_argument("--source", choices=[DETECTOR, OPERATOR], help="only the detector's or only "
                                                                  "operators' decisions")
    p.add_argument("--action", choices=[THROTTLE, BLOCK], help="only throttles or only blocks")
    p.set_defaults(func=cmd_review)
    return p


def cmd_review(args: argparse.Namespace) -> int:
    settings = load_settings(file=getattr(args, "settings", None))
    if args.limit < 0:
        raise ValueError("--limit must be 0 (all) or more")
    now = time.time()
    review = asyncio.run(read_in_force(settings, now))
    rows = [(k, r) for k, r in review.in_force
            if (args.source is None or r.get("source", DETECTOR) == args.source)
            and (args.action is None or r.get("action") == args.action)]
    shown = rows[:args.limit] if args.limit else rows
    if args.json:
        for _, record in shown:
            print(orjson.dumps(record).decode())
    else:
        print(render(shown, len(rows), review, settings, now))
    return 0


def in_force_now(latest: dict[bytes, bytes], now: float
                 ) -> tuple[list[tuple[str, dict[str, Any]]], int]:
    """The newest value of each key -> (key, record) of those throttling or blocking now,
    newest first; and how many values were not decision objects."""
    found: list[tuple[str, dict[str, Any]]] = []
    unreadable = 0
    for key, value in latest.items():
        try:
            record = orjson.loads(value)
        except orjson.JSONDecodeError:
            unreadable += 1
            continue
        if not isinstance(record, dict) or not isinstance(record.get("ts"), int | float):
            unreadable += 1
            continue
        if record.get("action") not in (THROTTLE, BLOCK) or record.get("mode") == "shadow":
            continue
        ttl = record.get("ttl_s")
        if isinstance(ttl, int | float) and record["ts"] + ttl <= now:
            continue  # ran out (a TTL running out writes no tombstone)
        found.append((key.decode("utf-8", "replace"), record))
    found.sort(key=lambda kr: kr[1]["ts"], reverse=True)
    return found, unreadable


async def read_in_force(settings: Settings, now: float, timeout_s: float = 120.0) -> Review:
    """The decisions topic from its beginning to its end offsets as of now."""
    started = time.monotonic()
    topic = settings.topics["decisions"].name
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                client_id=f"{settings.app_id}-review",
                                max_partition_fetch_bytes=FETCH_BYTES,
                                fetch_max_bytes=4 * FETCH_BYTES, **settings.aiokafka_kwargs())
    latest: dict[bytes, bytes] = {}
    keys: set[bytes] = set()
    review = Review()
    async with reading(consumer, f"the decisions topic {topic}", settings.kafka_bootstrap,
                       timeout_s, "(is the broker up?)"):
        if await check_topics_exist(settings.kafka_bootstrap, [topic],
                                    client_kwargs=settings.aiokafka_kwargs()):
            raise TopicError(f"the decisions topic {topic} does not exist on "
                             f"{settings.kafka_bootstrap}; create it with `distillguard "
                             "topics create`")
        tps = [TopicPartition(topic, p)
               for p in range(settings.topics["decisions"].partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        begins = await consumer.beginning_offsets(tps)
        left = {tp for tp in tps if begins[tp] < ends[tp]}
        for tp in left:
            consumer.seek(tp, begins[tp])
        while left:
            batches = await consumer.getmany(*left, timeout_ms=500, max_records=50_000)
            for tp, records in batches.items():
                end = ends[tp]
                for rec in records:
                    if rec.offset >= end:
                        break  # written after we looked: not "now"
                    review.read += 1
                    if rec.key is None:
                        continue
                    keys.add(rec.key)
                    if rec.value is None:
                        latest.pop(rec.key, None)
                    else:
                        latest[rec.key] = rec.value
            for tp in list(left):
                if await consumer.position(tp) >= ends[tp]:
                    left.discard(tp)
    review.in_force, review.unreadable = in_force_now(latest, now)
    review.keys = len(keys)
    review.seconds = time.monotonic() - started
    return review


def _first_line(record: dict[str, Any]) -> str:
    reasons = record.get("reasons")
    text = str(reasons[0]) if isinstance(reasons, list) and reasons else ""
    text = text.splitlines()[0] if text else "-"
    return text if len(text) <= EVIDENCE_CHARS else text[:EVIDENCE_CHARS - 3] + "..."


def render(rows: list[tuple[str, dict[str, Any]]], matching: int, review: Review, settings: Settings,
           now: float) -> str:
    header = (f"{'account':<32} {'action':<8} {'since':<20} {'until':<20} {'source/by':<20} "
              f"{'reason codes':<34} evidence")
    lines = [header, "-" * len(header)]
    for key, r in rows:
        ttl = r.get("ttl_s")
        until = _when(r["ts"] + ttl) if isinstance(ttl, int | float) else "lifted by hand"
        source = str(r.get("source", DETECTOR))
        if r.get("by"):
            source += f"/{r['by']}"
        codes = ",".join(str(c) for c in r.get("reason_codes") or []) or "-"
        lines.append(f"{key[:32]:<32} {r['action']:<8} "
                     f"{_when(r['ts']):<20} {until:<20} {source[:20]:<20} {codes[:34]:<34} "
                     f"{_first_line(r)}")
    topic = settings.topics["decisions"].name
    more = f", the newest {len(rows)} shown" if len(rows) < matching else ""
    lines.append(f"under action: {matching}{more}; {topic}: {review.read:,} records, "
                 f"{review.keys:,} keys read in {review.seconds:.2f} s as of {_when(now)}"
                 + (f"; {review.unreadable} unreadable" if review.unreadable else ""))
    return "\n".join(lines)
