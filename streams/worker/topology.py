"""The worker's dataflow, top to bottom, in the order of the README's diagram.

    requests (key: account_id, raw JSON)
      │  account_stage: decode ─▶ bad records ─▶ dead_letter
      │                 core AccountStage over the `accounts` table
      ├──▶ cluster_summaries (partition of the  ──▶ cluster_stage: core ClusterStage over `clusters`
      │      cluster key, one record per batch;       judges a tick once every account
      │      and each new tick of an account          partition has passed it
      │      partition, to every partition)              │
      │           account_verdicts (partition of the ◀──┘
      │             account id, one record per batch)
      │  apply_verdicts: core AccountStage.on_verdict over `accounts` (held until the
      │                  partition's event time reaches issued_ts + verdict_delay_s)
      ▼
    enforcement (key: account_id, contract JSON)      + one structlog line per decision
    decisions (key: account_id, compacted): the same record while in force, a tombstone on allow

    control (allow-list, operators' decisions; compacted) ─▶ every worker's ControlReader (no
                                       group, whole topic) ─▶ the AllowList and the
                                       OperatorDecisions the core's policy consults

The agents decode, load state, call the pure core (`models/`), store state and send. What they
send in volume is held and sent in batches (streams/worker/outbox.py, streams/worker/held_writes.py), never
past the commit of the events that made it. Tables only store the core's state; windows,
watermarks and expiry are computed by the core in event time.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import faust
import orjson
import structlog
from aiokafka import TopicPartition
from faust.transport.producer import ProducerBuffer

from distillguard.models.account_stage import AccountPartition, AccountStage, Outputs
from distillguard.models.cluster_stage import ClusterOutputs, ClusterPartition, ClusterStage
from distillguard.models.decision import ENFORCE, Decision
from distillguard.models.due import SLICE as DUE_SLICE
from distillguard.models.events import InvalidEvent, RequestEvent
from distillguard.models.messages import BROADCAST, JudgedTick, SourceIdle, SourceTick
from distillguard.models.operator import OperatorDecisions
from distillguard.models.partitioning import partition_for
from distillguard.streams.edge.codec import (
    ACCOUNT_STATE_CODEC,
    CLUSTER_STATE_CODEC,
    SUMMARY_BATCH_TAG,
    VERDICT_BATCH_TAG,
    EncodedOnce,
    dead_letter_record,
    decision_in_force,
    decode_account_state,
    decode_cluster_record,
    decode_cluster_state,
    decode_request,
    decode_verdict_input,
    encode_account_state,
    encode_cluster_state,
    encode_decision,
    encode_summary,
    event_time_limit,
    register_codecs,
)
from distillguard.streams.edge.control import AllowListKeeper, ControlReader
from distillguard.streams.edge.settings import Settings
from distillguard.streams.edge.topics import TopicSpec
from distillguard.streams.worker import partition_context
from distillguard.streams.worker.cold_states import WorkerColdStates
from distillguard.streams.worker.dead_letter_log import DeadLetterLog
from distillguard.streams.worker.held_writes import HeldWrites
from distillguard.streams.worker.idle_states import IdleStates
from distillguard.streams.worker.metrics import WorkerTallies
from distillguard.streams.worker.outbox import Outbox, install_before_commit
from distillguard.streams.worker.runtime import WorkerApp, WorkerRuntime

log = structlog.get_logger("distillguard")


# A dead letter carries the refused record's bytes whole up to this size (base64 in JSON: well
# under the producer's 1 MB request limit), and its first bytes beyond.
DEAD_LETTER_KEEP_BYTES = 256 * 1024


class StateTooLarge(Exception):
    """A table entry whose encoding is over `max_state_bytes`: refused, never changelogged."""


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
    # app.Table() already built the changelog topic with json serializers; drop it so Faust
    # rebuilds it lazily, with the codec, for both writing and recovery.
    table._changelog_topic = None
    return table


def changelog_topic_specs(app: faust.App) -> list[TopicSpec]:
    """The tables' changelog topics as Faust declares them: compacted, a partition per partition
    of the table's source topic.

    The worker creates them before Faust starts (`streams.worker.process`). Left to Faust, the workers of
    a new fleet each declare them while they join the group: on a fresh broker one of them
    fetched its metadata before a changelog existed and kept seeing it with 0 partitions for
    minutes (aiokafka refreshes metadata every 5 min). Every write to that table then failed
    (PartitionsMismatch) and, as the group leader, it assigned nobody that changelog's
    partitions, so no worker ever recovered them: a CI run's partition contexts all started
    cold after a kill -9.
    """
    return [TopicSpec(logical=f"{name}-changelog", name=table.changelog_topic.get_topic_name(),
                      partitions=table.partitions, config={"cleanup.policy": "compact"})
            for name, table in app.tables.items()]


# Faust holds table changelog records in a buffer and, once it holds more than this many, stops
# delivering records to the agents until it has flushed that many. Under the send volume of
# traffic replayed faster than real time (the demo, the fault tests) its default of 100 made
# workers stall for good after "producer buffer full" (exit 3 from the watchdog). A larger
# buffer keeps the flush in Faust's background task; it costs memory only while the broker is
# slower than the agents (a few KB per record).
PRODUCER_BUFFER_MAX_MESSAGES = 10_000

# The agents hold their records between the stages (streams/worker/outbox.py) for at most
# RECORDS_HELD_AT_MOST_S and at most HELD_MAX of each kind: 0.1 s is short next to the verdict
# round trip and makes ~1 record per destination partition per batch under load. Their table
# changelog records (streams/worker/held_writes.py) only persist state, so they wait for the next
# offset commit or revocation (or STATES_HELD_MAX changed keys): a state changed many times
# between two commits is written once. Nothing held ever outlives a commit of its event.
RECORDS_HELD_AT_MOST_S = 0.1
# A partition waiting for the judged marks tells its tick again after this long (wall clock):
# what a rebalance lost between the stages is told again (`reannounce_waiting`).
REANNOUNCE_S = 5.0
HELD_MAX = 2_000
STATES_HELD_MAX = 10_000
# A decision sent, and the producer's delivery futures of its records (`delivered` awaits them).
Sent = tuple[Decision, list[Any]]


async def delivered(sent: list[Sent], on_acked: Callable[[Decision], None]) -> None:
    """Wait for the broker's ack of every decision sent in a step (`on_acked` for each one
    acknowledged): the step's change ends only afterwards, and no state that records a decision
    is written before its ack (a crash in between re-decides it, same id, instead of losing it:
    held_writes.py).

    All at once, at the end of the step, not one after the other as each is sent: a window
    close decides for many accounts in one step (235 decisions from 1,800 due accounts at 690
    events/s), and waiting ~9 ms for each ack in turn held the requests behind it for 2 s, the
    p99 latency's stall (issue 17, docs/performance.md).

    Every future is awaited even after one fails (a batch fails one partition at a time, the
    others may still be in flight), and the first failure raised only then: the change must not
    end while a decision it records may still be unacknowledged."""
    error: Exception | None = None
    for d, futures in sent:
        acked = True
        for future in futures:
            try:
                await future
            except Exception as exc:  # noqa: BLE001 - raised once every future is settled
                acked, error = False, error or exc
        if acked:
            on_acked(d)
    if error is not None:
        raise error


class SliceFlush:
    """Flushes between two slices of one step's due keys (`DUE_SLICE`, models/due.py): a
    window close of every account a partition saw, a tick that judges every cluster pending.

    At each `between`: the decisions sent so far acknowledged (`sent`, emptied), then the held
    states flushed, so that those the step settled go back to their bytes (IdleStates.settled)
    before the next slice brings more of them back. After a failure it flushes nothing more in
    this step, and the step still works through every key it popped (the due index holds them
    no more): a decision not acknowledged leaves its state unflushed until the step raises its
    failure (`raise_failure`, as `delivered` at the end of a step does); a flush that failed
    put its records back, and the agent's next flush retries it."""

    def __init__(self, held: HeldWrites, sent: list[Sent] | None,
                 on_acked: Callable[[Decision], None], paused: Callable[[], bool]) -> None:
        self.held = held
        # True while a rebalance is under way (app.rebalancing, set before the revocation's
        # flush): the step then stays one change, and the revocation's flush waits for its
        # end. A held-back record drained by the agent itself is not among the records Faust
        # waits for (`hold_back`): flushed at a slice, the revocation would pass the step
        # and its later slices reach the changelog after the partition moved (helper-47).
        self.paused = paused
        self.sent = sent
        self.on_acked = on_acked
        self.undelivered: Exception | None = None
        self.stopped = False

    async def between(self) -> None:
        if self.stopped or self.paused():
            return
        if self.sent:
            batch = self.sent[:]
            self.sent.clear()
            try:
                await delivered(batch, self.on_acked)
            except Exception as exc:  # noqa: BLE001 - raised at the end of the step
                self.undelivered, self.stopped = exc, True
                return
            if self.paused():  # a rebalance began while the acks came in
                return
        try:
            await self.held.flush_within_change()
        except Exception as exc:  # noqa: BLE001 - its records are held again: retried later
            self.stopped = True
            log.warning("flush_between_slices_failed", table=getattr(self.held.table, "name", ""),
                        error=f"{type(exc).__name__}: {exc}")

    def raise_failure(self) -> None:
        if self.undelivered is not None:
            raise self.undelivered


