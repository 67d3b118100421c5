"""Agent tests of the Faust topology without a broker.

Each test builds the real app (`streams.worker.topology.create_app`) and drives one agent through
Faust's own test harness (`agent.test_context()`, `put()`), so decoding, the core, the tables and
the sends run exactly as in a worker. Only the producer is replaced: `Topic.send` (decisions,
dead letters), `Topic.send_soon` (Faust's own changelog writes) and the producer's `send` (the
batches between the stages and the held changelog records) are recorded instead of produced;
the changelog fakes record the real bytes.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import orjson
import pytest
from faust.topics import Topic
from faust.transport.drivers.aiokafka import Producer as AiokafkaProducer
from faust.types import Message

from distillguard.models.account import AccountState, Verdict
from distillguard.models.cluster import ClusterState
from distillguard.models.cluster_stage import ClusterStage
from distillguard.models.config import DetectorConfig
from distillguard.models.keys import infrastructure_keys, template_keys
from distillguard.models.messages import BROADCAST, AccountVerdict, ClusterSummary, SourceTick
from distillguard.models.partitioning import partition_for
from distillguard.streams.edge.codec import (
    ACCOUNT_STATE_CODEC,
    CLUSTER_STATE_CODEC,
    decode_account_state,
    decode_cluster_record,
    decode_cluster_state,
    decode_verdict_record,
    encode_batch,
    encode_summary,
    encode_verdict,
)
from distillguard.streams.edge.settings import Settings, load_settings
from distillguard.streams.worker.topology import create_app
from tests.conftest import event_dict, make_event

T0 = 1_700_000_000.0


@dataclass
class Sent:
    topic: str
    key: Any
    value: Any
    partition: int | None = None
    headers: Any = None


class Outbox:
    """What the agents sent, by topic."""

    def __init__(self, settings: Settings) -> None:
        self.records: list[Sent] = []
        self.topics = settings.topics
        self.app_id = settings.app_id

    def to(self, logical: str) -> list[Sent]:
        name = self.topics[logical].name
        return [r for r in self.records if r.topic == name]

    def changelog(self, table: str) -> list[Sent]:
        return [r for r in self.records if r.topic == f"{self.app_id}-{table}-changelog"]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Event-time alignment waits for the cluster stage's judged marks, which these tests of one
    # stage at a time never send: it is tested on the broker (tests/integration).
    return load_settings(env={"DISTILLGUARD_APP_ID": f"dg-agents-{uuid.uuid4().hex[:8]}",
                              "DISTILLGUARD_DATA_DIR": str(tmp_path / "faust"),
                              "DISTILLGUARD_EVENT_TIME_ALIGNMENT": "false"})


@pytest.fixture
def app(settings: Settings) -> faust.App:
    app = create_app(settings)
    app.finalize()
    return app


@pytest.fixture
def outbox(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Outbox:
    return record_sends(settings, monkeypatch)


def record_sends(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Outbox:
    box = Outbox(settings)

    async def send(self: Topic, *, key: Any = None, value: Any = None,
                   partition: int | None = None, **_: Any) -> None:
        box.records.append(Sent(self.get_topic_name(), key, value, partition))

    def send_soon(self: Topic, *, key: Any = None, value: Any = None, partition: int | None = None,
                  key_serializer: Any = None, value_serializer: Any = None,
                  **_: Any) -> SimpleNamespace:
        k, _headers = self.prepare_key(key, key_serializer)
        v, _headers = self.prepare_value(value, value_serializer)
        box.records.append(Sent(self.get_topic_name(), k, v))
        return SimpleNamespace(message=SimpleNamespace(partition=partition))

    async def produce(self: Any, topic: str, key: bytes | None, value: bytes | None,
                      partition: int | None, timestamp: Any, headers: Any, **_: Any) -> None:
        box.records.append(Sent(topic, key, value, partition, headers))

    monkeypatch.setattr(Topic, "send", send)
    monkeypatch.setattr(Topic, "send_soon", send_soon)
    # the records sent in volume go straight to the producer (streams/worker/topology.py, produce)
    monkeypatch.setattr(AiokafkaProducer, "send", produce)
    return box


async def send_held(app: faust.App) -> None:
    """What the worker's periodic timer does (the test harness runs no timers): send the
    records the agents hold (streams/worker/outbox.py, streams/worker/held_writes.py)."""
    await app.runtime.send_held()


def run(coro_fn: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(coro_fn(), timeout=30))


def request_bytes(account: str, ts: float, n: int = 0, **fields: Any) -> bytes:
    return orjson.dumps(event_dict(account, ts, n, **fields))


def partition_of(key: str, settings: Settings) -> int:
    return partition_for(key, settings.partitions)


# --- account stage ----------------------------------------------------------------------------


def test_valid_event_updates_the_accounts_table(app: faust.App, settings: Settings,
                                                outbox: Outbox) -> None:
    fields = {"payment_fingerprint": "pay-1", "reasoning_requested": True}

    async def scenario() -> None:
        async with app.agents["account_stage"].test_context() as agent:
            await agent.put(request_bytes("acct-1", T0, **fields), key=b"acct-1",
                            partition=partition_of("acct-1", settings))
            await agent.put(request_bytes("acct-1", T0 + 5, 1, **fields), key=b"acct-1",
                            partition=partition_of("acct-1", settings))
            await send_held(app)
    run(scenario)

    state = app.tables["accounts"]["acct-1"]
    assert isinstance(state, AccountState)
    assert state.requests == 2 and state.last_ts == T0 + 5
    assert state.window is not None and state.window.reasoning == 2
    # the first event announced the account to its infrastructure clusters; the second, whose
    # prompt now recurs in the partition, to its template buckets; keyed by cluster key
    ev = make_event("acct-1", T0, **fields)
    expected = [*infrastructure_keys(ev), *template_keys(ev.simhash,
                                                         settings.detector.simhash_bands)]
    records = outbox.to("cluster_summaries")
    # first of all, the partition's tick, to every partition of the cluster stage
    ticks = [r for r in records if isinstance(decode_cluster_record(r.value), SourceTick)]
    p = partition_of("acct-1", settings)
    tick = int(T0 // settings.detector.cluster_tick_s)
    assert records[:len(ticks)] == ticks
    assert [(decode_cluster_record(r.value), r.partition) for r in ticks] == [
        (SourceTick(p, tick), q) for q in range(settings.topics["cluster_summaries"].partitions)]
    # then the summaries, held and sent as one record per cluster partition
    # (streams/worker/outbox.py), each on the partition its cluster key maps to
    batches = records[len(ticks):]
    summaries = [s for r in batches for s in decode_cluster_record(r.value)]
    assert sorted(s.cluster_key for s in summaries) == sorted(expected)
    assert all(partition_of(s.cluster_key, settings) == r.partition
               for r in batches for s in decode_cluster_record(r.value))
    assert all(s.kind == "join" for s in summaries)
    # the state reached the changelog through our orjson codec, not json or pickle
    # once: the newest state of the account, held until the batch was sent
    changelog = outbox.changelog("accounts")
    assert len(changelog) == 1 and changelog[-1].key == b'"acct-1"'
    assert decode_account_state(changelog[-1].value) == state
    assert outbox.to("dead_letter") == []


def test_a_state_held_as_its_bytes_is_decoded_at_its_next_event_and_a_bad_one_starts_afresh(
        app: faust.App, settings: Settings, outbox: Outbox) -> None:
    """Recovered (and idle) states are the changelog's bytes in the table
    (streams/worker/idle_states.py): the partition's first event re-registers them, an
    account's next event decodes its own; one that does not decode is dropped and reported,
    its account starts afresh, and nothing is dead-lettered."""
    table = app.tables["accounts"]
    before = AccountState.new("acct-1", T0 - 60)
    before.requests = 7
    table.data["acct-1"] = orjson.dumps(before.to_wire())
    table.data["acct-bad"] = b'["acct-bad", "not a state"]'

    async def scenario() -> None:
        async with app.agents["account_stage"].test_context() as agent:
            for account in ("acct-1", "acct-bad"):
                await agent.put(request_bytes(account, T0), key=account.encode(),
                                partition=partition_of(account, settings))
            await send_held(app)
    run(scenario)

    states = app.runtime.states["accounts"]
    assert states.get("acct-1").requests == 8
    assert states.get("acct-bad").requests == 1
    assert states.counts()["undecodable"] == 1
    assert outbox.to("dead_letter") == []


def test_with_idle_states_on_disk_an_idle_account_leaves_memory_and_its_next_event_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """idle_states_on_disk (streams/worker/cold_states.py): an account unused for a generation
    is on the worker's disk, not in the table's store; its next event reads it back and the
    changelog gets the state that follows from it. A recovered state on disk is re-registered
    by its partition's first event like one in the store."""
    disk = load_settings(env={"DISTILLGUARD_APP_ID": f"dg-agents-{uuid.uuid4().hex[:8]}",
                              "DISTILLGUARD_DATA_DIR": str(tmp_path / "faust"),
                              "DISTILLGUARD_EVENT_TIME_ALIGNMENT": "false",
                              "DISTILLGUARD_IDLE_STATES_ON_DISK": "true"})
    app = create_app(disk)
    app.finalize()
    box = record_sends(disk, monkeypatch)
    table = app.tables["accounts"]
    states = app.runtime.states["accounts"]
    recovered = AccountState.new("acct-2", T0 - 60)
    recovered.requests = 4
    states.cold.put("acct-2", orjson.dumps(recovered.to_wire()))

    async def scenario() -> None:
        async with app.agents["account_stage"].test_context() as agent:
            async def event(account: str, ts: float) -> None:
                await agent.put(request_bytes(account, ts), key=account.encode(),
                                partition=partition_of(account, disk))
                await send_held(app)

            await event("acct-1", T0)
            later = time.monotonic() + 100  # generations of idle_state_after_s (10 s)
            for now in (later, later + 11, later + 22):
                states.after_flush(now=now)
            assert "acct-1" not in table.data and states.on_disk() == 2
            await event("acct-1", T0 + 5)
            await event("acct-2", T0 + 6)
    run(scenario)

    assert states.get("acct-1").requests == 2 and states.get("acct-2").requests == 5
    assert states.on_disk() == 0 and states.counts()["decodes"] == 2
    newest = {r.key: r.value for r in box.changelog("accounts")}
    assert decode_account_state(newest[b'"acct-1"']).requests == 2
    assert box.to("dead_letter") == []
    on_disk_dir = tmp_path / "faust" / "idle-states"
    assert [d.name for d in on_disk_dir.iterdir()] == [states.cold.path.parent.name]


