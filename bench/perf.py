"""Every performance figure of distillguard in one run, each with its target.

    .venv/bin/python bench/perf.py --quick     # a few minutes
    .venv/bin/python bench/perf.py             # fuller: more events, 2 workers too, 1M accounts

Measures, against the local broker (`bash deploy/kafka-local.sh start`) with its own topics and
consumer group per measurement (deleted afterwards):

* worker throughput: one worker process (the full detector) draining a backlog of simulated
  events, and a plain aiokafka consume + orjson.loads loop over the same topic in the same run;
* latency: events produced at a steady rate the worker sustains, from each event's produce
  wall time to the decision it triggers on the enforcement topic (decision `event_ts` == event
  `ts`; decision time = the enforcement record's CreateTime, set by the worker's producer);
* replay of a file on one core (bench/replay_speed.py);
* memory: an idle account in the worker, its state encoded and as objects (bench/idle_memory.py);
  everything the replay holds per idle tracked account (tracemalloc over
  `models.pipeline.Pipeline`, and the length of `codec.encode_account_state`), process RSS and
  core throughput from 10k to 100k (1M) accounts, and the cluster state (count, encoded bytes);
* where the time goes: cProfile of `Pipeline.process`.

Figures depend on the machine and its load. No figure here is asserted anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import gc
import io
import json
import logging
import os
import pstats
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Self

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

import distillguard.streams  # noqa: F401  (first: it chooses the core's build, models/_build.py)
from distillguard.models.config import DetectorConfig
from distillguard.models.events import event_from_mapping
from distillguard.models.pipeline import Pipeline
from distillguard.simulator import Scenario, generate_events
from distillguard.streams.edge.codec import encode_account_state, encode_cluster_state
from distillguard.streams.edge.settings import Settings, load_settings
from distillguard.streams.edge.topics import delete_topics, ensure_topics, wait_for_broker
from tests.integration.conftest import Fleet, run_env

# the broker of deploy/kafka-local.sh (KAFKA_PORT), or another one (DGTEST_BOOTSTRAP, as the tests)
BOOTSTRAP = os.environ.get("DGTEST_BOOTSTRAP",
                           f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}")
ACCOUNTS_PER_SCALE = 5_950  # distinct accounts of the default scenario per unit of scale (0.1 h)
rows: list[tuple[str, str, str, str]] = []  # (figure, measured, target, verdict)


def row(figure: str, measured: str, target: str = "", met: bool | None = None) -> None:
    verdict = "" if met is None else ("met" if met else "short")
    rows.append((figure, measured, target, verdict))
    print(f"  {figure:<52} {measured:>22}  {target:<18} {verdict}", flush=True)


def note(text: str) -> None:
    print(f"  . {text}", flush=True)


def short_by(value: float, target: float, higher_is_better: bool = True) -> str:
    if higher_is_better:
        return f"{value / target:.2f}x of target"
    return f"{target / value:.2f}x of target" if value else ""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def health(port: int) -> dict[str, Any] | None:
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=3) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())
    except (OSError, ValueError):
        return None


def sim_events(scale: float, duration_h: float, seed: int = 7) -> list[dict[str, Any]]:
    return list(generate_events(dataclasses.replace(Scenario.default(), scale=scale,
                                                    duration_h=duration_h, seed=seed)))


# ---- a run on the broker: own topics, own group, worker processes --------------------------

# more DISTILLGUARD_* settings for every worker of every run (`--worker-env`)
WORKER_ENV: dict[str, str] = {}


class Run:
    def __init__(self) -> None:
        self.run_id = "perf-" + uuid.uuid4().hex[:8]
        self.settings: Settings = load_settings(env=run_env(self.run_id, BOOTSTRAP, **WORKER_ENV))
        self.log_dir = Path(tempfile.mkdtemp(prefix=f"dg-{self.run_id}-"))
        self.fleet = Fleet(self.settings, self.log_dir, env=dict(WORKER_ENV))
        self.base_port = 17000 + (os.getpid() % 500) * 4

    def __enter__(self) -> Self:
        asyncio.run(ensure_topics(BOOTSTRAP, self.settings.topics.values()))
        return self

    def __exit__(self, *exc: object) -> None:
        self.fleet.stop()
        asyncio.run(delete_topics(BOOTSTRAP, [t.name for t in self.settings.topics.values()]))

    def start_workers(self, count: int) -> list[int]:
        self.fleet.start(count=count, base_port=self.base_port)
        ports = [self.base_port + i for i in range(count)]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # every worker answers and holds partitions
            if not all(self.fleet.alive()):
                raise SystemExit(f"a worker exited:\n{self.fleet.logs()}")
            hs = [health(p) for p in ports]
            parts = {(q["topic"], q["partition"]) for h in hs if h for q in h["partitions"]
                     if q["topic"] == self.settings.topic_requests}
            if all(hs) and len(parts) == self.settings.partitions and \
                    all(h["status"] in ("ok", "idle") for h in hs if h):
                return ports
            time.sleep(0.5)
        raise SystemExit(f"workers not assigned within 120 s:\n{self.fleet.logs()}")

    def wait_until_nothing_held(self, ports: list[int], timeout_s: float) -> None:
        """Until every worker has sent what it holds (/health `held`) and committed (lag 0)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            hs = [health(p) for p in ports]
            if all(h and h["lag_total"] == 0 and not any(h.get("held", {}).values())
                   for h in hs):
                return
            time.sleep(0.2)  # polling; the condition has its deadline
        note(f"workers still held records after {timeout_s:.0f} s: the counts below miss them")

    def processed_all(self, ports: list[int]) -> tuple[int, ...]:
        """Records processed from each input: requests, cluster summaries, account verdicts."""
        s = self.settings
        totals = [0, 0, 0]
        for p in ports:
            h = health(p)
            if h:
                for i, topic in enumerate((s.topic_requests, s.topic_cluster_summaries,
                                           s.topic_account_verdicts)):
                    totals[i] += h["events_processed"].get(topic, 0)
        return tuple(totals)

    def processed(self, ports: list[int]) -> int:
        total = 0
        for p in ports:
            h = health(p)
            if h:
                total += h["events_processed"].get(self.settings.topic_requests, 0)
        return total


