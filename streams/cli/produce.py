"""Simulated traffic onto the requests topic, as the gateway would write it.

Records are keyed by account_id and carry the contract's JSON; the producer batches
(linger) and compresses nothing, so a few hundred thousand events go out in seconds. `rate`
paces the stream in wall-clock events per second (0: as fast as the broker takes them).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer


async def produce_events(bootstrap: str, topic: str, events: Iterable[dict[str, Any]], *,
                         rate: float = 0.0, client_kwargs: dict[str, Any] | None = None,
                         progress: bool = True) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20,
                                max_batch_size=512 * 1024, acks="all",
                                **(client_kwargs or {}))
    await producer.start()
    sent = 0
    started = last = time.monotonic()
    try:
        pending = []
        for event in events:
            key = event["account_id"].encode()
            pending.append(await producer.send(topic, orjson.dumps(event), key=key))
            sent += 1
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
            if rate > 0:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            now = time.monotonic()
            if progress and now - last >= 1.0:
                last = now
                sys.stderr.write(f"\rproduced {sent:,} events "
                                 f"({sent / (now - started):,.0f}/s)   ")
                sys.stderr.flush()
        await asyncio.gather(*pending)
        await producer.flush()
    finally:
        await producer.stop()
    if progress:
        elapsed = time.monotonic() - started
        sys.stderr.write(f"\rproduced {sent:,} events to {topic} in {elapsed:.1f} s   \n")
    return sent