def test_invalid_records_go_to_dead_letter_and_the_agent_keeps_going(
        app: faust.App, settings: Settings, outbox: Outbox) -> None:
    bad = [(b"{not json", b"acct-2", "not JSON"),
           (request_bytes("acct-2", T0), b"someone-else", "account_id"),
           (request_bytes("acct-2", T0, status=42), b"acct-2", "'status'"),
           (request_bytes("acct-2", T0), None, "no key")]
    offsets = []

    async def scenario() -> None:
        async with app.agents["account_stage"].test_context() as agent:
            for value, key, _ in bad:
                event = await agent.put(value, key=key, partition=3)
                offsets.append(event.message.offset)
            await agent.put(request_bytes("acct-3", T0), key=b"acct-3", partition=3)
    run(scenario)

    dead = [orjson.loads(r.value) for r in outbox.to("dead_letter")]
    assert len(dead) == len(bad)
    for record, (value, key, words), offset in zip(dead, bad, offsets, strict=True):
        assert words in record["reason"]
        assert base64.b64decode(record["value_b64"]) == value
        assert record["key_b64"] == (base64.b64encode(key).decode() if key else None)
        assert record["source_topic"] == settings.topics["requests"].name
        assert (record["source_partition"], record["source_offset"]) == (3, offset)
    assert "acct-2" not in app.tables["accounts"]
    assert app.tables["accounts"]["acct-3"].requests == 1  # the next valid event was processed


