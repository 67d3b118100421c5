"""How fast Faust alone delivers records here, against a plain aiokafka loop and the replay:
the floor under a worker's speed (issue 17).

    .venv/bin/python bench/faust_floor.py              # the default simulation, 1 h
    .venv/bin/python bench/faust_floor.py --hours 4
    DGTEST_BOOTSTRAP=127.0.0.1:49092 .venv/bin/python bench/faust_floor.py

On the local broker (`bash deploy/kafka-local.sh start`):

1. the default simulation is written to a topic of its own (12 partitions, keyed by account);
2. a plain aiokafka consumer reads it whole: `getmany` and `orjson.loads` of every value;
3. a Faust app with the worker's Faust settings (raw serializers, the consumer's 100 ms fetch
   wait, acks on) and one agent that only decodes each record (`stream.events()`, as the
   worker's agents read), in its own process as a worker runs;
4. the offline replay of the same file (the detection core, one process).

Each prints events/s from its first record to its last. A worker runs the core and Faust's
delivery one after the other on one event loop, so its speed is at most
1 / (1/faust + 1/replay): what a worker can reach against the replay on this machine before any
of its own work (the stages' records, the states' changelog, alignment). No figure is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

import orjson

import distillguard.streams  # noqa: F401  (first: it chooses the core's build, models/_build.py)

PARTITIONS = 12


def say(what: str, value: str) -> None:
    print(f"  {what:<52} {value}", flush=True)


def faust_child(bootstrap: str, topic: str, n: int) -> None:
    """The Faust side, in its own process: one agent decoding every record of `topic`; prints
    `{"rate": events/s}` once `n` records are through, then stops the worker (SIGTERM)."""
    import faust

    from distillguard.streams.worker.topology import shorten_fetch_wait

    shorten_fetch_wait()
    app = faust.App(f"dg-floor-{uuid.uuid4().hex[:8]}", broker=f"kafka://{bootstrap}",
                    topic_partitions=PARTITIONS, topic_replication_factor=1,
                    consumer_auto_offset_reset="earliest", key_serializer="raw",
                    value_serializer="raw", web_enabled=False,
                    datadir=tempfile.mkdtemp(prefix="dg-floor-"))
    source = app.topic(topic, value_serializer="raw", key_serializer="raw")
    seen = {"n": 0, "first": 0.0}

    @app.agent(source)
    async def decode(stream: faust.StreamT) -> None:
        async for event in stream.events():
            orjson.loads(event.message.value)
            seen["n"] += 1
            if seen["n"] == 1:
                seen["first"] = time.monotonic()
            if seen["n"] == n:
                rate = n / (time.monotonic() - seen["first"])
                print(orjson.dumps({"rate": rate}).decode(), flush=True)
                os.kill(os.getpid(), signal.SIGTERM)

    from faust.worker import Worker
    Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


async def produce(bootstrap: str, topic: str, lines: list[bytes]) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20,
                                max_batch_size=256 * 1024)
    await producer.start()
    try:
        for line in lines:
            await producer.send(topic, line, key=orjson.loads(line)["account_id"].encode())
        await producer.flush()
    finally:
        await producer.stop()


async def delete(bootstrap: str, topic: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hours", type=float, default=1.0, help="simulated hours (default 1)")
    p.add_argument("_child", nargs="*", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    import perf  # bench/perf.py: the broker's address, as the tests find it

    bootstrap = perf.BOOTSTRAP
    if args._child:
        faust_child(bootstrap, args._child[0], int(args._child[1]))
        return 0

    from distillguard.models.config import DetectorConfig
    from distillguard.simulator import Scenario, write_files
    from distillguard.streams.offline.replay import replay_file

    workdir = Path(tempfile.mkdtemp(prefix="dg-floor-"))
    write_files(dataclasses.replace(Scenario.default(), duration_h=args.hours), workdir)
    events_file = workdir / "events.jsonl"
    lines = [line.rstrip(b"\n") for line in events_file.open("rb") if line.strip()]
    topic = f"dg-floor.{uuid.uuid4().hex[:8]}.requests"
    print(f"the default simulation, {args.hours:g} h, {len(lines):,} events, in {topic} "
          f"({PARTITIONS} partitions) on {bootstrap}; load {os.getloadavg()[0]:.1f}", flush=True)
    asyncio.run(produce(bootstrap, topic, lines))
    try:
        say("plain aiokafka: getmany + orjson.loads",
            f"{asyncio.run(perf.plain_consume(topic, len(lines))):,.0f} events/s")
        child = subprocess.run([sys.executable, __file__, topic, str(len(lines))],
                               capture_output=True, text=True, timeout=1800, check=False,
                               env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
        # Faust's worker sends what the agent prints through its logging: found in either
        rates = [float(m) for m in re.findall(r'\{"rate":([0-9.eE+-]+)\}',
                                              child.stdout + child.stderr)]
        if not rates:
            raise SystemExit(f"the Faust app printed no rate (exit {child.returncode}):\n"
                             f"{child.stdout[-2000:]}\n{child.stderr[-2000:]}")
        faust_rate = rates[0]
        say("Faust: one agent, stream.events() + orjson.loads", f"{faust_rate:,.0f} events/s")
    finally:
        asyncio.run(delete(bootstrap, topic))
    replay = replay_file(events_file, workdir / "replay.jsonl", DetectorConfig()).rate
    say("offline replay (the core, one process)", f"{replay:,.0f} events/s")
    bound = 1.0 / (1.0 / faust_rate + 1.0 / replay)
    say("bound on a worker: 1 / (1/Faust + 1/replay)",
        f"{bound:,.0f} events/s = {bound / replay:.2f}x the replay")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