async def produce_all(topic: str, events: list[dict[str, Any]]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=20,
                                max_batch_size=512 * 1024, acks="all")
    await producer.start()
    started = time.monotonic()
    try:
        futures = []
        for ev in events:
            futures.append(await producer.send(topic, orjson.dumps(ev),
                                               key=ev["account_id"].encode()))
            if len(futures) >= 5000:
                await asyncio.gather(*futures)
                futures.clear()
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.monotonic() - started


async def plain_consume(topic: str, n: int) -> float:
    """events/s of aiokafka getmany + orjson.loads of every value, from the start of `topic`."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=BOOTSTRAP, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        seen, started = 0, 0.0
        deadline = time.monotonic() + 300
        while seen < n and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                if not started:
                    started = time.monotonic()
                for r in records:
                    orjson.loads(r.value)
                seen += len(records)
        return seen / (time.monotonic() - started)
    finally:
        await consumer.stop()


async def records_by_topic(run: Run) -> dict[str, int]:
    """Records on each topic the worker writes (internal topics, enforcement, changelogs)."""
    s = run.settings
    names = {"summaries": s.topic_cluster_summaries, "verdicts": s.topic_account_verdicts,
             "enforcement": s.topic_enforcement,
             **{f"{t} changelog": f"{s.app_id}-{t}-changelog"
                for t in ("accounts", "clusters", "account_contexts")}}
    # subscribed (never polled), so that its metadata holds every one of them
    consumer = AIOKafkaConsumer(*names.values(), bootstrap_servers=BOOTSTRAP, group_id=None)
    await consumer.start()
    try:
        out = {}
        for label, topic in names.items():
            parts = consumer.partitions_for_topic(topic) or set()
            for _ in range(50):  # until the metadata of a new subscription has arrived
                if parts:
                    break
                await asyncio.sleep(0.1)
                parts = consumer.partitions_for_topic(topic) or set()
            ends = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
            out[label] = sum(ends.values())
        return out
    finally:
        await consumer.stop()


def bench_worker_throughput(events: list[dict[str, Any]], workers: int) -> float:
    n = len(events)
    with Run() as run:
        produced_s = asyncio.run(produce_all(run.settings.topic_requests, events))
        note(f"{n:,} events produced in {produced_s:.1f} s; plain consumer, then "
             f"{workers} worker(s) drain them")
        plain = asyncio.run(plain_consume(run.settings.topic_requests, n))
        ports = run.start_workers(workers)
        t0 = None
        done = 0
        deadline = time.monotonic() + 900
        # Until every event has been through the account stage and the cluster stage and the
        # verdicts have caught up with it (they trail the account stage under a backlog): the
        # end is the last time any stage's count of processed records moved. (Not the lag,
        # which only reaches 0 at a commit, every 2.8 s.)
        counts, last_move = None, time.monotonic()
        while time.monotonic() < deadline:
            now_counts = run.processed_all(ports)
            now = time.monotonic()
            done = now_counts[0]
            if t0 is None and done > 0:
                t0, d0 = now, done
            if now_counts != counts:
                counts, last_move = now_counts, now
            elif done >= n and now - last_move > 3.0:
                break
            time.sleep(0.1)
        rate = (n - d0) / (last_move - t0) if t0 and last_move > t0 else 0.0
        peak = max(rss_mb(p.pid) for p in run.fleet.procs)
        run.wait_until_nothing_held(ports, timeout_s=30)  # sent at the next offset commit
        produced = asyncio.run(records_by_topic(run))
    note("records produced per event: " + ", ".join(
        f"{name} {count / n:.2f}" for name, count in produced.items()))
    label = f"{workers} worker{'s' if workers > 1 else ''}"
    row(f"worker throughput, {label}, full detector", f"{rate:,.0f} ev/s", ">= 20,000 ev/s",
        rate >= 20_000)
    row("  plain aiokafka consume + orjson.loads", f"{plain:,.0f} ev/s")
    row(f"  ratio worker / plain consumer ({label})", f"{rate / plain:.3f}", ">= 0.3",
        rate / plain >= 0.3)
    note(f"worker RSS after the backlog: {peak:.0f} MB")
    return rate


async def paced_with_decisions(settings: Settings, events: list[dict[str, Any]], rate: float,
                               caught_up: Any) -> tuple[dict[float, float], list[Any]]:
    """Produce at `rate`, noting each event ts's produce wall time; read enforcement meanwhile."""
    sent_at: dict[float, float] = {}
    decisions: list[Any] = []
    topic = settings.topic_enforcement
    consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    consumer.assign([TopicPartition(topic, p) for p in range(settings.topics["enforcement"]
                                                             .partitions)])
    stop = asyncio.Event()

    async def read() -> None:
        while not stop.is_set():
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                decisions.extend(batch)

    reader = asyncio.create_task(read())
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=0, acks=1)
    await producer.start()
    try:
        started = time.monotonic()
        for i, ev in enumerate(events, 1):
            sent_at.setdefault(ev["ts"], time.time())
            await producer.send(topic=settings.topic_requests, value=orjson.dumps(ev),
                                key=ev["account_id"].encode())
            ahead = i / rate - (time.monotonic() - started)
            if ahead > 0:
                await asyncio.sleep(ahead)
        await producer.flush()
        deadline = time.monotonic() + 120  # the worker drains what it fell behind on
        while time.monotonic() < deadline and not await asyncio.to_thread(caught_up):
            await asyncio.sleep(0.5)
        await asyncio.sleep(3.0)  # the last decisions
    finally:
        stop.set()
        await reader
        await producer.stop()
        await consumer.stop()
    return sent_at, decisions


