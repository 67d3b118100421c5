"""Replay of topics on the real broker: time ranges resolved per partition, the no-write
default, shadow output, and parity with the live fleet.

Parity is tested at two strengths on one live run of two workers (module fixture `live`):
- each stage of the fleet is reproduced exactly from what it consumed (the account stage's
  fan-out of summaries, per cluster partition; the cluster stage's verdicts from the recorded
  summaries topic in offset order);
- end to end, replaying the requests topic reproduces the enforcement topic: the same decision
  ids in the same order per account. This rests on the stages meeting in event time (clusters
  judged per tick of a watermark aligned over the account partitions, verdicts applied at
  told_ts + verdict_delay_s), so it holds while the fleet's verdict round trip stays under
  verdict_delay_s of event time: the test's traffic runs ~110x faster than real time, so it
  sets a delay that covers several seconds of wall-clock skew between the two workers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from distillguard.models.cluster_stage import ClusterPartition, ClusterStage
from distillguard.models.config import DetectorConfig
from distillguard.models.messages import AccountVerdict, ClusterSummary, SourceIdle, SourceTick
from distillguard.models.partitioning import partition_for
from distillguard.models.pipeline import Pipeline
from distillguard.simulator import Scenario, account_labels, generate_events
from distillguard.streams.cli.main import main
from distillguard.streams.cli.produce import produce_events
from distillguard.streams.edge.codec import decode_cluster_record, decode_verdict_record
from distillguard.streams.edge.settings import Settings, load_settings
from distillguard.streams.edge.topics import TopicSpec, delete_topics, ensure_topics
from distillguard.streams.offline.replay import FileSink, replay
from distillguard.streams.offline.replay_source import KafkaBridge, RangeSpec, TopicSource
from tests.integration.conftest import (
    Fleet,
    consume_until,
    event_records,
    produce,
    run_env,
    wait_for_lag_zero,
)
from tests.integration.test_fleet import wait_for_split

pytestmark = [pytest.mark.broker]

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.fixture
def cli_env(run: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The CLI reads this test's topics and broker from the environment."""
    for name in list(os.environ):
        if name.startswith("DISTILLGUARD_"):
            monkeypatch.delenv(name)
    for name, value in run_env(run.app_id.removeprefix("dg-test-"), run.kafka_bootstrap).items():
        monkeypatch.setenv(name, value)
    return run


async def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None)
    await consumer.start()
    try:
        parts = sorted(await _partitions(settings, topic))
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return {tp.partition: o for tp, o in ends.items()}
    finally:
        await consumer.stop()


async def _partitions(settings: Settings, topic: str) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
        return [p["partition"] for p in described["partitions"]]
    finally:
        await admin.close()


async def list_topics(settings: Settings) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


def small_events() -> list[dict[str, Any]]:
    return list(generate_events(Scenario.small()))


def recent(events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], float]:
    """The events moved by whole days to within a day of now: the topic's time retention (3 days)
    would otherwise delete records stamped with the simulator's dates while a test runs. Whole
    days keep the windows aligned as they were; account creation times move along."""
    shift = (time.time() - 60 - max(e["ts"] for e in events)) // 86400 * 86400

    def moved(e: dict[str, Any]) -> dict[str, Any]:
        created = e.get("account_created_ts")
        return {**e, "ts": e["ts"] + shift,
                "account_created_ts": None if created is None else created + shift}

    return [moved(e) for e in events], shift


