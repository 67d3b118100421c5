"""Hostile input against a clean replay: do a few bad records change what others are decided?

    .venv/bin/python bench/hostile_replay.py                  # the default simulation, seed 7
    .venv/bin/python bench/hostile_replay.py --scale 0.25     # a quarter of it, ~1 minute

Replays the ordinary traffic of a simulation twice, through the same core: clean, and with
(1) one request stamped in milliseconds, (2) one with a completion token count of 1e300, placed
early in the run where a jump of the watermark spoils the most, and (3) one account flooding
`--flood` requests over the run, each with a new system prompt and a new user agent. Prints,
with the targets of issue 16:

- of the accounts either run acts on (the flooder aside), the share whose actions are the same
  in both (each account's sequence of actions): >= 99.5%;
- each campaign's share of requests served, clean and hostile: within one point;
- the hostile replay's speed against the clean one's: >= 0.5;
- the bad records refused, and what was decided for the flooder.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import distillguard.streams  # noqa: F401  (first: it chooses the core's build, models/_build.py)
from distillguard.models._build import current_build
from distillguard.models.config import DetectorConfig
from distillguard.simulator import Scenario, write_files
from distillguard.streams.offline.replay import load_labels, replay_file

FLOODER = "acct-hostile-flooder"


def hostile_copy(clean: Path, out: Path, flood: int, seed: int) -> int:
    """The clean events with the bad records and the flood merged in; returns how many lines
    were added."""
    rng = random.Random(seed)
    lines = clean.read_bytes().splitlines()
    events = [orjson.loads(x) for x in lines]
    first, last = events[0]["ts"], events[-1]["ts"]
    template = events[len(events) // 20]
    bad = [{**template, "event_id": "hostile-ms", "ts": template["ts"] * 1000},
           {**template, "event_id": "hostile-huge", "completion_tokens": 1e300}]
    flood_events = []
    for i in range(flood):
        ts = first + (last - first) * i / max(1, flood)
        flood_events.append({
            **template, "event_id": f"hostile-flood-{i}", "ts": ts, "account_id": FLOODER,
            "org_id": None, "payment_fingerprint": None, "ip": "192.0.2.77", "asn": 64_496,
            "system_prompt_hash": f"{rng.getrandbits(64):016x}",
            "user_agent": f"flood/{rng.getrandbits(48):012x}",
            "prompt_simhash": f"{rng.getrandbits(64):016x}"})
    at = len(events) // 20
    merged = events[:at] + bad + events[at:]
    merged = sorted(merged + flood_events, key=lambda e: e["ts"] if e["ts"] <= last else first)
    out.write_bytes(b"\n".join(orjson.dumps(e) for e in merged) + b"\n")
    return len(bad) + len(flood_events)


def actions(path: Path) -> dict[str, list[str]]:
    by_account: dict[str, list[str]] = defaultdict(list)
    for line in path.read_bytes().splitlines():
        d = orjson.loads(line)
        by_account[d["account_id"]].append(d["action"])
    return by_account


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--flood", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=2, help="replays of each, best taken")
    args = parser.parse_args()
    scenario = dataclasses.replace(Scenario.default(), seed=args.seed, scale=args.scale)
    cfg = DetectorConfig()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        write_files(scenario, d)
        labels = load_labels(d / "labels.jsonl")
        added = hostile_copy(d / "events.jsonl", d / "hostile.jsonl", args.flood, args.seed)
        clean_s = hostile_s = float("inf")
        for _ in range(args.repeat):  # alternated, best of each: warm-up and other work
            t = time.perf_counter()
            clean = replay_file(d / "events.jsonl", d / "clean-dec.jsonl", cfg, labels=labels)
            clean_s = min(clean_s, time.perf_counter() - t)
            t = time.perf_counter()
            hostile = replay_file(d / "hostile.jsonl", d / "hostile-dec.jsonl", cfg,
                                  labels=labels)
            hostile_s = min(hostile_s, time.perf_counter() - t)
        a, b = actions(d / "clean-dec.jsonl"), actions(d / "hostile-dec.jsonl")
        flooder = b.pop(FLOODER, [])
        either = set(a) | set(b)
        same = sum(1 for acct in either if a.get(acct) == b.get(acct))
        assert clean.report is not None and hostile.report is not None
        campaigns = [r.group for r in clean.report.rows
                     if r.label == "attack" and not r.group.startswith("all")]

    print(f"hostile replay: seed {args.seed}, scale {args.scale}, core {current_build()}; "
          f"{clean.events:,} events clean, {added:,} lines added ({args.flood:,} from one "
          f"flooding account, a new system prompt and user agent on each)")
    print(f"  bad records refused: {hostile.bad_lines} (expected 2: ts in milliseconds, "
          f"completion_tokens 1e300); the flooder's decisions: {flooder or 'none'}")
    share = same / len(either) if either else 1.0
    print(f"  accounts acted on in either run with the same actions: {same:,} of "
          f"{len(either):,} = {share:.2%}  (target >= 99.5%) "
          f"{'ok' if share >= 0.995 else 'MISSED'}")
    for group in campaigns:
        c, h = clean.report.row(group).served_share, hostile.report.row(group).served_share
        drift = abs(h - c) * 100
        print(f"  {group:<20} served {c:6.1%} clean, {h:6.1%} hostile, {drift:4.1f} points "
              f"(target <= 1) {'ok' if drift <= 1.0 else 'MISSED'}")
    ratio = (hostile.events / hostile_s) / (clean.events / clean_s)
    print(f"  speed: {clean.events / clean_s:,.0f} events/s clean, "
          f"{hostile.events / hostile_s:,.0f} hostile = {ratio:.2f}x  (target >= 0.5) "
          f"{'ok' if ratio >= 0.5 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