def bench_latency(events: list[dict[str, Any]], rate: float) -> None:
    with Run() as run:
        ports = run.start_workers(1)
        sent_at, records = asyncio.run(paced_with_decisions(
            run.settings, events, rate, lambda: run.processed(ports) >= len(events)))
        processed = run.processed(ports)
    lat = []
    for r in records:
        d = orjson.loads(r.value)
        t = sent_at.get(d.get("event_ts"))
        if t is not None:
            lat.append(r.timestamp / 1000 - t)
    lat.sort()
    note(f"{len(events):,} events at {rate:,.0f} ev/s over {len(events) / rate:.0f} s; worker "
         f"processed {processed:,}; {len(records):,} decisions, {len(lat):,} matched to an event")
    if not lat:
        row("latency produce -> decision", "no decisions matched")
        return
    p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    row(f"latency p50 at {rate:,.0f} ev/s (target rate 5,000)", f"{p50 * 1000:,.0f} ms",
        "<= 100 ms", p50 <= 0.1)
    row(f"latency p99 at {rate:,.0f} ev/s (target rate 5,000)", f"{p99 * 1000:,.0f} ms",
        "<= 1,000 ms", p99 <= 1.0)
    row("  latency rate used vs target rate", f"{rate:,.0f} ev/s", ">= 5,000 ev/s",
        rate >= 5000)