async def produce_with_event_time(settings: Settings, events: list[dict[str, Any]]
                                  ) -> list[tuple[int, int, float]]:
    """Records stamped with their event time (CreateTime = ts); (partition, offset, ts) each."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=10)
    await producer.start()
    try:
        futures = [await producer.send(settings.topic_requests, orjson.dumps(e),
                                       key=e["account_id"].encode(),
                                       timestamp_ms=int(e["ts"] * 1000)) for e in events]
        metas = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [(m.partition, m.offset, e["ts"]) for m, e in zip(metas, events, strict=True)]


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


# --- time ranges ------------------------------------------------------------------------------


def test_time_range_resolves_to_offsets_on_every_partition(run: Settings) -> None:
    events, shift = recent(small_events())
    placed = asyncio.run(produce_with_event_time(run, events))
    since, until = T0 + shift + 1200, T0 + shift + 2400  # minutes 20 to 40 of the hour

    bridge = KafkaBridge(run.kafka_bootstrap)
    try:
        source = TopicSource(bridge, run.topic_requests, RangeSpec(since=since, until=until))
        got = {p.partition: (p.start, p.end) for p in source.range.partitions}
        # expected per partition: the first offset at/after `since` (timestamps are in offset
        # order per partition here) to the first offset at/after `until`
        expected = {}
        for part in range(run.partitions):
            mine = sorted((o, ts) for p, o, ts in placed if p == part)
            start = next((o for o, ts in mine if int(ts * 1000) >= int(since * 1000)),
                         len(mine))
            end = next((o for o, ts in mine if int(ts * 1000) >= int(until * 1000)), len(mine))
            expected[part] = (start, end)
        assert got == expected
        assert all(s < e for s, e in got.values()), "every partition has records in the range"
        seen = [ev for ev, _ in source.events(lambda bad: pytest.fail(bad.decode()))]
    finally:
        bridge.close()
    wanted = [e for e in events if int(since * 1000) <= int(e["ts"] * 1000) < int(until * 1000)]
    assert sorted(e.event_id for e in seen) == sorted(e["event_id"] for e in wanted)
    # the partitions are merged by record time: the events come out in time order
    assert [e.ts for e in seen] == sorted(e.ts for e in seen)


def test_range_errors_are_clear(cli_env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    run = cli_env
    asyncio.run(produce_with_event_time(run, recent(small_events()[:300])[0]))
    assert main(["replay", "--topic", run.topic_requests, "--since", "now"]) == 2
    assert "holds no records" in capsys.readouterr().err
    assert main(["replay", "--topic", run.topic_requests + "x"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and run.topic_requests in err  # suggests the near name
    assert main(["replay", "--topic", run.topic_requests, "--from-offset", "5",
                 "--since=-1h"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["replay", "--topic", run.topic_dead_letter]) == 2
    assert "is empty" in capsys.readouterr().err


# --- what a replay writes ---------------------------------------------------------------------


def test_replay_of_a_topic_writes_nothing_to_kafka_unless_told(
        cli_env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = cli_env
    asyncio.run(produce(run, event_records(small_events())))
    prefix = run.topic_requests.rsplit(".", 1)[0]  # this test's topics (others share the broker)

    def ours() -> set[str]:
        return {t for t in asyncio.run(list_topics(run)) if t.startswith(prefix)}

    before = ours()
    out = tmp_path / "d.jsonl"
    assert main(["replay", "--topic", run.topic_requests, "--output", str(out), "--quiet"]) == 0
    decisions = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    assert decisions, "the small scenario leads to decisions"
    assert main(["replay", "--topic", run.topic_requests, "--quiet"]) == 0  # no output at all
    assert "not written anywhere" in capsys.readouterr().err
    assert main(["replay", "--topic", run.topic_requests, "--to-enforcement-topic"]) == 2
    assert "--i-mean-it" in capsys.readouterr().err
    assert main(["replay", "--topic", run.topic_requests, "--shadow-topic",
                 run.topic_enforcement]) == 2
    assert "is the live enforcement topic" in capsys.readouterr().err
    assert main(["replay", "--topic", run.topic_requests, "--shadow-topic",
                 run.topic_enforcement + ".shadow"]) == 2  # missing: not created silently
    assert "--create-shadow-topic" in capsys.readouterr().err
    # nothing was written to any topic, and no topic was created
    for topic in (run.topic_enforcement, run.topic_cluster_summaries,
                  run.topic_account_verdicts, run.topic_dead_letter):
        assert sum(asyncio.run(end_offsets(run, topic)).values()) == 0, topic
    assert ours() == before


def test_shadow_topic_and_confirmed_enforcement_topic(
        cli_env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = cli_env
    asyncio.run(produce(run, event_records(small_events())))
    shadow = f"{run.topic_enforcement}.shadow"
    try:
        out = tmp_path / "d.jsonl"
        assert main(["replay", "--topic", run.topic_requests, "--quiet", "--output", str(out),
                     "--shadow-topic", shadow, "--create-shadow-topic"]) == 0
        in_file = [orjson.loads(x) for x in out.read_bytes().splitlines()]
        records = asyncio.run(consume_until(run, shadow, lambda rs: len(rs) >= len(in_file),
                                            timeout_s=30))
        published = [orjson.loads(r.value) for r in records]
        assert sorted(d["decision_id"] for d in published) == \
            sorted(d["decision_id"] for d in in_file)
        assert {d["mode"] for d in published} == {"shadow"} == {d["mode"] for d in in_file}
        assert all(r.key.decode() == orjson.loads(r.value)["account_id"] for r in records)
        assert sum(asyncio.run(end_offsets(run, run.topic_enforcement)).values()) == 0
        # explicitly confirmed: the live enforcement topic, mode from the settings (enforce)
        assert main(["replay", "--topic", run.topic_requests, "--quiet",
                     "--to-enforcement-topic", "--i-mean-it"]) == 0
        live = asyncio.run(consume_until(run, run.topic_enforcement,
                                         lambda rs: len(rs) >= len(in_file), timeout_s=30))
        assert {orjson.loads(r.value)["mode"] for r in live} == {"enforce"}
        # the same decisions: shadow mode changes only the mode (and so the ids)

        def what(d: dict[str, Any]) -> tuple[Any, ...]:
            return d["account_id"], d["action"], d["event_ts"], d["score"], d["cluster_ids"]

        assert sorted(what(orjson.loads(r.value)) for r in live) == sorted(map(what, in_file))
    finally:
        asyncio.run(delete_topics(run.kafka_bootstrap, [shadow]))


def test_sweep_over_a_topic_range_scored_on_a_labels_topic(
        cli_env: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = cli_env
    scenario = Scenario.small()
    events, shift = recent(list(generate_events(scenario)))
    asyncio.run(produce_with_event_time(run, events))
    until = iso(T0 + shift + 2700)  # the first 45 minutes
    labels_topic = f"{run.topic_requests}.labels"
    asyncio.run(ensure_topics(run.kafka_bootstrap, [TopicSpec("labels", labels_topic, 3)]))
    try:
        asyncio.run(produce(run, [(lab["account_id"].encode(), orjson.dumps(lab))
                                  for lab in account_labels(scenario)], topic=labels_topic))
        out = tmp_path / "sw"
        assert main(["sweep", "--topic", run.topic_requests, "--until", until,
                     "--labels-topic", labels_topic, "--grid", "block_score=0.8,0.9",
                     "--out", str(out), "--jobs", "2"]) == 0
        text = capsys.readouterr().out
        assert "3 of 3 runs" in text and "* run-03" in text
        dumped = [orjson.loads(x) for x in (out / "events.jsonl").read_bytes().splitlines()]
        assert dumped and max(e["ts"] for e in dumped) < T0 + shift + 2700
        assert (out / "sweep.png").is_file() and (out / "runs" / "run-03.jsonl").is_file()
        # the sweep's current-setting run is the plain replay of the same range
        plain = tmp_path / "plain.jsonl"
        assert main(["replay", "--topic", run.topic_requests, "--until", until,
                     "--output", str(plain), "--quiet"]) == 0
        def ids(path: Path) -> list[str]:
            return [orjson.loads(x)["decision_id"] for x in path.read_bytes().splitlines()]

        assert ids(plain) and ids(out / "runs" / "run-03.jsonl") == ids(plain)
    finally:
        asyncio.run(delete_topics(run.kafka_bootstrap, [labels_topic]))


# --- parity with the live fleet ---------------------------------------------------------------

# Large enough for many clusters and decisions (so that exact parity cannot hold by chance):
# ~20k events over 1.5 simulated hours, paced at 400/s (~110 simulated seconds per second) so
# two workers on a shared 2-core machine keep their verdict round trip well inside the delay.
PARITY_SCENARIO = dataclasses.replace(Scenario.default(), scale=0.25, duration_h=1.5, seed=11)
PARITY_RATE = 400.0
# 30 minutes of event time is ~16 s of wall clock for the verdict round trip and the skew
# between the workers (at 800/s with 15 minutes, ~80% of the verdicts came late: the fleet
# was saturated); no partition counts as idle.
PARITY_ENV = {"DISTILLGUARD_DETECTOR_VERDICT_DELAY_S": "1800",
              "DISTILLGUARD_DETECTOR_SOURCE_IDLE_S": "3600"}


@dataclasses.dataclass
class LiveRun:
    settings: Settings
    events: int
    requests: list[Any]
    summaries: list[Any]
    verdicts: list[Any]
    decisions: list[dict[str, Any]]
    replayed: list[dict[str, Any]]
    replay_summaries: dict[int, list[ClusterSummary]]
    replay_verdicts: list[AccountVerdict]
    replay_counts: dict[str, int]
    worker_alignment: list[Any]  # what each worker counted as out of step (/health)


def recording_pipeline(cfg: DetectorConfig, partitions: int) -> Pipeline:
    """The replay's pipeline, remembering what it routed between the stages."""
    pipeline = Pipeline(cfg, partitions)
    pipeline.routed_summaries, pipeline.routed_verdicts = [], []
    return pipeline


