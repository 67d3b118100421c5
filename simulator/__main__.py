"""`python -m distillguard.simulator`: per-group account and event counts, and generation speed.

    python -m distillguard.simulator                      # Scenario.default(), seed 7
    python -m distillguard.simulator --small --seed 3     # the test scenario
    python -m distillguard.simulator --multiplier 10 --jitter 0.5 --rotate-ip
    python -m distillguard.simulator --out /tmp/sim       # also write events.jsonl and labels.jsonl
    python -m distillguard.simulator --family launch --seed 3 [--scale 0.5]   # one scenario of a family
    python -m distillguard.simulator --list-families

The project's CLI (`distillguard simulate`) is the supported way to write files; this entry point
is for looking at a scenario quickly.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

from .families import FAMILIES, describe, family_scenario
from .generate import group_counts, merge_sources, write_files
from .roster import build_accounts, scenario_groups
from .scenario import Scenario, scenario_for


def _scenario(args: argparse.Namespace) -> Scenario:
    if args.family is not None:
        return family_scenario(args.family, args.seed, 1.0 if args.scale is None else args.scale)
    return scenario_for(seed=args.seed, small=args.small, scale=args.scale,
                        duration_h=args.duration_h, account_multiplier=args.multiplier,
                        jitter=args.jitter, rotate_ip=args.rotate_ip)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m distillguard.simulator", description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--small", action="store_true", help="start from Scenario.small()")
    p.add_argument("--scale", type=float)
    p.add_argument("--duration-h", type=float)
    p.add_argument("--multiplier", type=float, help="campaign_account_multiplier")
    p.add_argument("--jitter", type=float, help="timing_jitter")
    p.add_argument("--rotate-ip", action="store_true", help="rotate_ip_per_request")
    p.add_argument("--out", type=Path, help="write events.jsonl and labels.jsonl here")
    p.add_argument("--family", choices=list(FAMILIES),
                   help="a scenario family's scenario for --seed (with --scale: its scale)")
    p.add_argument("--list-families", action="store_true", help="list the scenario families")
    args = p.parse_args(argv)
    if args.list_families:
        for family in FAMILIES.values():
            print(describe(family))
        return
    if args.family is not None:
        given = [f"--{n.replace('_', '-')}" for n in ("small", "duration_h", "multiplier",
                                                        "jitter", "rotate_ip")
                 if getattr(args, n) not in (None, False)]
        if given:
            p.error(f"--family draws its own scenario; {', '.join(given)} cannot be combined "
                    "with it (--scale can)")
    sc = _scenario(args)

    started = time.perf_counter()
    if args.out is not None:
        counts = write_files(sc, args.out)
        what = f"written to {args.out}"
    else:
        accounts = build_accounts(sc)  # what generate_events does first
        owned = Counter(a.group for a in accounts if not a.borrowed)
        events: Counter[str] = Counter()
        for a, _ in merge_sources(accounts, sc.seed):
            events[a.group] += 1
        counts = group_counts(owned, events, scenario_groups(sc))
        what = "generated (generate_events, including account set-up)"
    elapsed = time.perf_counter() - started

    total_a = sum(c["accounts"] for c in counts.values())
    total_e = sum(c["events"] for c in counts.values())
    if args.family is not None:
        print(f"family={args.family} family seed={args.seed}")
    print(f"seed={sc.seed} duration_h={sc.duration_h} scale={sc.scale} "
          f"multiplier={sc.campaign_account_multiplier} jitter={sc.timing_jitter} "
          f"rotate_ip={sc.rotate_ip_per_request}")
    print(f"| {'group':<17} | {'label':<6} | {'accounts':>8} | {'events':>8} |")
    print(f"|{'-' * 19}|{'-' * 8}|{'-' * 10}|{'-' * 10}|")
    for group, c in counts.items():
        print(f"| {group:<17} | {c['label']:<6} | {c['accounts']:>8,} | {c['events']:>8,} |")
    print(f"| {'total':<17} | {'':<6} | {total_a:>8,} | {total_e:>8,} |")
    print(f"{total_e:,} events {what} in {elapsed:.2f} s: {total_e / elapsed:,.0f} events/s")


if __name__ == "__main__":
    main()
