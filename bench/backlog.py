"""A backlog written by a third-party client, drained by one worker and by two, against the
offline replay of the same events in the same run (issue 17's figures).

    .venv/bin/python bench/backlog.py                   # 4 simulated hours (~226k events), 1 and 2 workers
    .venv/bin/python bench/backlog.py --hours 1 --workers 1
    .venv/bin/python bench/backlog.py --paced 15 --workers 2   # 15 min at real speed instead
    DGTEST_BOOTSTRAP=127.0.0.1:49092 .venv/bin/python bench/backlog.py ...

For each worker count, on the local broker (`bash deploy/kafka-local.sh start`), with its own
topics and consumer group (deleted afterwards):

1. the workers start and are assigned their partitions, then the default simulation is written
   to the requests topic at once (seconds, against minutes to drain it: a backlog) by kcat (librdkafka; `apt-get install kcat`) when it is installed, keyed by account id
   with `-X partitioner=murmur2_random` (Kafka's default partitioner: what docs/operations.md
   asks of a gateway; librdkafka's own default, consistent_random, maps keys elsewhere) -- or by
   an aiokafka producer when kcat is missing (said so in the output);
2. the workers drain it; the rate is events over the time from the first event the
   account stage processed to the last move of any stage's count (account stage, cluster stage,
   verdicts) once every event is through;
3. the enforcement topic is read whole and compared with `distillguard replay` of the same file
   (the same build, in this process, timed end to end: read, decode, core, write):
   accounts with the same actions (the sequence of actions per account, over the accounts acted
   on live or in the replay), decision ids equal (ids in both over ids in either), and the
   workers' alignment counters from /health (late verdicts, behind summaries, ...).

With `--paced MINUTES` the first MINUTES of simulated time are written instead as a gateway
sends them, each event when its time comes (`--speed` simulated seconds per second, default 1),
by kcat from its standard input, and compared with the replay of the same events: the other
half of the issue's parity target.

No figure is asserted: the parity test is tests/integration/test_backlog_parity.py.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

import orjson
import perf  # bench/perf.py: Run, health, rss_mb

import distillguard.streams  # noqa: F401  (first: it chooses the core's build, models/_build.py)
from distillguard.models.config import DetectorConfig
from distillguard.simulator import Scenario, write_files
from distillguard.streams.offline.replay import replay_file
from tests.integration.test_faults import decisions_in, read_topic

BOOTSTRAP = perf.BOOTSTRAP  # DGTEST_BOOTSTRAP, else the broker of KAFKA_PORT


def say(what: str, value: str) -> None:
    print(f"  {what:<56} {value}", flush=True)


def keyed_file(events_file: Path, workdir: Path) -> Path:
    """`account_id<TAB>line` per event, for kcat -K; made once, before the workers start."""
    keyed = workdir / "keyed.txt"
    if not keyed.exists():
        with events_file.open("rb") as src, keyed.open("wb") as dst:
            for line in src:
                if line.strip():
                    dst.write(orjson.loads(line)["account_id"].encode() + b"\t" + line)
    return keyed


def write_backlog(events_file: Path, topic: str, workdir: Path) -> tuple[str, float]:
    """The file into `topic`, keyed by account id; (how, seconds)."""
    started = time.monotonic()
    kcat = shutil.which("kcat")
    if kcat:
        keyed = keyed_file(events_file, workdir)
        subprocess.run([kcat, "-P", "-b", BOOTSTRAP, "-t", topic, "-K", "\t", "-l",
                        "-X", "partitioner=murmur2_random", "-X", "linger.ms=20",
                        str(keyed)], check=True)
        return "kcat (librdkafka), partitioner=murmur2_random", time.monotonic() - started
    events = [orjson.loads(line) for line in events_file.open("rb") if line.strip()]
    asyncio.run(perf.produce_all(topic, events))
    return "aiokafka producer (kcat not installed)", time.monotonic() - started


def paced_prefix(events_file: Path, workdir: Path, minutes: float) -> tuple[Path, int]:
    """The first `minutes` of simulated time of the file (the events before its first event's
    time plus that), as their own file: what the paced run writes and the replay reads."""
    prefix = workdir / f"paced-{minutes:g}m.jsonl"
    n, start = 0, None
    with events_file.open("rb") as src, prefix.open("wb") as dst:
        for line in src:
            if not line.strip():
                continue
            ts = orjson.loads(line)["ts"]
            start = ts if start is None else start
            if ts - start >= minutes * 60:
                break
            dst.write(line)
            n += 1
    return prefix, n


def write_paced(events_file: Path, topic: str, speed: float) -> tuple[str, float]:
    """Each event of the file when its time comes (its `ts` from the first one's, divided by
    `speed`), by kcat from its standard input, keyed by account id as in `write_backlog`:
    traffic as a gateway sends it, against which a backlog's decisions are compared."""
    kcat = shutil.which("kcat")
    if not kcat:
        raise SystemExit("--paced needs kcat (apt-get install kcat)")
    proc = subprocess.Popen([kcat, "-P", "-b", BOOTSTRAP, "-t", topic, "-K", "\t",
                             "-X", "partitioner=murmur2_random", "-X", "linger.ms=5"],
                            stdin=subprocess.PIPE)
    assert proc.stdin is not None
    started, first = time.monotonic(), None
    shown = 0.0
    with events_file.open("rb") as src:
        for line in src:
            if not line.strip():
                continue
            event = orjson.loads(line)
            first = event["ts"] if first is None else first
            due = started + (event["ts"] - first) / speed
            wait = due - time.monotonic()
            if wait > 0:
                proc.stdin.flush()
                time.sleep(wait)
            proc.stdin.write(event["account_id"].encode() + b"\t" + line)
            if time.monotonic() - shown >= 60:
                shown = time.monotonic()
                print(f"  ... paced: {event['ts'] - first:,.0f} s of simulated time written",
                      flush=True)
    proc.stdin.close()
    if proc.wait() != 0:
        raise SystemExit(f"kcat exited with {proc.returncode}")
    return (f"kcat (librdkafka), partitioner=murmur2_random, paced at {speed:g}x real time",
            time.monotonic() - started)