def by_partition(summaries: list[ClusterSummary], partitions: int
                 ) -> dict[int, list[ClusterSummary]]:
    out: dict[int, list[ClusterSummary]] = defaultdict(list)
    for s in summaries:
        out[partition_for(s.cluster_key, partitions)].append(s)
    return out


@pytest.fixture(scope="module")
def live(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveRun]:
    """Two workers on paced traffic; every topic recorded; the requests topic replayed."""
    run_id = uuid.uuid4().hex[:10]
    settings = load_settings(env=run_env(run_id, broker, **PARITY_ENV))
    asyncio.run(ensure_topics(broker, settings.topics.values()))
    fleet = Fleet(settings, tmp_path_factory.mktemp("fleet"), env=PARITY_ENV)
    try:
        fleet.start(count=2)
        split = wait_for_split(fleet, settings.partitions, timeout_s=90)
        assert len(split) == 2 and all(split), f"workers did not both get partitions: {split}"
        events = list(generate_events(PARITY_SCENARIO))
        asyncio.run(produce_events(broker, settings.topic_requests, events, rate=PARITY_RATE,
                                   progress=False))

        def alive() -> bool:
            return all(fleet.alive())

        # caught up on all three inputs, twice over (a verdict may follow the last summary)
        for topic in [settings.topic_requests, settings.topic_cluster_summaries,
                      settings.topic_account_verdicts] * 2:
            lag = asyncio.run(wait_for_lag_zero(settings, topic, settings.partitions, 180,
                                                alive))
            assert lag == 0, f"the fleet did not catch up on {topic}\n{fleet.logs()}"
        assert alive(), fleet.logs()

        def everything(topic: str) -> list[Any]:
            total = sum(asyncio.run(end_offsets(settings, topic)).values())
            return asyncio.run(consume_until(settings, topic, lambda rs: len(rs) >= total,
                                             timeout_s=60))

        alignment = [(h or {}).get("alignment") for h in fleet.health()]
        requests = everything(settings.topic_requests)
        summaries = everything(settings.topic_cluster_summaries)
        verdicts = everything(settings.topic_account_verdicts)
        decisions = [orjson.loads(r.value) for r in everything(settings.topic_enforcement)]
        assert decisions, f"no live decisions\n{fleet.logs()}"

        bridge = KafkaBridge(broker)
        try:
            source = TopicSource(bridge, settings.topic_requests, RangeSpec())
            out = tmp_path_factory.mktemp("replay") / "replayed.jsonl"
            pipeline = recording_pipeline(settings.detector, source.partition_count)
            result = replay(source, settings.detector, sinks=[FileSink(out)],
                            pipeline=pipeline)
        finally:
            bridge.close()
        assert result.events == len(events) == len(requests)
        yield LiveRun(settings, len(events), requests, summaries, verdicts, decisions,
                      [orjson.loads(x) for x in out.read_bytes().splitlines()],
                      by_partition(pipeline.routed_summaries or [], source.partition_count),
                      pipeline.routed_verdicts or [], dict(pipeline.counts),
                      alignment)
    finally:
        fleet.stop()
        asyncio.run(delete_topics(broker, [t.name for t in settings.topics.values()]))


