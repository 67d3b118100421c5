"""What `distillguard gate` answers per second, and how fast, with a large table of decisions.

    .venv/bin/python bench/gate_load.py [--decisions 100000] [--connections 32] [--seconds 10]
    .venv/bin/python bench/gate_load.py --url http://127.0.0.1:8089/ ...   # a gate running

Without --url it needs the local broker (DISTILLGUARD_KAFKA_BOOTSTRAP, default 127.0.0.1:9092):
it writes `--decisions` records to a fresh decisions topic of its own (a tenth lifted again by
a tombstone, the rest blocks and throttles of random accounts), starts `distillguard gate` on
it, and times the gate's catch-up (from its start to /ready). Then a load client (aiohttp, one
process, `--connections` keep-alive connections, each asking the next check as soon as the last
is answered) asks /check for `--seconds`, half for accounts under a decision, half for
others, and prints checks per second and the latency of a check over HTTP (p50, p99, max).
Last, the cost of one check in process: the table's `Gate.check`, and with the HTTP response
built (`response_for`), in microseconds, on a table of the same size.

The client and the gate share the machine: on a small one the client's own cost caps the rate.
Figures depend on the machine and its load; nothing asserts them.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer

from distillguard.streams.edge.settings import load_settings
from distillguard.streams.edge.topics import TopicSpec, delete_topics, ensure_topics
from distillguard.streams.gate.server import CHECK_PATH, DEFAULT_ACCOUNT_HEADER, response_for
from distillguard.streams.gate.table import DecisionTable, Gate

REPO = Path(__file__).resolve().parents[1]
REASONS = ("cluster_template", "cluster_payment", "account_harvest", "operator_block")


def decision(account: str, rng: random.Random, now: float) -> dict[str, object]:
    action = "block" if rng.random() < 0.5 else "throttle"
    return {"decision_id": f"{account}-{uuid.uuid4().hex[:8]}", "ts": now, "event_ts": now,
            "account_id": account, "action": action, "ttl_s": 86_400,
            "rate_limit_rpm": rng.choice((2, 6, 60)) if action == "throttle" else None,
            "score": 0.9, "reasons": ["bench"], "reason_codes": [rng.choice(REASONS)],
            "source": "detector", "model_version": "bench", "mode": "enforce"}


def records(count: int, seed: int = 7) -> list[tuple[str, dict[str, object] | None]]:
    rng = random.Random(seed)
    now = time.time()
    out: list[tuple[str, dict[str, object] | None]] = []
    for i in range(count):
        account = f"acct-{i:07d}"
        out.append((account, decision(account, rng, now)))
        if i % 10 == 9:
            out.append((account, None))  # lifted since
    return out


async def write_topic(bootstrap: str, topic: str,
                      recs: list[tuple[str, dict[str, object] | None]]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20,
                                max_batch_size=256 * 1024)
    await producer.start()
    started = time.perf_counter()
    try:
        futures = [await producer.send(topic, None if v is None else orjson.dumps(v),
                                       key=k.encode()) for k, v in recs]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.perf_counter() - started


def start_gate(bootstrap: str, topic: str, log_path: Path) -> tuple[subprocess.Popen[bytes],
                                                                      str, float]:
    env = {**os.environ, "DISTILLGUARD_KAFKA_BOOTSTRAP": bootstrap,
           "DISTILLGUARD_LOG_FORMAT": "json"}
    started = time.monotonic()
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "distillguard", "gate", "--port", "0",
                                 "--topic", topic], cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    url = None
    while time.monotonic() - started < 60 and proc.poll() is None:
        m = re.search(r"gate: (http://\S+)", log_path.read_text())
        if m:
            url = m.group(1)
            break
        time.sleep(0.05)
    if url is None:
        proc.kill()
        raise SystemExit(f"the gate did not start:\n{log_path.read_text()[-2000:]}")
    while time.monotonic() - started < 300:
        try:
            with urllib.request.urlopen(url + "ready", timeout=2) as r:
                if r.status == 200:
                    return proc, url, time.monotonic() - started
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("the gate did not catch up within 300 s")


async def load(url: str, accounts: list[str], connections: int, seconds: float
               ) -> tuple[int, list[float], dict[int, int]]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    stop_at = time.perf_counter() + seconds
    check = url.rstrip("/") + CHECK_PATH + "/v1/messages"
    connector = aiohttp.TCPConnector(limit=connections)

    async def worker(i: int, session: aiohttp.ClientSession) -> None:
        rng = random.Random(i)
        while time.perf_counter() < stop_at:
            # Half under a decision, half not (accounts the table does not hold).
            account = rng.choice(accounts) if rng.random() < 0.5 else f"other-{rng.random()}"
            started = time.perf_counter()
            async with session.post(check, headers={DEFAULT_ACCOUNT_HEADER: account}) as resp:
                await resp.read()
            latencies.append(time.perf_counter() - started)
            statuses[resp.status] = statuses.get(resp.status, 0) + 1

    async with aiohttp.ClientSession(connector=connector) as session:
        # Warm up: every connection opened once before the clock runs.
        await asyncio.gather(*(session.get(url + "ready") for _ in range(connections)))
        await asyncio.gather(*(worker(i, session) for i in range(connections)))
    return len(latencies), latencies, statuses


def load_in_process(job: tuple[str, list[str], int, float, int]
                    ) -> tuple[int, list[float], dict[int, int]]:
    """One client process's share of the load (for --processes)."""
    url, accounts, connections, seconds, seed = job
    random.seed(seed)
    return asyncio.run(load(url, accounts, connections, seconds))


