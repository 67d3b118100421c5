"""`distillguard demo`: the main job on one machine, end to end, with real parts.

1. start the local Kafka broker (deploy/kafka-local.sh) unless one is already running;
2. create this run's topics (fresh names, so runs never see each other's records);
3. start a fleet of Faust workers (one consumer group) as separate processes, and the status
   page beside them (`distillguard status`, a browser's view of the same run), and the gate
   (`distillguard gate`, what a gateway asks per request; streams/cli/demo_gate.py);
4. stream simulated, labelled traffic onto the requests topic;
5. show decisions from the enforcement topic as they happen;
6. once the fleet has caught up (consumer lag 0 on every input topic), print the evaluation of
   the live decisions against the labels, then that of the same traffic replayed through the
   core (what a fleet that keeps up with event time decides), with the count of verdicts that
   reached their accounts late in event time, and what the gate answers for a blocked and an
   ordinary account; stop the workers, and stop the broker if it started it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from distillguard.models._build import BUILD_VARIABLES
from distillguard.models.config import DetectorConfig
from distillguard.models.evaluation import Report, evaluate_core, evaluate_recorded, render
from distillguard.models.events import event_from_mapping
from distillguard.simulator import Scenario, account_labels, generate_events
from distillguard.streams.cli.produce import produce_events
from distillguard.streams.cli.watch import LiveView, Screen, watch_decisions
from distillguard.streams.edge.logs import send_library_logs_to
from distillguard.streams.edge.settings import TOPIC_LOGICAL_NAMES, Settings
from distillguard.streams.edge.topics import delete_topics, ensure_topics, wait_for_broker
from distillguard.streams.worker.health import STALL_EXIT_CODE

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_SCRIPT = REPO_ROOT / "deploy" / "kafka-local.sh"


class DemoError(Exception):
    pass


# Workers the demo restarts after a stall (exit code 3) before it gives up.
MAX_WORKER_RESTARTS = 2


@dataclass
class DemoOptions:
    workers: int = 2
    seed: int = 7
    scale: float = 0.25
    hours: float = 3.0
    # Three simulated hours in about a minute (~190x real time). Two workers on 2 cores fall
    # behind at this pace (tens of thousands of records), and a verdict's round trip takes
    # minutes of this compressed event time: event-time alignment (on by default) makes the
    # account stage wait for it, so the live decisions are still the replay's, which the demo
    # shows next to it. 0: as fast as possible (a larger backlog).
    rate: float = 800.0
    keep_broker: bool = False
    keep_topics: bool = False
    timeout_s: float = 900.0
    base_web_port: int = 6066
    status_port: int = 8088  # the status page's; 0: none
    gate_port: int = 8089  # `distillguard gate` on the run's decisions topic; 0: none
    hold: bool = False  # keep the fleet and the status page up after the run, until Ctrl-C


def broker_running() -> bool:
    res = subprocess.run(["bash", str(KAFKA_SCRIPT), "status"], capture_output=True, text=True,
                         check=False)
    return res.returncode == 0


def start_broker() -> None:
    print("starting the local Kafka broker (first run downloads ~45 MB of jars)...", flush=True)
    res = subprocess.run(["bash", str(KAFKA_SCRIPT), "start"], text=True, check=False)
    if res.returncode != 0:
        raise DemoError("the local Kafka broker did not start (see the message above)")


def run_settings(base: Settings, run_id: str) -> Settings:
    names = {f"topic_{n}": f"distillguard.{run_id}.{n.replace('_', '-')}"
             for n in TOPIC_LOGICAL_NAMES}
    return base.with_overrides(app_id=f"distillguard-{run_id}", **names)


def worker_env(settings: Settings, web_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLGUARD_")}
    env.update({
        "DISTILLGUARD_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "DISTILLGUARD_APP_ID": settings.app_id,
        "DISTILLGUARD_WEB_PORT": str(web_port),
        "DISTILLGUARD_LOG_FORMAT": "json",
        **{f"DISTILLGUARD_TOPIC_{n.upper()}": getattr(settings, f"topic_{n}")
           for n in TOPIC_LOGICAL_NAMES},
    })
    # Passed on: the settings file, and which build of the core to run. Paths made absolute:
    # the workers start in the repository, not where the demo was started.
    for name in ("DISTILLGUARD_SETTINGS_FILE", *BUILD_VARIABLES):
        value = os.environ.get(name)
        if value:
            env[name] = value if name == "DISTILLGUARD_CORE" else str(Path(value).absolute())
    return env


def start_worker(settings: Settings, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    log = log_path.open("ab")  # a restarted worker appends to the log of the one it replaces
    return subprocess.Popen([sys.executable, "-m", "distillguard", "worker"], cwd=REPO_ROOT,
                            env=worker_env(settings, port), stdout=log, stderr=subprocess.STDOUT)


def start_workers(settings: Settings, count: int, base_port: int,
                  log_dir: Path) -> list[subprocess.Popen[bytes]]:
    log_dir.mkdir(parents=True, exist_ok=True)
    return [start_worker(settings, base_port + i, log_dir / f"worker-{i + 1}.log")
            for i in range(count)]


def start_status_page(settings: Settings, port: int, worker_ports: list[int],
                      log_path: Path) -> subprocess.Popen[bytes]:
    """`distillguard status` for this run's topics and workers, as a process of its own: the
    page keeps answering while the demo's loop is busy, and its log stays out of the view."""
    log = log_path.open("ab")
    return subprocess.Popen(status_command(port, worker_ports), cwd=REPO_ROOT,
                            env=worker_env(settings, 0), stdout=log, stderr=subprocess.STDOUT)


