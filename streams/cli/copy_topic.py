"""`distillguard copy-topic --from OLD --to NEW`: a topic's records into another topic.

For re-partitioning (docs/operations.md, "Re-partitioning"): the retained requests of the old
requests topic go into the new fleet's, keys, values, headers and record timestamps kept, each
record to the partition its key gets in the new topic (Kafka's default partitioner, murmur2, as
the gateway's producer must use; a record without a key goes to any partition, and the worker
dead-letters it as it would have in the old topic). Nothing is decoded or dropped: a record the
old fleet dead-lettered is copied and dead-lettered again.

The records are read as the replay reads a topic range (streams/offline/replay_source.py): each
partition in offset order, the partitions merged by record timestamp, so an account's records
keep their order and every new partition gets its records in the order they reached Kafka.
Like a replay range, a copy is a snapshot: what is written to OLD meanwhile is not copied. The
last line gives the `--from-offset` that copies what came after, for the next pass.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from aiokafka import AIOKafkaProducer

from distillguard.streams.edge.settings import load_settings

# Records in flight before the copy waits for the broker's acknowledgements.
IN_FLIGHT = 5_000


def add_copy_topic_parser(sub: Any) -> None:
    p = sub.add_parser(
        "copy-topic", help="copy a topic's records into another topic (re-partitioning)",
        description="Copy the records of a topic (or a time or offset range of it) into another "
                    "topic that exists: keys, values, headers and timestamps kept, each record "
                    "to its key's partition in the destination, partitions merged by record "
                    "timestamp. Used to move the retained requests into a fleet with another "
                    "partition count (docs/operations.md, 'Re-partitioning').")
    p.add_argument("--settings", help="TOML settings file (else $DISTILLGUARD_SETTINGS_FILE)")
    p.add_argument("--from", dest="source", required=True, metavar="TOPIC",
                   help="the topic to read (e.g. the old requests topic)")
    p.add_argument("--to", dest="target", required=True, metavar="TOPIC",
                   help="the topic to write; it must exist (`distillguard topics create` with "
                        "the new fleet's settings)")
    p.add_argument("--since", help="first record time (ISO 8601, epoch s, -2h)")
    p.add_argument("--until", help="record time to stop before (same forms)")
    p.add_argument("--from-offset", help="first offset, N or P:N,P:N (a previous copy's last "
                                         "line gives it)")
    p.add_argument("--to-offset", help="offset to stop before, N or P:N,P:N")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=cmd_copy_topic)


def cmd_copy_topic(args: argparse.Namespace) -> int:
    from distillguard.streams.cli.main import _topic_spec
    from distillguard.streams.offline.replay_source import (
        KafkaBridge,
        ReplayError,
        TopicSource,
        topic_partitions,
    )

    if args.source == args.target:
        raise ReplayError(f"--from and --to are both {args.source}: name another topic")
    settings = load_settings(file=args.settings)
    kwargs = settings.aiokafka_kwargs()
    bridge = KafkaBridge(settings.kafka_bootstrap, kwargs)
    try:
        try:
            target_parts = len(bridge.run(topic_partitions(bridge, args.target)))
        except ReplayError as exc:
            raise ReplayError(f"--to: {exc}; create it first (`distillguard topics create` "
                              "with the new fleet's settings)") from None
        try:
            source = TopicSource(bridge, args.source, _topic_spec(args))
        except ReplayError as exc:
            if "nothing to replay" not in str(exc):
                raise
            print(str(exc).replace("nothing to replay", "nothing to copy"))
            return 0
        for note in source.range.notes:
            print(f"note: {note}", file=sys.stderr)

        async def start() -> AIOKafkaProducer:
            # Idempotent: a retried batch is not written twice; per partition in order.
            producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                        enable_idempotence=True, linger_ms=20,
                                        max_batch_size=512 * 1024, **kwargs)
            await producer.start()
            return producer

        producer = bridge.run(start())
        started = last = time.monotonic()
        copied = 0
        pending: list[Any] = []
        try:
            for rec in source.records():
                pending.append(bridge.run(producer.send(
                    args.target, rec.value, key=rec.key, headers=list(rec.headers or ()),
                    timestamp_ms=rec.timestamp)))
                copied += 1
                if len(pending) >= IN_FLIGHT:
                    bridge.run(asyncio.gather(*pending))
                    pending.clear()
                now = time.monotonic()
                if not args.quiet and now - last >= 1.0:
                    last = now
                    sys.stderr.write(f"\rcopied {copied:,} of {source.total:,} records   ")
                    sys.stderr.flush()
            bridge.run(asyncio.gather(*pending))
            bridge.run(producer.flush())
        finally:
            bridge.run(producer.stop())
        elapsed = time.monotonic() - started
        if not args.quiet:
            sys.stderr.write("\r")
        print(f"copied {copied:,} records of {source.name} (offsets {source.range.offsets()}) "
              f"to {args.target} ({target_parts} partitions) in {elapsed:.1f} s")
        after = ",".join(f"{p.partition}:{p.end}" for p in source.range.partitions)
        print(f"to copy what {args.source} received after: --from-offset {after}")
        return 0
    finally:
        bridge.close()
