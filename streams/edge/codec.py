"""The wire format, converted in exactly one place: bytes <-> the core's typed values.

- request events in (UTF-8 JSON, `contract/request-event.schema.json`), with every reason a
  record can be refused;
- enforcement decisions out (`contract/enforcement-decision.schema.json`);
- dead-letter records out: the reason and the original bytes, topic, partition and offset;
- the internal records between the stages, and the table values (Faust codecs).

Everything is orjson. No Faust import here except for the codec registration at the bottom,
which `register_codecs()` does on demand, so replay and tests can use this module without Faust.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from distillguard.models.account import AccountState
from distillguard.models.cluster import ClusterState
from distillguard.models.decision import ALLOW, Decision
from distillguard.models.events import InvalidEvent, RequestEvent, event_from_mapping
from distillguard.models.messages import (
    AccountVerdict,
    ClusterSummary,
    JudgedTick,
    SourceIdle,
    SourceTick,
    cluster_record_from_wire,
    is_judged_tick_wire,
)

DEFAULT_MAX_RECORD_BYTES = 64 * 1024
DEFAULT_MAX_EVENT_AHEAD_S = 300.0  # the max_event_ahead_s setting's default


def decode_request(value: bytes | None, key: bytes | None,
                   max_bytes: int = DEFAULT_MAX_RECORD_BYTES,
                   not_after: float | None = None) -> RequestEvent:
    """Bytes of a requests-topic record -> a typed event, or `InvalidEvent` with the reason.

    `not_after`: the latest event time accepted (`event_time_limit`), None for no limit.
    """
    if value is None:
        raise InvalidEvent("record has no value (tombstone)")
    if len(value) > max_bytes:
        raise InvalidEvent(f"record is {len(value)} bytes, over the limit of {max_bytes}")
    if not key:
        raise InvalidEvent("record has no key (the key must be the account_id)")
    try:
        obj = orjson.loads(value)  # orjson rejects invalid UTF-8 with a JSONDecodeError
    except orjson.JSONDecodeError as exc:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidEvent("record value is not UTF-8") from None
        raise InvalidEvent(f"record value is not JSON: {exc}") from None
    event = event_from_mapping(obj)
    try:
        key_text = key.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidEvent("record key is not UTF-8") from None
    if key_text != event.account_id:
        raise InvalidEvent(f"record key {key_text[:64]!r} is not the event's account_id")
    return _not_ahead(event, not_after)


def decode_request_line(line: bytes, max_bytes: int = DEFAULT_MAX_RECORD_BYTES,
                        not_after: float | None = None) -> RequestEvent:
    """One JSON line of an events file (no record key: the account_id stands for it)."""
    if len(line) > max_bytes:
        raise InvalidEvent(f"line is {len(line)} bytes, over the limit of {max_bytes}")
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"line is not JSON: {exc}") from None
    return _not_ahead(event_from_mapping(obj), not_after)


def event_time_limit(written_ts: float | None, now: float, max_ahead_s: float) -> float:
    """The latest event time accepted for a record written at `written_ts` (its Kafka timestamp,
    in seconds; None for a line of a file) and read at `now` (the reader's clock).

    An event time only ever moves its partition's watermark forward, so one record stamped in
    the future (a gateway's clock gone wrong, a forged record) would make every honest event
    after it late, for every account of the partition. The reference is the earlier of the
    record's timestamp and the reader's clock: a worker draining a backlog and a replay of the
    topic refuse the same records (both by the timestamp, which is the earlier), and a gateway
    whose clock runs ahead, which stamps the record ahead too, is caught by the worker's clock.

    >>> event_time_limit(1_767_225_600.0, now=1_800_000_000.0, max_ahead_s=300)  # a backlog
    1767225900.0
    >>> event_time_limit(1_900_000_000.0, now=1_800_000_000.0, max_ahead_s=300)  # clock ahead
    1800000300.0
    >>> event_time_limit(None, now=1_800_000_000.0, max_ahead_s=300)  # a file's line
    1800000300.0
    """
    reference = now if written_ts is None or written_ts <= 0 else min(written_ts, now)
    return reference + max_ahead_s


def _not_ahead(event: RequestEvent, not_after: float | None) -> RequestEvent:
    if not_after is not None and event.ts > not_after:
        raise InvalidEvent(f"field 'ts' is {event.ts - not_after:.0f} s past the latest event "
                           f"time accepted ({not_after:.0f}: when the record was written, or "
                           f"the replay's start, plus max_event_ahead_s)")
    return event


def encode_decision(decision: Decision, processed_ts: float) -> bytes:
    return orjson.dumps(decision.to_record(processed_ts))


def decision_in_force(decision: Decision, encoded: bytes) -> bytes | None:
    """The decisions topic's value for a decision (its `encode_decision` bytes): the record
    itself while it throttles or blocks, None (a tombstone: nothing in force) when it allows."""
    return None if decision.action == ALLOW else encoded


def dead_letter_record(reason: str, value: bytes | None, key: bytes | None, topic: str,
                       partition: int, offset: int, processed_ts: float) -> bytes:
    """What an operator needs to find, understand and re-drive a refused record."""
    return orjson.dumps({
        "reason": reason,
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        "key_b64": base64.b64encode(key).decode() if key is not None else None,
        "value_b64": base64.b64encode(value).decode() if value is not None else None,
        "ts": processed_ts,
    })


def encode_summary(s: ClusterSummary | SourceTick) -> bytes:
    return orjson.dumps(s.to_wire())


# The tags of records carrying several items, in the order they were made (streams/worker/outbox.py).
SUMMARY_BATCH_TAG = "summaries"
VERDICT_BATCH_TAG = "verdicts"


def encode_batch(tag: str, wires: list[list[Any]]) -> bytes:
    """Items already in their wire form, as one record."""
    return orjson.dumps([tag, wires])


def _batch(w: Any, tag: str) -> list[Any] | None:
    """The items of a batch record with this tag, None for any other record."""
    if isinstance(w, list) and len(w) == 2 and w[0] == tag:
        if not isinstance(w[1], list):
            raise ValueError(f'a {tag} record must be ["{tag}", [item, ...]]')
        return w[1]
    return None


def decode_cluster_record(value: bytes) -> list[ClusterSummary] | SourceTick | SourceIdle:
    """A record of the cluster stage's input: its summaries (one for a record of a single
    summary, as workers before the outbox sent them), an account partition's tick, or its
    report that it has had nothing to read for a while."""
    w = orjson.loads(value)
    try:
        items = _batch(w, SUMMARY_BATCH_TAG)
        if items is not None:
            return [ClusterSummary.from_wire(x) for x in items]
        record = cluster_record_from_wire(w)
    except TypeError as exc:  # a field of the wrong type (the compiled core checks them)
        raise ValueError(f"malformed cluster summary: {exc}") from None
    return record if isinstance(record, SourceTick | SourceIdle) else [record]


def decode_verdict_input(value: bytes) -> list[AccountVerdict | JudgedTick]:
    """A record of the verdicts topic, in order: its verdicts (one for a record of a single
    verdict, as workers before the outbox sent them) and the cluster partitions' judged marks
    among them (event-time alignment, streams/worker/topology.py)."""
    w = orjson.loads(value)
    try:
        items = _batch(w, VERDICT_BATCH_TAG)
        if items is not None:
            return [JudgedTick.from_wire(x) if is_judged_tick_wire(x)
                    else AccountVerdict.from_wire(x) for x in items]
        if is_judged_tick_wire(w):
            return [JudgedTick.from_wire(w)]
        return [AccountVerdict.from_wire(w)]
    except TypeError as exc:  # a field of the wrong type (the compiled core checks them)
        raise ValueError(f"malformed account verdict: {exc}") from None


def decode_verdict_record(value: bytes) -> list[AccountVerdict]:
    """A record of the verdicts topic: its verdicts only (the judged marks left out)."""
    return [v for v in decode_verdict_input(value) if isinstance(v, AccountVerdict)]


def encode_verdict(v: AccountVerdict) -> bytes:
    return orjson.dumps(v.to_wire())


def encode_account_state(state: AccountState) -> bytes:
    return orjson.dumps(state.to_wire())


def decode_account_state(data: bytes) -> AccountState:
    return AccountState.from_wire(orjson.loads(data))


def encode_cluster_state(state: ClusterState) -> bytes:
    return orjson.dumps(state.to_wire())


def decode_cluster_state(data: bytes) -> ClusterState:
    return ClusterState.from_wire(orjson.loads(data))


ACCOUNT_STATE_CODEC = "dg_account_state"
CLUSTER_STATE_CODEC = "dg_cluster_state"


class EncodedOnce:
    """The bytes of the object the agent has just encoded (to check its size), handed to the
    table's changelog codec when Faust encodes that same object within the same table write,
    so a state is encoded once per write, not twice. One slot; `put` fills and clears it."""

    obj: object = None
    data: bytes = b""

    @classmethod
    def encode(cls, obj: Any, encode: Any) -> bytes:
        if obj is cls.obj:
            return cls.data
        data: bytes = encode(obj)
        return data


def register_codecs() -> None:
    """Teach Faust to store our state objects in tables: orjson on the changelog, never pickle."""
    from faust.serializers import codecs

    # A value read back from the changelog (a recovery) stays its bytes: the worker keeps idle
    # states encoded and decodes one at its next use (streams/worker/idle_states.py), so a
    # recovered table takes the memory of its changelog, not ~4x that as objects. A value the
    # agents hold encoded is its own encoding.
    class _AccountStateCodec(codecs.Codec):
        def _dumps(self, obj: Any) -> bytes:
            if type(obj) is bytes:
                return obj
            return EncodedOnce.encode(obj, encode_account_state)

        def _loads(self, s: bytes) -> Any:
            return bytes(s)

    class _ClusterStateCodec(codecs.Codec):
        def _dumps(self, obj: Any) -> bytes:
            if type(obj) is bytes:
                return obj
            return EncodedOnce.encode(obj, encode_cluster_state)

        def _loads(self, s: bytes) -> Any:
            return bytes(s)

    codecs.register(ACCOUNT_STATE_CODEC, _AccountStateCodec())
    codecs.register(CLUSTER_STATE_CODEC, _ClusterStateCodec())
