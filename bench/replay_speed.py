"""Replay speed: events per second of `distillguard replay` over a file, on one core.

    .venv/bin/python bench/replay_speed.py                 # 3 simulated hours, 46k events
    .venv/bin/python bench/replay_speed.py --full          # the default simulation, 395k events
    .venv/bin/python bench/replay_speed.py --input events.jsonl

The process is pinned to one core. Prints the end-to-end rate (read, decode, core, write the
decisions file) and where the time goes: reading and decoding alone, and the core alone over
already decoded events. The parts run with the garbage-collector thresholds the replay itself
uses (streams/edge/gc_tuning.py), so they add up to the end-to-end figure; with CPython's default
thresholds the core alone spends about a quarter of its time in full collections of its state.
The target is 50,000 events/s end to end.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import distillguard.streams  # noqa: F401  (first: it chooses the core's build, models/_build.py)
from distillguard.models._build import current_build
from distillguard.models.config import DetectorConfig
from distillguard.models.pipeline import Pipeline
from distillguard.simulator import Scenario, write_files
from distillguard.streams.edge.gc_tuning import fewer_collections
from distillguard.streams.offline.replay import replay_file
from distillguard.streams.offline.replay_source import FileSource

TARGET = 50_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", help="events JSONL file (default: simulate one)")
    parser.add_argument("--full", action="store_true", help="the default 6-hour simulation")
    parser.add_argument("--repeat", type=int, default=2, help="runs; the best is reported")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    with tempfile.TemporaryDirectory() as tmp:
        if args.input:
            path = Path(args.input)
        else:
            scenario = Scenario.default() if args.full else \
                dataclasses.replace(Scenario.default(), scale=0.25, duration_h=3.0)
            write_files(scenario, Path(tmp))
            path = Path(tmp) / "events.jsonl"
        cfg = DetectorConfig()

        best_decode = 0.0
        events = []
        for _ in range(args.repeat):
            with fewer_collections():
                started = time.perf_counter()
                events = [ev for ev, _ in FileSource(path).events(lambda _: None)]
                best_decode = max(best_decode, len(events) / (time.perf_counter() - started))

        best_core = 0.0
        for _ in range(args.repeat):
            pipeline = Pipeline(cfg)
            process = pipeline.process
            with fewer_collections():
                started = time.perf_counter()
                for ev in events:
                    process(ev)
                best_core = max(best_core, len(events) / (time.perf_counter() - started))

        best = 0.0
        decisions = 0
        for _ in range(args.repeat):
            result = replay_file(path, Path(tmp) / "decisions.jsonl", cfg)
            best = max(best, result.rate)
            decisions = result.decisions
    print(f"replay of {len(events):,} events ({decisions:,} decisions), one core, best of "
          f"{args.repeat}:")
    print(f"  end to end (read, decode, core, write): {best:>9,.0f} events/s")
    print(f"  read + decode alone:                    {best_decode:>9,.0f} events/s")
    print(f"  core alone (models.pipeline):           {best_core:>9,.0f} events/s")
    print("  (each part with the replay's GC thresholds, streams/edge/gc_tuning.py)")
    verdict = "meets" if best >= TARGET else "misses"
    print(f"target {TARGET:,} events/s end to end: {verdict} it "
          f"(Python {sys.version.split()[0]}, model {cfg.model_version}, "
          f"core {current_build()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