async def _flush_until_empty(buffer: ProducerBuffer) -> None:
    """ProducerBuffer.flush that returns only once the buffer is empty.

    Faust flushes the buffer before it commits the consumer's offsets, but its flush returns
    as soon as 0.1 s passes without a record sent, records still in the buffer: under load the
    offsets of events were committed while the table changelog records of those events were
    still buffered, and a kill -9 then lost them (a partition's next owner started after those
    events without their states). This waits as long as the broker takes; a broker that never
    takes them is what the stall watchdog is for.
    """
    while buffer.size:
        await buffer.flush_atmost(None)


# The longest the broker holds a fetch of the worker's consumer that finds no new record (Faust
# sets 1,500 ms). aiokafka keeps one fetch in flight per broker and leaves out of it the
# partitions whose fetched records the agents have not consumed yet, so the records that arrive
# meanwhile on those wait for the fetch of the quiet ones to end. Under event-time alignment
# those are the stages' judged marks and ticks: one worker draining a one-hour backlog had
# every account partition waiting for them, nothing else to do, for 40-48 s of its ~70 s (16
# waits of 1-3 s); with 100 ms, 13 s, 10 of them the end of the backlog (bench/backlog.py,
# issue 17). An idle worker makes ten empty fetches a second instead of one in 1.5 s.
FETCH_MAX_WAIT_MS = 100


