"""What the worker holds per idle account, and of what it is made (issue 17).

    .venv/bin/python bench/idle_memory.py                  # 100k accounts, tracemalloc + RSS
    .venv/bin/python bench/idle_memory.py --accounts 1000000 --no-trace   # RSS at 1M
    .venv/bin/python bench/idle_memory.py --accounts 100000 --mode all --no-trace  # and on disk

Drives simulated traffic (the default scenario, 0.1 h, scaled to the accounts asked for,
written to a file first and read line by line) through the same core calls and structures the worker's account stage uses: `AccountStage`
with an `AccountPartition` per partition (watermark, due index, model, templates, convictions),
the account table's dict (what Faust's memory store keeps in `Store.data`), and the cluster
stage over its own dict (`ClusterStage`, `ClusterPartition`): `models.pipeline.Pipeline`,
which routes between the stages as the topics do. Then one event per partition far enough
ahead closes every account's window: every account is idle (its state stays until
`idle_expiry_s`).

It measures, in one process per mode, after the run:

- tracemalloc: everything still allocated, and what each part of it is (the account states
  and the table dict, the clusters, the partitions' per-account index and context), by taking
  them away one at a time;
- a sample of idle account states broken down by field (deep size);
- RSS of the process.

Modes (`--mode`): `objects`, the states as Python objects (the worker before issue 17);
`encoded`, the worker's `IdleStates` (streams/worker/idle_states.py) over both tables, turning
the account and cluster states unused for a flush interval into their changelog bytes at every
simulated flush (`--flush-every` events; the worker waits IDLE_AFTER_S of wall clock), and
decoding one at its next use; `disk`, the same with the idle states' bytes on disk
(streams/worker/cold_states.py, the setting idle_states_on_disk), which also prints what the
RocksDB databases held of the RSS (closed at the end). In the encoded and disk modes the clock
moves on 5 s of event time at a time after the last event, a flush after each step, until
every window has closed: a worker's clock closes them a slice at a time, never all at once;
and, as the worker does, a step that closes more than `SLICE` windows (or settles as many
clusters) flushes after each `SLICE` of them (models/due.py). Here every state unused for a
flush goes encoded (`idle_after_s` 0); the worker keeps one for `idle_state_after_s` (10 s),
except those such a step settled (IdleStates.settled), which go at the next flush as here.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import distillguard.streams  # noqa: F401  (first: it chooses the core's build)
from distillguard.models.config import DetectorConfig
from distillguard.models.partitioning import partition_for
from distillguard.models.pipeline import Pipeline
from distillguard.streams.edge.codec import (
    decode_account_state,
    decode_cluster_state,
    decode_request_line,
    encode_account_state,
    encode_cluster_state,
)

ACCOUNTS_PER_SCALE = 5_950  # distinct accounts of the default scenario per unit of scale (0.1 h)


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def deep_size(obj: Any, seen: set[int]) -> int:
    """Bytes of `obj` and everything it references that was not counted yet (sys.getsizeof)."""
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, list | tuple | set | frozenset):
        size += sum(deep_size(v, seen) for v in obj)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        size += sum(deep_size(getattr(obj, f.name), seen) for f in dataclasses.fields(obj))
    return size


def state_breakdown(states: list[Any]) -> dict[str, float]:
    """Mean deep size per idle account state, by field (shared objects counted once, at the
    first field that reaches them, as the first state that does)."""
    totals: dict[str, int] = {}
    seen: set[int] = set()
    for st in states:
        totals["(the AccountState object)"] = (totals.get("(the AccountState object)", 0)
                                               + sys.getsizeof(st))
        seen.add(id(st))
        for f in dataclasses.fields(st):
            totals[f.name] = totals.get(f.name, 0) + deep_size(getattr(st, f.name), seen)
    return {k: v / len(states) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}


def traced() -> int:
    import tracemalloc
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def close_windows(pipeline: Pipeline, last_ts: float, step_s: float | None = None,
                  flush: Any = None) -> None:
    """Events far enough ahead that every window has closed (accounts stay: `idle_expiry_s`
    is longer): one per partition at once, or, with `step_s`, one per partition every
    `step_s` of event time up to there, `flush` called after each step, as a worker's clock
    moves on and closes the windows a slice at a time."""
    cfg = pipeline.cfg
    end = last_ts + cfg.window_s + cfg.allowed_lateness_s + 60
    ts = end if step_s is None else last_ts + step_s
    n = 0
    while True:
        n = clock_events(pipeline, min(ts, end), n)
        if flush is not None:
            flush()
        if ts >= end:
            return
        ts += step_s or 0.0


def clock_events(pipeline: Pipeline, ts: float, n: int) -> int:
    """One event at `ts` in every partition (accounts of their own); the next number."""
    from tests.conftest import make_event
    done: set[int] = set()
    while len(done) < pipeline.partitions:
        acct = f"idle-clock-{n}"
        p = partition_for(acct, pipeline.partitions)
        if p not in done:
            done.add(p)
            pipeline.process(make_event(acct, ts, n=n))
        n += 1
    return n


def child(events_file: str, mode: str, trace: bool, flush_every: int) -> dict[str, Any]:
    """In a fresh process: the file's events through the core, then what stays in memory. The
    events are read line by line: the simulator (which builds every account first) never
    runs in this process, so its RSS is the core's and the tables'."""
    import tracemalloc

    from distillguard.streams.worker.idle_states import IdleStates, IdleTable

    gc.collect()
    rss0 = rss_mb()
    if trace:
        tracemalloc.start()
    pipeline = Pipeline(DetectorConfig())
    # a generation per simulated flush: a state unused for a flush interval goes encoded
    # (and, in the disk mode, to the disk: streams/worker/cold_states.py)
    cold: dict[str, Any] = {}
    if mode == "disk":
        from distillguard.streams.worker.cold_states import ColdStates
        root = Path(events_file).parent / "idle-states"

        def partition_of(key: str) -> int:  # the Pipeline's, for both stages
            return partition_for(key, pipeline.partitions)
        cold = {"accounts": ColdStates(root / "accounts", partition_of),
                "clusters": ColdStates(root / "clusters", partition_of)}
    idle = IdleStates(pipeline.accounts, encode_account_state, decode_account_state,
                      idle_after_s=0, cold=cold.get("accounts"))
    cluster_idle = IdleStates(pipeline.clusters, encode_cluster_state, decode_cluster_state,
                              idle_after_s=0, cold=cold.get("clusters"))
    held = mode in ("encoded", "disk")
    if held:
        pipeline.accounts = IdleTable(idle)  # type: ignore[assignment]
        pipeline.clusters = IdleTable(cluster_idle)  # type: ignore[assignment]

    def flush() -> None:
        idle.after_flush()
        cluster_idle.after_flush()
    if held:  # as the worker flushes within a step every SLICE due keys (models/due.py)
        pipeline.between_slices = flush
    n_events = 0
    last_ts = 0.0
    started = time.perf_counter()
    with open(events_file, "rb", buffering=1 << 20) as lines:
        for line in lines:
            ev = decode_request_line(line)
            pipeline.process(ev)
            n_events += 1
            last_ts = max(last_ts, ev.ts)
            if held and n_events % flush_every == 0:
                flush()
    elapsed = time.perf_counter() - started
    rss_read = rss_mb()
    if held:
        # the clock moves on a step at a time, a flush after each (one at once would bring
        # every state back at the same moment, which no worker sees)
        close_windows(pipeline, last_ts, step_s=5.0, flush=flush)
    else:
        close_windows(pipeline, last_ts)
    if held:  # two flushes after the last event: every state untouched since
        flush()
        flush()
        pipeline.accounts = idle.data  # type: ignore[assignment]
        pipeline.clusters = cluster_idle.data  # type: ignore[assignment]
    gc.collect()
    from distillguard.models import pipeline as pipeline_module
    on_disk = {name: len(c) for name, c in cold.items()}
    n_accounts = len(pipeline.accounts) + on_disk.get("accounts", 0)
    out: dict[str, Any] = {"accounts": n_accounts, "events": n_events,
                           "core": ("compiled" if str(pipeline_module.__file__).endswith(".so")
                                    else "interpreted"),
                           "mode": mode, "rate": n_events / elapsed, "rss_mb": rss_mb(),
                           "rss_read_mb": rss_read, "rss_peak_mb": peak_rss_mb(),
                           "rss_delta_mb": rss_mb() - rss0,
                           "clusters": len(pipeline.clusters) + on_disk.get("clusters", 0),
                           "accounts_on_disk": on_disk.get("accounts", 0),
                           "clusters_on_disk": on_disk.get("clusters", 0)}
    values = list(pipeline.accounts.values())
    encoded = [v if isinstance(v, bytes) else encode_account_state(v) for v in values]
    account_bytes = sum(map(len, encoded))
    cluster_bytes = sum(len(c if isinstance(c, bytes) else encode_cluster_state(c))
                        for c in pipeline.clusters.values())
    if cold:
        account_bytes += sum(len(v) for _, v in cold["accounts"].items())
        cluster_bytes += sum(len(v) for _, v in cold["clusters"].items())
        out["disk_mb"] = sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 2**20
    out["encoded_per_account"] = account_bytes / n_accounts
    out["cluster_encoded_mb"] = cluster_bytes / 2**20
    out["open_windows"] = sum(1 for v in values if not isinstance(v, bytes)
                              and v.window is not None)
    out["encoded_states"] = sum(1 for v in values if isinstance(v, bytes))
    out["encoded_clusters"] = sum(1 for v in pipeline.clusters.values() if isinstance(v, bytes))
    if mode == "objects":
        sample = values[:: max(1, len(values) // 2000)]
        out["state_fields"] = state_breakdown(sample)
        del sample  # (it holds states: the table measure below frees them)
    del values, encoded
    if trace:
        n = n_accounts
        out["traced_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        total = traced()
        parts: dict[str, float] = {}
        account_parts = pipeline.account_parts
        due = sum(len(p.due) for p in account_parts)
        for p in account_parts:
            p.due.keys_at.clear()
            p.due.times.clear()
        parts["due index (per partition)"] = total - traced()
        out["due_entries_per_account"] = due / n
        # each part: what the traced memory falls by when it is emptied, in this order
        for part, holder in (("account table: states + dict", pipeline.accounts),
                             ("cluster table: states + dict", pipeline.clusters),
                             ("cluster partitions: expiry and pending indexes",
                              pipeline.cluster_parts),
                             ("account partitions: models, templates, convictions",
                              pipeline.account_parts)):
            before = traced()
            holder.clear()
            parts[part] = before - traced()
        parts["rest (interpreter, modules)"] = traced()
        tracemalloc.stop()
        out["traced_total_per_account"] = total / n
        out["traced_parts_per_account"] = {k: v / n for k, v in parts.items()}
    if cold and not trace:
        # What the RocksDB databases hold of the RSS: closed, and glibc asked to give back
        # what is free.
        import ctypes
        before = rss_mb()
        for c in cold.values():
            c.close()
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        out["rss_rocksdb_mb"] = before - rss_mb()
    return out


def write_events(accounts: int, out_dir: Path) -> Path:
    """The default scenario over 0.1 h, scaled to `accounts`, written by a process of its own
    (the simulator holds every account while it writes)."""
    code = ("import dataclasses, sys; import distillguard.streams; "
            "from distillguard.simulator import Scenario, write_files; "
            "write_files(dataclasses.replace(Scenario.default(), scale=float(sys.argv[1]), "
            "duration_h=0.1, seed=7), sys.argv[2])")
    subprocess.run([sys.executable, "-c", code, str(accounts / ACCOUNTS_PER_SCALE),
                    str(out_dir)], cwd=REPO_ROOT, check=True)
    return out_dir / "events.jsonl"


def run_child(events_file: Path, mode: str, trace: bool, flush_every: int) -> dict[str, Any]:
    # The Pipeline reads its account dict with the compiled core's own dict operations, which
    # no mapping can stand in for: the encoded mode runs the core's sources (the same decisions,
    # tests/scenario/test_compiled_core.py; only the objects mode measures the compiled layout).
    env = dict(os.environ, **({"DISTILLGUARD_CORE": "interpreted"} if mode != "objects" else {}))
    cmd = [sys.executable, __file__, "--child", str(events_file), "--mode", mode,
           "--flush-every", str(flush_every)] + ([] if trace else ["--no-trace"])
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, check=False,
                         env=env)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def report(r: dict[str, Any]) -> None:
    n = r["accounts"]
    print(f"\n== {r['mode']} ({r['core']} core): {n:,} idle accounts ({r['events']:,} events, "
          f"{r['rate']:,.0f} events/s through the core; {r['open_windows']} windows still open, "
          f"{r['encoded_states']:,} states held encoded), {r['clusters']:,} clusters "
          f"({r['encoded_clusters']:,} held encoded)")
    print(f"   RSS {r['rss_mb']:,.0f} MB ({r['rss_delta_mb']:,.0f} MB over the process at start: "
          f"{r['rss_delta_mb'] * 2**20 / n:,.0f} B per account, clusters included); "
          f"{r['rss_read_mb']:,.0f} MB when the last event was read, peak {r['rss_peak_mb']:,.0f} MB")
    if "rss_rocksdb_mb" in r:
        print(f"   of the RSS, {r['rss_rocksdb_mb']:,.0f} MB went when the databases closed "
              f"(and malloc_trim)")
    if "disk_mb" in r:
        print(f"   on disk: {r['accounts_on_disk']:,} account states, {r['clusters_on_disk']:,} "
              f"cluster states, {r['disk_mb']:,.0f} MB of files (RocksDB's own memory is in the "
              f"RSS, not in tracemalloc's figures)")
    print(f"   encoded account state (changelog bytes): {r['encoded_per_account']:,.0f} B; "
          f"clusters encoded {r['cluster_encoded_mb']:,.1f} MB")
    if "traced_peak_mb" in r:
        print(f"   tracemalloc's peak: {r['traced_peak_mb']:,.0f} MB alive at once during the run")
    if "traced_total_per_account" in r:
        print(f"   tracemalloc, everything held after the run: "
              f"{r['traced_total_per_account']:,.0f} B per account, of which:")
        for k, v in r["traced_parts_per_account"].items():
            print(f"     {v:>8,.0f} B  {k}")
        print(f"   ({r['due_entries_per_account']:.2f} due-index entries per account)")
    if "state_fields" in r:
        print("   one idle AccountState as Python objects, by field (mean deep size):")
        for k, v in r["state_fields"].items():
            if v >= 1:
                print(f"     {v:>8,.0f} B  {k}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--accounts", type=int, default=100_000)
    p.add_argument("--mode", choices=["objects", "encoded", "disk", "both", "all"],
                   default="both", help="both: objects and encoded; all: and disk")
    p.add_argument("--no-trace", action="store_true", help="RSS only (tracemalloc is slow)")
    p.add_argument("--flush-every", type=int, default=5_000,
                   help="events between two simulated flushes (the worker: one per commit)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.mode, not args.no_trace, args.flush_every)))
        return 0
    print("command: " + " ".join(["python", "bench/idle_memory.py"] + (argv or sys.argv[1:])))
    print(f"(Python {sys.version.split()[0]}, load {os.getloadavg()[0]:.1f}, "
          f"core build {os.environ.get('DISTILLGUARD_CORE', 'default')})")
    modes = {"both": ["objects", "encoded"], "all": ["objects", "encoded", "disk"]}.get(
        args.mode, [args.mode])
    with tempfile.TemporaryDirectory(prefix="dg-idle-") as tmp:
        started = time.monotonic()
        events_file = write_events(args.accounts, Path(tmp))
        print(f"events written in {time.monotonic() - started:.0f} s "
              f"({events_file.stat().st_size / 2**20:,.0f} MB)", flush=True)
        for mode in modes:
            report(run_child(events_file, mode, not args.no_trace, args.flush_every))
    return 0


if __name__ == "__main__":
    sys.exit(main())
