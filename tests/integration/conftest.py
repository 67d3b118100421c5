"""Integration tests against the real local Kafka broker (deploy/kafka-local.sh start).

Each test gets its own topics and consumer group (a unique run id), so tests never see each
other's records and the broker is never reset between them. If no broker answers, the tests
fail with the command to start one; they skip only when explicitly told to with
DGTEST_SKIP_BROKER=1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from distillguard.models._build import BUILD_VARIABLES
from distillguard.streams.edge.settings import TOPIC_LOGICAL_NAMES, Settings, load_settings
from distillguard.streams.edge.topics import delete_topics, ensure_topics, wait_for_broker
from tests.conftest import clear_settings_env

REPO_ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = os.environ.get("DGTEST_BOOTSTRAP", "127.0.0.1:9092")

pytestmark = pytest.mark.broker


@pytest.fixture(scope="session")
def broker() -> str:
    if os.environ.get("DGTEST_SKIP_BROKER") == "1":
        pytest.skip("DGTEST_SKIP_BROKER=1: broker tests not wanted")
    try:
        asyncio.run(wait_for_broker(BOOTSTRAP, timeout_s=20))
    except ConnectionError as exc:
        pytest.fail(f"{exc}\n(run `bash deploy/kafka-local.sh start`, or `make test` which "
                    "starts it; set DGTEST_SKIP_BROKER=1 to skip on purpose)")
    return BOOTSTRAP


def run_env(run_id: str, bootstrap: str, **extra: str) -> dict[str, str]:
    env = {
        "DISTILLGUARD_KAFKA_BOOTSTRAP": bootstrap,
        "DISTILLGUARD_APP_ID": f"dg-test-{run_id}",
        "DISTILLGUARD_LOG_FORMAT": "json",
        **{f"DISTILLGUARD_TOPIC_{n.upper()}": f"dg-test.{run_id}.{n}"
           for n in TOPIC_LOGICAL_NAMES},
    }
    env.update(extra)
    return env


def command_line(run: Settings, monkeypatch: pytest.MonkeyPatch,
                 *add_parsers: Callable[[Any], Any], **extra_env: str) -> argparse.ArgumentParser:
    """The `distillguard` command with the subcommands that `add_parsers` register, as the
    console script registers them, in an environment of this test's settings alone (its
    topics; `extra_env` besides)."""
    clear_settings_env(monkeypatch)
    for name, value in run_env(run.app_id.removeprefix("dg-test-"), run.kafka_bootstrap,
                               **extra_env).items():
        monkeypatch.setenv(name, value)
    parser = argparse.ArgumentParser(prog="distillguard")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in add_parsers:
        add(sub)
    return parser


@pytest.fixture
def run(broker: str) -> Iterator[Settings]:
    """Settings for one test: its own topics (created now, deleted after) and group."""
    run_id = uuid.uuid4().hex[:10]
    settings = load_settings(env=run_env(run_id, broker))
    asyncio.run(ensure_topics(broker, settings.topics.values()))
    yield settings
    asyncio.run(delete_run_topics(broker, settings))


async def delete_run_topics(broker: str, settings: Settings) -> None:
    """The run's topics and the ones its workers made: the tables' changelogs and Faust's own,
    named after the app id. Left behind, a broker that served many test runs held 1.9 GB of
    them, and a restarted broker took so long to load them that the fault tests failed (both,
    twice in a row; after a `kafka-local.sh reset`, both passed four times)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        existing = await admin.list_topics()
    finally:
        await admin.close()
    await delete_topics(broker, [t.name for t in settings.topics.values()]
                        + [n for n in existing if n.startswith(f"{settings.app_id}-")])


@dataclass
class Fleet:
    """Worker processes of one consumer group, started with `start` and always stopped."""

    settings: Settings
    log_dir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # more DISTILLGUARD_* for every worker
    ports: list[int] = field(default_factory=list)  # each worker's web port (/health)

    def start(self, count: int = 1, base_port: int = 0) -> None:
        base_port = base_port or 16000 + (os.getpid() % 1000) * 10
        for i in range(count):
            n = len(self.procs)
            # Only this run's settings, but the build of the core the suite was told to run.
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith("DISTILLGUARD_") or k in BUILD_VARIABLES}
            env.update(run_env(self.settings.app_id.removeprefix("dg-test-"),
                               self.settings.kafka_bootstrap,
                               DISTILLGUARD_WEB_PORT=str(base_port + n), **self.env))
            self.ports.append(base_port + n)
            log = (self.log_dir / f"worker-{n + 1}.log").open("wb")
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "distillguard", "worker"], cwd=REPO_ROOT, env=env,
                stdout=log, stderr=subprocess.STDOUT))

    def health(self) -> list[dict[str, Any] | None]:
        """Each worker's /health JSON (also on 503), None for one that does not answer."""
        out: list[dict[str, Any] | None] = []
        for port in self.ports:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=3) as r:
                    out.append(json.loads(r.read()))
            except urllib.error.HTTPError as exc:
                out.append(json.loads(exc.read()))
            except OSError:
                out.append(None)
        return out

    def alive(self) -> list[bool]:
        return [p.poll() is None for p in self.procs]

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-4000:]
                         for p in sorted(self.log_dir.glob("worker-*.log")))

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture
def fleet(run: Settings, tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet(run, tmp_path)
    yield f
    f.stop()


async def produce(settings: Settings, records: list[tuple[bytes | None, bytes | None]],
                  topic: str | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=10,
                                max_request_size=2_000_000)
    await producer.start()
    try:
        futures = [await producer.send(topic or settings.topic_requests, value, key=key)
                   for key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def event_records(events: list[dict[str, Any]]) -> list[tuple[bytes | None, bytes | None]]:
    return [(e["account_id"].encode(), orjson.dumps(e)) for e in events]


async def consume_until(settings: Settings, topic: str,
                        done: Callable[[list[Any]], bool], timeout_s: float,
                        alive: Callable[[], bool] = lambda: True) -> list[Any]:
    """All records of `topic` from the start, until `done(records)` or the deadline."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap,
                                group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    records: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not done(records):
            if not alive():
                break
            batches = await consumer.getmany(timeout_ms=500)
            for batch in batches.values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def committed_lag(settings: Settings, topic: str, partitions: int) -> int | None:
    """The fleet's consumer lag on `topic`, or None before it has committed anything."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        try:
            committed = await admin.list_consumer_group_offsets(settings.app_id)
        except Exception:  # noqa: BLE001 - coordinator not there yet
            return None
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await consumer.end_offsets(tps)
        lag = 0
        for tp in tps:
            meta = committed.get(tp)
            if ends[tp] and meta is None:
                return None
            lag += ends[tp] - (meta.offset if meta is not None else 0)
        return lag
    finally:
        await consumer.stop()
        await admin.close()


async def wait_for_lag_zero(settings: Settings, topic: str, partitions: int,
                            timeout_s: float, alive: Callable[[], bool]) -> int | None:
    deadline = time.monotonic() + timeout_s
    lag = None
    while time.monotonic() < deadline and alive():
        lag = await committed_lag(settings, topic, partitions)
        if lag == 0:
            return 0
        await asyncio.sleep(1.0)
    return lag


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str,
               fleet: Fleet | None = None, interval_s: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval_s)  # polling; the condition has its deadline
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}"
                         + (f"\n{fleet.logs()}" if fleet else ""))