def actions_by_account(decisions: list[dict[str, Any]]) -> tuple[dict[str, list[str]], set[str]]:
    """Each account's actions in decision order (first publication of each id), and the ids."""
    seen: set[str] = set()
    by_account: dict[str, list[tuple[float, str, str]]] = defaultdict(list)
    for d in decisions:
        if d["decision_id"] in seen:
            continue
        seen.add(d["decision_id"])
        by_account[d["account_id"]].append((d.get("event_ts", 0.0), d["decision_id"],
                                            d["action"]))
    return {a: [x[2] for x in sorted(v)] for a, v in by_account.items()}, seen


def compare(live: list[dict[str, Any]], replayed: list[dict[str, Any]]) -> dict[str, Any]:
    live_actions, live_ids = actions_by_account(live)
    replay_actions, replay_ids = actions_by_account(replayed)
    accounts = set(live_actions) | set(replay_actions)
    same = sum(1 for a in accounts if live_actions.get(a) == replay_actions.get(a))
    ids = live_ids | replay_ids
    return {"accounts": len(accounts), "same": same,
            "same_pct": 100.0 * same / len(accounts) if accounts else 100.0,
            "ids_live": len(live_ids), "ids_replay": len(replay_ids),
            "ids_common": len(live_ids & replay_ids),
            "ids_pct": 100.0 * len(live_ids & replay_ids) / len(ids) if ids else 100.0,
            "only_live": sorted(set(live_actions) - set(replay_actions))[:5],
            "only_replay": sorted(set(replay_actions) - set(live_actions))[:5]}


def drain(run: perf.Run, ports: list[int], n: int, timeout_s: float) -> float:
    t0 = d0 = None
    deadline = time.monotonic() + timeout_s
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
        if not all(run.fleet.alive()):
            raise SystemExit(f"a worker exited:\n{run.fleet.logs()}")
        time.sleep(0.1)
    else:
        say("drain timed out", f"after {timeout_s:.0f} s at {counts}")
    return (n - (d0 or 0)) / (last_move - t0) if t0 and last_move > t0 else 0.0