# ---- replay, memory, growth: in-process / subprocesses ---------------------------------------

def bench_replay(quick: bool) -> None:
    cmd = [sys.executable, str(REPO_ROOT / "bench" / "replay_speed.py"), "--repeat",
           "1" if quick else "2"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, check=False).stdout
    figures = {}
    for key, pattern in (("e2e", r"end to end.*?([\d,]+) events/s"),
                         ("decode", r"read \+ decode alone:\s+([\d,]+)"),
                         ("core", r"core alone.*?:\s+([\d,]+)")):
        m = re.search(pattern, out)
        figures[key] = float(m.group(1).replace(",", "")) if m else 0.0
    m = re.search(r"replay of ([\d,]+) events", out)
    note(f"replay of {m.group(1) if m else '?'} simulated events, pinned to one core")
    row("replay of a file, one core, end to end", f"{figures['e2e']:,.0f} ev/s",
        ">= 50,000 ev/s", figures["e2e"] >= 50_000)
    row("  read + decode alone", f"{figures['decode']:,.0f} ev/s")
    row("  core alone (models.pipeline)", f"{figures['core']:,.0f} ev/s")


def memory_child(accounts: int, trace: bool) -> dict[str, Any]:
    """Runs in a fresh process: N accounts through the Pipeline; throughput, RSS, state bytes."""
    import tracemalloc

    from idle_memory import close_windows  # bench/idle_memory.py: one per partition, far ahead
    scale = accounts / ACCOUNTS_PER_SCALE
    events = [event_from_mapping(e) for e in sim_events(scale, 0.1)]
    gc.collect()
    rss0 = rss_mb(os.getpid())
    if trace:
        tracemalloc.start()
    pipeline = Pipeline(DetectorConfig())
    process = pipeline.process
    started = time.perf_counter()
    for ev in events:
        process(ev)
    elapsed = time.perf_counter() - started
    close_windows(pipeline, max(ev.ts for ev in events))
    n_events = len(events)
    del events, ev
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0] if trace else 0
    if trace:
        tracemalloc.stop()
    rss1 = rss_mb(os.getpid())
    open_windows = sum(1 for s in pipeline.accounts.values() if s.window is not None)
    enc = [len(encode_account_state(s)) for s in pipeline.accounts.values()]
    cenc = [len(encode_cluster_state(c)) for c in pipeline.clusters.values()]
    n = len(pipeline.accounts)
    return {"accounts": n, "events": n_events, "rate": n_events / elapsed,
            "rss_total_mb": rss1, "rss_delta_mb": rss1 - rss0,
            "traced_per_account": traced / n if trace else None,
            "encoded_per_account": sum(enc) / n, "open_windows": open_windows,
            "clusters": len(pipeline.clusters), "cluster_bytes": sum(cenc),
            "summaries": pipeline.counts["summaries"]}


