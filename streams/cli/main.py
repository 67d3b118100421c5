"""`distillguard`: the one console script.

    distillguard demo                     the main job: broker + fleet + traffic + live view
    distillguard worker                   one Faust worker of the fleet
    distillguard simulate --out DIR       labelled traffic to files (or --topic: to Kafka);
                                          --family NAME --seed N: a scenario family's run
    distillguard replay --input F | --topic [T] [--since A --until B] [--output F] [--labels F]
                                          the core over a file or a topic range, for tuning
    distillguard sweep --input F --labels F --grid NAME=V1,V2   replay per setting, scored
    distillguard diff RUN_A.jsonl RUN_B.jsonl                   accounts whose action changed
    distillguard evaluate [--out DIR]     the detection-quality report: a tuning set and a
                                          held-out set of scenarios, targets checked
    distillguard allow --org ID | --account ID --reason TEXT     the allow-list (control topic)
    distillguard override block|throttle|allow|lift --account ID | --org ID --for 2h --reason R
                                          an operator's own decision, or lifting an action
    distillguard overrides                the operators' decisions and allowances in force
    distillguard review                   the accounts under action now, newest first
    distillguard explain ACCOUNT          why an account is acted on: in force, history, holds
    distillguard broker start|stop|status|reset|logs        the local Kafka broker
    distillguard topics create            the topics of deploy/topics.toml
    distillguard copy-topic --from OLD --to NEW   a topic's records into another one, keys
                                          kept (re-partitioning: docs/operations.md)
    distillguard watch                    live view of the enforcement topic
    distillguard status [--port P] [--worker URL ...]       the status page (a browser's)
    distillguard gate [--port P] [--fail-mode open|closed]  the decision service a gateway
                                          asks per request (nginx auth_request, Envoy ext_authz)

Settings come from the environment and `--settings FILE` (see streams/edge/settings.py). Errors a
user can fix print one line and exit 2; nothing prints a traceback for them.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import subprocess
import sys
from pathlib import Path
from typing import Any

from distillguard.models._build import COMPILED_MODULES, current_build
from distillguard.models.config import CORE_VERSION, DetectorConfig
from distillguard.streams.cli.ctrl_c import ctrl_c_held
from distillguard.streams.edge.settings import Settings, SettingsError, load_settings
from distillguard.streams.offline.scenario_sets import HELD_OUT_SEEDS, TUNING_SEEDS

REPO_ROOT = Path(__file__).resolve().parents[2]


def _seeds(seeds: tuple[int, ...]) -> str:
    return ", ".join(str(s) for s in seeds)


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(file=getattr(args, "settings", None))


def _detector(settings: Settings, args: argparse.Namespace) -> DetectorConfig:
    """The detector settings of a replay-like command: the live ones, or the override file's."""
    from distillguard.streams.offline.replay import load_override

    if args.override:
        return load_override(Path(args.override), settings.detector)
    return settings.detector


def cmd_worker(args: argparse.Namespace) -> int:
    from distillguard.streams.worker.process import run_worker

    run_worker(_settings(args), loglevel=args.loglevel)
    return 0


# Options that redefine the scenario a family draws (--scale, the family's scale, does not).
_NOT_WITH_FAMILY = ("small", "hours", "account_multiplier", "jitter", "rotate_ip")


