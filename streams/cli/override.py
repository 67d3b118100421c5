"""`distillguard override` and `distillguard overrides`: operators' own decisions, by hand.

    distillguard override block|throttle|allow (--account ID [--account ID ...] | --org ID)
                          --for DURATION [--rpm N] --reason TEXT [--by NAME]   decide, for a time
    distillguard override lift (--account ID [...] | --org ID) [--reason TEXT] [--by NAME]
                                                                             end it now
    distillguard overrides [--json]       the operators' decisions and allowances in force

A decision is written, in this order (models/operator.py says what it means):
1. to the control topic (`decide:account:<id>` or `decide:org:<id>`), from which every worker
   holds it within about a second and makes no decision of its own about the account (the
   organisation's accounts) until it runs out;
2. an account's, to the enforcement topic, as the contract's record with `source: operator`,
   `by` and an `operator_<action>` reason code (an organisation's is not: a consumer of that
   topic keys by account);
3. to the decisions topic, keyed by the account id or `org:<org_id>` (the gate applies the
   latter to checks naming that organisation, `distillguard gate --org-header`): the record
   (throttle, block) or a tombstone (allow: nothing in force).

`lift` writes the control topic's tombstone and, at once, an `allow` to the enforcement topic
(accounts) and a tombstone to the decisions topic, whether the action in force is the
operator's or the detector's: the gateway serves the account again within seconds, and the
detector decides it afresh from its next event. An operator's decision is enforced whatever the
fleet's mode (shadow or not): a person decided it.

streams/cli/main.py registers the commands with `add_override_parsers(sub)`. Errors a user can
fix raise ValueError or TopicError, which the console script prints as one line (exit 2).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from collections.abc import Sequence
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from distillguard.models.decision import ALLOW, BLOCK, THROTTLE, Decision
from distillguard.models.operator import (
    ACCOUNT,
    MAX_OPERATOR_TTL_S,
    ORG,
    ORG_KEY_PREFIX,
    OperatorDecision,
    revoked_decision,
)
from distillguard.streams.cli.allow import LIST_REASON_CHARS, _login, _read, _ready, _when
from distillguard.streams.edge.codec import decision_in_force, encode_decision
from distillguard.streams.edge.control import (
    DECIDE_KIND,
    ControlState,
    control_key,
    decide_record,
    revoke_record,
)
from distillguard.streams.edge.settings import Settings, allow_id_problem, load_settings

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Accounts one command decides about: a campaign's handful to a few hundred, one record each
# (three writes); more belongs in a script over the control topic's contract.
MAX_ACCOUNTS_AT_ONCE = 1000
VERBS = (BLOCK, THROTTLE, ALLOW, "lift")
# The reason a lift names when the operator gives none (lifting a wrong action is one command).
LIFT_REASON = "lifted by hand"


def parse_duration(text: str, option: str = "--for") -> int:
    """Seconds of `90`, `90s`, `30m`, `2h` or `7d`, from 1 s to 30 days; ValueError otherwise.

    >>> parse_duration("2h"), parse_duration("90")
    (7200, 90)
    """
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text)
    if not match:
        raise ValueError(f"{option} {text!r} is not a duration (90s, 30m, 2h, 7d)")
    seconds = int(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not 1 <= seconds <= MAX_OPERATOR_TTL_S:
        why = (" (an action for good belongs to the gateway's own account controls)"
               if option == "--for" else "")
        raise ValueError(f"{option} {text!r}: from 1 s to 30 days{why}")
    return seconds


def add_override_parsers(subparsers: Any) -> None:
    """The `override` and `overrides` commands, on the console script's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "override", help="block, throttle or allow an account or organisation by hand, for a "
                         "time; or lift an action now",
        description="An operator's own decision about accounts or an organisation: published "
                    "to the gateway at once (decisions topic; an account's to the enforcement "
                    "topic too) and held by every worker (control topic), which makes no "
                    "decision of its own about them until it runs out or is lifted. `lift` "
                    "ends an operator's decision and lifts any action in force at the gateway "
                    "(the operator's or the detector's) at once.")
    p.add_argument("verb", metavar="block|throttle|allow|lift", choices=VERBS,
                   help="block: the gateway refuses its requests; throttle: --rpm requests a "
                        "minute; allow: lift any action and keep the detector silent; lift: end "
                        "an operator's decision (and any action in force) now")
    p.add_argument("--settings", help="TOML settings file (else $DISTILLGUARD_SETTINGS_FILE)")
    p.add_argument("--account", metavar="ID", action="append",
                   help="the account (the events' account_id); repeat it for several (at most "
                        f"{MAX_ACCOUNTS_AT_ONCE}), each gets its own decision")
    p.add_argument("--org", metavar="ID",
                   help="an organisation (the events' org_id): every account of it; the gate "
                        "applies it to checks that name the organisation (--org-header)")
    p.add_argument("--for", dest="duration", metavar="DURATION",
                   help="how long it holds: 90s, 30m, 2h, 7d (at most 30 days)")
    p.add_argument("--rpm", type=int, help="requests per minute, for throttle (default: the "
                                           "detector's throttle_rpm)")
    p.add_argument("--reason", help="why (a ticket, an incident): named in the decision "
                                    f"(lift: optional, default {LIFT_REASON!r})")
    p.add_argument("--by", help="who decides (default: your login name)")
    p.set_defaults(func=cmd_override)

    p = subparsers.add_parser(
        "overrides", help="the operators' decisions and allowances in force (control topic)",
        description="Read the control topic whole (no consumer group) and print the operators' "
                    "decisions in force (soonest to end first) and the allowances it holds.")
    p.add_argument("--settings", help="TOML settings file (else $DISTILLGUARD_SETTINGS_FILE)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_overrides)


def _targets(args: argparse.Namespace) -> tuple[str, list[str]]:
    """(scope, ids) of the command, checked."""
    if args.account and args.org is not None:
        raise ValueError("--account or --org, not both")
    if not args.account and args.org is None:
        raise ValueError(f"override {args.verb}: --account ID (may repeat) or --org ID is "
                         "required")
    scope, ids = (ORG, [args.org]) if args.org is not None else \
        (ACCOUNT, list(dict.fromkeys(args.account)))  # each once, in the order given
    if len(ids) > MAX_ACCOUNTS_AT_ONCE:
        raise ValueError(f"{len(ids)} accounts: at most {MAX_ACCOUNTS_AT_ONCE} at once")
    for id_ in ids:
        problem = allow_id_problem(id_)
        if problem:
            raise ValueError(f"--{scope} {id_!r} {problem}")
    return scope, ids


def _whom(scope: str, id_: str) -> str:
    return f"{'organisation' if scope == ORG else 'account'} {id_}"


def cmd_override(args: argparse.Namespace) -> int:
    settings = load_settings(file=getattr(args, "settings", None))
    scope, ids = _targets(args)
    by = args.by if args.by is not None else _login()
    if not by.strip():
        raise ValueError("--by is required: no login name to default to")
    if args.verb == "lift":
        if args.duration is not None or args.rpm is not None:
            raise ValueError("override lift takes no --for or --rpm")
        reason = args.reason if args.reason is not None else LIFT_REASON
        if not reason.strip():
            raise ValueError("--reason is empty: say why, or leave it out")
        return _lift(settings, scope, ids, reason, by)
    if not args.reason or not args.reason.strip():
        raise ValueError(f"override {args.verb}: --reason is required: say why (it is named in "
                         "the decision)")
    if args.duration is None:
        raise ValueError(f"override {args.verb}: --for is required: how long the decision "
                         "holds (90s, 30m, 2h, 7d)")
    if args.rpm is not None and args.verb != THROTTLE:
        raise ValueError(f"--rpm is for override throttle, not {args.verb}")
    if args.rpm is not None and args.rpm < 0:
        raise ValueError(f"--rpm {args.rpm}: requests per minute, 0 or more")
    rpm = None
    if args.verb == THROTTLE:
        rpm = settings.detector.throttle_rpm if args.rpm is None else args.rpm
    ttl_s, now = parse_duration(args.duration), time.time()
    manual = [OperatorDecision(i, args.verb, ttl_s, rpm, args.reason, by, now, scope)
              for i in ids]
    # every record checked before any is written: ValueError as a worker would refuse it
    writes = [(decide_record(m), m.to_decision(settings.detector.model_version), m.key)
              for m in manual]
    offsets = asyncio.run(_write(settings, writes))
    for m, where in zip(manual, offsets, strict=True):
        print(f"{_whom(scope, m.account_id)}: {m.describe()}; until {_when(m.until)}. "
              f"Published to the gateway ({where}).")
    print("Every worker holds it within about a second and decides nothing about "
          f"{'the organisation' if scope == ORG else 'the account'}'s requests until then.")
    return 0


def _lift(settings: Settings, scope: str, ids: list[str], reason: str, by: str) -> int:
    state = asyncio.run(_read(settings))
    now = time.time()
    writes: list[tuple[tuple[bytes, bytes | None], Decision | None, str]] = []
    held = []
    for id_ in ids:
        record = state.records.get(control_key(scope, id_, DECIDE_KIND))
        held.append(record is not None and record.decision is not None
                    and now < record.decision.until)
        lift = revoked_decision(id_, by, reason, now, settings.detector.model_version, scope)
        writes.append((revoke_record(scope, id_, DECIDE_KIND), lift,
                       id_ if scope == ACCOUNT else ORG_KEY_PREFIX + id_))
    offsets = asyncio.run(_write(settings, writes))
    for id_, was_held, where in zip(ids, held, offsets, strict=True):
        what = "the operator's decision ended" if was_held else "no operator's decision held"
        print(f"{_whom(scope, id_)}: lifted ({what}; {where}): the gateway serves it now; the "
              "detector decides it afresh from its next event.")
    return 0


def gateway_records(decision: Decision, key: str, now: float) -> list[tuple[str, bytes | None]]:
    """(topic, value) of what the gateway gets for an operator's decision under `key` (the
    account id, or `org:<org_id>`), in the order written: an account's on the enforcement
    topic, then the decisions topic's value (a tombstone for an allow)."""
    record = encode_decision(decision, now)
    out: list[tuple[str, bytes | None]] = [("decisions", decision_in_force(decision, record))]
    if key == decision.account_id:  # an account's (an organisation's is keyed org:<id>)
        out.insert(0, ("enforcement", record))
    return out


async def _write(settings: Settings,
                 writes: Sequence[tuple[tuple[bytes, bytes | None], Decision | None, str]]
                 ) -> list[str]:
    """For each target: its control record, then (if any) its decision on the enforcement
    (accounts only) and decisions topics under `key`, each acknowledged by every in-sync
    replica; where each target's went. An allow goes to the decisions topic as a tombstone."""
    control_topic = await _ready(settings)
    topics = settings.topics
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                enable_idempotence=True, **settings.aiokafka_kwargs())
    await producer.start()
    written = []
    try:
        for (key, value), decision, topic_key in writes:
            # The control record first: a worker that decides about the account after the
            # gateway has the decision then already holds it, or does within a second.
            meta = await producer.send_and_wait(control_topic, value, key=key)
            where = [f"{control_topic}@{meta.offset}"]
            if decision is not None:
                for role, payload in gateway_records(decision, topic_key, time.time()):
                    name = topics[role].name
                    meta = await producer.send_and_wait(name, payload, key=topic_key.encode())
                    where.append(f"{name}@{meta.partition}:{meta.offset}")
            written.append(", ".join(where))
    finally:
        await producer.stop()
    return written