def status_command(port: int, worker_ports: list[int]) -> list[str]:
    """The status page of the demo's workers (their web ports), on `port`."""
    workers = [arg for p in worker_ports for arg in ("--worker", f"127.0.0.1:{p}")]
    return [sys.executable, "-m", "distillguard", "status", "--port", str(port), *workers]


def replayed_report(scenario: Scenario, cfg: DetectorConfig,
                    labels: dict[str, tuple[str, str]]) -> tuple[Report, set[str]]:
    """The evaluation of the same traffic replayed through the core, in event time, and the
    ids of its decisions."""
    ids: set[str] = set()
    report = evaluate_core(map(event_from_mapping, generate_events(scenario)), labels, cfg,
                           on_decision=lambda d: ids.add(d.decision_id))
    return report, ids


def parity_line(live: list[dict[str, Any]], replayed: set[str]) -> str:
    """How far the live fleet's decisions are the replay's, by decision id (an id is the
    account, the action and the evidence it rests on: equal ids, equal decisions)."""
    live_ids = {str(r.get("decision_id")) for r in live}
    both = len(live_ids & replayed)
    either = len(live_ids | replayed)
    share = 100.0 * both / either if either else 100.0
    return (f"Live and replayed decisions: {share:.1f}% of decision ids in both ({both:,}; live "
            f"{len(live_ids):,}, replay {len(replayed):,}).")


def late_verdicts(ports: list[int]) -> int | None:
    """Verdicts the workers applied late in event time (their /health `alignment`); None when
    a worker does not answer."""
    total = 0
    for port in ports:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=3) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as exc:  # 503 while stalled: the body is still there
            body = json.loads(exc.read())
        except (OSError, ValueError):
            return None
        total += int(body.get("alignment", {}).get("late_verdicts", 0))
    return total


def assignments(log_dir: Path, count: int) -> list[list[int] | None]:
    """Each worker's latest logged assignment of requests partitions (None before its first)."""
    latest: list[list[int] | None] = []
    for i in range(count):
        found = None
        path = log_dir / f"worker-{i + 1}.log"
        for line in (path.read_text(errors="replace").splitlines() if path.exists() else []):
            if '"partitions_assigned"' in line:
                try:
                    found = json.loads(line[line.index("{"):])["partitions"]
                except (ValueError, KeyError):
                    continue
        latest.append(found)
    return latest


async def wait_for_split(log_dir: Path, count: int, partitions: int, timeout_s: float,
                         procs: list[subprocess.Popen[bytes]]) -> None:
    """Until every worker has its assignment and together they hold each partition once.

    The traffic starts only then: a rebalance while the first worker already processes the
    stream's first records is what left a partition's commits stuck at an early offset in
    fresh-clone demos (docs/operations.md, known limits)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise DemoError(f"a worker exited while the group formed; see its log in {log_dir}")
        split = assignments(log_dir, count)
        if all(s is not None for s in split) and \
                sorted(q for ps in split for q in ps or []) == list(range(partitions)):
            return
        await asyncio.sleep(0.5)
    raise DemoError(f"the {count} workers did not share the partitions within {timeout_s:.0f} s;"
                    f" see their logs in {log_dir}")


def stop_workers(procs: list[subprocess.Popen[bytes]], timeout_s: float = 30.0) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


async def group_lag(settings: Settings, topics: list[str]) -> int | None:
    """Total consumer lag of the fleet's group over `topics`; None until it has committed."""
    kwargs = settings.aiokafka_kwargs()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, **kwargs)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                **kwargs)
    await admin.start()
    await consumer.start()
    try:
        try:
            committed = await admin.list_consumer_group_offsets(settings.app_id)
        except KafkaError:  # the group's coordinator is not there until the group forms
            return None
        tps = []
        for t in topics:
            spec = next(s for s in settings.topics.values() if s.name == t)
            tps.extend(TopicPartition(t, p) for p in range(spec.partitions))
        ends = await consumer.end_offsets(tps)
        lag = 0
        for tp in tps:
            end = ends.get(tp, 0)
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else 0
            if end > 0 and meta is None:
                return None
            lag += max(0, end - done)
        return lag
    finally:
        await consumer.stop()
        await admin.close()