def _scenario(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from distillguard.simulator.scenario import scenario_for

    if args.family is not None:
        from distillguard.simulator.families import family_scenario

        given = [f"--{o.replace('_', '-')}" for o in _NOT_WITH_FAMILY
                 if getattr(args, o) not in (None, False)]
        if given:
            raise ValueError(f"--family {args.family} draws its own scenario from the seed; "
                             f"{', '.join(given)} cannot be combined with it (--scale can)")
        return family_scenario(args.family, args.seed,
                               1.0 if args.scale is None else args.scale)
    return scenario_for(seed=args.seed, small=args.small, scale=args.scale,
                        duration_h=args.hours, account_multiplier=args.account_multiplier,
                        jitter=args.jitter, rotate_ip=args.rotate_ip)


def _list_families() -> int:
    from distillguard.simulator.families import FAMILIES, describe

    for family in FAMILIES.values():
        print(describe(family))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    import time

    from distillguard.simulator import generate_events, write_files

    if args.list_families:
        return _list_families()
    if not args.out and not args.topic:
        raise ValueError("one of --out DIR or --topic [T] is required (or --list-families)")
    scenario = _scenario(args)
    if args.out:
        started = time.monotonic()
        counts = write_files(scenario, Path(args.out))
        elapsed = time.monotonic() - started
        total = sum(c.get("events", 0) for c in counts.values())
        family = f" (family {args.family}, seed {args.seed})" if args.family else ""
        print(f"wrote {total:,} events of {scenario.duration_h:g} simulated hours{family} to "
              f"{args.out}/events.jsonl and labels.jsonl in {elapsed:.1f} s")
        for group, c in sorted(counts.items()):
            print(f"  {group:<18} {c.get('label', ''):<7} accounts {c.get('accounts', 0):>6,}"
                  f"  events {c.get('events', 0):>9,}")
        return 0
    from distillguard.streams.cli.produce import produce_events

    settings = _settings(args)
    topic = args.topic if args.topic != "-" else settings.topic_requests or \
        settings.topics["requests"].name
    asyncio.run(produce_events(settings.kafka_bootstrap, topic, generate_events(scenario),
                               rate=args.rate, client_kwargs=settings.aiokafka_kwargs()))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from distillguard.models.evaluation import render
    from distillguard.streams.offline.replay import (
        DecisionSink,
        FileSink,
        Progress,
        TopicSink,
        check_labels_match,
        dead_letter_path,
        labels_from_topic,
        load_labels,
        replay,
        replay_allow_list,
        shadow_config,
    )
    from distillguard.streams.offline.replay_source import (
        FileSource,
        KafkaBridge,
        ReplayError,
        TopicSource,
    )

    settings = _settings(args)
    cfg = _detector(settings, args)
    enforcement = settings.topics["enforcement"]
    ranged = [o for o in ("since", "until", "from_offset", "to_offset") if getattr(args, o)]
    if args.input and ranged:
        raise ReplayError(f"--{ranged[0].replace('_', '-')} selects part of a topic; "
                          "a file is replayed whole")
    if args.to_enforcement_topic and not args.i_mean_it:
        raise ReplayError(
            f"--to-enforcement-topic writes replayed decisions to the live enforcement topic "
            f"{enforcement.name}, where the gateway enforces them; add --i-mean-it if that is "
            "what you want (--shadow-topic publishes them marked shadow instead)")
    if args.shadow_topic and args.shadow_topic == enforcement.name:
        raise ReplayError(f"--shadow-topic {args.shadow_topic} is the live enforcement topic; "
                          "name another topic (or --to-enforcement-topic --i-mean-it)")
    if args.shadow_topic and args.to_enforcement_topic:
        raise ReplayError("choose one of --shadow-topic and --to-enforcement-topic")
    if args.shadow_topic:
        cfg = shadow_config(cfg)
    needs_kafka = bool(args.topic or args.labels_topic or args.shadow_topic
                       or args.to_enforcement_topic)
    bridge = KafkaBridge(settings.kafka_bootstrap, settings.aiokafka_kwargs()) \
        if needs_kafka else None
    try:
        if args.input:
            source: Any = FileSource(Path(args.input), settings.max_record_bytes,
                                    settings.max_event_ahead_s)
            partitions = args.partitions or settings.partitions
        else:
            assert bridge is not None
            topic = settings.topics["requests"].name if args.topic == "-" else args.topic
            source = TopicSource(bridge, topic, _topic_spec(args), settings.max_record_bytes,
                                 settings.max_event_ahead_s)
            partitions = source.partition_count
            if args.partitions and args.partitions != partitions:
                raise ReplayError(f"--partitions {args.partitions}: topic {topic} has "
                                  f"{partitions} partitions, and replay must use the same")
            print(f"reading {source.name} (offsets {source.range.offsets()})",
                  file=sys.stderr)
            for note in source.range.notes:
                print(f"note: {note}", file=sys.stderr)
        labels = None
        if args.labels:
            labels = load_labels(Path(args.labels))
        elif args.labels_topic:
            assert bridge is not None
            labels = labels_from_topic(bridge, args.labels_topic)
        sinks: list[DecisionSink] = []
        output = Path(args.output) if args.output else None
        if output is not None:
            sinks.append(FileSink(output))
        target = args.shadow_topic or (enforcement.name if args.to_enforcement_topic else None)
        if target:
            assert bridge is not None
            _check_output_topic(bridge, settings, target, create=args.create_shadow_topic)
            sinks.append(TopicSink(bridge, target))
        if labels is not None and args.input:
            check_labels_match(Path(args.input), labels)  # before a long run, not after it
        if not sinks and labels is None:
            print("note: decisions are not written anywhere (--output FILE or --shadow-topic "
                  "TOPIC to keep them)", file=sys.stderr)
        progress = None if args.quiet else Progress(source.total)
        result = replay(source, cfg, sinks=sinks, labels=labels, partitions=partitions,
                        progress=progress, dead_letter=dead_letter_path(output),
                        baselines=args.baselines,
                        allow=replay_allow_list(settings, args.allow_from_control_topic))
    finally:
        if bridge is not None:
            bridge.close()
    bad_unit = "bad lines" if args.input else "bad records"
    print(f"replayed {result.events:,} events in {result.seconds:.1f} s "
          f"({result.rate:,.0f} events/s): {result.decisions:,} decisions "
          f"{dict(sorted(result.actions.items()))}, {result.bad_lines} {bad_unit}; "
          f"model {cfg.model_version}, mode {'shadow' if cfg.shadow else 'enforce'}, "
          f"core {current_build()}")
    if target:
        print(f"published {result.decisions:,} decisions to {target}")
    if result.interrupted:
        print("interrupted: the output holds the decisions up to that point")
    if result.report is not None:
        print(render(result.report))
    for name, report in result.baselines.items():
        print(f"\nbaseline: {name}")
        print(render(report))
    return 130 if result.interrupted else 0


def _check_output_topic(bridge: Any, settings: Settings, name: str, create: bool) -> None:
    """The topic decisions are published to exists (or is created on request)."""
    from distillguard.streams.edge.topics import TopicSpec, ensure_topics
    from distillguard.streams.offline.replay_source import ReplayError, describe_partitions

    if bridge.run(describe_partitions(bridge, name))[0] is not None:
        return
    if not create:
        raise ReplayError(f"topic {name} does not exist; add --create-shadow-topic to create it "
                          "like the enforcement topic")
    spec = settings.topics["enforcement"]
    bridge.run(ensure_topics(settings.kafka_bootstrap,
                             [TopicSpec("shadow", name, spec.partitions, spec.config)],
                             client_kwargs=settings.aiokafka_kwargs()))
    print(f"created topic {name} ({spec.partitions} partitions)", file=sys.stderr)


def _topic_spec(args: argparse.Namespace) -> Any:
    from distillguard.streams.offline.replay_source import RangeSpec, parse_offsets, parse_time

    return RangeSpec(
        since=parse_time(args.since) if args.since else None,
        until=parse_time(args.until) if args.until else None,
        from_offset=parse_offsets(args.from_offset) if args.from_offset else None,
        to_offset=parse_offsets(args.to_offset) if args.to_offset else None)


def cmd_sweep(args: argparse.Namespace) -> int:
    from distillguard.streams.offline.replay import labels_from_topic, load_labels
    from distillguard.streams.offline.replay_source import KafkaBridge, ReplayError, TopicSource
    from distillguard.streams.offline.sweep import (
        parse_grid,
        render_table,
        run_sweep,
        write_outputs,
    )

    settings = _settings(args)
    base = _detector(settings, args)
    grid = parse_grid(args.grid)
    ranged = [o for o in ("since", "until", "from_offset", "to_offset") if getattr(args, o)]
    if args.input and ranged:
        raise ReplayError(f"--{ranged[0].replace('_', '-')} selects part of a topic; "
                          "a file is replayed whole")
    if not args.labels and not args.labels_topic:
        raise ReplayError("a sweep scores every run against labels: give --labels FILE or "
                          "--labels-topic TOPIC")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    partitions = args.partitions or settings.partitions
    labels = load_labels(Path(args.labels)) if args.labels else None
    input_path = Path(args.input) if args.input else out_dir / "events.jsonl"
    if args.topic or args.labels_topic:
        bridge = KafkaBridge(settings.kafka_bootstrap, settings.aiokafka_kwargs())
        try:
            if args.labels_topic:
                labels = labels_from_topic(bridge, args.labels_topic)
            if args.topic:
                topic = settings.topics["requests"].name if args.topic == "-" else args.topic
                source = TopicSource(bridge, topic, _topic_spec(args), settings.max_record_bytes,
                                     settings.max_event_ahead_s)
                partitions = source.partition_count
                bad = 0

                def count_bad(_: bytes) -> None:
                    nonlocal bad
                    bad += 1

                n = source.write_jsonl(input_path, count_bad)
                print(f"read {source.name} into {input_path}: {n:,} events, {bad} bad records",
                      file=sys.stderr)
        finally:
            bridge.close()
    assert labels is not None
    result = run_sweep(input_path, labels, grid, base, partitions=partitions, out_dir=out_dir,
                       jobs=args.jobs)
    if not result.scores:
        print("no run finished")
        return 130
    print(render_table(result))
    csv_path, png_path = write_outputs(result, out_dir)
    print(f"{len(result.scores)} of {result.total_runs} runs in {result.seconds:.1f} s; "
          f"table {csv_path}, plot {png_path}, decisions {out_dir / 'runs'}/run-NN.jsonl "
          f"(compare two with `distillguard diff`)")
    return 130 if result.interrupted else 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from distillguard.streams.offline.evaluate import (
        ScenarioOptions,
        plan_evaluation,
        render_runs,
        render_set,
        render_set_totals,
        render_summary,
        run_evaluation,
        summarise,
        summarise_sets,
        write_outputs,
    )
    from distillguard.streams.offline.replay_source import ReplayError

    settings = _settings(args)
    cfg = _detector(settings, args)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise ReplayError(f"--seeds {args.seeds!r}: write seeds as 7,11") from None
    variants = [] if args.variants.strip() in ("", "none") else \
        [v.strip() for v in args.variants.split(",") if v.strip()]
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    families = None if args.families is None else \
        [f.strip() for f in args.families.split(",") if f.strip()]
    runs = plan_evaluation(sets, families, seeds, variants,
                           account_multiplier=args.account_multiplier, jitter=args.jitter,
                           family_baselines=args.baselines)
    if args.scale is not None and args.scale <= 0 or args.hours is not None and args.hours <= 0:
        raise ReplayError("--scale and --hours must be positive")
    if args.family_scale <= 0:
        raise ReplayError("--family-scale must be positive")
    opts = ScenarioOptions(small=args.small, scale=args.scale, hours=args.hours,
                           family_scale=args.family_scale)
    result = run_evaluation(runs, opts, cfg, partitions=args.partitions or settings.partitions,
                            jobs=args.jobs, max_record_bytes=settings.max_record_bytes)
    if not result.outcomes:
        print("no run finished")
        return 130
    lines = summarise(result)
    scenario_sets = summarise_sets(result, lines)
    print(render_runs(result))
    print(f"== summary: {len(result.outcomes)} of {len(runs)} runs, model "
          f"{result.model_version}, {result.seconds:,.0f} s on {result.processes} processes ==")
    print(render_summary(result, lines))
    for st in scenario_sets:
        print()
        print(render_set(st))
    print()
    print(render_set_totals(scenario_sets))
    if args.out:
        paths = write_outputs(result, lines, Path(args.out))
        print(f"wrote {', '.join(str(p) for p in paths[:-1])} and {paths[-1]}")
    if result.interrupted:
        print(f"interrupted: {len(result.outcomes)} of {len(runs)} runs finished")
        return 130
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from distillguard.streams.offline.diff import diff_runs, render_diff, write_diff_csv
    from distillguard.streams.offline.replay import load_labels

    labels = load_labels(Path(args.labels)) if args.labels else None
    diff = diff_runs(Path(args.run_a), Path(args.run_b), labels=labels)
    print(render_diff(diff, limit=args.limit))
    if args.csv:
        write_diff_csv(diff, Path(args.csv))
        print(f"wrote {len(diff.changes):,} changed accounts to {args.csv}")
    return 0


def cmd_broker(args: argparse.Namespace) -> int:
    script = REPO_ROOT / "deploy" / "kafka-local.sh"
    return subprocess.run(["bash", str(script), args.action, *args.rest], check=False).returncode


def cmd_topics(args: argparse.Namespace) -> int:
    from distillguard.streams.edge.topics import ensure_topics, wait_for_broker

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
    from distillguard.streams.cli.watch import run_watch

    settings = _settings(args)
    run_watch(settings.kafka_bootstrap, settings.topics["enforcement"].name,
              args.from_beginning, client_kwargs=settings.aiokafka_kwargs())
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from distillguard.streams.cli.status import StatusOptions, health_url, run_status
    from distillguard.streams.edge.logs import configure_logging

    settings = _settings(args)
    configure_logging(settings.log_format)
    if args.worker:
        workers = [health_url(w) for w in args.worker]
    else:
        # The fleet of one machine as the demo starts it: consecutive web ports from web_port.
        host = settings.web_bind if settings.web_bind not in ("0.0.0.0", "::") else "127.0.0.1"
        workers = [f"http://{host}:{settings.web_port + i}/health" for i in range(args.workers)]
    if args.poll <= 0:
        raise ValueError("--poll must be more than 0 seconds")
    return run_status(settings, StatusOptions(port=args.port, bind=args.bind, workers=workers,
                                              poll_s=args.poll,
                                              from_beginning=not args.from_now,
                                              startup_grace_s=args.startup_grace))


def cmd_gate(args: argparse.Namespace) -> int:
    from distillguard.streams.edge.logs import configure_logging
    from distillguard.streams.gate.server import GateOptions, run_gate

    settings = _settings(args)
    configure_logging(settings.log_format)
    topic = args.topic or settings.topics["decisions"].name
    opts = GateOptions(port=args.port, bind=args.bind, fail_mode=args.fail_mode,
                       account_header=args.account_header.lower(),
                       org_header=(args.org_header or "").lower(), burst_s=args.burst_s,
                       topic=topic, lost_after_s=args.broker_lost_after)
    return run_gate(settings.kafka_bootstrap, topic, opts, settings.aiokafka_kwargs())


def cmd_demo(args: argparse.Namespace) -> int:
    from distillguard.streams.cli.demo import DemoOptions, run_demo

    opts = DemoOptions(workers=args.workers, seed=args.seed, scale=args.scale, hours=args.hours,
                       rate=args.rate, keep_broker=args.keep_broker,
                       keep_topics=args.keep_topics, timeout_s=args.timeout,
                       status_port=args.status_port, hold=args.hold,
                       gate_port=args.gate_port)
    return run_demo(_settings(args), opts)


def version_line() -> str:
    """The package, the detection core's version (it names every decision's model) and its build."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("distillguard")
    except PackageNotFoundError:  # run from a source tree that was never installed
        package = "(not installed)"
    return (f"distillguard {package}, detection core {CORE_VERSION} "
            f"({current_build()})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distillguard", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=version_line())
    sub = parser.add_subparsers(dest="command", required=True)

    def with_settings(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--settings", help="TOML settings file (else $DISTILLGUARD_SETTINGS_FILE)")
        return p

    p = with_settings(sub.add_parser("worker", help="run one Faust worker of the fleet"))
    p.add_argument("--loglevel", default="WARNING", help="Faust's own log level")
    p.set_defaults(func=cmd_worker)

    p = with_settings(sub.add_parser(
        "simulate", help="labelled simulated traffic",
        description="Simulate labelled traffic: the default scenario (or --small), or one run "
                    "of a scenario family (--family NAME --seed N; see --list-families)."))
    target = p.add_mutually_exclusive_group()
    target.add_argument("--out", help="directory for events.jsonl and labels.jsonl")
    target.add_argument("--topic", nargs="?", const="-",
                        help="produce to Kafka (default: the requests topic)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--family", help="a scenario family: its run for --seed, parameters drawn "
                                    "from the family's ranges (not with --small, --hours, "
                                    "--account-multiplier, --jitter, --rotate-ip)")
    p.add_argument("--list-families", action="store_true",
                   help="print every family's name, description and populations")
    p.add_argument("--small", action="store_true", help="the small test scenario")
    p.add_argument("--scale", type=float,
                   help="multiply every population's accounts (with --family: its scale)")
    p.add_argument("--hours", type=float, help="simulated duration")
    p.add_argument("--account-multiplier", type=float,
                   help="spread campaigns over N times as many accounts")
    p.add_argument("--jitter", type=float, help="+-fraction jitter on campaign timing")
    p.add_argument("--rotate-ip", action="store_true", help="campaigns use a new IP per request")
    p.add_argument("--rate", type=float, default=0.0, help="events/s to Kafka (0: max)")
    p.set_defaults(func=cmd_simulate)

    p = with_settings(sub.add_parser(
        "replay", help="run the core over an events file or a topic range",
        description="Run the detection core over recorded traffic: an events file, or a time "
                    "or offset range of a topic. Writes nothing to Kafka unless told to."))
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", help="events JSONL file")
    src.add_argument("--topic", nargs="?", const="-",
                     help="read a topic (default: the live requests topic)")
    p.add_argument("--since", help="topic: first record time (ISO 8601, epoch s, -2h)")
    p.add_argument("--until", help="topic: record time to stop before (same forms)")
    p.add_argument("--from-offset", help="topic: first offset, N or P:N,P:N")
    p.add_argument("--to-offset", help="topic: offset to stop before, N or P:N,P:N")
    p.add_argument("--output", help="decisions JSONL file to write")
    p.add_argument("--shadow-topic", help="publish decisions, marked shadow, to this topic")
    p.add_argument("--create-shadow-topic", action="store_true",
                   help="create the shadow topic if it does not exist")
    p.add_argument("--to-enforcement-topic", action="store_true",
                   help="publish to the LIVE enforcement topic (needs --i-mean-it)")
    p.add_argument("--i-mean-it", action="store_true",
                   help="confirm --to-enforcement-topic")
    lab = p.add_mutually_exclusive_group()
    lab.add_argument("--labels", help="labels JSONL file: print the evaluation")
    lab.add_argument("--labels-topic", help="topic of account labels: print the evaluation")
    p.add_argument("--baselines", action="store_true",
                   help="with labels: also score a per-account rate limit and HalfSpaceTrees "
                        "alone on the same traffic")
    p.add_argument("--override", help="TOML file of detector tunables over the settings")
    p.add_argument("--partitions", type=int,
                   help="partitions of the live requests topic (for partition-local state; "
                        "default: from the settings, or the topic's own count)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument("--allow-from-control-topic", action="store_true",
                   help="also allow-list what the control topic holds now, from the first "
                        "event (the settings' allow-list always applies)")
    p.set_defaults(func=cmd_replay)

    p = with_settings(sub.add_parser(
        "sweep", help="replay once per setting of a grid, each run scored on labels",
        description="Replay the same traffic once per point of a grid of detector settings, "
                    "in parallel (one process per core), score every run on the labels, and "
                    "write a table (terminal, CSV) and a plot (PNG). The current setting is "
                    "always run and marked."))
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", help="events JSONL file")
    src.add_argument("--topic", nargs="?", const="-",
                     help="read a topic range once (default topic: the live requests topic)")
    p.add_argument("--since", help="topic: first record time (ISO 8601, epoch s, now-2h)")
    p.add_argument("--until", help="topic: record time to stop before")
    p.add_argument("--from-offset", help="topic: first offset, N or P:N,P:N")
    p.add_argument("--to-offset", help="topic: offset to stop before, N or P:N,P:N")
    lab = p.add_mutually_exclusive_group()
    lab.add_argument("--labels", help="labels JSONL file")
    lab.add_argument("--labels-topic", help="topic of account labels")
    p.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...",
                   help="a detector setting and its values (repeat for more settings)")
    p.add_argument("--override", help="TOML file of detector tunables: the base of the grid")
    p.add_argument("--out", default="sweep", help="output directory (default: sweep/)")
    p.add_argument("--jobs", type=int, help="processes (default: the cores available)")
    p.add_argument("--partitions", type=int,
                   help="partitions of the live requests topic (default: from the settings)")
    p.set_defaults(func=cmd_sweep)

    p = with_settings(sub.add_parser(
        "evaluate", help="the detection-quality report: tuning and held-out sets, baselines",
        description="Simulate and replay two scenario sets (streams/offline/scenario_sets.py), one "
                    "process per run, as many as cores. The tuning set: the legacy runs (the "
                    "default scenario, a second seed and three robustness variants of the first "
                    "seed: campaigns over 10x the accounts, +-50% timing jitter, a new IP per "
                    "request, each with both baselines) and every tuning family at seeds "
                    f"{_seeds(TUNING_SEEDS)}. The held-out set: every scenario family at seeds "
                    f"{_seeds(HELD_OUT_SEEDS)} (its results are for reports, never for tuning: "
                    "docs/tuning.md, 'Held-out evaluation'). "
                    "Prints each run's population table, a summary checked against the targets, "
                    "and per set a population table pooled over its runs."))
    p.add_argument("--sets", default="tuning,held-out",
                   help="comma-separated scenario sets: tuning, held-out (default: both), or "
                        "default: the legacy runs alone")
    p.add_argument("--families",
                   help="comma-separated families: only these families' runs (the legacy runs "
                        "go by the name default here; see distillguard simulate "
                        "--list-families)")
    p.add_argument("--family-scale", type=float, default=1.0,
                   help="family runs: multiply every population's accounts (default 1.0)")
    p.add_argument("--baselines", action="store_true",
                   help="family runs: replay both baselines too, shown beside distillguard and "
                        "not checked (doubles their replay time; the legacy runs always do)")
    p.add_argument("--seeds", default="7,11",
                   help="legacy runs only: comma-separated seeds (default 7,11); the variants "
                        "use the first")
    p.add_argument("--variants", default="accounts,jitter,ip",
                   help="legacy runs only: robustness variants of the first seed: accounts, "
                        "jitter, ip, or none (default: all three)")
    p.add_argument("--account-multiplier", type=float, default=10.0,
                   help="legacy runs only, the accounts variant: campaigns over N times the "
                        "accounts (default 10)")
    p.add_argument("--jitter", type=float, default=0.5,
                   help="legacy runs only, the jitter variant: +-fraction on campaign timing "
                        "(default 0.5)")
    p.add_argument("--scale", type=float,
                   help="legacy runs only: multiply every population's accounts (default 1.0; "
                        "--small: 0.06)")
    p.add_argument("--hours", type=float,
                   help="legacy runs only: simulated duration (default 6; --small: 1)")
    p.add_argument("--small", action="store_true",
                   help="legacy runs only: the small test scenario")
    p.add_argument("--override", help="TOML file of detector tunables over the settings")
    p.add_argument("--partitions", type=int,
                   help="partitions of the requests topic (default: from the settings)")
    p.add_argument("--jobs", type=int, help="processes (default: the cores available)")
    p.add_argument("--out", help="also write evaluation.json, evaluation.csv and populations.csv "
                                 "here")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("diff", help="accounts whose action differs between two decision files",
                       description="Compare two runs' decisions (replay or sweep outputs, or "
                                   "a dump of the enforcement topic) by account: which accounts "
                                   "change their strongest or final action, on what evidence.")
    p.add_argument("run_a", metavar="RUN_A.jsonl")
    p.add_argument("run_b", metavar="RUN_B.jsonl")
    p.add_argument("--labels", help="labels JSONL file: show each account's label and group")
    p.add_argument("--limit", type=int, default=40, help="accounts to show (default 40)")
    p.add_argument("--csv", help="write every changed account to this CSV file")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("broker", help="the local Kafka broker (deploy/kafka-local.sh)")
    p.add_argument("action", choices=["fetch", "start", "stop", "status", "reset", "logs"])
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_broker)

    p = with_settings(sub.add_parser("topics", help="create the topics of deploy/topics.toml"))
    p.add_argument("action", choices=["create"])
    p.set_defaults(func=cmd_topics)

    from distillguard.streams.cli.copy_topic import add_copy_topic_parser
    add_copy_topic_parser(sub)

    from distillguard.streams.cli.allow import add_allow_parser
    add_allow_parser(sub)
    from distillguard.streams.cli.override import add_override_parsers
    add_override_parsers(sub)
    from distillguard.streams.cli.review import add_review_parser
    add_review_parser(sub)
    from distillguard.streams.cli.explain import add_explain_parser
    add_explain_parser(sub)

    p = with_settings(sub.add_parser("watch", help="live view of the enforcement topic"))
    p.add_argument("--from-beginning", action="store_true")
    p.set_defaults(func=cmd_watch)

    p = with_settings(sub.add_parser(
        "status", help="the status page: fleet, decisions, clusters, dead letters",
        description="Serve a status page for a browser: the fleet (each worker's /health), "
                    "decisions over time by action, the top clusters under action with their "
                    "evidence, the latest decisions and the dead letters by reason, read from "
                    "the enforcement and dead-letter topics (from their start). JSON at "
                    "/api/status."))
    p.add_argument("--port", type=int, default=8088, help="the page's port (default 8088)")
    p.add_argument("--bind", default="127.0.0.1",
                   help="the address to serve on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--worker", action="append", default=[], metavar="URL",
                   help="a worker's web address (host:port or its /health URL); repeat per "
                        "worker (default: --workers ports from the settings' web_port)")
    p.add_argument("--workers", type=int, default=1,
                   help="without --worker: poll this many consecutive ports from web_port")
    p.add_argument("--poll", type=float, default=2.0,
                   help="seconds between polls of the workers and the topics' ends")
    p.add_argument("--startup-grace", type=float, default=30.0,
                   help="seconds after the start in which a worker that never answered is "
                        "'waiting', not a problem on the banner (default 30)")
    p.add_argument("--from-now", action="store_true",
                   help="only the records written from now on (default: the topics' start)")
    p.set_defaults(func=cmd_status)

    from distillguard.streams.gate.server import DEFAULT_ACCOUNT_HEADER
    from distillguard.streams.gate.server import DEFAULT_PORT as GATE_PORT
    from distillguard.streams.gate.table import DEFAULT_BURST_S
    p = with_settings(sub.add_parser(
        "gate", help="the decision service a gateway asks per request",
        description="Serve the decisions in force to a gateway, one check per request: read "
                    "the decisions topic whole (no consumer group), follow it, and answer in "
                    "the shape of nginx auth_request (/nginx/check) and Envoy's ext_authz HTTP "
                    "service (/check): 200 serve, 403 blocked, 429 throttled over its rate "
                    "(Retry-After). GET /ready is 200 once the topic is read up to its end at "
                    "the start; GET /health says what the gate holds and has answered."))
    p.add_argument("--port", type=int, default=GATE_PORT,
                   help=f"the checks' port (default {GATE_PORT}; 0: any free one)")
    p.add_argument("--bind", default="127.0.0.1",
                   help="the address to serve on (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--fail-mode", choices=["open", "closed"], default="open",
                   help="while the gate has not caught up or has lost the broker: open answers "
                        "from what it holds (the rest is served), closed answers 503 to every "
                        "check (default open)")
    p.add_argument("--account-header", default=DEFAULT_ACCOUNT_HEADER,
                   help=f"the request header naming the account (default "
                        f"{DEFAULT_ACCOUNT_HEADER})")
    p.add_argument("--org-header", default="",
                   help="an optional request header naming the organisation: records keyed "
                        "org:<org_id> then apply too")
    p.add_argument("--burst-s", type=float, default=DEFAULT_BURST_S,
                   help="a throttled account may spend this many seconds of its rate at once "
                        f"(default {DEFAULT_BURST_S:g}; at least one request)")
    p.add_argument("--topic", help="the decisions topic (default: the settings')")
    p.add_argument("--broker-lost-after", type=float, default=10.0,
                   help="seconds without an answer from the broker before the fail mode "
                        "answers (default 10)")
    p.set_defaults(func=cmd_gate)

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
    p.add_argument("--status-port", type=int, default=8088,
                   help="the status page's port while the demo runs (0: no status page)")
    p.add_argument("--gate-port", type=int, default=GATE_PORT,
                   help=f"`distillguard gate` on the run's decisions topic while the demo runs "
                        f"(default {GATE_PORT}; 0: no gate)")
    p.add_argument("--hold", action="store_true",
                   help="after the run, keep the fleet and the status page up until Ctrl-C")
    p.set_defaults(func=cmd_demo)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """The errors a user can fix: one line and exit 2. Imported only when one is raised: the
    modules that define them pull in the detector's libraries (seconds of a short command's
    start, such as `distillguard override lift`)."""
    from distillguard.streams.cli.demo import DemoError
    from distillguard.streams.cli.status import StatusError
    from distillguard.streams.edge.topics import BrokerUnavailableError, TopicError
    from distillguard.streams.gate.server import GateError
    from distillguard.streams.offline.replay import ReplayError
    from distillguard.streams.worker.process import WorkerError

    return (SettingsError, ReplayError, DemoError, StatusError, WorkerError, TopicError,
            BrokerUnavailableError, GateError, FileNotFoundError, ValueError)


# The commands that run the detection core: its modules are imported before the command runs.
CORE_COMMANDS = frozenset({"demo", "diff", "evaluate", "explain", "replay", "simulate", "sweep",
                           "worker"})


def import_core_holding_ctrl_c() -> bool:
    """Import every module of the core with Ctrl-C held back (streams/cli/ctrl_c.py); True when
    one came meanwhile."""
    with ctrl_c_held() as came:
        for name in COMPILED_MODULES:
            importlib.import_module(f"distillguard.models.{name}")
    return bool(came)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in CORE_COMMANDS and import_core_holding_ctrl_c():
        print(f"distillguard {args.command}: interrupted while starting", file=sys.stderr)
        return 130
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if not isinstance(exc, _user_errors()):
            raise
        print(f"distillguard {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
