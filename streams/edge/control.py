"""The control topic: operators' allow-list and manual decisions while the fleet runs.

    distillguard allow ...  ─▶  control topic (compacted, one partition)
    distillguard override ...      key    allow:<org|account>:<id>, decide:<account|org>:<id>
                                  value  contract/control-record.schema.json, or null
                                         (a tombstone) to revoke
                                     │  every worker reads all of it, from the beginning,
                                     ▼  without a consumer group
                                ControlReader ─▶ AllowListKeeper ─▶ the worker's AllowList
                                     │                  │            (models/allowlist.py)
                                     │                  └─▶ its OperatorDecisions
                                     └─▶ a bad record ─▶ dead_letter     (models/operator.py)

Every worker needs every allowance, whatever partitions it owns: a consumer group would give
each record to one worker, so the reader is a plain aiokafka consumer of its own (no group, no
commits) beside the Faust agents. Compaction keeps the newest record per key, so reading the
topic from the beginning gives the current allow-list; a worker's agents decide nothing until
their worker has read it to the end (`ControlReader.waiting`), so an allowance written before a
(re)start holds from the first event.

The settings' allowances (`Settings.allowances`) are the floor: the control topic adds others
and revokes its own, never the settings' (`AllowListKeeper`).

Also here: the record codec (`decode_control`, `allow_record`, `revoke_record`) and the one-off
read of the topic's current state (`read_control_state`) for `distillguard allow --list` and
`distillguard replay --allow-from-control-topic`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from distillguard.models.allowlist import SCOPES, Allowance, AllowList
from distillguard.models.decision import ACTIONS, THROTTLE
from distillguard.models.operator import MAX_OPERATOR_TTL_S, OperatorDecision, OperatorDecisions
from distillguard.streams.edge.codec import DEFAULT_MAX_RECORD_BYTES
from distillguard.streams.edge.settings import Settings, allow_id_problem
from distillguard.streams.edge.topics import TopicError, reading

log = structlog.get_logger("distillguard")

ALLOW_KIND = "allow"  # an allowance (models/allowlist.py)
DECIDE_KIND = "decide"  # an operator's decision about an account or org (models/operator.py)
KINDS = (ALLOW_KIND, DECIDE_KIND)
FIELDS = {ALLOW_KIND: ("kind", "scope", "id", "reason", "by", "ts"),
          DECIDE_KIND: ("kind", "scope", "id", "action", "ttl_s", "rate_limit_rpm", "reason",
                        "by", "ts")}
REQUIRED = {ALLOW_KIND: ("kind", "scope", "id", "reason", "ts"),
            DECIDE_KIND: ("kind", "scope", "id", "action", "ttl_s", "reason", "by", "ts")}
MAX_REASON_CHARS = 512
MAX_BY_CHARS = 128
KEY_FORM = "allow:<org|account>:<id> or decide:<account|org>:<id>"

# What applying a record did (`AllowListKeeper.apply`).
GRANTED = "granted"
REPLACED = "replaced"  # the same key granted again, with another reason or author
UNCHANGED = "unchanged"  # the same allowance again (a worker re-reading after an error)
REVOKED = "revoked"
ABSENT = "absent"  # a tombstone for a key nothing grants
IN_SETTINGS = "in_settings"  # the settings list the id: they hold whatever the topic says
FULL = "full"  # MAX_ALLOWANCES reached: refused


class InvalidControlRecord(ValueError):
    """A control record the workers refuse; `reason` says why (it goes to the dead letter)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ControlTopicError(TopicError):
    """The control topic cannot be read (missing, partitions not as defined, too slow)."""


@dataclass(frozen=True, slots=True)
class ControlRecord:
    scope: str
    id: str
    allowance: Allowance | None  # None: a tombstone, which revokes (or a decide record)
    ts: float | None = None  # when it was written, by the writer's clock (the value's `ts`)
    kind: str = ALLOW_KIND
    decision: OperatorDecision | None = None  # a decide record's; None: its tombstone

    @property
    def key(self) -> str:
        return control_key(self.scope, self.id, self.kind)

    @property
    def tombstone(self) -> bool:
        return self.allowance is None and self.decision is None


def control_key(scope: str, id_: str, kind: str = ALLOW_KIND) -> str:
    return f"{kind}:{scope}:{id_}"