# --------------------------------------------------------------------------- overrides


def overrides_in_force(settings: Settings, state: ControlState,
                       now: float) -> list[dict[str, Any]]:
    """The operators' decisions in force (soonest to end first), then the allowances (the
    settings' and the control topic's), as JSON-ready objects."""
    rows: list[dict[str, Any]] = []
    for d in sorted(state.operator_decisions(), key=lambda d: (d.until, d.scope, d.account_id)):
        if d.until <= now:
            continue  # ran out: the workers hold it until a tombstone replaces it, unused
        rows.append({"kind": "decision", "scope": d.scope, "id": d.account_id,
                     "action": d.action, "rate_limit_rpm": d.rate_limit_rpm, "by": d.by,
                     "since": d.ts, "until": d.until, "reason": d.reason,
                     "decision_id": d.decision_id})
    fixed = {(a.scope, a.id) for a in settings.allowances()}
    allowances = [(a, None) for a in settings.allowances()] + [
        (r.allowance, r.ts) for r in state.records.values()
        if r.allowance is not None and (r.scope, r.id) not in fixed]
    for a, ts in sorted(allowances, key=lambda x: (x[0].scope, x[0].id)):
        rows.append({"kind": "allowance", "scope": a.scope, "id": a.id, "action": ALLOW,
                     "rate_limit_rpm": None, "by": a.by or None, "since": ts, "until": None,
                     "reason": a.reason, "source": "settings" if ts is None else "control"})
    return rows