def run_memory_child(accounts: int, trace: bool) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "_memory", str(accounts)]
                         + (["--trace"] if trace else []), capture_output=True, text=True,
                         cwd=REPO_ROOT, check=False)  # its stderr is the error
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_idle_account(accounts: int) -> None:
    """What the worker holds per idle account (bench/idle_memory.py), before and after the
    worker held idle states encoded (streams/worker/idle_states.py)."""
    import idle_memory
    with tempfile.TemporaryDirectory(prefix="dg-idle-") as tmp:
        events_file = idle_memory.write_events(accounts, Path(tmp))
        objects, encoded = (idle_memory.run_child(events_file, mode, True, 5_000)
                            for mode in ("objects", "encoded"))
    table = "account table: states + dict"
    row("idle account in the worker: its state + table entry",
        f"{encoded['traced_parts_per_account'][table]:,.0f} B", "<= 1 KB",
        encoded["traced_parts_per_account"][table] <= 1024)
    row("  as Python objects (before idle states were encoded)",
        f"{objects['traced_parts_per_account'][table]:,.0f} B")
    clusters = "cluster table: states + dict"
    row("  its share of the cluster table, encoded / objects",
        f"{encoded['traced_parts_per_account'][clusters]:,.0f} / "
        f"{objects['traced_parts_per_account'][clusters]:,.0f} B")
    note(f"tracemalloc after {encoded['accounts']:,} accounts' windows closed, "
         "`python bench/idle_memory.py` (the breakdown; RSS at 1M: --accounts 1000000 --no-trace)")


def bench_memory(sizes: list[int]) -> None:
    bench_idle_account(sizes[0])
    small = run_memory_child(sizes[0], trace=True)
    row("everything the replay holds per idle account (tracemalloc)",
        f"{small['traced_per_account']:,.0f} B", "bounded")
    note(f"tracemalloc: everything the Pipeline holds after {small['accounts']:,} accounts' "
         f"windows closed ({small['open_windows']} still open), divided by the accounts: an "
         "upper bound (clusters, models, due index included; states as objects: the replay "
         "does not encode idle states)")
    row("  encoded state per idle account (encode_account_state)",
        f"{small['encoded_per_account']:,.0f} B")
    results = [run_memory_child(n, trace=False) for n in sizes]
    print("  growth (models.pipeline in one process, simulated traffic over 0.1 h):")
    print(f"    {'accounts':>10} {'events':>10} {'core ev/s':>10} {'RSS MB':>8} "
          f"{'dRSS MB':>8} {'B/acct':>7} {'clusters':>9} {'cluster MB':>10}")
    for r in results:
        print(f"    {r['accounts']:>10,} {r['events']:>10,} {r['rate']:>10,.0f} "
              f"{r['rss_total_mb']:>8.0f} {r['rss_delta_mb']:>8.0f} "
              f"{r['rss_delta_mb'] * 2**20 / r['accounts']:>7,.0f} {r['clusters']:>9,} "
              f"{r['cluster_bytes'] / 2**20:>10.1f}")
    for r in results:
        row(f"process RSS, {r['accounts']:,} idle accounts", f"{r['rss_total_mb']:,.0f} MB")
    last = results[-1]
    if last["accounts"] < 900_000:
        per = last["rss_delta_mb"] / last["accounts"]
        row("process RSS, 1,000,000 accounts (extrapolated)",
            f"~{results[0]['rss_total_mb'] - results[0]['rss_delta_mb'] + per * 1e6:,.0f} MB")
    cl_per_acct = [r["clusters"] / r["accounts"] for r in results]
    row("cluster state at the largest size", f"{last['clusters']:,} / "
        f"{last['cluster_bytes'] / 2**20:.1f} MB", "bounded")
    note("clusters per account: " + ", ".join(f"{c:.2f}" for c in cl_per_acct)
         + " (cluster count grows with traffic until clusters expire in event time)")
    rates = [r["rate"] for r in results]
    row("core throughput, smallest -> largest size",
        f"{rates[0]:,.0f} -> {rates[-1]:,.0f} ev/s")