def _shown(text: str, limit: int = 80) -> str:
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def parse_key(key: bytes | None) -> tuple[str, str, str]:
    """(kind, scope, id) of a control record's key, or `InvalidControlRecord`."""
    if not key:
        raise InvalidControlRecord(f"record has no key (the key must be {KEY_FORM})")
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidControlRecord("record key is not UTF-8") from None
    kind, _, rest = text.partition(":")
    scope, sep, id_ = rest.partition(":")
    if not sep:
        raise InvalidControlRecord(f"record key {_shown(text)} is not {KEY_FORM}")
    if kind not in KINDS:
        raise InvalidControlRecord(f"record key {_shown(text)}: unknown kind {kind!r} "
                                   f"(known: {', '.join(KINDS)})")
    if scope not in SCOPES:
        raise InvalidControlRecord(f"record key {_shown(text)}: scope {scope!r} is not org or "
                                   "account")
    problem = allow_id_problem(id_)
    if problem:
        raise InvalidControlRecord(f"record key {_shown(text)}: the id {problem}")
    return kind, scope, id_


def decode_control(key: bytes | None, value: bytes | None,
                   max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> ControlRecord:
    """Bytes of a control-topic record -> a grant or a revocation, or `InvalidControlRecord`
    with the reason (contract/control-record.schema.json, and the key must name the value's
    scope and id)."""
    kind, scope, id_ = parse_key(key)
    if value is None:
        return ControlRecord(scope, id_, None, kind=kind)
    if len(value) > max_bytes:
        raise InvalidControlRecord(f"record is {len(value)} bytes, over the limit of {max_bytes}")
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidControlRecord("record value is not UTF-8") from None
        raise InvalidControlRecord(f"record value is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidControlRecord("record value is not a JSON object")
    # Unknown fields are refused, not ignored: a field a newer writer relies on (an expiry, a
    # narrower scope) must not be dropped silently by an older worker.
    unknown = sorted(set(obj) - set(FIELDS[kind]))
    if unknown:
        raise InvalidControlRecord(f"unknown field(s) {', '.join(map(repr, unknown))}; known: "
                                   f"{', '.join(FIELDS[kind])}")
    missing = [f for f in REQUIRED[kind] if f not in obj]
    if missing:
        raise InvalidControlRecord(f"field(s) {', '.join(map(repr, missing))} missing")
    if obj["kind"] not in KINDS:
        raise InvalidControlRecord(f"kind {obj['kind']!r} is not one of: {', '.join(KINDS)}")
    if obj["kind"] != kind:
        raise InvalidControlRecord(f"kind {obj['kind']!r} is not the key's {kind!r}")
    if obj["scope"] not in SCOPES:
        raise InvalidControlRecord(f"scope {obj['scope']!r} is not org or account")
    problem = allow_id_problem(obj["id"])
    if problem:
        shown = _shown(obj["id"], 40) if isinstance(obj["id"], str) else repr(obj["id"])
        raise InvalidControlRecord(f"id {shown} {problem}")
    reason = obj["reason"]
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidControlRecord("reason must be a non-empty string (why the id is verified)")
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidControlRecord(f"reason is {len(reason)} characters, at most "
                                   f"{MAX_REASON_CHARS}")
    by = obj.get("by")
    if by is not None and (not isinstance(by, str) or len(by) > MAX_BY_CHARS):
        raise InvalidControlRecord(f"by must be a string of at most {MAX_BY_CHARS} characters "
                                   "or null")
    ts = obj["ts"]
    if (isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts)
            or ts < 0):
        raise InvalidControlRecord(f"ts {ts!r} is not a time (seconds since the epoch, >= 0)")
    if (obj["scope"], obj["id"]) != (scope, id_):
        raise InvalidControlRecord(
            f"record key {_shown(control_key(scope, id_, kind))} does not name the value's "
            f"{obj['scope']} {_shown(obj['id'], 40)}")
    if kind == DECIDE_KIND:
        return ControlRecord(scope, id_, None, float(ts), kind,
                             _operator_decision(obj, scope, id_, reason, by, float(ts)))
    return ControlRecord(scope, id_, Allowance(scope, id_, reason, "control", by or ""),
                         float(ts))


def _whole(x: Any) -> TypeGuard[int]:
    return isinstance(x, int) and not isinstance(x, bool)


def _operator_decision(obj: dict[str, Any], scope: str, id_: str, reason: str,
                       by: str | None, ts: float) -> OperatorDecision:
    """The rest of a decide record, checked (its key, scope, id, reason and ts already are)."""
    action, ttl_s, rpm = obj["action"], obj["ttl_s"], obj.get("rate_limit_rpm")
    if action not in ACTIONS:
        raise InvalidControlRecord(f"action {action!r} is not one of: {', '.join(ACTIONS)}")
    if not by or not by.strip():
        raise InvalidControlRecord("by must name the operator who decides (a person or a tool)")
    if not _whole(ttl_s) or not 1 <= ttl_s <= MAX_OPERATOR_TTL_S:
        raise InvalidControlRecord(f"ttl_s {ttl_s!r} is not a whole number of seconds from 1 "
                                   f"to {MAX_OPERATOR_TTL_S} (30 days)")
    if action == THROTTLE:
        if not _whole(rpm) or rpm < 0:
            raise InvalidControlRecord(f"rate_limit_rpm {rpm!r}: a throttle needs a whole "
                                       "number of requests per minute, >= 0")
    elif rpm is not None:
        raise InvalidControlRecord(f"rate_limit_rpm {rpm!r}: only a throttle has one")
    return OperatorDecision(id_, action, ttl_s, rpm, reason, by, ts, scope)


def allow_record(scope: str, id_: str, reason: str, by: str = "",
                 ts: float | None = None) -> tuple[bytes, bytes]:
    """(key, value) of a grant, refused (`InvalidControlRecord`) as a worker would refuse it."""
    key = control_key(scope, id_).encode()
    value = orjson.dumps({"kind": "allow", "scope": scope, "id": id_, "reason": reason,
                          "by": by or None, "ts": time.time() if ts is None else ts})
    decode_control(key, value)
    return key, value


def revoke_record(scope: str, id_: str, kind: str = ALLOW_KIND) -> tuple[bytes, None]:
    """(key, None): the tombstone that revokes the key's allowance (or operator decision)."""
    key = control_key(scope, id_, kind).encode()
    parse_key(key)
    return key, None


def decide_record(decision: OperatorDecision) -> tuple[bytes, bytes]:
    """(key, value) of an operator's decision, refused (`InvalidControlRecord`) as a worker
    would refuse it."""
    key = control_key(decision.scope, decision.account_id, DECIDE_KIND).encode()
    value = orjson.dumps({"kind": DECIDE_KIND, "scope": decision.scope, "id": decision.account_id,
                          "action": decision.action, "ttl_s": decision.ttl_s,
                          "rate_limit_rpm": decision.rate_limit_rpm, "reason": decision.reason,
                          "by": decision.by, "ts": decision.ts})
    decode_control(key, value)
    return key, value


# --------------------------------------------------------------------------- applying


class AllowListKeeper:
    """Applies control records, in the topic's order, to an `AllowList` the core reads.

    The settings' allowances (`fixed`) hold whatever the topic says: they are the fleet's
    configuration, changed where they are set. Past `MAX_ALLOWANCES` a new grant is refused
    (`AllowList.grant`); a replacement never is.
    """

    def __init__(self, allow: AllowList, fixed: Iterable[Allowance] = (),
                 operator: OperatorDecisions | None = None) -> None:
        self.allow = allow
        self.fixed = {(a.scope, a.id) for a in fixed}
        # Operators' manual decisions (decide records), which the core's policy also reads.
        self.operator = operator if operator is not None else OperatorDecisions()

    def apply(self, record: ControlRecord) -> str:
        if record.kind == DECIDE_KIND:
            return self._apply_decision(record)
        if (record.scope, record.id) in self.fixed:
            return IN_SETTINGS
        if record.allowance is None:
            return REVOKED if self.allow.revoke(record.scope, record.id) else ABSENT
        table = self.allow.orgs if record.scope == "org" else self.allow.accounts
        before = table.get(record.id)
        if before == record.allowance:
            return UNCHANGED
        if not self.allow.grant(record.allowance):
            return FULL
        return GRANTED if before is None else REPLACED

    def _apply_decision(self, record: ControlRecord) -> str:
        if record.decision is None:
            return REVOKED if self.operator.remove(record.id, record.scope) else ABSENT
        before = self.operator.held(record.id, record.scope)
        if before == record.decision:
            return UNCHANGED
        if not self.operator.put(record.decision):
            return FULL
        return GRANTED if before is None else REPLACED


def log_change(outcome: str, record: ControlRecord, **where: Any) -> None:
    """One line per change of the allow-list (and per record that changed nothing, saying why)."""
    scope, id_ = record.scope, record.id
    if record.kind == DECIDE_KIND:
        d = record.decision
        if outcome in (GRANTED, REPLACED) and d is not None:
            log.info("operator_decision_held", scope=scope, **{f"{scope}_id": id_},
                     action=d.action, ttl_s=d.ttl_s,
                     until=d.until, by=d.by, reason=d.reason, replaced=outcome == REPLACED,
                     **where)
        elif outcome == REVOKED:
            log.info("operator_decision_revoked", scope=scope, **{f"{scope}_id": id_}, **where)
        elif outcome == FULL:
            log.error("operator_decision_refused", scope=scope, **{f"{scope}_id": id_}, **where,
                      hint="too many operator decisions in force "
                           "(models.operator.MAX_OPERATOR_DECISIONS)")
        return
    if outcome in (GRANTED, REPLACED):
        a = record.allowance
        assert a is not None
        log.info("allow_granted", scope=scope, id=id_, reason=a.reason, by=a.by or None,
                 replaced=outcome == REPLACED, **where)
    elif outcome == REVOKED:
        log.info("allow_revoked", scope=scope, id=id_, **where)
    elif outcome == IN_SETTINGS:
        log.warning("allow_control_ignored", scope=scope, id=id_,
                    revoke=record.allowance is None, **where,
                    hint="the settings list this id; change it in the settings")
    elif outcome == FULL:
        log.error("allow_refused", scope=scope, id=id_, **where,
                  hint="the allow-list is full (models.allowlist.MAX_ALLOWANCES)")


# --------------------------------------------------------------------------- reading


def _consumer(settings: Settings, client_id: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                            enable_auto_commit=False, auto_offset_reset="earliest",
                            client_id=client_id, request_timeout_ms=15_000,
                            **settings.aiokafka_kwargs())


async def _assign(consumer: AIOKafkaConsumer, settings: Settings
                  ) -> tuple[list[TopicPartition], dict[TopicPartition, int]]:
    """Every partition of the control topic, assigned; and their end offsets now."""
    spec = settings.topics["control"]
    tps = [TopicPartition(spec.name, p) for p in range(spec.partitions)]
    consumer.assign(tps)
    ends = await consumer.end_offsets(tps)  # also fetches the topic's metadata
    found = consumer.partitions_for_topic(spec.name)
    if not found:
        raise ControlTopicError(f"control topic {spec.name} does not exist; create it with "
                                "`distillguard topics create`")
    if found != set(range(spec.partitions)):
        raise ControlTopicError(f"control topic {spec.name} has {len(found)} partitions, the "
                                f"definition says {spec.partitions} (deploy/topics.toml)")
    return tps, ends


async def _caught_up(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    return all([await consumer.position(tp) >= end for tp, end in ends.items()])


@dataclass
class ControlState:
    """The control topic's current state, read once from its beginning to its end."""

    records: dict[str, ControlRecord] = field(default_factory=dict)  # key -> newest grant
    bad: list[tuple[int, int, str]] = field(default_factory=list)  # (partition, offset, reason)
    read: int = 0  # records read, tombstones and bad ones included

    def allowances(self) -> list[Allowance]:
        return [r.allowance for r in self.records.values() if r.allowance is not None]

    def operator_decisions(self) -> list[OperatorDecision]:
        return [r.decision for r in self.records.values() if r.decision is not None]


async def read_control_state(settings: Settings, timeout_s: float = 30.0) -> ControlState:
    """The control topic's current state: every record up to its end offsets as of now."""
    state = ControlState()
    consumer = _consumer(settings, f"{settings.app_id}-control-read")
    async with reading(consumer, f"the control topic {settings.topics['control'].name}",
                       settings.kafka_bootstrap, timeout_s,
                       "(is the broker up? `distillguard broker status`)", ControlTopicError):
        _, ends = await _assign(consumer, settings)
        await consumer.seek_to_beginning()
        while not await _caught_up(consumer, ends):
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for rec in records:
                    if rec.offset >= ends[tp]:
                        continue  # written after we looked: not "now"
                    state.read += 1
                    try:
                        record = decode_control(rec.key, rec.value, settings.max_record_bytes)
                    except InvalidControlRecord as exc:
                        state.bad.append((tp.partition, rec.offset, exc.reason))
                        continue
                    if record.tombstone:
                        state.records.pop(record.key, None)
                    else:
                        state.records[record.key] = record
    return state


BadRecord = Callable[[str, Any], Awaitable[None]]  # (reason, the aiokafka ConsumerRecord)


class ControlReader:
    """A worker's reader of the control topic: the whole topic from its beginning, then every
    new record as it comes, applied to the worker's `AllowList` through its keeper.

    `start` (at the worker's first partition assignment, before any event is delivered) arms
    `waiting`: the agents then await `ready()` before deciding anything, until the reader has
    read the topic up to its end offsets at start. A read that fails (broker away) is logged
    and retried from where it stopped; until the first catch-up the agents keep waiting, and
    the stall watchdog (streams/worker/health.py) stops a worker that never gets there.
    """

    RETRY_S = (1.0, 2.0, 5.0, 10.0)

    def __init__(self, settings: Settings, keeper: AllowListKeeper, on_bad: BadRecord) -> None:
        self.settings = settings
        self.keeper = keeper
        self.on_bad = on_bad
        self.topic = settings.topics["control"].name
        self.waiting = False
        self.caught_up = asyncio.Event()
        self.applied = 0  # records read and applied (or refused), tombstones included
        self.positions: dict[TopicPartition, int] = {}
        self._started = False
        self._since = 0.0

    def start(self, spawn: Callable[[Awaitable[None]], Any]) -> None:
        """Start reading once per worker; `spawn` runs the coroutine in the background."""
        if self._started:
            return
        self._started = True
        self.waiting = not self.caught_up.is_set()
        self._since = time.monotonic()
        spawn(self.run())

    async def ready(self) -> None:
        await self.caught_up.wait()

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                await self._read()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - logged, then read again from where it was
                delay = self.RETRY_S[min(failures, len(self.RETRY_S) - 1)]
                failures += 1
                log.error("control_read_failed", topic=self.topic, retry_in_s=delay,
                          caught_up=self.caught_up.is_set(),
                          error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(delay)

    async def _read(self) -> None:
        consumer = _consumer(self.settings, f"{self.settings.app_id}-control")
        try:
            await consumer.start()
            tps, ends = await _assign(consumer, self.settings)
            for tp in tps:
                if tp in self.positions:
                    consumer.seek(tp, self.positions[tp])
                else:
                    await consumer.seek_to_beginning(tp)
            while True:
                if not self.caught_up.is_set() and await _caught_up(consumer, ends):
                    self._ready()
                batches = await consumer.getmany(timeout_ms=1000, max_records=500)
                for tp, records in batches.items():
                    for rec in records:
                        await self._apply(rec)
                        self.positions[tp] = rec.offset + 1
        finally:
            await consumer.stop()

    def _ready(self) -> None:
        self.caught_up.set()
        self.waiting = False
        allow = self.keeper.allow
        log.info("allow_list_ready", topic=self.topic, records=self.applied,
                 orgs=len(allow.orgs), accounts=len(allow.accounts),
                 seconds=round(time.monotonic() - self._since, 3))

    async def _apply(self, rec: Any) -> None:
        self.applied += 1
        # How long after its writer sent it (the record's CreateTime) the worker applies it.
        where: dict[str, Any] = {"offset": rec.offset}
        if rec.timestamp and rec.timestamp > 0:
            where["lag_s"] = round(time.time() - rec.timestamp / 1000, 3)
        try:
            record = decode_control(rec.key, rec.value, self.settings.max_record_bytes)
            outcome = self.keeper.apply(record)
        except InvalidControlRecord as exc:
            await self.on_bad(exc.reason, rec)
            return
        except Exception as exc:  # a bug must not stop the reader: record it and go on
            log.exception("control_apply_error", **where)
            await self.on_bad(f"internal error: {type(exc).__name__}: {exc}", rec)
            return
        if (record.kind == DECIDE_KIND and record.tombstone and record.scope == "account"
                and rec.timestamp and rec.timestamp > 0):
            # `override lift` gave the gateway an allow when it wrote this tombstone: the
            # detector's own action about the account, if decided before, is over too.
            self.keeper.operator.note_lift(record.id, rec.timestamp / 1000)
            log.info("operator_lift_noted", account_id=record.id, lifted_at=rec.timestamp / 1000,
                     **where)
        log_change(outcome, record, **where)
        if outcome == FULL and record.kind == DECIDE_KIND:
            await self.on_bad("too many operator decisions in force "
                              "(models.operator.MAX_OPERATOR_DECISIONS): decision refused", rec)
        elif outcome == FULL:
            await self.on_bad("the allow-list is full (models.allowlist.MAX_ALLOWANCES): "
                              "allowance refused", rec)