def render_overrides(settings: Settings, rows: list[dict[str, Any]], state: ControlState,
                     now: float) -> str:
    header = (f"{'kind':<10} {'scope':<8} {'id':<32} {'action':<9} {'rpm':>4} {'by':<16} "
              f"{'since':<20} {'until':<20} reason")
    lines = [header, "-" * len(header)]
    for r in rows:
        reason = r["reason"] if len(r["reason"]) <= LIST_REASON_CHARS else \
            r["reason"][:LIST_REASON_CHARS - 3] + "..."
        rpm = "-" if r["rate_limit_rpm"] is None else str(r["rate_limit_rpm"])
        since = _when(r["since"]) if r["since"] is not None else "settings"
        until = _when(r["until"]) if r["until"] is not None else "-"
        lines.append(f"{r['kind']:<10} {r['scope']:<8} {r['id']:<32} {r['action']:<9} "
                     f"{rpm:>4} {r['by'] or '-':<16} {since:<20} {until:<20} {reason}")
    decisions = sum(1 for r in rows if r["kind"] == "decision")
    ran_out = len(state.operator_decisions()) - decisions
    topic = settings.topics["control"].name
    lines.append(f"in force: {decisions} operator decisions ({ran_out} ran out, not shown), "
                 f"{len(rows) - decisions} allowances; {topic} as of {_when(now)}")
    for partition, offset, why in state.bad[:10]:
        lines.append(f"bad record {topic}:{partition}:{offset}: {why} (the workers "
                     "dead-letter it)")
    return "\n".join(lines)


def cmd_overrides(args: argparse.Namespace) -> int:
    settings = load_settings(file=getattr(args, "settings", None))
    state = asyncio.run(_read(settings))
    now = time.time()
    rows = overrides_in_force(settings, state, now)
    if args.json:
        for row in rows:
            print(orjson.dumps(row).decode())
    else:
        print(render_overrides(settings, rows, state, now))
    return 0