def shorten_fetch_wait() -> None:
    """Make the worker consumers Faust creates fetch with FETCH_MAX_WAIT_MS (once)."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    create = AIOKafkaConsumerThread._create_worker_consumer
    if getattr(create, "shortened", False):
        return

    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # read by its Fetcher at start()
        return consumer

    create_worker_consumer.shortened = True  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer  # type: ignore[method-assign]


def create_app(settings: Settings) -> WorkerApp:
    register_codecs()
    shorten_fetch_wait()
    ProducerBuffer.max_messages = PRODUCER_BUFFER_MAX_MESSAGES
    ProducerBuffer.flush = _flush_until_empty  # type: ignore[method-assign]
    cfg = settings.detector
    topics = settings.topics
    partitions = topics["requests"].partitions
    app = WorkerApp(
        settings.app_id,
        broker=";".join(f"kafka://{h.strip()}" for h in settings.kafka_bootstrap.split(",")),
        broker_credentials=broker_credentials(settings),
        store=settings.store,
        topic_partitions=partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        # Faust declares only its internal topics (table changelogs, assignor); ours are
        # created explicitly from deploy/topics.toml and a missing one stops the preflight.
        # 0 with the memory store, which recovers every assigned partition from the start of
        # its changelog on each rebalance and drops standby data; 1 with rocksdb:// for a hot
        # copy (docs/operations.md, "Standby replicas").
        table_standby_replicas=settings.standby_replicas,
        web_port=settings.web_port,
        web_bind=settings.web_bind,
        # /health, /ready and /metrics (ours: health.py, metrics.py) are the only pages the
        # workers serve: Faust's own would list the cluster's workers (/router) and read any
        # table key over HTTP (/table), the accounts' states with their evidence among them;
        # graph, stats and Faust's metrics have no use here.
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
        datadir=settings.data_dir,
        key_serializer="raw",
        value_serializer="raw",
        producer_acks=-1,
        producer_linger=0.005,
        producer_max_batch_size=256 * 1024,
        # A killed worker sends no LeaveGroup: its partitions move once the group coordinator
        # has not heard from it for this long (Faust's default is 60 s).
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
    )

    # ---- topics ---------------------------------------------------------------------------
    requests = app.topic(topics["requests"].name, partitions=partitions)
    cluster_summaries = app.topic(topics["cluster_summaries"].name,
                                  partitions=topics["cluster_summaries"].partitions)
    account_verdicts = app.topic(topics["account_verdicts"].name, partitions=partitions)
    enforcement = app.topic(topics["enforcement"].name)
    # The decision in force per account (compacted): what a gateway rebuilds its state from.
    decisions_topic = topics["decisions"]
    dead_letter = app.topic(topics["dead_letter"].name)

    # ---- state: the core's values, changelogged as orjson (never pickle) -------------------
    accounts = state_table(app, "accounts", partitions, ACCOUNT_STATE_CODEC)
    cluster_partitions = topics["cluster_summaries"].partitions
    clusters = state_table(app, "clusters", cluster_partitions, CLUSTER_STATE_CODEC)
    # Their states as objects while in use, as their changelog bytes once idle for a flush
    # interval (streams/worker/idle_states.py): the agents read them through these.
    def undecodable(table: str) -> Callable[[Any, Exception], None]:
        def report(key: Any, exc: Exception) -> None:
            log.error("state_undecodable", table=table, key=str(key)[:80],
                      error=f"{type(exc).__name__}: {exc}",
                      hint="a changelog record this core cannot read: dropped, the key "
                           "starts afresh (docs/operations.md, Changelog format)")
        return report

    def disk_failed(table: str) -> Callable[[Exception], None]:
        def report(exc: Exception) -> None:
            log.error("idle_states_disk_failed", table=table,
                      error=f"{type(exc).__name__}: {exc}",
                      hint="the states on disk are back in memory, and this worker keeps "
                           "them there until it restarts (docs/operations.md, Idle states "
                           "on disk)")
        return report

    def account_partition_of(account_id: str) -> int:
        return partition_for(account_id, partitions)

    def cluster_partition_of(key: str) -> int:
        return partition_for(key, cluster_partitions)

    # With idle_states_on_disk, the idle states' bytes go to this worker's disk instead
    # (streams/worker/cold_states.py).
    on_disk = (WorkerColdStates(Path(settings.data_dir) / "idle-states")
               if settings.idle_states_on_disk else None)
    account_states = IdleStates(accounts.data, encode_account_state, decode_account_state,
                                idle_after_s=settings.idle_state_after_s,
                                undecodable=undecodable("accounts"),
                                cold=on_disk.open("accounts", account_partition_of)
                                if on_disk else None,
                                partition_of=account_partition_of,
                                disk_failed=disk_failed("accounts"))
    cluster_states = IdleStates(clusters.data, encode_cluster_state, decode_cluster_state,
                                idle_after_s=settings.idle_state_after_s,
                                undecodable=undecodable("clusters"),
                                cold=on_disk.open("clusters", cluster_partition_of)
                                if on_disk else None,
                                partition_of=cluster_partition_of,
                                disk_failed=disk_failed("clusters"))
    # key: partition number, value: a JSON snapshot of the partition's online model and other
    # in-memory context (streams/worker/partition_context.py); co-partitioned with requests, so the
    # snapshot of partition p is recovered by whichever worker gets p.
    contexts = state_table(app, "account_contexts", partitions, "json")
    # partition -> (model.seen at the last snapshot, events since the last snapshot)
    snapshot_marks: dict[int, list[int]] = {}

    # ---- what the agents hold and send in batches (streams/worker/outbox.py, held_writes.py) -----
    async def produce(topic: str, key: bytes, value: bytes | None, partition: int,
                      headers: list[tuple[str, bytes]] | None = None) -> None:
        """One record straight to the producer (appended to its batch for `partition`).

        For the records that go out in volume (changelogs, the batches between the stages):
        Faust's Topic.send and its changelog buffer cost a future and several objects per
        record: with them a worker drained a backlog ~20% slower (917 against 1,110 events/s,
        `python bench/perf.py --quick worker`)."""
        await app.producer.send(topic, key, value, partition, None, headers)

    # The records between the stages are signed when internal_record_keys is set
    # (streams/edge/signing.py); a worker reads only those its app signed.
    signer = settings.record_signer()

    async def send_to_cluster_partition(q: int, key: bytes, value: bytes) -> None:
        await produce(cluster_summaries.get_topic_name(), key, value, q,
                      signer.headers("cluster_summaries", q, value))

    async def send_to_account_partition(q: int, key: bytes, value: bytes) -> None:
        await produce(account_verdicts.get_topic_name(), key, value, q,
                      signer.headers("account_verdicts", q, value))

    # An item that does not encode is dead-lettered alone (no source record: partition and
    # offset -1, the destination topic named); the batch it was held in is sent.
    def refuse_for(topic: faust.TopicT) -> Callable[[str, bytes], Awaitable[None]]:
        async def refuse(reason: str, shown: bytes) -> None:
            await dead_letter_raw(reason, None, shown, topic.get_topic_name(), -1, -1)
        return refuse

    summaries_out = Outbox(SUMMARY_BATCH_TAG, send_to_cluster_partition,
                           topics["cluster_summaries"].partitions, max_held=HELD_MAX,
                           key_of=lambda s: s.cluster_key,
                           max_record_bytes=settings.max_record_bytes,
                           refuse=refuse_for(cluster_summaries))
    verdicts_out = Outbox(VERDICT_BATCH_TAG, send_to_account_partition, partitions,
                          max_held=HELD_MAX, key_of=lambda v: v.account_id,
                          max_record_bytes=settings.max_record_bytes,
                          refuse=refuse_for(account_verdicts))
    # An account's state records the summaries it announced, a cluster's the members it told:
    # those outputs go before the states (HeldWrites.flush), as they did when sent one by one.
    # Their states are encoded once per flush, checked against max_state_bytes then; one over
    # it is refused there and the records that changed it are dead-lettered (held_writes.py).
    async def refuse_state(key: Any, reason: str, causes: list[Any]) -> None:
        log.error("state_refused", key=str(key)[:80], reason=reason, records=len(causes))
        for i, event in enumerate(causes, 1):
            await to_dead_letter(f"{reason}: not written to the changelog and dropped from the "
                                 f"worker's store; this record changed it since its last "
                                 f"write ({i} of {len(causes)})", event)

    accounts_held = HeldWrites(accounts, produce, max_held=STATES_HELD_MAX,
                               outputs_first=summaries_out.flush, encode=encode_account_state,
                               max_bytes=settings.max_state_bytes, refuse=refuse_state,
                               idle=account_states)
    clusters_held = HeldWrites(clusters, produce, max_held=STATES_HELD_MAX,
                               outputs_first=verdicts_out.flush, encode=encode_cluster_state,
                               max_bytes=settings.max_state_bytes, refuse=refuse_state,
                               idle=cluster_states)

    # Partition contexts due for a snapshot (every SNAPSHOT_EVERY_EVENTS events or _LEARNS
    # learnt windows, and after a template notice or a withdrawal): written once per partition
    # at the next flush, which comes before every offset commit, so what a snapshot must hold
    # is in the changelog before the offsets of the records that taught it. Written at once
    # per record instead, snapshots took 70% of a worker's time draining a backlog (py-spy).
    contexts_held = HeldWrites(contexts, produce, max_held=STATES_HELD_MAX)
    snapshots_due: set[int] = set()

    def write_due_snapshots() -> None:
        failed = set()
        for p in sorted(snapshots_due):
            part = account_parts.get(p)
            if part is None:  # revoked meanwhile: its next owner restores the last one
                continue
            try:
                write_snapshot(p, part)
            except Exception:  # logged and tried again at the next flush; nothing else stops
                log.exception("partition_context_snapshot_failed", partition=p)
                failed.add(p)
        snapshots_due.clear()
        snapshots_due.update(failed)

    async def send_held() -> None:
        """Everything held: the records between the stages and the table changelog records."""
        write_due_snapshots()
        await accounts_held.flush()
        await clusters_held.flush()
        await contexts_held.flush()
        await summaries_out.flush()  # what was held while the states were sent
        await verdicts_out.flush()

    # Faust awaits the producer's flush before it commits offsets and whenever partitions are
    # revoked (before their next owner recovers them): what is held goes first.
    install_before_commit(app.producer, send_held)

    def held() -> dict[str, int]:
        return {"summaries": summaries_out.held, "verdicts": verdicts_out.held,
                "account_states": accounts_held.held, "cluster_states": clusters_held.held,
                "snapshots_due": len(snapshots_due)}

    @app.timer(interval=RECORDS_HELD_AT_MOST_S)
    async def send_records_between_stages() -> None:
        try:
            await summaries_out.flush()
            await verdicts_out.flush()
        except Exception:  # a Faust timer that raises is never run again; the records stay held
            log.exception("send_held_failed", hint="retried in 0.1 s and before every commit")

    allow = settings.allow_list()
    operator = OperatorDecisions()  # filled and changed by the control reader (below)
    account_stage_core = AccountStage(cfg, allow, operator)
    cluster_stage_core = ClusterStage(cfg)
    account_parts: dict[int, AccountPartition] = {}
    cluster_parts: dict[int, ClusterPartition] = {}
    # What strays from live = replay (models/pipeline.py): shown by GET /health.
    core_counts: Counter[str] = Counter()
    # What /metrics counts as it happens (streams/worker/metrics.py).
    tallies = WorkerTallies()

    def account_partition(p: int) -> AccountPartition:
        part = account_parts.get(p)
        if part is None:
            # First event of a partition on this worker (start or rebalance): re-register the
            # recovered states so their windows still close and their state still expires.
            part = account_parts[p] = AccountPartition.create(cfg, p)
            stored = contexts.get(p)
            if stored is not None:
                try:
                    snap = partition_context.from_pieces(
                        stored, lambda g, i: contexts.get(partition_context.piece_key(p, g, i)))
                    restored = partition_context.restore(part, snap) if snap else []
                except Exception:  # noqa: BLE001 - a bad snapshot means a cold start, not a crash
                    restored = []
                log.info("partition_context_restored", partition=p, restored=restored,
                         model_seen=part.model.seen)
            else:  # a new partition, or its snapshot was not (yet) on the changelog
                log.info("partition_context_cold", partition=p)
            # The first event of the partition writes a snapshot at once: it checks the table
            # against its changelog early, as the accounts table is, not after hours of events.
            snapshot_marks[p] = [part.model.seen, partition_context.SNAPSHOT_EVERY_EVENTS]
            for _, state in account_states.states_of(p):
                account_stage_core.watch(state, part)
        return part

    def write_snapshot(p: int, part: AccountPartition) -> None:
        """The partition's context into the changelogged table, in pieces under
        max_state_bytes (streams/worker/partition_context.py): the pieces, then the manifest."""
        generation = partition_context.next_generation(contexts.data.get(p))
        manifest, pieces = partition_context.stored_pieces(
            partition_context.snapshot(part), settings.max_state_bytes, generation)
        for i, piece in enumerate(pieces):
            hold(contexts_held, p, partition_context.piece_key(p, generation, i), piece,
                 orjson.dumps)
        stale = len(pieces)  # the pieces of a longer snapshot of this generation before
        while partition_context.piece_key(p, generation, stale) in contexts.data:
            contexts_held.delete(p, partition_context.piece_key(p, generation, stale))
            stale += 1
        # the manifest after its pieces, also when an earlier one is still held
        contexts_held.put(p, p, manifest, encoded(contexts, p, manifest, orjson.dumps),
                          last=True)

    def cluster_partition(p: int) -> ClusterPartition:
        part = cluster_parts.get(p)
        if part is None:
            part = cluster_parts[p] = ClusterPartition.create(cfg, sources=partitions)
            # The source ticks come back with each account partition's next tick; pending
            # summaries and expiry come back from the recovered states.
            for _, cluster in cluster_states.states_of(p):
                cluster_stage_core.watch(cluster, part)
        return part

    # ---- rebalances: partition-local context lives only while the partition is ours -------
    # Every rebalance revokes all partitions and assigns them anew (eager protocol); the
    # context of a partition that stays on this worker is kept, so only partitions that really
    # move start from their recovered states and snapshot.
    @app.on_partitions_assigned.connect
    async def report_assignment(sender: Any, assigned: set[Any], **_: Any) -> None:
        for parts, topic in ((account_parts, requests), (cluster_parts, cluster_summaries)):
            kept = {tp.partition for tp in assigned if tp.topic == topic.get_topic_name()}
            for p in set(parts) - kept:
                del parts[p]
        mine = sorted(tp.partition for tp in assigned if tp.topic == requests.get_topic_name())
        # The states on disk of a partition that left: its next owner has them from the
        # changelog (and may delete them there).
        account_states.keep_partitions(set(mine))
        cluster_states.keep_partitions({tp.partition for tp in assigned
                                        if tp.topic == cluster_summaries.get_topic_name()})
        # Records held back by alignment were never acked: Faust fetches them again from the
        # committed offsets (for a partition that stays here too), so they are dropped, and a
        # partition paused for them that stays here is resumed (else it stayed paused with
        # nothing held to resume it: seen once in CI, the kill -9 fault test, one partition
        # with lag and no progress until the watchdog stopped its worker).
        paused = set(waiting) & {tp.partition for tp in assigned
                                 if tp.topic == requests.get_topic_name()}
        waiting.clear()
        for p in sorted(paused):
            await fetching(p, True)
        now = time.monotonic()
        for p in set(mine) - requests_mine:
            last_read[p] = now
        requests_mine.clear()
        requests_mine.update(mine)
        told_idle.intersection_update(mine)
        for p in set(judged_marks) - set(mine):
            del judged_marks[p]
            horizons.pop(p, None)
        log.info("partitions_assigned", topic=requests.get_topic_name(), partitions=mine)

    def encoded(table: faust.Table, key: Any, value: Any,
                encode: Callable[[Any], bytes]) -> bytes:
        """The entry's bytes, unless it is over max_state_bytes (then StateTooLarge).

        The core bounds its state (members, verdicts, keys per entry); this is the backstop that
        keeps one entry from ever reaching the changelog over the producer's request limit,
        which would crash the worker at every restart. The agent dead-letters the event.
        """
        data = encode(value)
        if len(data) > settings.max_state_bytes:
            raise StateTooLarge(f"{table.name} entry {str(key)[:80]!r} is {len(data)} bytes, "
                                f"over max_state_bytes {settings.max_state_bytes}")
        return data

    def hold(writes: HeldWrites, partition: int, key: Any, value: Any,
             encode: Callable[[Any], bytes]) -> None:
        """writes.table[key] = value now; its changelog record by the next commit."""
        writes.put(partition, key, value, encoded(writes.table, key, value, encode))

    def put(table: faust.Table, key: Any, value: Any, encode: Callable[[Any], bytes]) -> None:
        """table[key] = value, its changelog record sent now (checked as `encoded`)."""
        data = encoded(table, key, value, encode)
        EncodedOnce.obj, EncodedOnce.data = value, data  # the changelog reuses these bytes
        try:
            table[key] = value
        finally:
            EncodedOnce.obj, EncodedOnce.data = None, b""

    async def read_internal(event: Any, topic: str, decode: Callable[[bytes], Any],
                            error_event: str) -> Any:
        """A record between the stages, checked and decoded; None when it was refused whole
        (dead-lettered with the reason) before anything reads it."""
        try:
            return decode(internal(event.message, topic))
        except InvalidEvent as exc:
            await to_dead_letter(str(exc), event)
        except Exception as exc:
            log.exception(error_event)
            await to_dead_letter(f"internal error: {type(exc).__name__}: {exc}", event)
        return None

    def internal(message: Any, topic: str) -> bytes:
        """An internal topic's record value, refused (InvalidEvent) when missing, over
        max_record_bytes, or not signed by this app while internal_record_keys is set."""
        value = message.value
        if value is None or len(value) > settings.max_record_bytes:
            raise InvalidEvent(f"internal record of {len(value or b'')} bytes (limit "
                               f"{settings.max_record_bytes})")
        refusal = signer.refusal(topic, message.partition, value, message.headers)
        if refusal is not None:
            raise InvalidEvent(refusal)
        return value

    async def publish(out: Outputs, partition: int, sent: list[Sent]) -> None:
        """Send or hold what the core's output says; each decision sent joins `sent`, whose
        acks the caller awaits (`delivered`) before its change ends."""
        if out.tick is not None:
            # Before this output's summaries: "every summary of an earlier tick is sent".
            await summaries_out.send_after_held(b"tick",
                                                encode_summary(SourceTick(partition, out.tick)))
        for s in out.summaries:
            summaries_out.hold(s)
        if summaries_out.full:
            await summaries_out.flush()
        if out.late_verdict:
            core_counts["late_verdicts"] += 1
            if core_counts["late_verdicts"] in (1, 10, 100) or (
                    core_counts["late_verdicts"] % 1000 == 0):
                log.warning("late_verdicts", count=core_counts["late_verdicts"],
                            partition=partition, verdict_delay_s=cfg.verdict_delay_s,
                            hint="the verdict round trip took longer than verdict_delay_s of "
                                 "event time: live decisions may differ from a replay")
        for d in out.decisions:
            sent.append((d, await send_decision(d)))

    async def send_decision(d: Decision) -> list[Any]:
        """The decision to the enforcement topic (and the decision in force); the producer's
        delivery futures, for `delivered`."""
        key = d.account_id.encode()
        value = encode_decision(d, time.time())
        enforced = await enforcement.send(key=key, value=value)
        in_force = None
        if d.mode == ENFORCE:
            # The decision now in force, or a tombstone when an allow lifts it (a shadow
            # decision is in force nowhere). Partitioned as Kafka's default partitioner does,
            # like `distillguard override`'s records, so an account's records keep their order.
            in_force = await app.producer.send(
                decisions_topic.name, key, decision_in_force(d, value),
                partition_for(d.account_id, decisions_topic.partitions), None, None)
        log.info("decision", account_id=d.account_id, action=d.action, score=d.score,
                 ttl_s=d.ttl_s, decision_id=d.decision_id, clusters=d.cluster_ids[:3],
                 reason=d.reasons[0], evidence=d.reasons[1:3], mode=d.mode)
        # (None from test doubles)
        return [future for future in (enforced, in_force) if future is not None]

    def tally(d: Decision) -> None:
        tallies.on_decision(d.action, d.reasons, d.cluster_ids, d.event_ts, time.time())

    # A flood of bad records reaches the topic whole, and the log only a sample of it
    # (streams/worker/dead_letter_log.py).
    dead_letter_log = DeadLetterLog(log.warning)

    @app.timer(interval=dead_letter_log.interval_s / 4)
    async def summarise_dead_letters() -> None:
        dead_letter_log.flush()

    async def to_dead_letter(reason: str, event: Any) -> None:
        msg = event.message
        await dead_letter_raw(reason, msg.key, msg.value, msg.topic, msg.partition, msg.offset)

    async def dead_letter_raw(reason: str, key: bytes | None, value: bytes | None, topic: str,
                              partition: int, offset: int) -> None:
        # The original bytes go whole up to DEAD_LETTER_KEEP_BYTES; a larger record (the broker
        # takes up to 1 MB) keeps its first bytes, so its dead letter (base64 in JSON) stays
        # under the producer's request limit instead of failing the send and the agent.
        if value is not None and len(value) > DEAD_LETTER_KEEP_BYTES:
            reason += f" (dead letter keeps the first {DEAD_LETTER_KEEP_BYTES} of {len(value)} bytes)"
            value = value[:DEAD_LETTER_KEEP_BYTES]
        if key is not None and len(key) > 1024:
            reason += f" (dead letter keeps the first 1024 of the key's {len(key)} bytes)"
            key = key[:1024]
        await dead_letter.send(key=key, value=dead_letter_record(
            reason, value, key, topic, partition, offset, time.time()))
        dead_letter_log.record(reason, topic, partition, offset)

    # ---- the allow-list: the settings' allowances, then the control topic's ---------------
    # One AllowList and one OperatorDecisions for the worker, shared with the core (the policy
    # consults them at every decision) and changed in place by the control reader.
    async def control_dead_letter(reason: str, rec: Any) -> None:
        await dead_letter_raw(reason, rec.key, rec.value, rec.topic, rec.partition, rec.offset)

    control = ControlReader(settings, AllowListKeeper(allow, settings.allowances(), operator),
                            control_dead_letter)
    app.runtime = WorkerRuntime(send_held=send_held, held=held, core_counts=core_counts,
                                dead_letters=dead_letter_log, allow=allow, control=control,
                                tallies=tallies, operator=operator,
                                states={"accounts": account_states, "clusters": cluster_states})

    @app.on_partitions_assigned.connect
    async def start_reading_control(sender: Any, assigned: set[Any], **_: Any) -> None:
        # Before the first event is delivered: the agents wait until the topic is read to its
        # end, so an allowance written before this worker started holds from its first event.
        control.start(app.add_future)

    # ---- account stage --------------------------------------------------------------------
    async def decode_event(event: Any) -> RequestEvent | None:
        """A request record's event, None when it was dead-lettered."""
        try:
            return decode_request(event.message.value, event.message.key,
                                  settings.max_record_bytes,
                                  event_time_limit(event.message.timestamp, time.time(),
                                                   settings.max_event_ahead_s))
        except InvalidEvent as exc:
            await to_dead_letter(exc.reason, event)
            return None

    async def on_request(event: Any) -> None:
        """One request record: its account's state, decisions, summaries and due windows."""
        ev = await decode_event(event)
        if ev is not None:
            await process_request(event, ev)

    async def process_request(event: Any, ev: RequestEvent) -> None:
        # The states change in place, before their outputs are sent: no flush encodes them
        # until the outputs are out (held_writes.py).
        await accounts_held.begin_change()
        try:
            await change_accounts(event, ev)
        finally:
            accounts_held.end_change()

    async def change_accounts(event: Any, ev: RequestEvent) -> None:
        sent: list[Sent] = []
        try:
            try:
                count_for_snapshot(event.message.partition, await outputs_of(event, ev, sent))
            finally:
                await delivered(sent, tally)  # the decisions' acks, before the change ends
        except Exception as exc:  # a bug must not stop the fleet: record it and go on
            log.exception("account_stage_error", account_id=ev.account_id)
            await to_dead_letter(f"internal error: {type(exc).__name__}: {exc}", event)

    async def outputs_of(event: Any, ev: RequestEvent, sent: list[Sent],
                         ) -> AccountPartition:
        """The event and the accounts due at its time through the core, their outputs sent
        or held (each state changed in place and held for the changelog after its outputs,
        whose decisions' acks the caller awaits)."""
        part = account_partition(event.message.partition)
        state, out = account_stage_core.on_event(account_states.get(ev.account_id), ev, part)
        await publish(out, event.message.partition, sent)
        accounts_held.change(event.message.partition, ev.account_id, state, event)
        due = account_stage_core.due_accounts(part)
        # A burst of window closes (aligned windows close together) flushes every DUE_SLICE
        # accounts, and their states go back to their bytes there: what it holds at once
        # stays bounded (models/due.py).
        burst = len(due) > DUE_SLICE
        slices = (SliceFlush(accounts_held, sent, tally, lambda: app.rebalancing) if burst
                  else None)  # (most events close no window: nothing made for them)
        for i, account_id in enumerate(due):
            if slices is not None and i and i % DUE_SLICE == 0:
                await slices.between()
            due_state = account_states.get(account_id)
            if due_state is None:
                continue
            due_out = account_stage_core.on_due(due_state, part)
            await publish(due_out, event.message.partition, sent)
            if due_out.expired:
                accounts_held.delete(event.message.partition, account_id)
            else:
                accounts_held.change(event.message.partition, account_id, due_state, event,
                                     settled=burst)
        if slices is not None:
            slices.raise_failure()
        return part

    def count_for_snapshot(p: int, part: AccountPartition) -> None:
        """Count an event towards the partition's next context snapshot."""
        mark = snapshot_marks[p]
        mark[1] += 1
        if (part.model.seen - mark[0] >= partition_context.SNAPSHOT_EVERY_LEARNS
                or mark[1] >= partition_context.SNAPSHOT_EVERY_EVENTS):
            mark[:] = [part.model.seen, 0]
            snapshots_due.add(p)  # at the next flush

    # ---- event-time alignment --------------------------------------------------------------
    # A partition of the account stage does not run ahead of the verdicts that concern it. A
    # cluster partition whose judged mark is J (every tick below J judged, its verdicts sent
    # before it told the mark) tells every later verdict at the end of tick J or later, which
    # applies at (J + 1) * cluster_tick_s + verdict_delay_s at the earliest: the horizon. An
    # event at or past the lowest horizon of the cluster partitions (as they told this
    # partition) waits, its partition paused, until the marks move on; the cluster stage judges
    # a tick once every account partition has passed it. So no verdict arrives after its time
    # to apply, in a backlog as at real speed, and the fleet decides as the replay does
    # (models/pipeline.py): Flink's watermark alignment, Kafka Streams' max.task.idle.ms. A
    # waiting partition announces the tick of its next event at once (its summaries of
    # earlier ticks are all sent), so the slowest partition is never the one waiting and the
    # fleet always moves on; partitions run up to a tick and verdict_delay_s apart, so the
    # round trip between the stages overlaps the work. A partition with nothing to read for
    # source_idle_wall_s is reported idle and no longer waited for (the stated failure).
    judged_marks: dict[int, dict[int, int]] = {}  # account p -> cluster q -> judged_before
    horizons: dict[int, float] = {}  # account p -> the event time p may reach
    waiting: dict[int, deque[tuple[Any, RequestEvent]]] = {}  # records held back, in order
    draining: set[int] = set()
    last_read: dict[int, float] = {}  # account p -> monotonic time of its last record
    told_idle: set[int] = set()
    requests_mine: set[int] = set()
    announced: dict[int, float] = {}  # account p -> monotonic time it last told its tick

    def on_judged(p: int, mark: JudgedTick) -> None:
        marks = judged_marks.setdefault(p, {})
        if mark.judged_before > marks.get(mark.partition, -1):
            marks[mark.partition] = mark.judged_before
            if len(marks) >= cluster_partitions:
                horizons[p] = (min(marks.values()) + 1) * cfg.cluster_tick_s + cfg.verdict_delay_s

    aligned = settings.event_time_alignment

    def may_process(p: int, part: AccountPartition, ts: float) -> bool:
        return (not aligned or ts <= part.watermark.max_ts
                or ts < horizons.get(p, -math.inf))

    async def announce(p: int, part: AccountPartition, ts: float) -> None:
        """The tick of the partition's next event, before it is processed."""
        tick = int(max(ts, part.watermark.max_ts) // cfg.cluster_tick_s)
        if tick > part.tick:
            part.tick = tick
            announced[p] = time.monotonic()
            await summaries_out.send_after_held(b"tick", encode_summary(SourceTick(p, tick)))

    async def hold_back(event: Any, ev: RequestEvent, part: AccountPartition) -> None:
        """Keep the record until the partition's horizon covers it: not acked (so its offset
        is not committed) and left out of the records Faust waits for at a rebalance (a held
        record is fetched again by the partition's next owner, from the committed offset)."""
        p = event.message.partition
        queue = waiting.setdefault(p, deque())
        event.message.incref()
        app.consumer._unacked_messages.discard(event.message)
        queue.append((event, ev))
        if len(queue) == 1:
            announced.setdefault(p, time.monotonic())
            await fetching(p, False)
            core_counts["aligned_waits"] += 1
            await announce(p, part, ev.ts)
            await drain(p)  # the marks may have moved meanwhile

    async def drain(p: int) -> None:
        """Process the partition's held records its horizon now covers, in order; resume the
        partition once none is left."""
        queue = waiting.get(p)
        if not queue or p in draining:
            return
        draining.add(p)
        try:
            while queue and not app.rebalancing:
                event, ev = queue[0]
                part = account_parts.get(p)
                if part is None:
                    return
                if not may_process(p, part, ev.ts):
                    await announce(p, part, ev.ts)
                    if not may_process(p, part, ev.ts):
                        return
                await process_request(event, ev)
                queue.popleft()
                event.ack()
                if accounts_held.full:
                    await accounts_held.flush()
            if not queue and waiting.get(p) is queue:
                del waiting[p]
                # quiet counts from now: it fetched nothing while paused, and its end offset
                # is as stale as its last fetch
                last_read[p] = time.monotonic()
                await fetching(p, True)
        finally:
            draining.discard(p)

    async def fetching(p: int, on: bool) -> None:
        """Pause or resume fetching a partition of the requests topic, in aiokafka's consumer
        (in its own thread and loop, as Faust runs it).

        Not Faust's pause_partitions: Faust drops the records of a paused partition that a
        fetch already brought, past the fetcher's position, and then acks the offsets it skips
        as a gap, so they were lost (seen here: 93 requests of a backlog never processed, lag
        0). aiokafka drops a paused partition's buffered records without moving its position,
        so they are fetched again after the resume; the records Faust already delivered reach
        the agent and are held back with the others."""
        thread = app.consumer._thread
        consumer = thread._ensure_consumer()
        tp = TopicPartition(requests.get_topic_name(), p)

        async def switch() -> None:
            try:
                if on:
                    consumer.resume(tp)
                else:
                    consumer.pause(tp)
            except Exception:  # noqa: BLE001 - unassigned (a rebalance): its next owner starts fresh
                log.info("fetching_switch_skipped", partition=p, resume=on)

        await thread.call_thread(switch)

    async def resume_strays() -> None:
        """Resume a requests partition paused in aiokafka with no record held back for it: a
        pause is only ever for held records, so one without them is left from a rebalance."""
        thread = app.consumer._thread
        consumer = thread._ensure_consumer()
        topic = requests.get_topic_name()

        async def strays() -> list[int]:
            return sorted(tp.partition for tp in consumer.paused()
                          if tp.topic == topic and tp.partition not in waiting)

        for p in await thread.call_thread(strays):
            if p in waiting or app.rebalancing:
                continue
            core_counts["resumed_strays"] += 1
            log.warning("fetching_resumed_stray", partition=p)
            await fetching(p, True)

    def caught_up(p: int) -> bool:
        """Nothing left to read on the partition: Faust delivered the record before its end
        offset as the last fetch saw it. (Not merely no record for a while: a busy worker
        with a backlog can leave a partition undelivered for seconds, and reporting it idle
        then made its summaries come behind.)"""
        tp = TopicPartition(requests.get_topic_name(), p)
        try:
            end = app.consumer.highwater(tp)
        except Exception:  # noqa: BLE001 - not assigned or not fetched yet: not known idle
            return False
        if end is None:
            return False
        read = app.consumer._read_offset.get(tp)
        return end == 0 if read is None else read + 1 >= end

    @app.timer(interval=1.0)
    async def report_idle_sources() -> None:
        """A partition of ours with nothing to read for source_idle_wall_s: the cluster stage
        stops waiting for it (until its next record)."""
        if app.rebalancing or not aligned:
            return
        now = time.monotonic()
        for p in sorted(requests_mine - told_idle - set(waiting)):
            if (now - last_read.get(p, now) >= settings.source_idle_wall_s
                    and caught_up(p)):
                told_idle.add(p)
                core_counts["idle_sources"] += 1
                log.warning("source_idle", partition=p, idle_s=settings.source_idle_wall_s,
                            hint="the cluster stage no longer waits for this partition: "
                                 "its next summaries may come behind (live may differ from "
                                 "a replay)")
                try:
                    await summaries_out.send_after_held(b"idle", encode_summary(SourceIdle(p)))
                except Exception:  # a Faust timer that raises is never run again
                    told_idle.discard(p)
                    log.exception("source_idle_failed")

    @app.timer(interval=1.0)
    async def reannounce_waiting() -> None:
        """Tell a waiting partition's tick again when it has waited REANNOUNCE_S since it last
        told it. A rebalance can lose what the stages told each other: a new owner of an
        account partition starts with no judged marks (they are kept in memory), a new owner
        of a cluster partition with the source ticks of its last snapshot, and a tick is
        announced once, so neither side spoke again and the whole fleet waited (seen: kill -9
        of a worker mid-stream, every worker stalled with lag until the watchdog stopped it).
        A cluster partition answers a tick it already knows with its judged mark
        (`settle_tick`), so the waiting partition learns every mark again."""
        if app.rebalancing or not aligned:
            return
        await resume_strays()
        now = time.monotonic()
        for p, queue in sorted(waiting.items()):
            part = account_parts.get(p)
            if not queue or part is None or now - announced.get(p, now) < REANNOUNCE_S:
                continue
            announced[p] = now
            core_counts["reannounced_ticks"] += 1
            try:
                await summaries_out.send_after_held(b"tick",
                                                    encode_summary(SourceTick(p, part.tick)))
            except Exception:  # a Faust timer that raises is never run again
                log.exception("reannounce_failed", partition=p)

    def note_mispartitioned(p: int, account_id: str) -> None:
        """A request on another partition than Kafka's default partitioner gives its account
        (a producer with another partitioner: librdkafka's default, consistent_random, as kcat
        and confluent-kafka use it): processed, but the verdicts about the account go to the
        partition murmur2 gives it, away from its state, so live and replay part."""
        core_counts["mispartitioned_requests"] += 1
        n = core_counts["mispartitioned_requests"]
        if n in (1, 10, 100) or n % 10_000 == 0:
            log.warning("mispartitioned_requests", count=n, partition=p, account_id=account_id,
                        expected=partition_for(account_id, partitions),
                        hint="the producer must key requests by account_id with Kafka's "
                             "default (murmur2) partitioner; librdkafka: "
                             "partitioner=murmur2_random (docs/operations.md)")

    @app.agent(requests, name="account_stage")
    async def account_stage(stream: faust.StreamT) -> None:
        """requests -> cluster_summaries + enforcement; bad records -> dead_letter."""
        async for event in stream.events():
            if control.waiting:
                await control.ready()
            p = event.message.partition
            last_read[p] = time.monotonic()
            ev = await decode_event(event)
            if ev is None:
                continue
            if partition_for(ev.account_id, partitions) != p:
                note_mispartitioned(p, ev.account_id)
            try:
                part = account_partition(p)
            except Exception as exc:  # a bug must not stop the fleet: record it and go on
                log.exception("account_stage_error", account_id=ev.account_id)
                await to_dead_letter(f"internal error: {type(exc).__name__}: {exc}", event)
                continue
            if p in told_idle:  # back: the cluster stage waits for it again
                told_idle.discard(p)
                if part.tick >= 0:
                    await summaries_out.send_after_held(
                        b"tick", encode_summary(SourceTick(p, part.tick)))
            if waiting.get(p) or not may_process(p, part, ev.ts):
                await hold_back(event, ev, part)
                continue
            await process_request(event, ev)
            if accounts_held.full:
                await accounts_held.flush()

    # ---- cluster stage --------------------------------------------------------------------
    def hold_cluster_verdicts(out: ClusterOutputs) -> None:
        for av in out.verdicts:
            verdicts_out.hold(av)
        for av in out.convictions:  # to every account partition
            verdicts_out.hold_for_every_partition(av)

    async def fold_summaries(record: list[Any], part: ClusterPartition, event: Any) -> None:
        """A record's summaries, in order; each touched cluster's state (pending summaries
        included) is held once for the record. A summary the core fails on is dead-lettered
        alone; the others are still folded and every touched state is still held (the core
        changes a state in place, so one left out would be lost at the next move)."""
        touched: dict[str, Any] = {}
        await clusters_held.begin_change()
        try:
            await fold_into(record, part, event, touched)
            for key, state in touched.items():
                clusters_held.change(event.message.partition, key, state, event)
        finally:
            clusters_held.end_change()

    async def fold_into(record: list[Any], part: ClusterPartition, event: Any,
                        touched: dict[str, Any]) -> None:
        for i, summary in enumerate(record):
            key = summary.cluster_key
            try:
                state = touched.get(key)
                state, out = cluster_stage_core.on_summary(
                    state if state is not None else cluster_states.get(key), summary, part)
                touched[key] = state
                core_counts["behind_summaries"] += out.behind
                if out.judged_early:  # its waiting summaries outgrew cluster_pending_bytes
                    core_counts["judged_early_summaries"] += out.judged_early
                    log.warning("judged_early", cluster_key=key[:80],
                                summaries=out.judged_early,
                                total=core_counts["judged_early_summaries"],
                                hint="a crowd's summaries waiting for a lagging partition "
                                     "outgrew cluster_pending_bytes: live decisions may "
                                     "differ from a replay")
                    hold_cluster_verdicts(out)
            except Exception as exc:
                log.exception("cluster_stage_error", cluster_key=key)
                await to_dead_letter(f"internal error on summary {i} of the record "
                                     f"({key}): {type(exc).__name__}: {exc}", event)

    async def settle_tick(record: SourceTick | SourceIdle, part: ClusterPartition,
                          event: Any) -> None:
        """A source partition passed a tick (or went idle): judge the clusters it made
        judgeable, expire the idle ones, then tell the account partitions the judged mark
        after the verdicts (every one of them when it moved, else the source)."""
        before = part.judged_before
        if isinstance(record, SourceTick):
            keys = cluster_stage_core.on_source_tick(part, record.source, record.tick)
        else:
            keys = cluster_stage_core.on_source_idle(part, record.source)
        await settle_keys(keys, part, event, record)
        if not aligned:
            return
        mark = JudgedTick(event.message.partition, part.judged_before)
        if part.judged_before > before:
            await verdicts_out.send_after_held(b"judged", encode_summary(mark))
        else:
            verdicts_out.hold_for(record.source, mark)

    async def settle_keys(keys: list[str], part: ClusterPartition, event: Any,
                          record: SourceTick | SourceIdle) -> None:
        await clusters_held.begin_change()
        try:
            await settle_each(keys, part, event, record)
        finally:
            clusters_held.end_change()

    async def settle_each(keys: list[str], part: ClusterPartition, event: Any,
                          record: SourceTick | SourceIdle) -> None:
        tick = record.tick if isinstance(record, SourceTick) else "idle"
        # A tick that judges more than DUE_SLICE clusters flushes between slices, as a burst
        # of window closes does (`outputs_of`); the verdicts go before the states there.
        burst = len(keys) > DUE_SLICE
        slices = (SliceFlush(clusters_held, None, tally, lambda: app.rebalancing) if burst
                  else None)
        for i, key in enumerate(keys):
            if slices is not None and i and i % DUE_SLICE == 0:
                await slices.between()
            judged = cluster_states.get(key)
            if judged is None:
                continue
            # One cluster at a time: a cluster the core fails on is dead-lettered alone, and
            # the tick goes on to the others and to expiry (a state over max_state_bytes is
            # refused at the flush, its records dead-lettered: held_writes.py).
            try:
                hold_cluster_verdicts(cluster_stage_core.settle(judged, part))
                clusters_held.change(event.message.partition, key, judged, event, settled=burst)
            except Exception as exc:
                log.exception("cluster_stage_error", cluster_key=key)
                await to_dead_letter(f"internal error settling cluster {key[:80]} at tick "
                                     f"{tick}: {type(exc).__name__}: {exc}", event)
        for key in cluster_stage_core.expired_clusters(part):
            cluster = cluster_states.get(key)
            if cluster is not None and cluster_stage_core.is_expired(cluster, part):
                clusters_held.delete(event.message.partition, key)

    async def on_cluster_record(event: Any) -> None:
        """One record of the cluster stage: a source partition's tick, or summaries."""
        record = await read_internal(event, "cluster_summaries", decode_cluster_record,
                                     "cluster_stage_error")
        if record is None:
            return
        try:
            part = cluster_partition(event.message.partition)
            if isinstance(record, SourceTick | SourceIdle):
                await settle_tick(record, part, event)
            else:
                await fold_summaries(record, part, event)
        except Exception as exc:
            log.exception("cluster_stage_error")
            await to_dead_letter(f"internal error: {type(exc).__name__}: {exc}", event)

    @app.agent(cluster_summaries, name="cluster_stage")
    async def cluster_stage(stream: faust.StreamT) -> None:
        """cluster_summaries -> account_verdicts (one per member account to tell)."""
        async for event in stream.events():
            await on_cluster_record(event)
            # (summaries judged early hold verdicts too, not only ticks)
            if clusters_held.full:
                await clusters_held.flush()
            if verdicts_out.full:
                await verdicts_out.flush()

    # ---- verdicts back at the account stage -----------------------------------------------
    async def on_verdict_record(event: Any) -> None:
        """One record of verdicts for this account partition: each applied to its account, a
        broadcast conviction to the partition's context."""
        verdicts = await read_internal(event, "account_verdicts", decode_verdict_input,
                                       "apply_verdicts_error")
        if verdicts is None:
            return
        try:
            part = account_partition(event.message.partition)
        except Exception as exc:
            log.exception("apply_verdicts_error")
            await to_dead_letter(f"internal error: {type(exc).__name__}: {exc}", event)
            return
        await accounts_held.begin_change()
        try:
            learnt, judged = await apply_each(verdicts, part, event)
        finally:
            accounts_held.end_change()
        if learnt:
            # A template notice and a withdrawal are sent once (a conviction is re-issued
            # hourly): the partition's snapshot takes them in before their offset is
            # committed (the flush before the commit writes it), or a move after the
            # commit would forget the template, or hand a withdrawn conviction to joiners.
            snapshots_due.add(event.message.partition)
        if judged:
            await drain(event.message.partition)

    async def apply_each(verdicts: list[Any], part: AccountPartition,
                         event: Any) -> tuple[bool, bool]:
        """Each verdict of the record applied; (a template or withdrawal learnt, a judged
        mark told)."""
        learnt = judged = False
        touched: dict[str, Any] = {}
        sent: list[Sent] = []
        for av in verdicts:
            if isinstance(av, JudgedTick):
                on_judged(event.message.partition, av)
                judged = True
                continue
            try:
                if av.account_id == BROADCAST:
                    await publish(account_stage_core.on_conviction(av, part),
                                  event.message.partition, sent)
                    learnt = (learnt or av.verdict.is_template_notice
                              or av.verdict.is_withdrawal)
                    continue
                state, out = account_stage_core.on_verdict(account_states.get(av.account_id), av,
                                                           part)
                accounts.data[av.account_id] = state  # read by the next verdict or event
                touched[av.account_id] = state
                await publish(out, event.message.partition, sent)
            except Exception as exc:
                log.exception("apply_verdicts_error", account_id=av.account_id)
                await to_dead_letter(f"internal error on the verdict for {av.account_id} "
                                     f"({av.verdict.cluster_key}): {type(exc).__name__}: "
                                     f"{exc}", event)
        try:
            await delivered(sent, tally)  # the decisions' acks, before the change ends
        except Exception as exc:
            log.exception("apply_verdicts_error")
            await to_dead_letter(f"internal error: a decision was not delivered: "
                                 f"{type(exc).__name__}: {exc}", event)
        # Each account's state once for the record, after every output it made. The record is
        # acked only after this, so no commit passes it before its states are held.
        for account_id, state in touched.items():
            accounts_held.change(event.message.partition, account_id, state, event)
        return learnt, judged

    @app.agent(account_verdicts, name="apply_verdicts")
    async def apply_verdicts(stream: faust.StreamT) -> None:
        """account_verdicts -> enforcement."""
        async for event in stream.events():
            if control.waiting:
                await control.ready()
            await on_verdict_record(event)
            if accounts_held.full:
                await accounts_held.flush()

    return app