def test_an_event_time_ahead_of_its_record_is_dead_lettered_and_moves_nothing(
        app: faust.App, settings: Settings, outbox: Outbox) -> None:
    # The limit is the record's own timestamp (when the gateway wrote it) plus
    # max_event_ahead_s, so a worker draining a backlog refuses what a live one would.
    written = T0 + 60.0
    ahead = settings.max_event_ahead_s

    async def scenario() -> None:
        async with app.agents["account_stage"].test_context() as agent:
            await agent.put(request_bytes("acct-6", T0), key=b"acct-6", partition=5,
                            timestamp=written)
            await agent.put(request_bytes("acct-7", written + ahead + 3600.0), key=b"acct-7",
                            partition=5, timestamp=written)
            await agent.put(request_bytes("acct-6", written + ahead - 1.0), key=b"acct-6",
                            partition=5, timestamp=written)
    run(scenario)
    dead = [orjson.loads(r.value) for r in outbox.to("dead_letter")]
    assert len(dead) == 1 and "'ts' is 3600 s past" in dead[0]["reason"], dead
    assert "acct-7" not in app.tables["accounts"]
    # the partition's event time did not jump: the next honest event is not late
    assert app.tables["accounts"]["acct-6"].requests == 2
    assert app.tables["accounts"]["acct-6"].late_events == 0


def test_a_gateway_whose_clock_runs_ahead_is_caught_by_the_worker_s_clock(
        app: faust.App, outbox: Outbox) -> None:
    # Its records are stamped ahead too (CreateTime comes from the same clock), so the record's
    # timestamp alone would let them through.
    ahead = time.time() + 86_400.0

    async def scenario() -> None:
        async with app.agents["account_stage"].test_context() as agent:
            await agent.put(request_bytes("acct-9", ahead), key=b"acct-9", partition=2,
                            timestamp=ahead)
    run(scenario)
    dead = [orjson.loads(r.value) for r in outbox.to("dead_letter")]
    assert len(dead) == 1 and "'ts' is 86" in dead[0]["reason"], dead
    assert "acct-9" not in app.tables["accounts"]


def test_a_huge_integer_is_refused_before_it_reaches_the_account_s_state(
        app: faust.App, outbox: Outbox) -> None:
    # 1e300 is an integral JSON number: unbounded, it was summed into the account's window, its
    # state could no longer be encoded for the changelog, and each later request of the account
    # failed with it.
    async def scenario() -> None:
        async with app.agents["account_stage"].test_context() as agent:
            await agent.put(request_bytes("acct-8", T0, completion_tokens=1e300), key=b"acct-8",
                            partition=1)
            for i in range(3):
                await agent.put(request_bytes("acct-8", T0 + 1 + i), key=b"acct-8", partition=1)
        await send_held(app)
    run(scenario)
    dead = [orjson.loads(r.value) for r in outbox.to("dead_letter")]
    assert [d["reason"] for d in dead] == [
        "field 'completion_tokens' must be 0..10000000, got 1e+300"], dead
    assert app.tables["accounts"]["acct-8"].requests == 3
    assert decode_account_state(outbox.changelog("accounts")[-1].value).requests == 3


def test_poison_record_does_not_stop_the_agent(app: faust.App, outbox: Outbox) -> None:
    async def scenario() -> None:
        async with app.agents["account_stage"].test_context() as agent:
            await agent.put(request_bytes("acct-4", T0, task_category=["coding"]),
                            key=b"acct-4", partition=0)
            await agent.put(request_bytes("acct-5", T0), key=b"acct-5", partition=0)
    run(scenario)
    assert len(outbox.to("dead_letter")) == 1
    assert app.tables["accounts"]["acct-5"].requests == 1


# --- cluster stage ----------------------------------------------------------------------------


