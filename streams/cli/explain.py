"""`distillguard explain ACCOUNT`: why an account is (or is not) acted on, for an operator.

    distillguard explain acct-42 [--since 24h] [--history 20] [--json]

What it reads, with no consumer group (it moves nobody's offsets):
- the decisions topic, the account's partition only (Kafka's default partitioner, as the workers
  and `distillguard override` write it): the decision in force, or none;
- the enforcement topic, the account's partition from `--since` ago (the broker's time index):
  the account's decisions, newest last, with their reason codes, source and evidence;
- the control topic (small, read whole): an allowance of the account, and an operator's
  decision held about it (the organisation's allowance is not known here: the account's
  `org_id` is in its events, not in its decisions).

streams/cli/main.py registers the command with `add_explain_parser(sub)`.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from distillguard.models.allowlist import Allowance
from distillguard.models.operator import OperatorDecision
from distillguard.models.partitioning import partition_for
from distillguard.streams.cli.allow import _read, _when
from distillguard.streams.cli.override import parse_duration
from distillguard.streams.edge.control import DECIDE_KIND, control_key
from distillguard.streams.edge.settings import Settings, allow_id_problem, load_settings
from distillguard.streams.edge.topics import reading

# The most decisions of the account kept from the enforcement topic (the newest).
MAX_HISTORY = 1000


@dataclass
class AccountRecord:
    """What the topics say about one account."""

    account_id: str
    in_force: dict[str, Any] | None = None  # the decisions topic's newest value (None: none)
    decisions_seen: bool = False  # the decisions topic has a record (or tombstone) for it
    history: list[dict[str, Any]] = field(default_factory=list)  # enforcement, oldest first
    unreadable: int = 0  # its records that are not JSON objects
    allowance: Allowance | None = None
    operator: OperatorDecision | None = None


def add_explain_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "explain", help="why an account is acted on: its decision in force and its history",
        description="Read the decisions, enforcement and control topics for one account (no "
                    "consumer group): the decision in force, the account's recent decisions "
                    "with their reasons, and any allowance or operator's decision about it.")
    p.add_argument("account", help="the account (the events' account_id)")
    p.add_argument("--settings", help="TOML settings file (else $DISTILLGUARD_SETTINGS_FILE)")
    p.add_argument("--since", default="24h",
                   help="how far back to read the enforcement topic (90m, 24h, 7d; default 24h)")
    p.add_argument("--history", type=int, default=20,
                   help="how many of the newest decisions to show (default 20)")
    p.add_argument("--json", action="store_true", help="print it as one JSON object")
    p.set_defaults(func=cmd_explain)
    return p


def cmd_explain(args: argparse.Namespace) -> int:
    settings = load_settings(file=getattr(args, "settings", None))
    problem = allow_id_problem(args.account)
    if problem:
        raise ValueError(f"account {args.account!r} {problem}")
    if args.history < 0:
        raise ValueError("--history must be >= 0")
    since_s = parse_duration(args.since, "--since")
    now = time.time()
    found = asyncio.run(read_account(settings, args.account, now - since_s))
    if args.json:
        print(orjson.dumps(as_json(found, now), option=orjson.OPT_INDENT_2).decode())
    else:
        print(render(found, now, args.history, args.since))
    return 0


async def read_account(settings: Settings, account_id: str, since_ts: float,
                       timeout_s: float = 60.0) -> AccountRecord:
    state = await _read(settings)  # also: the broker answers, the control topic exists
    found = AccountRecord(account_id)
    allowed = state.records.get(control_key("account", account_id))
    found.allowance = allowed.allowance if allowed is not None else None
    held = state.records.get(control_key("account", account_id, DECIDE_KIND))
    found.operator = held.decision if held is not None else None
    key = account_id.encode()
    topics = settings.topics
    decisions = TopicPartition(topics["decisions"].name,
                               partition_for(account_id, topics["decisions"].partitions))
    enforcement = TopicPartition(topics["enforcement"].name,
                                 partition_for(account_id, topics["enforcement"].partitions))
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                client_id=f"{settings.app_id}-explain",
                                **settings.aiokafka_kwargs())
    async with reading(consumer, f"account {account_id}'s records", settings.kafka_bootstrap,
                       timeout_s):
        # One partition at a time, each from where it starts to its end offset now.
        for tp in (decisions, enforcement):
            consumer.assign([tp])
            end = (await consumer.end_offsets([tp]))[tp]
            if tp == decisions:
                # (an explicit offset: seek_to_beginning right after end_offsets was seen to
                # leave the position at the end, one time in three)
                consumer.seek(tp, (await consumer.beginning_offsets([tp]))[tp])
            else:
                start = (await consumer.offsets_for_times({tp: int(since_ts * 1000)}))[tp]
                consumer.seek(tp, start.offset if start is not None else end)
            while await consumer.position(tp) < end:
                for rec in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                    if rec.key == key and rec.offset < end:
                        _take(found, tp == decisions, rec.value)
    return found


def _take(found: AccountRecord, in_force: bool, value: bytes | None) -> None:
    if in_force:
        found.decisions_seen = True
        if value is None:
            found.in_force = None  # a tombstone: lifted
            return
    try:
        obj = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        obj = None
    if not isinstance(obj, dict):
        found.unreadable += 1
        return
    if in_force:
        found.in_force = obj
    else:
        found.history.append(obj)
        del found.history[:-MAX_HISTORY]


def _left(until: float, now: float) -> str:
    left = until - now
    if left <= 0:
        return "ran out"
    return f"{left / 3600:.1f} h left" if left >= 3600 else f"{left / 60:.0f} min left"


def _who(d: dict[str, Any]) -> str:
    source = d.get("source") or "detector"
    return f"operator {d['by']}" if source == "operator" and d.get("by") else source


def _until(d: dict[str, Any]) -> float | None:
    ttl, ts = d.get("ttl_s"), d.get("ts")
    return ts + ttl if isinstance(ttl, (int, float)) and isinstance(ts, (int, float)) else None


def render(found: AccountRecord, now: float, history: int, since: str) -> str:
    lines = [f"account {found.account_id}"]
    d = found.in_force
    until = _until(d) if d is not None else None
    if d is None or until is None or until <= now:
        lines.append("in force: nothing" + (
            f" (its last {d.get('action')} ran out at {_when(until)})" if d and until
            else " (lifted)" if found.decisions_seen else ""))
    else:
        rpm = f" to {d.get('rate_limit_rpm')}/min" if d.get("action") == "throttle" else ""
        lines.append(f"in force: {d.get('action')}{rpm} until {_when(until)} "
                     f"({_left(until, now)}), by the {_who(d)}; decision {d.get('decision_id')}")
        lines.append(f"  codes: {', '.join(d.get('reason_codes') or []) or '-'}")
        for reason in d.get("reasons") or []:
            lines.append(f"  - {reason}")
        if d.get("cluster_ids"):
            lines.append(f"  clusters: {', '.join(d['cluster_ids'][:5])}")
    if found.operator is not None:
        op = found.operator
        state = _left(op.until, now)
        lines.append(f"operator's decision held: {op.describe()} (until {_when(op.until)}, "
                     f"{state}); the detector decides nothing about the account meanwhile")
    if found.allowance is not None:
        lines.append(f"allow-listed: {found.allowance.describe()}")
    shown = found.history[-history:] if history else []
    lines.append(f"decisions on the enforcement topic since {since} ago: {len(found.history)}"
                 + (f", the newest {len(shown)}:" if shown else ""))
    for h in shown:
        codes = ",".join(h.get("reason_codes") or []) or "-"
        reasons = h.get("reasons") or ["-"]
        lines.append(f"  {_when(h.get('ts'))}  {h.get('action', '?'):<8} "
                     f"score {h.get('score', 0):.2f}  {_who(h):<18} {codes}  {reasons[0]}")
    if found.unreadable:
        lines.append(f"({found.unreadable} of its records were not JSON objects)")
    return "\n".join(lines)


def as_json(found: AccountRecord, now: float) -> dict[str, Any]:
    d = found.in_force
    until = _until(d) if d is not None else None
    op = found.operator
    return {
        "account_id": found.account_id,
        "in_force": d if d is not None and until is not None and until > now else None,
        "operator_decision": None if op is None else {
            "action": op.action, "until": op.until, "by": op.by, "reason": op.reason,
            "rate_limit_rpm": op.rate_limit_rpm, "in_force": op.until > now},
        "allowance": None if found.allowance is None else found.allowance.describe(),
        "history": found.history,
        "unreadable": found.unreadable,
    }