async def run_demo_async(base: Settings, opts: DemoOptions) -> int:
    run_id = time.strftime("demo-%Y%m%d-%H%M%S")
    settings = run_settings(base, run_id)
    log_dir = REPO_ROOT / ".distillguard" / run_id
    log_dir.mkdir(parents=True, exist_ok=True)
    # This process's aiokafka lines (its consumers and admin client; warnings such as "Failed
    # fetch offsets ... NotLeaderForPartitionError" while the new topics elect their leaders)
    # go to a file beside the workers' logs, not into the live view.
    send_library_logs_to(log_dir / "demo.log")
    kwargs = settings.aiokafka_kwargs()
    await wait_for_broker(settings.kafka_bootstrap, timeout_s=30, client_kwargs=kwargs)
    await ensure_topics(settings.kafka_bootstrap, settings.topics.values(), client_kwargs=kwargs)
    scenario = Scenario(seed=opts.seed, scale=opts.scale, duration_h=opts.hours)
    labels = {lab["account_id"]: (lab["label"], lab["group"])
              for lab in account_labels(scenario)}
    print(f"run {run_id}: {opts.workers} workers (logs in {log_dir}: the workers' and, in "
          f"demo.log, this process's Kafka client's), model {settings.detector.model_version}; "
          f"metrics at http://127.0.0.1:{opts.base_web_port}/metrics", flush=True)
    procs = start_workers(settings, opts.workers, opts.base_web_port, log_dir)
    status_page = None
    if opts.status_port:
        status_page = start_status_page(
            settings, opts.status_port,
            [opts.base_web_port + i for i in range(opts.workers)], log_dir / "status.log")
        print(f"status page: http://127.0.0.1:{opts.status_port}/ (while the demo runs; "
              f"its log: {log_dir / 'status.log'})", flush=True)
    gate = None
    if opts.gate_port:
        from distillguard.streams.cli.demo_gate import start_gate
        gate = start_gate(worker_env(settings, 0), opts.gate_port, log_dir / "gate.log")
        print(f"gate: http://127.0.0.1:{opts.gate_port}/ (a gateway's checks at /check and "
              f"/nginx/check; its log: {log_dir / 'gate.log'})", flush=True)
    view, screen = LiveView(keep_records=True), Screen()
    if status_page is not None:
        # The view redraws the whole terminal: the page's address stays in its title.
        view.title += f"   (status page: http://127.0.0.1:{opts.status_port}/)"
    state: dict[str, Any] = {"produced": 0, "done": False, "lag": None, "phase": "starting",
                             "restarts": 0}
    events: list[tuple[str, float]] = []

    def status() -> str:
        lag = "?" if state["lag"] is None else f"{state['lag']:,}"
        note = f" | {state['note']}" if state.get("note") else ""
        return f"{state['phase']}: produced {state['produced']:,}, fleet lag {lag}{note}"

    async def produce() -> None:
        def tracked():
            for ev in generate_events(scenario):
                events.append((ev["account_id"], ev["ts"]))
                state["produced"] += 1
                yield ev
        state["phase"] = "streaming"
        started = time.monotonic()
        await produce_events(settings.kafka_bootstrap, settings.topic_requests, tracked(),
                             rate=opts.rate, client_kwargs=kwargs, progress=False)
        state["phase"] = "catching up"
        state["streamed_s"] = time.monotonic() - started

    async def follow_lag() -> None:
        deadline = time.monotonic() + opts.timeout_s
        quiet_checks = 0
        inputs = [settings.topic_requests, settings.topic_cluster_summaries,
                  settings.topic_account_verdicts]
        while True:
            await asyncio.sleep(2.0)
            if status_page is not None and status_page.poll() is not None \
                    and not state.get("note"):
                # The demo goes on without its page (a port in use, say): said, not hidden.
                state["note"] = (f"the status page exited (code {status_page.returncode}); "
                                 f"see {log_dir / 'status.log'}")
            for i, p in enumerate(procs):
                code = p.poll()
                if code is None:
                    continue
                # As the supervisor of docs/operations.md would: a worker its watchdog stopped
                # (a partition that made no progress for stall_timeout_s; its log says where it
                # waited) is started again and its partitions recover from their changelogs.
                if code != STALL_EXIT_CODE or state["restarts"] >= MAX_WORKER_RESTARTS:
                    raise DemoError(f"worker {i + 1} exited with code {code}; see its log in "
                                    f"{log_dir}")
                state["restarts"] += 1
                state["note"] = f"worker {i + 1} stalled and was restarted (see its log)"
                procs[i] = start_worker(settings, opts.base_web_port + i,
                                        log_dir / f"worker-{i + 1}.log")
            state["lag"] = await group_lag(settings, inputs)
            if state["phase"] == "catching up" and state["lag"] == 0 \
                    and time.monotonic() - view.last_decision_at > 3.0:
                quiet_checks += 1
                if quiet_checks >= 2:
                    state["done"] = True
                    return
            else:
                quiet_checks = 0
            if time.monotonic() > deadline:
                raise DemoError(f"the fleet did not catch up within {opts.timeout_s:.0f} s")

    def print_reports() -> None:
        report = evaluate_recorded(events, view.records, labels)
        print()
        print(f"Evaluation of the live decisions ({len(events):,} events, "
              f"{len(view.records):,} decisions, {opts.workers} workers):")
        print(render(report))
        print()
        print("The same traffic replayed through the core (what a fleet that keeps up with event "
              "time decides):")
        replayed, replayed_ids = replayed_report(scenario, settings.detector, labels)
        print(render(replayed))
        print(parity_line(view.records, replayed_ids))
        if state["restarts"]:
            print(f"\n{state['restarts']} worker restart(s) after a stall (exit code 3), as a "
                  f"supervisor would; the stall reports are in the workers' logs in {log_dir}.")
        if state.get("gate_lines"):
            print(f"\nWhat the gate (http://127.0.0.1:{opts.gate_port}/) answered a gateway at "
                  "the end of the run:")
            print("\n".join(state["gate_lines"]))
        if late:
            print(f"\nThe live fleet applied {late:,} verdicts late in event time: this demo plays "
                  f"{opts.hours:g} simulated hours in {state['streamed_s']:.0f} s, so each second a "
                  "verdict spends on its round trip is minutes of event time, and the workers fell "
                  "behind the stream. While the round trip stays under "
                  f"verdict_delay_s ({settings.detector.verdict_delay_s:g} s of event time), as at "
                  "real speed, the live decisions are the replay's (docs/tuning.md, \"Can a replay "
                  "be trusted?\").")

    held = False
    try:
        watcher = asyncio.create_task(watch_decisions(
            settings.kafka_bootstrap, settings.topic_enforcement, view=view, screen=screen,
            stop=lambda: state["done"], status=status, from_beginning=True,
            client_kwargs=kwargs))
        state["phase"] = "waiting for the workers to share the partitions"
        await wait_for_split(log_dir, opts.workers, settings.topics["requests"].partitions,
                             120.0, procs)
        await produce()
        await follow_lag()
        await watcher
        late = late_verdicts([opts.base_web_port + i for i in range(opts.workers)])
        if gate is not None:
            from distillguard.streams.cli.demo_gate import gate_lines
            state["gate_lines"] = gate_lines(f"http://127.0.0.1:{opts.gate_port}/",
                                             view.records, labels)
        if opts.hold and status_page is not None:
            # The run is over in about a minute: the fleet and its page stay up (idle) for a
            # person to read, with the evaluation already printed, until Ctrl-C.
            held = True
            print_reports()
            print(f"\nthe fleet and the status page (http://127.0.0.1:{opts.status_port}/) stay "
                  "up: Ctrl-C to stop them", flush=True)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, stop.set)  # `kill`: a clean stop too
            try:
                await stop.wait()
            except asyncio.CancelledError:  # Ctrl-C: stop as the demo always does
                pass
            finally:
                loop.remove_signal_handler(signal.SIGTERM)
    finally:
        stop_workers([*procs, *(p for p in (status_page, gate) if p is not None)])
        if not opts.keep_topics:
            await delete_topics(settings.kafka_bootstrap,
                                [t.name for t in settings.topics.values()],
                                client_kwargs=kwargs)
    if not held:
        print_reports()
    return 0


def run_demo(base: Settings, opts: DemoOptions) -> int:
    started_broker = False
    # The local broker of deploy/kafka-local.sh (KAFKA_PORT moves it) is started if needed;
    # any other address is a broker the user runs.
    local = f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"
    if base.kafka_bootstrap == Settings().kafka_bootstrap:
        # The default address means "the local broker": the one KAFKA_PORT moved, if it did.
        base = base.with_overrides(kafka_bootstrap=local)
    if base.kafka_bootstrap == local and not broker_running():
        start_broker()
        started_broker = True
    try:
        return asyncio.run(run_demo_async(base, opts))
    finally:
        if started_broker and not opts.keep_broker:
            print("stopping the local Kafka broker this demo started "
                  "(keep it with --keep-broker)", flush=True)
            subprocess.run(["bash", str(KAFKA_SCRIPT), "stop"], check=False)