def bench_profile(events: list[dict[str, Any]]) -> None:
    evs = [event_from_mapping(e) for e in events]
    pipeline = Pipeline(DetectorConfig())
    prof = cProfile.Profile()
    prof.enable()
    for ev in evs:
        pipeline.process(ev)
    prof.disable()
    s = io.StringIO()
    stats = pstats.Stats(prof, stream=s)
    total = stats.total_tt
    print(f"  where the time goes in models.pipeline ({len(evs):,} events, cProfile, "
          "self time / cumulative):")
    entries = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:8]
    for (file, line, func), (_cc, _nc, tt, ct, _callers) in entries:
        where = (f"{Path(file).parent.name}/{Path(file).name}:{line} {func}" if line
                 else func)
        print(f"    {tt / total:6.1%} {ct / total:6.1%}  {where}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a few minutes instead of ~15")
    p.add_argument("--rate", type=float, default=0.0,
                   help="latency: events/s (default: half the worker throughput measured in "
                        "the same run, issue 17's rate; 500 when latency runs alone)")
    p.add_argument("what", nargs="?", default="all",
                   choices=["all", "worker", "latency", "speed", "replay", "memory", "_memory"],
                   help="speed: the worker's throughput, then latency at half of it")
    p.add_argument("accounts", nargs="?", type=int, default=0)
    p.add_argument("--trace", action="store_true")
    p.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                   help="a setting for every worker, e.g. "
                        "DISTILLGUARD_EVENT_TIME_ALIGNMENT=false (repeatable)")
    args = p.parse_args(argv)
    for item in args.worker_env:
        name, sep, value = item.partition("=")
        if not sep or not name.startswith("DISTILLGUARD_"):
            p.error(f"--worker-env {item!r}: expected DISTILLGUARD_NAME=VALUE")
        WORKER_ENV[name] = value
    if args.what == "_memory":
        print(json.dumps(memory_child(args.accounts, args.trace)))
        return 0
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    print("command: " + " ".join(["python", "bench/perf.py"] + (argv or sys.argv[1:])))
    print(f"(Python {sys.version.split()[0]}, {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.1f}, model {DetectorConfig().model_version})")
    started = time.monotonic()
    q = args.quick
    worker_rate = 0.0
    if args.what in ("all", "worker", "latency", "speed"):
        asyncio.run(wait_for_broker(BOOTSTRAP, timeout_s=20))
    if args.what in ("all", "worker", "speed"):
        print("worker throughput (backlog of simulated traffic, 12 partitions):")
        events = sim_events(1.0, 0.25 if q else 1.0, seed=21)
        worker_rate = bench_worker_throughput(events, 1)
        if not q and args.what != "speed":
            bench_worker_throughput(events, 2)
    if args.what in ("all", "latency", "speed"):
        rate = args.rate or (max(100.0, round(0.5 * worker_rate, -1)) if worker_rate else 500.0)
        print("latency (steady rate, one worker):")
        events = sim_events(1.0, 0.5, seed=33)[: int(rate * (20 if q else 60))]
        bench_latency(events, rate)
    if args.what in ("all", "replay"):
        print("replay of a file:")
        bench_replay(q)
    if args.what in ("all", "memory"):
        print("memory and growth:")
        bench_memory([10_000, 100_000] if q else [10_000, 30_000, 100_000, 1_000_000])
        bench_profile(sim_events(1.0, 0.25, seed=5)[: 10_000 if q else 30_000])
    print()
    print(f"| {'figure':<54} | {'measured':>22} | {'target':<16} | verdict |")
    print(f"|{'-' * 56}|{'-' * 24}|{'-' * 18}|---------|")
    for fig, val, tgt, ver in rows:
        print(f"| {fig:<54} | {val:>22} | {tgt:<16} | {ver:<7} |")
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
