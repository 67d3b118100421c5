"""Recovery times and lag figures of the worker fleet, measured on the local broker.

Runs the scenarios of tests/integration/test_faults.py with real worker processes and prints
what they measure, one line per figure. Each scenario gets its own topics and consumer group
(deleted afterwards); only `restart` touches the shared broker (stop + start, once).

    .venv/bin/python bench/recovery.py clean         # uninterrupted 3-worker run vs the replay
    .venv/bin/python bench/recovery.py kill          # kill -9 of one of 3 workers
    .venv/bin/python bench/recovery.py kill --stream-through   # ... while the stream goes on
    .venv/bin/python bench/recovery.py restart       # broker stop + start with a backlog
    .venv/bin/python bench/recovery.py dlq           # malformed-record flood throughput
    .venv/bin/python bench/recovery.py backpressure --events 150000
    .venv/bin/python bench/recovery.py all           # all of the above (restart once)

Needs the broker running (`bash deploy/kafka-local.sh start`). Timings depend on the machine
and on what else runs on it; docs/operations.md has the figures measured here.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))


import perf  # bench/perf.py: the broker's address
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

import tests.integration.test_faults as faults
from distillguard.streams.edge.settings import Settings, load_settings
from distillguard.streams.edge.topics import delete_topics, ensure_topics, wait_for_broker
from tests.conftest import event_dict
from tests.integration.conftest import Fleet, event_records, produce, run_env

BOOTSTRAP = perf.BOOTSTRAP  # DGTEST_BOOTSTRAP, else the broker of KAFKA_PORT
# kill (hold): events produced at once just before the kill -9, the work in flight when the
# worker dies; the rest of the stream is held back until the fleet has caught up, so the time
# from the kill to lag 0 is the recovery alone.
BURST = 300


def say(what: str, value: str) -> None:
    print(f"  {what:<48} {value}", flush=True)


@contextmanager
def run_fleet(extra_env: dict[str, str] | None = None) -> Iterator[tuple[Settings, Fleet]]:
    """A fleet with the fault tests' settings (`faults.FAULT_ENV`, why there), and more."""
    extra_env = {**faults.FAULT_ENV, **(extra_env or {})}
    run_id = "bench-" + uuid.uuid4().hex[:8]
    settings = load_settings(env=run_env(run_id, BOOTSTRAP, **(extra_env or {})))
    asyncio.run(wait_for_broker(BOOTSTRAP, timeout_s=20))
    asyncio.run(ensure_topics(BOOTSTRAP, settings.topics.values()))
    log_dir = Path(tempfile.mkdtemp(prefix=f"dg-{run_id}-"))
    original = faults.integration.run_env
    if extra_env:
        faults.integration.run_env = lambda rid, bs, **more: original(rid, bs, **extra_env,
                                                                        **more)
    fleet = Fleet(settings, log_dir)
    try:
        yield settings, fleet
    finally:
        faults.integration.run_env = original
        fleet.stop()
        asyncio.run(delete_topics(BOOTSTRAP, [t.name for t in settings.topics.values()]))
        print(f"  (worker logs in {log_dir})")


def report_campaigns(settings: Settings, decisions: list[dict[str, Any]],
                     limit: int | None = None) -> None:
    reference = faults.uninterrupted_reference(settings, limit)
    result = faults.compare_campaign_decisions(reference, faults.strongest(decisions),
                                               settings.detector.throttle_score)
    say("campaign accounts acted on (replay)", f"{result['live_acted']} "
        f"({result['reference_acted']})")
    say("missed / missed on the edge / weaker", f"{len(result['missed'])} / "
        f"{len(result['missed_on_the_edge'])} / {len(result['weaker'])}")
    for a in result["missed"] + result["missed_on_the_edge"]:
        say(f"  missed {a}", f"replay: {reference.actions[a]} at score {reference.scores[a]}")
    say("decisions / published again with the same id",
        f"{len(decisions)} / {faults.assert_duplicates_share_an_id(decisions)}")


def lag_now(settings: Settings) -> int:
    """Highwater minus committed offset over the input topics (0 where nothing committed)."""
    async def lag() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
        consumer = AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=None)
        await admin.start()
        await consumer.start()
        try:
            committed = await admin.list_consumer_group_offsets(settings.app_id)
            tps = [TopicPartition(t, p) for t in faults.input_topics(settings)
                   for p in range(settings.partitions)]
            ends = await consumer.end_offsets(tps)
            return sum(max(0, ends[tp] - (committed[tp].offset if tp in committed else 0))
                       for tp in tps)
        finally:
            await consumer.stop()
            await admin.close()
    return asyncio.run(lag())


def settle(settings: Settings, alive: Callable[[], bool], ports: list[int]) -> float:
    return asyncio.run(faults.wait_settled(settings, timeout_s=300, alive=alive, ports=ports))