def by_account(decisions: list[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for d in decisions:
        out[d["account_id"]].append(d["decision_id"])
    return dict(out)


@pytest.mark.slow
def test_each_stage_of_the_fleet_is_reproduced_from_what_it_consumed(live: LiveRun) -> None:
    # 1. account stage: what the replay fans out to each cluster partition is exactly what the
    #    two workers sent there (as a multiset: the order across account partitions differs)
    recorded: dict[int, Counter[str]] = defaultdict(Counter)
    for r in live.summaries:
        record = decode_cluster_record(r.value)
        if not isinstance(record, SourceTick | SourceIdle):
            for s in record:
                recorded[r.partition][orjson.dumps(s.to_wire())] += 1
    replayed: dict[int, Counter[str]] = defaultdict(Counter)
    for p, summaries in live.replay_summaries.items():
        for s in summaries:
            replayed[p][orjson.dumps(s.to_wire())] += 1
    assert sum(sum(c.values()) for c in recorded.values()) > 10_000
    assert recorded == replayed

    # 2. cluster stage: the core over the recorded summaries topic, each partition in offset
    #    order as the workers read it, reproduces the recorded verdicts exactly
    #    (summaries and the account partitions' ticks, as the workers read them)
    stage = ClusterStage(live.settings.detector)
    states: dict[str, Any] = {}
    parts = [ClusterPartition.create(live.settings.detector, sources=live.settings.partitions)
             for _ in range(live.settings.partitions)]
    reproduced: dict[tuple[str, str], list[str]] = defaultdict(list)
    for r in sorted(live.summaries, key=lambda r: (r.partition, r.offset)):
        record = decode_cluster_record(r.value)
        part = parts[r.partition]
        if isinstance(record, SourceIdle):  # a partition reported idle (event-time alignment)
            keys = stage.on_source_idle(part, record.source)
        elif isinstance(record, SourceTick):
            keys = stage.on_source_tick(part, record.source, record.tick)
        else:
            for s in record:
                states[s.cluster_key], _ = stage.on_summary(states.get(s.cluster_key), s, part)
            continue
        for key in keys:
            out = stage.settle(states[key], part)
            for av in out.verdicts:
                reproduced[(av.account_id, av.verdict.cluster_key)].append(
                    av.verdict.verdict_id)
            for av in out.convictions:  # broadcast: once to each account partition
                reproduced[(av.account_id, av.verdict.cluster_key)] += (
                    [av.verdict.verdict_id] * live.settings.partitions)
    sent: dict[tuple[str, str], list[str]] = defaultdict(list)
    for r in sorted(live.verdicts, key=lambda r: (r.partition, r.offset)):
        for av in decode_verdict_record(r.value):
            sent[(av.account_id, av.verdict.cluster_key)].append(av.verdict.verdict_id)
    assert sent and {k: sorted(v) for k, v in reproduced.items()} == {
        k: sorted(v) for k, v in sent.items()}


@pytest.mark.slow
def test_replaying_the_requests_topic_reproduces_the_live_decisions(live: LiveRun) -> None:
    a, b = by_account(live.decisions), by_account(live.replayed)
    assert len(a) >= 50, f"too few accounts acted on for parity to mean much: {len(a)}"
    assert live.replay_counts.get("late_verdicts", 0) == 0, live.replay_counts
    differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    sent = Counter((av.account_id, av.verdict.verdict_id)
                   for r in live.verdicts for av in decode_verdict_record(r.value))
    replay_verdicts = Counter((v.account_id, v.verdict.verdict_id) for v in live.replay_verdicts)
    assert not differ, (
        f"{len(differ)} of {len(set(a) | set(b))} accounts got other decision ids "
        f"(replay: {live.replay_counts}; workers: {live.worker_alignment}) "
        f"(live {len(live.decisions)} decisions, replay {len(live.replayed)}); verdicts to "
        f"accounts only live {sum((sent - replay_verdicts).values())}, only in the replay "
        f"{sum((replay_verdicts - sent).values())} of {sum(sent.values())}; "
        f"first: {differ[:3]}; the first one live {_brief(live.decisions, differ[0])}, "
        f"replayed {_brief(live.replayed, differ[0])}")


def _brief(decisions: list[dict[str, Any]], account: str) -> list[tuple[Any, ...]]:
    return [(d["action"], d["event_ts"], d["score"], d["reasons"][1][:60])
            for d in decisions if d["account_id"] == account]
