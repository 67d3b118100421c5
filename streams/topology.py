"""The worker's dataflow, top to bottom, in the order of the README's diagram.

    requests (key: account_id, raw JSON)
      │  account_stage: decode ─▶ bad records ─▶ dead_letter
      │                 core AccountStage over the `accounts` table
      ├──▶ cluster_summaries (key: cluster key) ──▶ cluster_stage: core ClusterStage over `clusters`
      │                                                  │
      │           account_verdicts (key: account_id) ◀──┘
      │  apply_verdicts: core AccountStage.on_verdict over `accounts`
      ▼
    enforcement (key: account_id, contract JSON)      + one structlog line per decision

The agents decode, load state, call the pure core (`models/`), store state (reassigned after
every change so the changelog sees it) and send. Tables only store the core's state; windows,
watermarks and expiry are computed by the core in event time.
"""

from __future__ import annotations

import time
from typing import Any

import faust
import structlog

from models.account_stage import AccountPartition, AccountStage, Outputs
from models.cluster_stage import ClusterPartition, ClusterStage
from models.decision import Decision
from models.events import InvalidEvent
from models.partitioning import partition_for
from streams.codec import (
    ACCOUNT_STATE_CODEC,
    CLUSTER_STATE_CODEC,
    dead_letter_record,
    decode_request,
    decode_summary,
    decode_verdict,
    encode_decision,
    encode_summary,
    encode_verdict,
    register_codecs,
)
from streams.settings import Settings

log = structlog.get_logger("distillguard")


def broker_credentials(settings: Settings) -> Any:
    """Faust credentials for SASL and/or SSL, or None for PLAINTEXT."""
    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    ssl_context = None
    if protocol in ("SSL", "SASL_SSL"):
        import ssl

        ssl_context = ssl.create_default_context(cafile=settings.ssl_cafile)
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context)
    return faust.SASLCredentials(username=settings.sasl_username,
                                 password=settings.sasl_password,
                                 mechanism=settings.sasl_mechanism,
                                 ssl_context=ssl_context)


def state_table(app: faust.App, name: str, partitions: int, codec: str) -> faust.Table:
    """A table of the core's state objects, changelogged with our orjson codec.

    Faust derives a table's serializers from `value_type` (a faust Record) and falls back to
    its json codec, which would turn our dataclasses into dicts on the changelog and hand dicts
    back after a recovery. Setting the serializers before the store and the changelog topic are
    created (both lazily) makes every path use the codec.
    """
    table = app.Table(name, partitions=partitions)
    table.key_serializer = "json"
    table.value_serializer = codec
    return table


