"""`distillguard`: the one console script.

    distillguard demo                     the main job: broker + fleet + traffic + live view
    distillguard worker                   one Faust worker of the fleet
    distillguard simulate --out DIR       labelled traffic to files (or --topic: to Kafka)
    distillguard replay --input F --output F [--labels F]   the core offline, with evaluation
    distillguard broker start|stop|status|reset|logs        the local Kafka broker
    distillguard topics create            the topics of deploy/topics.toml
    distillguard watch                    live view of the enforcement topic

Settings come from the environment and `--settings FILE` (see streams/settings.py). Errors a
user can fix print one line and exit 2; nothing prints a traceback for them.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from pathlib import Path

from streams.settings import Settings, SettingsError, load_settings

REPO_ROOT = Path(__file__).resolve().parents[1]


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(file=getattr(args, "settings", None))


def cmd_worker(args: argparse.Namespace) -> int:
    from streams.worker import run_worker

    run_worker(_settings(args), loglevel=args.loglevel)
    return 0


def _scenario(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from simulator import Scenario

    base = Scenario.small() if args.small else Scenario.default()
    changes = {"seed": args.seed}
    if args.scale is not None:
        changes["scale"] = args.scale
    if args.hours is not None:
        changes["duration_h"] = args.hours
    if args.account_multiplier is not None:
        changes["campaign_account_multiplier"] = args.account_multiplier
    if args.jitter is not None:
        changes["timing_jitter"] = args.jitter
    if args.rotate_ip:
        changes["rotate_ip_per_request"] = True
    import dataclasses

    return dataclasses.replace(base, **changes)


def cmd_simulate(args: argparse.Namespace) -> int:
    import time

    from simulator import generate_events, write_files

    scenario = _scenario(args)
    if args.out:
        started = time.monotonic()
        counts = write_files(scenario, Path(args.out))
        elapsed = time.monotonic() - started
        total = sum(c.get("events", 0) for c in counts.values())
        print(f"wrote {total:,} events of {scenario.duration_h:g} simulated hours to "
              f"{args.out}/events.jsonl and labels.jsonl in {elapsed:.1f} s")
        for group, c in sorted(counts.items()):
            print(f"  {group:<18} {c.get('label', ''):<7} accounts {c.get('accounts', 0):>6,}"
                  f"  events {c.get('events', 0):>9,}")
        return 0
    from streams.produce import produce_events

    settings = _settings(args)
    topic = args.topic if args.topic != "-" else settings.topic_requests or \
        settings.topics["requests"].name
    asyncio.run(produce_events(settings.kafka_bootstrap, topic, generate_events(scenario),
                               rate=args.rate, client_kwargs=settings.aiokafka_kwargs()))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from models.evaluation import render
    from streams.replay import Progress, load_labels, replay_file

    settings = _settings(args)
    labels = load_labels(Path(args.labels)) if args.labels else None
    progress = Progress(Path(args.input).stat().st_size) if Path(args.input).is_file() else None
    result = replay_file(Path(args.input), Path(args.output) if args.output else None,
                         settings.detector, labels=labels, partitions=args.partitions,
                         progress=progress)
    print(f"replayed {result.events:,} events in {result.seconds:.1f} s "
          f"({result.rate:,.0f} events/s): {result.decisions:,} decisions "
          f"{dict(sorted(result.actions.items()))}, {result.bad_lines} bad lines; "
          f"model {settings.detector.model_version}")
    if result.interrupted:
        print("interrupted: the output holds the decisions up to that point")
    if result.report is not None:
        print(render(result.report))
    return 130 if result.interrupted else 0


def cmd_broker(args: argparse.Namespace) -> int:
    script = REPO_ROOT / "deploy" / "kafka-local.sh"
    return subprocess.run(["bash", str(script), args.action, *args.rest]).returncode


def cmd_topics(args: argparse.Namespace) -> int:
    from streams.topics import ensure_topics, wait_for_broker

    settings = _settings(args)
    kwargs = settings.aiokafka_kwargs()

    async def create() -> list[str]:
        await wait_for_broker(settings.kafka_bootstrap, timeout_s=30, client_kwargs=kwargs)
        return await ensure_topics(settings.kafka_bootstrap, settings.topics.values(),
                                   client_kwargs=kwargs)

    created = asyncio.run(create())
    for spec in settings.topics.values():
        mark = "created" if spec.name in created else "exists "
        print(f"{mark} {spec.name:<40} {spec.partitions:>3} partitions")
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from streams.watch import run_watch

    settings = _settings(args)
    run_watch(settings.kafka_bootstrap, settings.topics["enforcement"].name,
              args.from_beginning, client_kwargs=settings.aiokafka_kwargs())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from streams.demo import DemoOptions, run_demo

    opts = DemoOptions(workers=args.workers, seed=args.seed, scale=args.scale, hours=args.hours,
                       rate=args.rate, keep_broker=args.keep_broker,
                       keep_topics=args.keep_topics, timeout_s=args.timeout)
    return run_demo(_settings(args), opts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distillguard", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def with_settings(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--settings", help="TOML settings file (else $DISTILLGUARD_SETTINGS_FILE)")
        return p

    p = with_settings(sub.add_parser("worker", help="run one Faust worker of the fleet"))
    p.add_argument("--loglevel", default="WARNING", help="Faust's own log level")
    p.set_defaults(func=cmd_worker)

    p = with_settings(sub.add_parser("simulate", help="labelled simulated traffic"))
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", help="directory for events.jsonl and labels.jsonl")
    target.add_argument("--topic", nargs="?", const="-",
                        help="produce to Kafka (default: the requests topic)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--small", action="store_true", help="the small test scenario")
    p.add_argument("--scale", type=float, help="multiply every population's accounts")
    p.add_argument("--hours", type=float, help="simulated duration")
    p.add_argument("--account-multiplier", type=float,
                   help="spread campaigns over N times as many accounts")
    p.add_argument("--jitter", type=float, help="+-fraction jitter on campaign timing")
    p.add_argument("--rotate-ip", action="store_true", help="campaigns use a new IP per request")
    p.add_argument("--rate", type=float, default=0.0, help="events/s to Kafka (0: max)")
    p.set_defaults(func=cmd_simulate)

    p = with_settings(sub.add_parser("replay", help="run the core over an events file"))
    p.add_argument("--input", required=True, help="events JSONL file")
    p.add_argument("--output", help="decisions JSONL file to write")
    p.add_argument("--labels", help="labels JSONL file: print the evaluation")
    p.add_argument("--partitions", type=int, default=12,
                   help="partitions of the live requests topic (for partition-local state)")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("broker", help="the local Kafka broker (deploy/kafka-local.sh)")
    p.add_argument("action", choices=["fetch", "start", "stop", "status", "reset", "logs"])
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_broker)

    p = with_settings(sub.add_parser("topics", help="create the topics of deploy/topics.toml"))
    p.add_argument("action", choices=["create"])
    p.set_defaults(func=cmd_topics)

    p = with_settings(sub.add_parser("watch", help="live view of the enforcement topic"))
    p.add_argument("--from-beginning", action="store_true")
    p.set_defaults(func=cmd_watch)

    p = with_settings(sub.add_parser("demo", help="broker + fleet + traffic + live view"))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--scale", type=float, default=0.25)
    p.add_argument("--hours", type=float, default=3.0)
    p.add_argument("--rate", type=float, default=800.0,
                   help="events/s of wall-clock time (0: as fast as possible)")
    p.add_argument("--timeout", type=float, default=900.0, help="give up after this many s")
    p.add_argument("--keep-broker", action="store_true", help="leave the broker running")
    p.add_argument("--keep-topics", action="store_true", help="keep this run's topics")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    from streams.demo import DemoError
    from streams.replay import ReplayError
    from streams.topics import BrokerUnavailableError, TopicError
    from streams.worker import WorkerError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (SettingsError, ReplayError, DemoError, WorkerError, TopicError,
            BrokerUnavailableError, FileNotFoundError, ValueError) as exc:
        print(f"distillguard {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
