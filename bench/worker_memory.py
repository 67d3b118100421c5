"""A worker's resident memory per idle account, on the real broker, for each table store.

    .venv/bin/python bench/worker_memory.py                      # 20k and 100k, memory:// and rocksdb://
    .venv/bin/python bench/worker_memory.py --accounts 1000000   # the 1M figure (long: ~10 min/store)
    .venv/bin/python bench/worker_memory.py --store memory:// --accounts 20000
    .venv/bin/python bench/worker_memory.py --accounts 100000 --restart   # + recovery after kill -9

For each store and each size: its own topics and group on the local broker
(`bash deploy/kafka-local.sh start`; `DGTEST_BOOTSTRAP` or `--bootstrap` for another address),
one worker process (`python -m distillguard worker`, the full detector), nothing else.

1. the worker starts and is assigned every partition; its RSS then (`VmRSS` of
   /proc/<pid>/status) is the baseline: the same process with no account;
2. N accounts send EVENTS_PER_ACCOUNT ordinary requests each (their own IP, network, client,
   card and prompts: each also makes the infrastructure clusters an ordinary account makes),
   over ten minutes of event time;
3. one event per partition far enough ahead in event time that every account's window has
   closed: every account is now idle (tracked, nothing open);
4. once the worker has processed every record, sent what it held and committed (lag 0), its
   RSS again. Bytes per idle account = (RSS after - baseline) / N, and 1M accounts
   extrapolated as baseline + 1M x that. With rocksdb:// the data directory's size on disk
   is printed too.

With `--restart`, then: 5. kill -9 of the worker and a new one on the same data directory; the
time until it is ready (its tables recovered: the whole changelog with memory://, the tail
since the last flush with rocksdb://) and its RSS; 6. one more event per partition, so that
every partition registers its accounts and clusters with its indexes as a worker in service
does, and the RSS again: the accounts' cost without the backlog's peak (a process seldom gives
back to the system what a backlog made it allocate).

The accounts' states are all the worker keeps per account: the accounts table, the clusters
their keys make, the partition's due index. Figures depend on the machine; nothing asserts them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import orjson
from aiokafka import AIOKafkaProducer

from distillguard.models.config import DetectorConfig
from distillguard.models.partitioning import partition_for
from distillguard.streams.edge.settings import load_settings
from distillguard.streams.edge.topics import ensure_topics, wait_for_broker
from tests.conftest import event_dict
from tests.integration.conftest import Fleet, delete_run_topics, run_env

EVENTS_PER_ACCOUNT = 3
T0 = 1_767_000_000.0  # event time of the first request
SPREAD_S = 600.0  # the accounts' requests over ten minutes of event time
USER_AGENTS = [f"client/{i}.{j}" for i in range(1, 6) for j in range(10)]


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def ordinary_events(accounts: int, seed: int = 17) -> list[dict[str, Any]]:
    """Each account: EVENTS_PER_ACCOUNT requests from its own address, network, client, card."""
    rng = random.Random(seed)
    events = []
    for a in range(accounts):
        account = f"mem-{a:07d}"
        ip = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        common = {"ip": ip, "asn": 64_000 + rng.randrange(2_000),
                  "user_agent": rng.choice(USER_AGENTS),
                  "payment_fingerprint": f"card-{a:07d}", "account_created_ts": T0 - 86_400 * 90}
        start = T0 + rng.random() * SPREAD_S
        for n in range(EVENTS_PER_ACCOUNT):
            events.append(event_dict(account, round(start + 20.0 * n, 3), n,
                                     prompt_simhash=f"{rng.getrandbits(64):016x}",
                                     task_category=rng.choice(("chat", "coding", "writing")),
                                     **common))
    events.sort(key=lambda e: e["ts"])
    return events


def closing_events(partitions: int, cfg: DetectorConfig) -> list[dict[str, Any]]:
    """One event per partition, late enough in event time that every window has closed."""
    ts = T0 + SPREAD_S + 20.0 * EVENTS_PER_ACCOUNT + cfg.window_s + cfg.allowed_lateness_s + 60
    found: dict[int, dict[str, Any]] = {}
    i = 0
    while len(found) < partitions:
        account = f"mem-clock-{i}"
        found.setdefault(partition_for(account, partitions), event_dict(account, ts, i))
        i += 1
    return list(found.values())


async def produce(bootstrap: str, topic: str, events: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20,
                                max_batch_size=512 * 1024, acks="all")
    await producer.start()
    try:
        futures = []
        for ev in events:
            futures.append(await producer.send(topic, orjson.dumps(ev),
                                               key=ev["account_id"].encode()))
            if len(futures) >= 5_000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def settled(fleet: Fleet, topic: str, total: int) -> dict[str, Any] | None:
    """The worker's /health once it has processed `total` requests, sent everything it held
    and committed (lag 0 on its inputs), else None."""
    h = fleet.health()[0]
    if not h or h["events_processed"].get(topic, 0) < total or h["lag_total"] != 0:
        return None
    return h if not any(h.get("held", {}).values()) else None


def wait_for(condition: Any, timeout_s: float, what: str, fleet: Fleet) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not all(fleet.alive()):
            raise SystemExit(f"the worker exited while {what}:\n{fleet.logs()}")
        value = condition()
        if value:
            return value
        time.sleep(0.5)  # polling; the condition has its deadline
    raise SystemExit(f"timed out after {timeout_s:.0f} s: {what}\n{fleet.logs()}")


def measure(bootstrap: str, store: str, accounts: int, restart: bool) -> dict[str, Any]:
    run_id = "mem-" + uuid.uuid4().hex[:8]
    data_dir = Path(tempfile.mkdtemp(prefix=f"dg-{run_id}-data-"))
    settings = load_settings(env=run_env(run_id, bootstrap))
    events = ordinary_events(accounts)
    closing = closing_events(settings.partitions, settings.detector)
    asyncio.run(ensure_topics(bootstrap, settings.topics.values()))
    fleet = Fleet(settings, Path(tempfile.mkdtemp(prefix=f"dg-{run_id}-logs-")),
                  env={"DISTILLGUARD_STORE": store, "DISTILLGUARD_DATA_DIR": str(data_dir)})
    try:
        fleet.start(count=1, base_port=18000 + os.getpid() % 500 * 2)
        topic = settings.topic_requests

        def ready() -> bool:
            h = fleet.health()[0]
            return bool(h and h["status"] in ("ok", "idle") and len(
                [p for p in h["partitions"] if p["topic"] == topic]) == settings.partitions)
        wait_for(ready, 180, "waiting for its partitions", fleet)
        time.sleep(3.0)  # a settled baseline: the start's allocations done (not a test)
        pid = fleet.procs[0].pid
        base = rss_bytes(pid)
        started = time.monotonic()
        asyncio.run(produce(bootstrap, topic, events))
        asyncio.run(produce(bootstrap, topic, closing))
        total = len(events) + len(closing)
        wait_for(lambda: settled(fleet, topic, total), 3_600,
                     f"draining {total:,} events", fleet)
        drained_s = time.monotonic() - started
        time.sleep(3.0)  # what the last commit freed, freed
        after = rss_bytes(pid)
        out = {"store": store, "accounts": accounts, "events": total, "baseline": base,
               "after": after, "per_account": (after - base) / accounts,
               "disk": dir_bytes(data_dir), "drained_s": drained_s}
        if restart:
            out.update(kill_and_restart(fleet, settings.partitions))
        return out
    finally:
        fleet.stop()
        asyncio.run(delete_run_topics(bootstrap, settings))
        subprocess.run(["rm", "-rf", str(data_dir)], check=False)


def recovery_seconds(port: int) -> float | None:
    """The worker's last table recovery, from its /metrics."""
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("distillguard_table_recovery_last_duration_seconds "):
                return float(line.split()[1])
    return None