def alignment(ports: list[int]) -> dict[str, int]:
    total: dict[str, int] = defaultdict(int)
    for p in ports:
        h = perf.health(p) or {}
        for k, v in (h.get("alignment") or {}).items():
            total[k] += v
    return dict(total)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hours", type=float, default=4.0, help="simulated hours (default 4)")
    p.add_argument("--scale", type=float, default=None, help="scenario scale (default its own)")
    p.add_argument("--workers", default="1,2", help="worker counts to run, e.g. 1,2")
    p.add_argument("--timeout", type=float, default=1800.0, help="drain timeout per run, s")
    p.add_argument("--idle", type=float, default=10.0,
                   help="the workers' source_idle_wall_s (default 10: at the end of the "
                        "backlog the last records wait that long for the partitions that "
                        "ended first; longer than the workers wait for the backlog)")
    p.add_argument("--paced", type=float, default=0.0, metavar="MINUTES",
                   help="instead of a backlog: the first MINUTES of simulated time written as "
                        "a gateway sends them, each event when its time comes (kcat); "
                        "compared with the replay of the same events")
    p.add_argument("--speed", type=float, default=1.0,
                   help="with --paced: simulated seconds per second (default 1: real time)")
    p.add_argument("--no-align", action="store_true",
                   help="DISTILLGUARD_EVENT_TIME_ALIGNMENT=false (the workers before issue 17)")
    args = p.parse_args(argv)
    os.environ.setdefault("DGTEST_BOOTSTRAP", BOOTSTRAP)
    workdir = Path(tempfile.mkdtemp(prefix="dg-backlog-"))
    scenario = dataclasses.replace(Scenario.default(), duration_h=args.hours)
    if args.scale is not None:
        scenario = dataclasses.replace(scenario, scale=args.scale)
    write_files(scenario, workdir)
    events_file = workdir / "events.jsonl"
    n = sum(1 for line in events_file.open("rb") if line.strip())
    if args.paced:
        events_file, n = paced_prefix(events_file, workdir, args.paced)
        print(f"the first {args.paced:g} min of the default simulation, {n:,} events, paced at "
              f"{args.speed:g}x real time (files in {workdir})", flush=True)
    else:
        print(f"backlog of the default simulation, {args.hours:g} h, {n:,} events "
              f"(files in {workdir})", flush=True)

    result = replay_file(events_file, workdir / "replay.jsonl", DetectorConfig())
    replayed = [orjson.loads(line) for line in (workdir / "replay.jsonl").open("rb")
                if line.strip()]
    say("offline replay (distillguard replay, one process)",
        f"{result.rate:,.0f} events/s, {len(replayed):,} decisions")

    if shutil.which("kcat"):
        keyed_file(events_file, workdir)
    rates: dict[int, float] = {}
    for workers in [int(w) for w in args.workers.split(",")]:
        print(f"{workers} worker(s), 12 partitions, source_idle_wall_s {args.idle:g}"
              + (", alignment off" if args.no_align else ""), flush=True)
        with perf.Run() as run:
            run.fleet.env["DISTILLGUARD_SOURCE_IDLE_WALL_S"] = str(args.idle)
            if args.no_align:  # on by default (streams/edge/settings.py)
                run.fleet.env["DISTILLGUARD_EVENT_TIME_ALIGNMENT"] = "false"
            # The workers first, assigned, then the backlog at once: a partition that moved
            # mid-drain (the second worker joining) would be re-read by its next owner from the
            # last commit, and the summaries sent again would count as behind.
            ports = run.start_workers(workers)
            if args.paced:
                how, secs = write_paced(events_file, run.settings.topic_requests, args.speed)
            else:
                how, secs = write_backlog(events_file, run.settings.topic_requests, workdir)
            say("written by" if args.paced else "backlog written by", f"{how}, {secs:.1f} s")
            rate = drain(run, ports, n, args.timeout)
            rates[workers] = rate
            peak = max(perf.rss_mb(proc.pid) for proc in run.fleet.procs)
            run.wait_until_nothing_held(ports, timeout_s=60)
            counters = alignment(ports)
            live = decisions_in(asyncio.run(read_topic(run.settings, "enforcement",
                                                       timeout_s=120)))
        if not args.paced:  # paced, the rate is the traffic's
            say("events/s live (drain)", f"{rate:,.0f}")
            say("live / offline replay", f"{rate / result.rate:.2f}x")
        if 1 in rates and workers != 1 and rates[1] and not args.paced:
            say(f"{workers} workers / 1 worker", f"{rate / rates[1]:.2f}x")
        c = compare(live, replayed)
        say("accounts with the same actions live vs replay",
            f"{c['same_pct']:.1f}% ({c['same']:,} of {c['accounts']:,} acted on)")
        say("decision ids equal (in both / in either)",
            f"{c['ids_pct']:.1f}% ({c['ids_common']:,}; live {c['ids_live']:,}, "
            f"replay {c['ids_replay']:,})")
        say("alignment counters (/health)", " ".join(f"{k}={v}" for k, v in
                                                     sorted(counters.items())) or "none")
        say("worker RSS after the backlog (MB)", f"{peak:.0f}")
        if c["only_live"] or c["only_replay"]:
            say("e.g. acted on only live / only in the replay",
                f"{c['only_live']} / {c['only_replay']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