def bench_clean(workers: int = 3, limit: int | None = None) -> None:
    print(f"uninterrupted run, {workers} workers, 12 partitions, {faults.RATE:.0f} events/s"
          + (f", the first {limit} events" if limit else ""))
    with run_fleet() as (settings, fleet):
        fleet.start(count=workers)
        t0 = time.monotonic()
        faults.wait_for_assignment(fleet, settings.partitions)
        say("workers started and assigned", f"{time.monotonic() - t0:.1f} s")
        events = list(faults.scenario_events(limit))
        t1 = time.monotonic()
        asyncio.run(faults.produce_paced(settings, events, faults.RATE))
        t2 = time.monotonic()
        ports = [faults.base_port() + i for i in range(workers)]
        settled = settle(settings, lambda: all(fleet.alive()), ports)
        say("events / produced in", f"{len(events)} / {t2 - t1:.1f} s")
        say("fleet lag 0 after the last event", f"{settled - t2:.1f} s "
            f"({len(events) / (settled - t1):.0f} events/s end to end)")
        report_campaigns(settings, faults.decisions_in(
            asyncio.run(faults.read_topic(settings, "enforcement"))), limit)


def bench_kill(stream_through: bool = False) -> None:
    mode = ("streaming on through the kill, as in the test" if stream_through
            else "the stream held back until the fleet has caught up")
    print(f"kill -9 of one of 3 workers, 12 partitions ({mode})")
    with run_fleet() as (settings, fleet):
        fleet.start(count=3)
        split = faults.wait_for_assignment(fleet, settings.partitions)
        victim = max(range(3), key=lambda i: len(split[i]))
        survivors = [i for i in range(3) if i != victim]
        ports = [faults.base_port() + i for i in survivors]

        def alive() -> bool:
            return all(fleet.procs[i].poll() is None for i in survivors)

        events = list(faults.scenario_events())
        cut = int(len(events) * 0.4)
        killed: dict[str, float] = {}

        def kill() -> None:
            if "lag" not in killed:  # called inside the producer's event loop: use a thread
                with ThreadPoolExecutor(1) as pool:
                    killed["lag"] = pool.submit(lag_now, settings).result()
            fleet.procs[victim].send_signal(signal.SIGKILL)
            killed["at"] = time.monotonic()

        if stream_through:
            asyncio.run(faults.produce_paced(settings, events, faults.RATE, hooks={0.4: kill}))
        else:
            asyncio.run(faults.produce_paced(settings, events[:cut], faults.RATE))
            settle(settings, lambda: all(fleet.alive()), ports)
            asyncio.run(produce(settings, event_records(events[cut:cut + BURST])))
            killed["lag"] = lag_now(settings)
            kill()
        fleet.procs[victim].wait(timeout=10)

        def moved() -> bool:
            now = [set(faults.assignment(fleet, i) or []) for i in survivors]
            return set().union(*now) == set(range(settings.partitions))
        faults.wait_until(moved, 120, "partitions moved", fleet, interval_s=0.2)
        moved_at = time.monotonic()
        say(f"victim had partitions {sorted(split[victim])}",
            f"fleet lag at the kill {killed['lag']}")
        say("kill -9 -> partitions assigned to the survivors", f"{moved_at - killed['at']:.1f} s")
        if stream_through:
            settled = settle(settings, alive, ports)
            say("kill -9 -> fleet lag 0 (stream included)", f"{settled - killed['at']:.1f} s")
        else:
            settled = settle(settings, alive, ports)
            say("kill -9 -> fleet lag 0", f"{settled - killed['at']:.1f} s")
            asyncio.run(faults.produce_paced(settings, events[cut + BURST:],
                                             faults.RATE))
            settle(settings, alive, ports)
        restored = [line for i in survivors
                    for line in faults.log_lines(fleet, i, "partition_context_restored")
                    if line["partition"] in split[victim]]
        say("partition contexts restored on the survivors",
            ", ".join(f"p{line['partition']}:{'+'.join(line['restored'])}"
                      f"(seen {line['model_seen']})" for line in restored) or "none")
        report_campaigns(settings, faults.decisions_in(
            asyncio.run(faults.read_topic(settings, "enforcement"))))