def kill_and_restart(fleet: Fleet, partitions: int) -> dict[str, Any]:
    """kill -9 of the worker, a new one on the same data directory: the time until it is
    ready (its tables recovered), the recovery alone, and its RSS then."""
    fleet.procs[0].send_signal(signal.SIGKILL)
    fleet.procs[0].wait(timeout=30)
    started = time.monotonic()
    fleet.start(count=1, base_port=fleet.ports[0])
    fleet.procs.pop(0)
    fleet.ports.pop(0)

    def ready() -> bool:
        h = fleet.health()[0]
        return bool(h and h["status"] in ("ok", "idle") and len(h["partitions"]) >= partitions)
    wait_for(ready, 1_800, "recovering after kill -9", fleet)
    out = {"ready_s": time.monotonic() - started, "recovery_s": recovery_seconds(fleet.ports[0]),
           "rss_recovered": rss_bytes(fleet.procs[0].pid)}
    # One more event per partition: each partition of the new worker then registers its
    # accounts and clusters with its indexes (done at a partition's first event), as a worker
    # in service holds them; its RSS then is the accounts' cost without the backlog's peak.
    settings = fleet.settings
    before = fleet.health()[0]["events_processed"].get(settings.topic_requests, 0)
    wake = [{**e, "ts": e["ts"] + 1.0, "event_id": e["event_id"] + "-wake"}
            for e in closing_events(partitions, settings.detector)]
    asyncio.run(produce(settings.kafka_bootstrap, settings.topic_requests, wake))
    wait_for(lambda: settled(fleet, settings.topic_requests, before + len(wake)), 1_800,
             "the events after the restart", fleet)
    time.sleep(3.0)
    out["rss_in_service"] = rss_bytes(fleet.procs[0].pid)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", default=os.environ.get("DGTEST_BOOTSTRAP", "127.0.0.1:9092"))
    ap.add_argument("--store", action="append", choices=("memory://", "rocksdb://"),
                    help="the table store (repeat for both; default: both)")
    ap.add_argument("--accounts", type=int, action="append",
                    help="idle accounts (repeat; default: 20000 and 100000)")
    ap.add_argument("--restart", action="store_true",
                    help="then kill -9 the worker and start another on its data directory: "
                         "the time until it is ready and its RSS then")
    args = ap.parse_args(argv)
    asyncio.run(wait_for_broker(args.bootstrap, timeout_s=20))
    stores = args.store or ["memory://", "rocksdb://"]
    sizes = args.accounts or [20_000, 100_000]
    print(f"{'store':<12} {'accounts':>9} {'events':>9} {'drain s':>8} {'RSS 0 MB':>9} "
          f"{'RSS MB':>8} {'B/account':>10} {'1M: GB':>7} {'disk MB':>8}", flush=True)
    for store in stores:
        for n in sizes:
            r = measure(args.bootstrap, store, n, args.restart)
            at_1m = (r["baseline"] + r["per_account"] * 1_000_000) / 2**30
            print(f"{store:<12} {n:>9,} {r['events']:>9,} {r['drained_s']:>8.0f} "
                  f"{r['baseline'] / 2**20:>9.0f} {r['after'] / 2**20:>8.0f} "
                  f"{r['per_account']:>10,.0f} {at_1m:>7.2f} {r['disk'] / 2**20:>8.1f}",
                  flush=True)
            if args.restart:
                rec = r["recovery_s"]
                print(f"{'':<12} after kill -9: ready in {r['ready_s']:.1f} s (the group's "
                      f"session timeout included; table recovery "
                      f"{'-' if rec is None else f'{rec:.1f} s'}), RSS then "
                      f"{r['rss_recovered'] / 2**20:.0f} MB; after one more event per "
                      f"partition {r['rss_in_service'] / 2**20:.0f} MB: "
                      f"{(r['rss_in_service'] - r['baseline']) / n:,.0f} B/account, 1M: "
                      f"{(r['baseline'] + (r['rss_in_service'] - r['baseline']) / n * 1e6) / 2**30:.2f}"
                      " GB", flush=True)
    print("B/account: (RSS after the accounts went idle - RSS before any) / accounts; "
          "1M: baseline + 1M x B/account; disk: the data directory (rocksdb://)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