def in_process_cost(recs: list[tuple[str, dict[str, object] | None]], calls: int
                    ) -> tuple[float, float, int]:
    table = DecisionTable()
    now = time.time()
    for key, value in recs:
        table.apply(key, value, now)
    gate = Gate(table)
    gate.caught_up = True
    rng = random.Random(1)
    held = [k for k, _ in recs]
    asks = [rng.choice(held) if rng.random() < 0.5 else f"other-{i}" for i in range(calls)]
    started = time.perf_counter()
    for account in asks:
        gate.check(account, now)
    check_s = (time.perf_counter() - started) / calls
    started = time.perf_counter()
    for account in asks[: calls // 10]:
        response_for(gate.check(account, now), nginx=False)
    with_response_s = (time.perf_counter() - started) / (calls // 10)
    return check_s * 1e6, with_response_s * 1e6, len(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running gate (skips the topic and the gate's start)")
    parser.add_argument("--decisions", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=1,
                        help="client processes sharing --connections (the client's own CPU "
                             "caps the rate of one)")
    parser.add_argument("--calls", type=int, default=1_000_000,
                        help="checks timed in process")
    args = parser.parse_args()
    recs = records(args.decisions)
    accounts = [k for k, _ in recs]
    proc = None
    topic = None
    settings = load_settings()
    bootstrap = settings.kafka_bootstrap
    try:
        if args.url:
            url = args.url if args.url.endswith("/") else args.url + "/"
        else:
            spec = settings.topics["decisions"]
            topic = f"bench-gate.{uuid.uuid4().hex[:8]}.decisions"
            asyncio.run(ensure_topics(bootstrap, [TopicSpec("decisions", topic,
                                                            spec.partitions, spec.config)]))
            wrote = asyncio.run(write_topic(bootstrap, topic, recs))
            print(f"wrote {len(recs):,} records ({args.decisions:,} decisions, "
                  f"{len(recs) - args.decisions:,} tombstones) to {topic} in {wrote:.1f} s")
            log = Path(tempfile.mkdtemp(prefix="gate-load-")) / "gate.log"
            proc, url, ready_s = start_gate(bootstrap, topic, log)
            with urllib.request.urlopen(url + "health", timeout=5) as r:
                health = orjson.loads(r.read())
            print(f"gate ready {ready_s:.1f} s after its start (process start included): "
                  f"{health['records_read']:,} records read, in force "
                  f"{health['in_force']}; log {log}")
        if args.processes > 1:
            per = max(1, args.connections // args.processes)
            jobs = [(url, accounts, per, args.seconds, i) for i in range(args.processes)]
            with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
                parts = pool.map(load_in_process, jobs)
            count = sum(p[0] for p in parts)
            latencies = [x for p in parts for x in p[1]]
            statuses = {}
            for _, _, st in parts:
                for code, n in st.items():
                    statuses[code] = statuses.get(code, 0) + n
        else:
            count, latencies, statuses = asyncio.run(
                load(url, accounts, args.connections, args.seconds))
        latencies.sort()

        def p(q: float) -> float:
            return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
        print(f"HTTP: {count / args.seconds:,.0f} checks/s over {args.connections} keep-alive "
              f"connections ({args.processes} client process"
              f"{'es' if args.processes > 1 else ''}) for {args.seconds:g} s; latency p50 {p(0.50):.2f} ms, p99 "
              f"{p(0.99):.2f} ms, max {latencies[-1] * 1000:.2f} ms (median "
              f"{statistics.median(latencies) * 1000:.2f} ms); statuses "
              f"{dict(sorted(statuses.items()))}")
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if topic is not None:
            asyncio.run(delete_topics(bootstrap, [topic]))
    check_us, response_us, size = in_process_cost(recs, args.calls)
    print(f"in process: {check_us:.2f} µs per check (Gate.check), {response_us:.2f} µs with "
          f"the HTTP response built (response_for); table of {size:,} decisions, "
          f"{args.calls:,} checks")


if __name__ == "__main__":
    main()