def bench_restart() -> None:
    print("broker stop + start with a backlog, 2 workers")
    limit = 8_000
    with run_fleet() as (settings, fleet):
        fleet.start(count=2)
        faults.wait_for_assignment(fleet, settings.partitions)
        events = list(faults.scenario_events(limit))
        asyncio.run(faults.produce_paced(settings, events[: limit // 2], faults.RATE))
        lag = lag_now(settings)
        t0 = time.monotonic()
        stop = faults.kafka("stop")
        t1 = time.monotonic()
        start = faults.kafka("start")
        t2 = time.monotonic()
        if stop.returncode or start.returncode:
            raise SystemExit(f"broker restart failed: {stop.stderr} {start.stderr}")
        say("fleet lag when the broker stopped", f"{lag}")
        say("broker stop (controlled shutdown) / start", f"{t1 - t0:.1f} s / {t2 - t1:.1f} s")
        asyncio.run(faults.produce_paced(settings, events[limit // 2:], faults.RATE))
        ports = [faults.base_port() + i for i in range(2)]
        settled = settle(settings, lambda: all(fleet.alive()), ports)
        say("broker back -> fleet lag 0", f"{settled - t2:.1f} s")
        say("workers alive", f"{sum(fleet.alive())} of 2")
        dead = asyncio.run(faults.read_topic(settings, "dead_letter"))
        say("records dead-lettered", f"{len(dead)}")
        report_campaigns(settings, faults.decisions_in(
            asyncio.run(faults.read_topic(settings, "enforcement"))), limit)


def bench_dlq(bad_n: int = 10_000) -> None:
    print(f"flood of {bad_n} malformed records, 1 worker")
    with run_fleet() as (settings, fleet):
        fleet.start(count=1)
        faults.wait_for_assignment(fleet, settings.partitions)
        records = [faults.malformed(i) for i in range(bad_n)]
        t0 = time.monotonic()
        asyncio.run(produce(settings, records))
        t1 = time.monotonic()
        dead = asyncio.run(faults.integration.consume_until(
            settings, settings.topic_dead_letter, lambda rs: len(rs) >= bad_n, timeout_s=300))
        t2 = time.monotonic()
        say("produced in", f"{t1 - t0:.1f} s")
        say("dead-lettered", f"{len(dead)} in {t2 - t0:.1f} s ({len(dead) / (t2 - t0):.0f}/s)")
        good = event_records([event_dict(f"acct-ok-{i}", 1_767_225_600.0 + i, n=i)
                              for i in range(1000)])
        t3 = time.monotonic()
        asyncio.run(produce(settings, good))
        settle(settings, lambda: all(fleet.alive()), [faults.base_port()])
        say("then 1000 valid events processed in", f"{time.monotonic() - t3:.1f} s")
        say("worker alive", f"{all(fleet.alive())}")


def bench_backpressure(n: int = 60_000, seconds: float = 30.0) -> None:
    print(f"backpressure: {n} events produced as fast as possible to 1 worker")
    with run_fleet() as (settings, fleet):
        fleet.start(count=1)
        faults.wait_for_assignment(fleet, settings.partitions)
        pid = fleet.procs[0].pid
        time.sleep(2.0)  # let the idle worker's memory settle before the baseline
        baseline = faults.rss_mb(pid) or 0.0
        events = [event_dict(f"acct-bp-{i % 500}", 1_767_225_600.0 + i * 0.05, n=i,
                             prompt_simhash=f"{(i * 2654435761) % (1 << 64):016x}")
                  for i in range(n)]
        t0 = time.monotonic()
        asyncio.run(produce(settings, event_records(events)))
        produced = time.monotonic() - t0
        samples = []
        while time.monotonic() - t0 < seconds + produced:
            h = faults.health(faults.base_port())
            rss = faults.rss_mb(pid)
            if h and rss:
                samples.append((time.monotonic() - t0, rss, h["lag_total"],
                                h["events_processed"].get(settings.topic_requests, 0)))
            time.sleep(1.0)
        say("produced", f"{n} events in {produced:.1f} s ({n / produced:.0f}/s)")
        say("worker RSS idle / peak", f"{baseline:.0f} MB / {max(s[1] for s in samples):.0f} MB")
        say("fleet lag peak / at the end", f"{max(s[2] for s in samples)} / {samples[-1][2]}")
        done = samples[-1][3]
        say("worker throughput under backlog", f"{done / samples[-1][0]:.0f} events/s")
        print("  t(s)  RSS(MB)  lag  processed")
        for t, rss, lag, proc in samples[:: max(1, len(samples) // 8)]:
            print(f"  {t:5.1f} {rss:7.0f} {lag:6d} {proc:7d}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["clean", "kill", "restart", "dlq", "backpressure", "all"])
    p.add_argument("--stream-through", action="store_true",
                   help="kill: keep streaming through the kill (as the test does) instead of "
                        "holding the rest back until the fleet has recovered")
    p.add_argument("--events", type=int, default=60_000, help="backpressure: events to produce")
    p.add_argument("--bad", type=int, default=10_000, help="dlq: malformed records")
    p.add_argument("--workers", type=int, default=3, help="clean: workers")
    p.add_argument("--limit", type=int, default=None,
                   help="clean: only the first N events of the scenario (restart uses 8000)")
    args = p.parse_args(argv)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # retries while the broker is down
    started = time.monotonic()
    if args.what in ("clean", "all"):
        bench_clean(args.workers, args.limit)
    if args.what in ("kill", "all"):
        bench_kill(stream_through=args.stream_through)
        if args.what == "all":
            bench_kill(stream_through=True)
    if args.what in ("restart", "all"):
        bench_restart()
    if args.what in ("dlq", "all"):
        bench_dlq(args.bad)
    if args.what in ("backpressure", "all"):
        bench_backpressure(args.events)
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