def _summary(account: str, ts: float, kind: str, key: str = "pay:shared") -> ClusterSummary:
    cfg = DetectorConfig()
    n = 1 if kind == "join" else 30  # a join carries the joining request
    # a young account that harvests plainly (its own behaviour, models/behaviour.py)
    return ClusterSummary(key, account, kind, int(ts // cfg.window_s) * cfg.window_s, ts, n, n,
                          n, n * 3000, True, ts, tick=int(ts // cfg.cluster_tick_s),
                          harvest=1.0, history=1)


def _ticks(ts: float, settings: Settings) -> list[bytes]:
    """Every account partition announcing the tick after ts's."""
    tick = int(ts // settings.detector.cluster_tick_s) + 1
    return [encode_summary(SourceTick(src, tick)) for src in range(settings.partitions)]


def test_cluster_stage_convicts_and_tells_members(app: faust.App, settings: Settings,
                                                  outbox: Outbox) -> None:
    members = [f"bot-{i:03d}" for i in range(8 * settings.detector.cluster_min_accounts)]
    p = partition_of("pay:shared", settings)

    async def scenario() -> None:
        async with app.agents["cluster_stage"].test_context() as agent:
            for kind, dt in (("join", 0.0), ("window", 60.0)):
                for i, account in enumerate(members):
                    await agent.put(encode_summary(_summary(account, T0 + dt + i, kind)),
                                    key=b"pay:shared", partition=p)
            await agent.put(b"not a summary", key=b"pay:shared", partition=p)
            await send_held(app)
            assert outbox.to("account_verdicts") == []  # nothing is judged before its tick
            for tick in _ticks(T0 + 60.0 + len(members), settings):
                await agent.put(tick, key=b"tick", partition=p)
            await agent.put(encode_summary(_summary("late-joiner", T0 + 600, "join")),
                            key=b"pay:shared", partition=p)
            for tick in _ticks(T0 + 600, settings):
                await agent.put(tick, key=b"tick", partition=p)
            await send_held(app)
    run(scenario)

    state = app.tables["clusters"]["pay:shared"]
    assert isinstance(state, ClusterState) and state.verdict is not None
    # held and sent as one record per account partition
    sent = [(r.partition, v) for r in outbox.to("account_verdicts")
            for v in decode_verdict_record(r.value)]
    told = [v for _, v in sent]
    # Every member is told, on its own partition, the late joiner at the end of its tick.
    assert {v.account_id for v in told} - {BROADCAST} == {*members, "late-joiner"}
    assert all(q == partition_of(v.account_id, settings) for q, v in sent
               if v.account_id != BROADCAST)
    # each conviction also goes to every account partition, for accounts joining later
    broadcast = [(v.verdict.verdict_id, q) for q, v in sent if v.account_id == BROADCAST]
    convictions = {v for v, _ in broadcast}
    assert state.verdict.verdict_id in convictions
    assert sorted(broadcast) == sorted((v, q) for v in convictions
                                       for q in range(settings.partitions))
    dead = [orjson.loads(r.value) for r in outbox.to("dead_letter")]
    assert len(dead) == 1 and "internal error" in dead[0]["reason"]
    assert decode_cluster_state(outbox.changelog("clusters")[-1].value) == state


def test_a_crowd_too_big_to_wait_for_a_lagging_partition_is_judged_early(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No account partition announces a tick (all lag): the cluster's waiting summaries pass
    `cluster_pending_bytes`, so the oldest are judged at once and the members told, and the
    state the worker writes stays under the cap (issue 16: they grew without bound)."""
    settings = load_settings(env={"DISTILLGUARD_APP_ID": f"dg-agents-{uuid.uuid4().hex[:8]}",
                                  "DISTILLGUARD_DATA_DIR": str(tmp_path / "faust"),
                                  "DISTILLGUARD_EVENT_TIME_ALIGNMENT": "false"})
    # Under the settings' least (MIN_PENDING_BYTES), so that a few dozen summaries reach it.
    settings = dataclasses.replace(settings, detector=dataclasses.replace(
        settings.detector, cluster_pending_bytes=6000))
    app = create_app(settings)
    app.finalize()
    outbox = record_sends(settings, monkeypatch)
    members = [f"bot-{i:03d}" for i in range(8 * settings.detector.cluster_min_accounts)]
    p = partition_of("pay:shared", settings)

    async def scenario() -> None:
        async with app.agents["cluster_stage"].test_context() as agent:
            for kind, dt in (("join", 0.0), ("window", 60.0), ("window", 120.0)):
                for i, account in enumerate(members):
                    await agent.put(encode_summary(_summary(account, T0 + dt + i, kind)),
                                    key=b"pay:shared", partition=p)
            await send_held(app)
    run(scenario)

    state = app.tables["clusters"]["pay:shared"]
    assert isinstance(state, ClusterState) and state.verdict is not None
    assert state.pending_bytes <= 6000 and state.judged_early_before > 0
    assert app.runtime.core_counts["judged_early_summaries"] > 0
    told = {v.account_id for r in outbox.to("account_verdicts")
            for v in decode_verdict_record(r.value)}
    assert set(members) <= told
    assert decode_cluster_state(outbox.changelog("clusters")[-1].value) == state


# --- verdicts back at the account stage -------------------------------------------------------


def test_verdicts_lead_to_contract_valid_enforcement(app: faust.App, settings: Settings,
                                                     outbox: Outbox,
                                                     validate: Callable[[str, Any], None]) -> None:
    cfg = settings.detector
    p = partition_of("acct-9", settings)
    prompts = ["0123456789abcdef", "fedcba9876543210"]  # two templates sharing no band

    def verdict(key: str, ts: float, signature: int = 0) -> bytes:
        # a template bucket's verdict names the template its crowd used (its signature); the
        # crowds are campaigns' (prior 1), proven to harvest for long: they judge an account
        # too new to be judged by its own requests
        return encode_verdict(AccountVerdict("acct-9", Verdict(
            key, 0.9, ts, ts + cfg.verdict_ttl_s, f"cv-{key}", f"cluster {key} convicted",
            signature, 1.0, 1.0), ts))

    async def scenario() -> None:
        events, verdicts = app.agents["account_stage"], app.agents["apply_verdicts"]
        # template evidence rests on the account's own prompts: it sends both templates first
        async with events.test_context() as agent:
            for n, prompt in enumerate(prompts):
                await agent.put(request_bytes("acct-9", T0 + n, n, prompt_simhash=prompt),
                                key=b"acct-9", partition=p)
        async with verdicts.test_context() as agent:
            await agent.put(verdict("pay:p", T0), key=b"acct-9", partition=p)
            later = T0 + 300
            for prompt in prompts:
                for key in template_keys(int(prompt, 16), cfg.simhash_bands):
                    await agent.put(verdict(key, later, int(prompt, 16)), key=b"acct-9",
                                    partition=p)
        # held until the partition's event time reaches each verdict's time to apply
        assert outbox.to("enforcement") == []
        async with events.test_context() as agent:
            for n, ts in enumerate((T0 + cfg.verdict_delay_s, later + cfg.verdict_delay_s)):
                await agent.put(request_bytes("acct-9", ts, 10 + n), key=b"acct-9",
                                partition=p)
    run(scenario)

    decisions = outbox.to("enforcement")
    assert [orjson.loads(r.value)["action"] for r in decisions] == ["throttle", "block"]
    for r in decisions:
        assert r.key == b"acct-9"
        record = orjson.loads(r.value)
        validate("enforcement-decision", record)
        assert record["model_version"] == cfg.model_version and record["mode"] == "enforce"
    assert app.tables["accounts"]["acct-9"].action == "block"


# --- the app's shape --------------------------------------------------------------------------


def test_agents_topics_and_tables_are_named_partitioned_and_coded(app: faust.App,
                                                                  settings: Settings) -> None:
    topics = settings.topics
    channels = {name: agent.channel for name, agent in app.agents.items()}
    assert {n: c.get_topic_name() for n, c in channels.items()} == {
        "account_stage": topics["requests"].name,
        "cluster_stage": topics["cluster_summaries"].name,
        "apply_verdicts": topics["account_verdicts"].name}
    assert channels["account_stage"].partitions == topics["requests"].partitions
    assert channels["apply_verdicts"].partitions == topics["account_verdicts"].partitions
    assert channels["cluster_stage"].partitions == topics["cluster_summaries"].partitions
    # co-partitioned: an account's events and verdicts land on the same task
    assert topics["requests"].partitions == topics["account_verdicts"].partitions

    # account_contexts: JSON snapshots of an account partition's model and template counts
    assert set(app.tables) == {"accounts", "clusters", "account_contexts"}
    codecs = {"accounts": ACCOUNT_STATE_CODEC, "clusters": CLUSTER_STATE_CODEC,
              "account_contexts": "json"}
    for name, table in app.tables.items():
        assert table.key_serializer == "json"
        assert table.value_serializer == codecs[name]
        assert table.changelog_topic.get_topic_name() == f"{settings.app_id}-{name}-changelog"
    assert app.tables["accounts"].partitions == topics["requests"].partitions
    assert app.tables["account_contexts"].partitions == topics["requests"].partitions
    assert app.tables["clusters"].partitions == topics["cluster_summaries"].partitions
    # no pickle anywhere: the app's own defaults are raw bytes
    assert (app.conf.key_serializer, app.conf.value_serializer) == ("raw", "raw")
    serializers = [app.conf.key_serializer, app.conf.value_serializer]
    for table in app.tables.values():
        serializers += [table.key_serializer, table.value_serializer]
    assert not any("pickle" in str(s) for s in serializers)


@pytest.mark.parametrize("table_name", ["accounts", "clusters"])
def test_recovery_from_the_changelog_restores_the_state(settings: Settings, table_name: str
                                                        ) -> None:
    writer, reader = create_app(settings), create_app(settings)
    writer.finalize()
    reader.finalize()
    state: Any = (AccountState.new("acct-1", T0) if table_name == "accounts"
                  else ClusterState("pay:shared", current_window=1200))
    key = state.account_id if table_name == "accounts" else state.cluster_key
    table = writer.tables[table_name]
    changelog = table.changelog_topic
    key_bytes, _ = changelog.prepare_key(key, table.key_serializer)
    value_bytes, _ = changelog.prepare_value(state, table.value_serializer)

    async def recover() -> Any:
        target = reader.tables[table_name]
        message = Message(topic=changelog.get_topic_name(), partition=0, offset=0,
                          timestamp=T0, timestamp_type=0, headers=[], key=key_bytes,
                          value=value_bytes, checksum=None)
        event = await target.changelog_topic.decode(message)  # as the recovery consumer does
        target.apply_changelog_batch([event])
        # held as the changelog's bytes (an idle state) until its next use decodes it
        assert target.data[key] == value_bytes
        return reader.runtime.states[table_name].get(key)
    recovered = run(recover)
    assert recovered == state
    assert reader.tables[table_name].data[key] is recovered


def test_a_held_verdict_applies_when_any_event_of_the_partition_reaches_its_time(
        app: faust.App, settings: Settings, outbox: Outbox) -> None:
    cfg = settings.detector
    p = partition_of("acct-7", settings)
    other = next(f"other-{i}" for i in range(1000) if partition_of(f"other-{i}", settings) == p)

    async def scenario() -> None:
        events, verdicts = app.agents["account_stage"], app.agents["apply_verdicts"]
        async with events.test_context() as agent:
            await agent.put(request_bytes("acct-7", T0), key=b"acct-7", partition=p)
        async with verdicts.test_context() as agent:
            await agent.put(encode_verdict(AccountVerdict("acct-7", Verdict(
                "pay:p", 0.9, T0, T0 + cfg.verdict_ttl_s, "cv-p", "cluster pay:p convicted"),
                T0)), key=b"acct-7", partition=p)
        async with events.test_context() as agent:
            await agent.put(request_bytes(other, T0 + cfg.verdict_delay_s - 1), key=other.encode(),
                            partition=p)
            assert outbox.to("enforcement") == []
            await agent.put(request_bytes(other, T0 + cfg.verdict_delay_s, 1),
                            key=other.encode(), partition=p)
    run(scenario)

    decisions = [orjson.loads(r.value) for r in outbox.to("enforcement")]
    assert [(d["account_id"], d["action"]) for d in decisions] == [("acct-7", "throttle")]
    assert decisions[0]["event_ts"] == T0 + cfg.verdict_delay_s


def test_the_flush_before_a_commit_waits_until_every_changelog_record_is_sent(
        app: faust.App) -> None:
    """Faust flushes its producer buffer before it commits offsets; its own flush gave up after
    0.1 s without a send, so offsets were committed over changelog records still buffered
    (lost with a kill -9). A broker slower than 0.1 s per record must not end the flush."""
    from faust.transport.producer import ProducerBuffer
    buffer = app.producer.buffer
    assert type(buffer) is ProducerBuffer
    slow_sends = 3
    sent: list[int] = []

    async def flush_atmost(max_messages: int | None) -> int:
        if buffer.pending.qsize():  # one record per call, then "no send within 0.1 s"
            sent.append(buffer.pending.get_nowait())
        return len(sent)

    async def scenario() -> None:
        for i in range(slow_sends):
            buffer.pending.put_nowait(i)
        buffer.flush_atmost = flush_atmost  # type: ignore[method-assign]
        await buffer.flush()
    run(scenario)
    assert sent == list(range(slow_sends)) and buffer.size == 0


def test_the_flush_before_a_commit_sends_what_the_agents_hold_first(
        app: faust.App, settings: Settings, outbox: Outbox) -> None:
    """The state and the summaries an event made are held (streams/worker/held_writes.py, outbox.py);
    the producer's flush, which Faust awaits before it commits that event's offset and when
    partitions are revoked, must send them first."""
    p = partition_of("acct-h", settings)

    async def scenario() -> None:
        async with app.agents["account_stage"].test_context() as agent:
            await agent.put(request_bytes("acct-h", T0, payment_fingerprint="pay-h"),
                            key=b"acct-h", partition=p)
            assert outbox.changelog("accounts") == []  # held
            assert not [r for r in outbox.to("cluster_summaries")
                        if not isinstance(decode_cluster_record(r.value), SourceTick)]
            await app.producer.flush()
    run(scenario)

    assert [r.key for r in outbox.changelog("accounts")] == [b'"acct-h"']
    summaries = [s for r in outbox.to("cluster_summaries")
                 if not isinstance(decode_cluster_record(r.value), SourceTick)
                 for s in decode_cluster_record(r.value)]
    assert "pay:pay-h" in {s.cluster_key for s in summaries}


def test_a_cluster_that_fails_at_its_tick_is_dead_lettered_alone_and_the_tick_goes_on(
        app: faust.App, settings: Settings, outbox: Outbox,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A helper playing the adversary grew one crowd's state past max_state_bytes (1,200
    accounts with 128-character ids on a NAT's /24): the failure aborted the whole tick, so the
    other clusters of the partition were not settled, expiry was skipped and no verdict left."""
    settle = ClusterStage.settle
    settled: list[str] = []

    def failing_on_one_key(self: ClusterStage, state: Any, part: Any) -> Any:
        settled.append(state.cluster_key)
        if state.cluster_key == "pay:tick-bad":
            raise ValueError("cluster state over max_state_bytes")
        return settle(self, state, part)

    monkeypatch.setattr(ClusterStage, "settle", failing_on_one_key)
    keys = ["pay:tick-bad", "pay:tick-good-1", "pay:tick-good-2"]
    wires = [_summary(f"acct-{k}", T0, "join", key=k).to_wire() for k in keys]

    async def scenario() -> None:
        async with app.agents["cluster_stage"].test_context() as agent:
            await agent.put(encode_batch("summaries", wires), key=b"summaries", partition=0)
            for tick in _ticks(T0, settings):
                await agent.put(tick, key=b"tick", partition=0)
            await send_held(app)
    run(scenario)

    assert sorted(settled) == sorted(keys), settled  # every cluster of the tick was settled
    dead = [orjson.loads(r.value) for r in outbox.to("dead_letter")]
    assert len(dead) == 1 and "settling cluster pay:tick-bad" in dead[0]["reason"], dead


def test_a_summary_the_core_fails_on_is_dead_lettered_alone(
        app: faust.App, settings: Settings, outbox: Outbox,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """One record carries many summaries: the one the core fails on goes to the dead-letter
    topic; the others are folded and their clusters' states still reach the changelog."""
    on_summary = ClusterStage.on_summary

    def failing_on_one_key(self: ClusterStage, state: Any, s: ClusterSummary, part: Any) -> Any:
        if s.cluster_key == "pay:batch-bad":
            raise ValueError("a bug in the core")
        return on_summary(self, state, s, part)

    monkeypatch.setattr(ClusterStage, "on_summary", failing_on_one_key)
    good = [_summary(f"acct-{i}", T0 + i, "join", key=f"pay:batch-{i}") for i in range(3)]
    bad = _summary("acct-bad", T0, "join", key="pay:batch-bad")
    wires = [good[0].to_wire(), bad.to_wire(), good[1].to_wire(), good[2].to_wire()]

    async def scenario() -> None:
        async with app.agents["cluster_stage"].test_context() as agent:
            await agent.put(encode_batch("summaries", wires), key=b"summaries", partition=0)
            await send_held(app)
    run(scenario)

    dead = [orjson.loads(r.value) for r in outbox.to("dead_letter")]
    assert len(dead) == 1 and "summary 1 of the record (pay:batch-bad)" in dead[0]["reason"]
    logged = {decode_cluster_state(r.value).cluster_key for r in outbox.changelog("clusters")}
    assert logged == {s.cluster_key for s in good}


# --- signed records between the stages (internal_record_keys) --------------------------------

SIGNING_KEY = "k" * 40


@pytest.fixture
def signed(tmp_path: Path) -> Settings:
    return load_settings(env={"DISTILLGUARD_APP_ID": f"dg-agents-{uuid.uuid4().hex[:8]}",
                              "DISTILLGUARD_DATA_DIR": str(tmp_path / "faust"),
                              "DISTILLGUARD_INTERNAL_RECORD_KEYS": SIGNING_KEY,
                              "DISTILLGUARD_EVENT_TIME_ALIGNMENT": "false"})


def test_with_signing_keys_a_forged_verdict_is_refused_and_a_signed_one_applies(
        signed: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    # Whoever can write the verdicts topic could block (or clear) any account: with
    # internal_record_keys set, only what this app's workers signed is read.
    box = record_sends(signed, monkeypatch)
    app = create_app(signed)
    app.finalize()
    cfg = signed.detector
    p = partition_of("acct-9", signed)
    verdict = encode_verdict(AccountVerdict("acct-9", Verdict(
        "pay:p", 0.9, T0, T0 + cfg.verdict_ttl_s, "cv-pay:p", "cluster pay:p convicted",
        0, 1.0, 1.0), T0))
    genuine = signed.record_signer().headers("account_verdicts", p, verdict)
    other_app = load_settings(env={"DISTILLGUARD_APP_ID": "another-app",
                                   "DISTILLGUARD_INTERNAL_RECORD_KEYS": SIGNING_KEY})

    async def scenario() -> None:
        events, verdicts = app.agents["account_stage"], app.agents["apply_verdicts"]
        async with events.test_context() as agent:
            await agent.put(request_bytes("acct-9", T0), key=b"acct-9", partition=p)
        async with verdicts.test_context() as agent:
            await agent.put(verdict, key=b"acct-9", partition=p)  # unsigned
            await agent.put(verdict, key=b"acct-9", partition=p,  # another app's signature
                            headers=other_app.record_signer().headers("account_verdicts", p,
                                                                      verdict))
            elsewhere = (p + 1) % signed.partitions  # genuine, copied to another partition
            await agent.put(verdict, key=b"acct-9", partition=elsewhere, headers=genuine)
        async with events.test_context() as agent:
            await agent.put(request_bytes("acct-9", T0 + cfg.verdict_delay_s, 1),
                            key=b"acct-9", partition=p)
        assert box.to("enforcement") == [], "a forged verdict must decide nothing"
        async with verdicts.test_context() as agent:
            await agent.put(verdict, key=b"acct-9", partition=p, headers=genuine)
        async with events.test_context() as agent:
            await agent.put(request_bytes("acct-9", T0 + 2 * cfg.verdict_delay_s, 2),
                            key=b"acct-9", partition=p)
    run(scenario)

    dead = [orjson.loads(r.value)["reason"] for r in box.to("dead_letter")]
    assert len(dead) == 3 and "unsigned record on the account_verdicts topic" in dead[0]
    assert all("signed by none of internal_record_keys" in d for d in dead[1:])
    assert [orjson.loads(r.value)["action"] for r in box.to("enforcement")] == ["throttle"]


def test_with_signing_keys_the_stages_sign_what_they_send(
        signed: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    box = record_sends(signed, monkeypatch)
    app = create_app(signed)
    app.finalize()
    p = partition_of("acct-1", signed)

    async def scenario() -> None:
        async with app.agents["account_stage"].test_context() as agent:
            await agent.put(request_bytes("acct-1", T0), key=b"acct-1", partition=p)
        await send_held(app)
    run(scenario)

    signer = signed.record_signer()
    between = box.to("cluster_summaries")
    assert between, "the account stage sends summaries and ticks to the cluster stage"
    for r in between:
        assert signer.refusal("cluster_summaries", r.partition, r.value, r.headers) is None
        assert signer.refusal("account_verdicts", r.partition, r.value, r.headers) is not None


def test_the_worker_consumer_fetches_with_a_short_wait(app: faust.App) -> None:
    """aiokafka leaves partitions with unconsumed records out of its one fetch in flight: with
    Faust's 1.5 s wait, the judged marks that event-time alignment waits for sat behind a
    fetch of quiet partitions (streams/worker/topology.py, FETCH_MAX_WAIT_MS)."""
    from distillguard.streams.worker.topology import FETCH_MAX_WAIT_MS

    async def scenario() -> int:
        thread = app.consumer._thread
        consumer = thread._create_worker_consumer(app.transport)
        return int(consumer._fetch_max_wait_ms)

    assert asyncio.run(scenario()) == FETCH_MAX_WAIT_MS < 1500


def test_a_window_close_of_many_accounts_flushes_between_slices_and_lets_their_states_go(
        app: faust.App, settings: Settings, outbox: Outbox,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Aligned windows close together: one event can make every account its partition saw due
    at once (83,000 a partition at a million accounts). The step flushes every DUE_SLICE of
    them (models/due.py), and the states it closed go back to their bytes there, instead of
    all of them staying objects until the step ends and `idle_state_after_s` has passed."""
    from distillguard.streams.worker import topology
    monkeypatch.setattr(topology, "DUE_SLICE", 2)
    cfg = settings.detector
    p = partition_of("acct-0", settings)
    accounts = [a for a in (f"acct-{i}" for i in range(200)) if partition_of(a, settings) == p][:8]
    closing, burst = accounts[-1], accounts[:-1]  # 7 windows close at the closing event
    states = app.runtime.states["accounts"]
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        async with app.agents["account_stage"].test_context() as agent:
            for i, account in enumerate(burst):
                await agent.put(request_bytes(account, T0 + i), key=account.encode(), partition=p)
            await send_held(app)
            outbox.records.clear()
            await agent.put(request_bytes(closing, T0 + 2 * cfg.window_s + cfg.allowed_lateness_s),
                            key=closing.encode(), partition=p)
            # before any flush of the worker's own: the step flushed between its slices
            seen["changelog"] = [r.key for r in outbox.changelog("accounts")]
            seen["kept as bytes"] = sorted(a for a in burst if type(states.data[a]) is bytes)
            await send_held(app)
    run(scenario)

    due_order = sorted(burst)  # one due time: in key order (DueIndex.pop_due)
    flushed_within = [f'"{a}"'.encode() for a in due_order[:6]]  # after slices 1-3
    assert seen["changelog"][:1] == [f'"{closing}"'.encode()]
    assert sorted(seen["changelog"][1:]) == sorted(flushed_within)
    assert seen["kept as bytes"] == due_order[:6]  # the 7th: after the next flush
    for account in burst:
        state = states.get(account)
        assert state.window is None and state.requests == 1  # closed, nothing lost
    assert states.get(closing).window is not None  # its own window: open
    assert outbox.to("dead_letter") == []


def test_a_tick_that_judges_many_clusters_flushes_between_slices_and_lets_their_states_go(
        app: faust.App, settings: Settings, outbox: Outbox,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The cluster stage's burst: one tick makes every cluster its partition kept summaries of
    judgeable. As for window closes, the tick's step flushes every DUE_SLICE clusters, their
    verdicts before their states, and the states it settled go back to their bytes there."""
    from distillguard.streams.worker import topology
    monkeypatch.setattr(topology, "DUE_SLICE", 2)
    p = partition_of("pay:shared", settings)
    keys = [k for k in (f"pay:card-{i}" for i in range(300)) if partition_of(k, settings) == p][:7]
    states = app.runtime.states["clusters"]
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        async with app.agents["cluster_stage"].test_context() as agent:
            for i, key in enumerate(keys):
                await agent.put(encode_summary(_summary(f"acct-{i}", T0 + i, "join", key)),
                                key=key.encode(), partition=p)
            await send_held(app)
            outbox.records.clear()
            for tick in _ticks(T0 + 60.0, settings):
                await agent.put(tick, key=b"tick", partition=p)
            seen["changelog"] = sorted(r.key for r in outbox.changelog("clusters"))
            seen["kept as bytes"] = sorted(k for k in keys if type(states.data.get(k)) is bytes)
            await send_held(app)
    run(scenario)

    settled_in_order = sorted(keys)[:6]  # judged in key order; the 7th after the next flush
    assert seen["changelog"] == sorted(f'"{k}"'.encode() for k in settled_in_order)
    assert seen["kept as bytes"] == settled_in_order
    for key in keys:
        state = states.get(key)
        assert state.pending == [] and list(state.members) == [f"acct-{keys.index(key)}"]
    assert outbox.to("dead_letter") == []
