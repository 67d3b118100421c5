"""How long `distillguard review` takes on a large decisions topic.

    .venv/bin/python bench/review_speed.py [--records 100000]

Needs the local broker (DISTILLGUARD_KAFKA_BOOTSTRAP, default 127.0.0.1:9092). It writes
`--records` decisions of distinct accounts to a fresh decisions topic of its own (a tenth
lifted since by a tombstone, a tenth ran out, the rest throttles and blocks in force), then
times `read_in_force` (what `review` does before it prints: the topic read whole from its
beginning, the newest record per key kept, those in force decoded and sorted) in process, and
the whole command (`python -m distillguard review --limit 20`, its process start included).
Figures depend on the machine; nothing asserts them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from distillguard.streams.cli.review import read_in_force
from distillguard.streams.edge.settings import load_settings
from distillguard.streams.edge.topics import delete_topics, ensure_topics
from tests.integration.conftest import run_env


async def write(bootstrap: str, topic: str, count: int) -> float:
    rng = random.Random(7)
    now = time.time()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20,
                                max_batch_size=256 * 1024)
    await producer.start()
    started = time.perf_counter()
    try:
        futures = []
        for i in range(count):
            account = f"acct-{i:07d}"
            action = rng.choice(("block", "throttle"))
            ts = now - (7200 if i % 10 == 3 else rng.uniform(0, 1800))
            value = {"decision_id": f"dg-{i}", "ts": ts, "event_ts": ts, "account_id": account,
                     "action": action, "ttl_s": 3600,
                     "rate_limit_rpm": 6 if action == "throttle" else None, "score": 0.9,
                     "reasons": ["score 0.90 -> " + action, "cluster tpl:abc convicted"],
                     "reason_codes": ["cluster_template", "account_harvest"],
                     "source": "detector", "by": None, "cluster_ids": ["tpl:abc"],
                     "model_version": "bench", "mode": "enforce"}
            futures.append(await producer.send(topic, orjson.dumps(value),
                                               key=account.encode()))
            if i % 10 == 9:
                futures.append(await producer.send(topic, None, key=account.encode()))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    bootstrap = load_settings().kafka_bootstrap
    run_id = f"review-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLGUARD_")
           or k == "DISTILLGUARD_CORE"}
    env.update(run_env(run_id, bootstrap))
    settings = load_settings(env=env)
    topic = settings.topics["decisions"].name
    asyncio.run(ensure_topics(bootstrap, [settings.topics["decisions"]]))
    try:
        wrote = asyncio.run(write(bootstrap, topic, args.records))
        print(f"wrote {args.records:,} decisions (+{args.records // 10:,} tombstones) to "
              f"{topic} in {wrote:.1f} s")
        for attempt in (1, 2, 3):
            review = asyncio.run(read_in_force(settings, time.time()))
            print(f"read_in_force #{attempt}: {review.read:,} records, {review.keys:,} keys, "
                  f"{len(review.in_force):,} in force, in {review.seconds:.2f} s")
        started = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "distillguard", "review", "--limit", "20"],
                             cwd=REPO, env=env, capture_output=True, text=True, check=True)
        print(f"`distillguard review --limit 20`: {time.monotonic() - started:.2f} s "
              f"(process start included); its last line: {out.stdout.splitlines()[-1]}")
    finally:
        asyncio.run(delete_topics(bootstrap, [topic]))


if __name__ == "__main__":
    main()