def create_app(settings: Settings) -> faust.App:
    register_codecs()
    cfg = settings.detector
    topics = settings.topics
    partitions = topics["requests"].partitions
    app = faust.App(
        settings.app_id,
        broker=";".join(f"kafka://{h.strip()}" for h in settings.kafka_bootstrap.split(",")),
        broker_credentials=broker_credentials(settings),
        store=settings.store,
        topic_partitions=partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        # Faust declares only its internal topics (table changelogs, assignor); ours are
        # created explicitly from deploy/topics.toml and a missing one stops the preflight.
        table_standby_replicas=0,
        web_port=settings.web_port,
        web_bind=settings.web_bind,
        datadir=settings.data_dir,
        key_serializer="raw",
        value_serializer="raw",
        producer_acks=-1,
    )

    # ---- topics ---------------------------------------------------------------------------
    requests = app.topic(topics["requests"].name, partitions=partitions)
    cluster_summaries = app.topic(topics["cluster_summaries"].name,
                                  partitions=topics["cluster_summaries"].partitions)
    account_verdicts = app.topic(topics["account_verdicts"].name, partitions=partitions)
    enforcement = app.topic(topics["enforcement"].name)
    dead_letter = app.topic(topics["dead_letter"].name)

    # ---- state: the core's values, changelogged as orjson (never pickle) -------------------
    accounts = state_table(app, "accounts", partitions, ACCOUNT_STATE_CODEC)
    clusters = state_table(app, "clusters", topics["cluster_summaries"].partitions,
                           CLUSTER_STATE_CODEC)

    account_stage_core = AccountStage(cfg)
    cluster_stage_core = ClusterStage(cfg)
    account_parts: dict[int, AccountPartition] = {}
    cluster_parts: dict[int, ClusterPartition] = {}

    def account_partition(p: int) -> AccountPartition:
        part = account_parts.get(p)
        if part is None:
            # First event of a partition on this worker (start or rebalance): re-register the
            # recovered states so their windows still close and their state still expires.
            part = account_parts[p] = AccountPartition.create(cfg, p)
            for account_id, state in list(accounts.items()):
                if partition_for(account_id, partitions) == p:
                    part.watermark.observe(state.last_ts)
                    part.due.register(account_id, state.last_ts)
        return part

    def cluster_partition(p: int) -> ClusterPartition:
        part = cluster_parts.get(p)
        if part is None:
            part = cluster_parts[p] = ClusterPartition.create(cfg)
            for key, state in list(clusters.items()):
                if partition_for(key, partitions) == p:
                    part.due.register(key, state.last_ts)
        return part

    # ---- rebalances: partition-local context lives only while the partition is ours -------
    @app.on_partitions_revoked.connect
    async def forget_partitions(sender: Any, revoked: set[Any], **_: Any) -> None:
        for tp in revoked:
            if tp.topic == requests.get_topic_name():
                account_parts.pop(tp.partition, None)
            elif tp.topic == cluster_summaries.get_topic_name():
                cluster_parts.pop(tp.partition, None)

    @app.on_partitions_assigned.connect
    async def report_assignment(sender: Any, assigned: set[Any], **_: Any) -> None:
        mine = sorted(tp.partition for tp in assigned if tp.topic == requests.get_topic_name())
        log.info("partitions_assigned", topic=requests.get_topic_name(), partitions=mine)

    async def publish(out: Outputs) -> None:
        for s in out.summaries:
            await cluster_summaries.send(key=s.cluster_key.encode(), value=encode_summary(s))
        for d in out.decisions:
            await publish_decision(d)

    async def publish_decision(d: Decision) -> None:
        await enforcement.send(key=d.account_id.encode(), value=encode_decision(d, time.time()))
        log.info("decision", account_id=d.account_id, action=d.action, score=d.score,
                 ttl_s=d.ttl_s, decision_id=d.decision_id, clusters=d.cluster_ids[:3],
                 reason=d.reasons[0], evidence=d.reasons[1:3], mode=d.mode)

    async def to_dead_letter(reason: str, event: Any) -> None:
        msg = event.message
        await dead_letter.send(key=msg.key, value=dead_letter_record(
            reason, msg.value, msg.key, msg.topic, msg.partition, msg.offset, time.time()))
        log.warning("dead_letter", reason=reason, topic=msg.topic, partition=msg.partition,
                    offset=msg.offset)

    # ---- account stage --------------------------------------------------------------------
    @app.agent(requests, name="account_stage")
    async def account_stage(stream: faust.StreamT) -> None:
        """requests -> cluster_summaries + enforcement; bad records -> dead_letter."""
        async for event in stream.events():
            try:
                ev = decode_request(event.message.value, event.message.key,
                                    settings.max_record_bytes)
            except InvalidEvent as exc:
                await to_dead_letter(exc.reason, event)
                continue
            try:
                part = account_partition(event.message.partition)
                state, out = account_stage_core.on_event(accounts.get(ev.account_id), ev, part)
                accounts[ev.account_id] = state
                await publish(out)
                for account_id in account_stage_core.due_accounts(part):
                    due_state = accounts.get(account_id)
                    if due_state is None:
                        continue
                    due_out = account_stage_core.on_due(due_state, part)
                    if due_out.expired:
                        del accounts[account_id]
                    else:
                        accounts[account_id] = due_state
                    await publish(due_out)
            except Exception as exc:  # a bug must not stop the fleet: record it and go on
                log.exception("account_stage_error", account_id=ev.account_id)
                await to_dead_letter(f"internal error: {type(exc).__name__}: {exc}", event)

    # ---- cluster stage --------------------------------------------------------------------
    @app.agent(cluster_summaries, name="cluster_stage")
    async def cluster_stage(stream: faust.StreamT) -> None:
        """cluster_summaries -> account_verdicts (one per member account to tell)."""
        async for event in stream.events():
            try:
                s = decode_summary(event.message.value)
                part = cluster_partition(event.message.partition)
                state, out = cluster_stage_core.on_summary(clusters.get(s.cluster_key), s, part)
                clusters[s.cluster_key] = state
                for av in out.verdicts:
                    await account_verdicts.send(key=av.account_id.encode(),
                                                value=encode_verdict(av))
                for key in cluster_stage_core.expired_clusters(part):
                    cluster = clusters.get(key)
                    if cluster is not None and cluster_stage_core.is_expired(cluster, part):
                        del clusters[key]
            except Exception as exc:
                log.exception("cluster_stage_error")
                await to_dead_letter(f"internal error: {type(exc).__name__}: {exc}", event)

    # ---- verdicts back at the account stage -----------------------------------------------
    @app.agent(account_verdicts, name="apply_verdicts")
    async def apply_verdicts(stream: faust.StreamT) -> None:
        """account_verdicts -> enforcement."""
        async for event in stream.events():
            try:
                av = decode_verdict(event.message.value)
                part = account_partition(event.message.partition)
                state, out = account_stage_core.on_verdict(accounts.get(av.account_id),
                                                           av.account_id, av.verdict, part)
                accounts[av.account_id] = state
                await publish(out)
            except Exception as exc:
                log.exception("apply_verdicts_error")
                await to_dead_letter(f"internal error: {type(exc).__name__}: {exc}", event)

    return app
