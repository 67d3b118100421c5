"""`distillguard decide`: an operator's own decision about one account, from the command line.

    distillguard decide --account ID [--account ID ...] --block | --throttle [--rpm N] | --allow
                        --for DURATION --reason TEXT [--by NAME]       decide (for a time)
    distillguard decide --revoke --account ID --reason TEXT [--by NAME]  end it early
    distillguard decide --list                              the operators' decisions held now

A decision is written three times, in this order (models/operator.py says what it means):
1. to the control topic (`decide:account:<id>`), from which every worker holds it within about a
   second and makes no decision of its own about the account until it runs out;
2. to the enforcement topic, as the contract's record with `source: operator`, `by` and an
   `operator_<action>` reason code, so the gateway applies it at once (not at the account's
   next event, as a worker would);
3. to the decisions topic: the record (throttle, block) or a tombstone (allow: nothing in force).

`--revoke` writes the control topic's tombstone and, while the decision is still in force, an
`allow` to the enforcement topic and a tombstone to the decisions topic; the detector then
decides the account afresh from its next event. An operator's decision is enforced whatever the
fleet's mode (shadow or not): a person decided it.

streams/cli/main.py registers the command with `add_decide_parser(sub)`. Errors a user can fix
raise ValueError or TopicError, which the console script prints as one line (exit 2).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from distillguard.models.decision import ALLOW, BLOCK, THROTTLE, Decision
from distillguard.models.operator import (
    MAX_OPERATOR_TTL_S,
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


def add_decide_parser(subparsers: Any) -> argparse.ArgumentParser:
    """The `decide` command, on the console script's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "decide", help="block, throttle or allow one account by hand, for a time",
        description="An operator's own decision about an account: published to the gateway at "
                    "once (enforcement and decisions topics) and held by every worker (control "
                    "topic), which makes no decision of its own about the account until it runs "
                    "out or is revoked.")
    p.add_argument("--settings", help="TOML settings file (else $DISTILLGUARD_SETTINGS_FILE)")
    p.add_argument("--account", metavar="ID", action="append",
                   help="the account (the events' account_id); repeat it for several (at most "
                        f"{MAX_ACCOUNTS_AT_ONCE}), each gets its own decision")
    action = p.add_mutually_exclusive_group()
    action.add_argument("--block", dest="action", action="store_const", const=BLOCK,
                        help="block the account: the gateway refuses its requests")
    action.add_argument("--throttle", dest="action", action="store_const", const=THROTTLE,
                        help="throttle the account to --rpm requests a minute")
    action.add_argument("--allow", dest="action", action="store_const", const=ALLOW,
                        help="lift any action and keep the detector silent about the account")
    action.add_argument("--revoke", dest="action", action="store_const", const="revoke",
                        help="end the account's operator decision now")
    action.add_argument("--list", dest="action", action="store_const", const="list",
                        help="print the operators' decisions the control topic holds")
    p.add_argument("--for", dest="duration", metavar="DURATION",
                   help="how long it holds: 90s, 30m, 2h, 7d (at most 30 days)")
    p.add_argument("--rpm", type=int, help="requests per minute, for --throttle (default: the "
                                           "detector's throttle_rpm)")
    p.add_argument("--reason", help="why (a ticket, an incident): named in the decision")
    p.add_argument("--by", help="who decides (default: your login name)")
    p.set_defaults(func=cmd_decide)
    return p


def cmd_decide(args: argparse.Namespace) -> int:
    settings = load_settings(file=getattr(args, "settings", None))
    if args.action is None:
        raise ValueError("say what: --block, --throttle, --allow, --revoke or --list")
    if args.action == "list":
        extra = [o for o in ("account", "duration", "rpm", "reason", "by")
                 if getattr(args, o) is not None]
        if extra:
            raise ValueError(f"--list takes no --{extra[0].replace('duration', 'for')}")
        print(render_decisions(settings, asyncio.run(_read(settings)), time.time()))
        return 0
    if not args.account:
        raise ValueError("--account is required")
    accounts = list(dict.fromkeys(args.account))  # each once, in the order given
    if len(accounts) > MAX_ACCOUNTS_AT_ONCE:
        raise ValueError(f"{len(accounts)} accounts: at most {MAX_ACCOUNTS_AT_ONCE} at once")
    for account in accounts:
        problem = allow_id_problem(account)
        if problem:
            raise ValueError(f"--account {account!r} {problem}")
    if not args.reason or not args.reason.strip():
        raise ValueError("--reason is required: say why (it is named in the decision)")
    by = args.by if args.by is not None else _login()
    if not by.strip():
        raise ValueError("--by is required: no login name to default to")
    if args.action == "revoke":
        if args.duration is not None or args.rpm is not None:
            raise ValueError("--revoke takes no --for or --rpm")
        return _revoke(settings, accounts, args.reason, by)
    if args.duration is None:
        raise ValueError("--for is required: how long the decision holds (90s, 30m, 2h, 7d)")
    if args.rpm is not None and args.action != THROTTLE:
        raise ValueError("--rpm is for --throttle")
    rpm = None
    if args.action == THROTTLE:
        rpm = settings.detector.throttle_rpm if args.rpm is None else args.rpm
    ttl_s, now = parse_duration(args.duration), time.time()
    manual = [OperatorDecision(a, args.action, ttl_s, rpm, args.reason, by, now)
              for a in accounts]
    # every record checked before any is written: ValueError as a worker would refuse it
    writes = [(decide_record(m), m.to_decision(settings.detector.model_version)) for m in manual]
    offsets = asyncio.run(_write(settings, writes))
    for m, where in zip(manual, offsets, strict=True):
        print(f"account {m.account_id}: {m.describe()}; until {_when(m.until)}. Published to "
              f"the gateway ({where}).")
    print("Every worker holds it within about a second and decides nothing about the account "
          "until then.")
    return 0


def _revoke(settings: Settings, accounts: list[str], reason: str, by: str) -> int:
    state = asyncio.run(_read(settings))
    now = time.time()
    writes: list[tuple[tuple[bytes, bytes | None], Decision | None]] = []
    for account_id in accounts:
        held = state.records.get(control_key("account", account_id, DECIDE_KIND))
        in_force = held is not None and held.decision is not None and now < held.decision.until
        lift = (revoked_decision(account_id, by, reason, now, settings.detector.model_version)
                if in_force else None)
        writes.append((revoke_record("account", account_id, DECIDE_KIND), lift))
    offsets = asyncio.run(_write(settings, writes))
    for (_, lift), account_id, where in zip(writes, accounts, offsets, strict=True):
        if lift is None:
            print(f"no operator decision in force for account {account_id}: tombstone written "
                  f"({where}); nothing published to the gateway.")
        else:
            print(f"revoked the operator decision for account {account_id} ({where}): the "
                  "gateway lifts it now; the detector decides the account afresh from its "
                  "next event.")
    return 0


async def _write(settings: Settings,
                 writes: Sequence[tuple[tuple[bytes, bytes | None], Decision | None]]
                 ) -> list[str]:
    """For each account: its control record, then (if any) its decision on the enforcement and
    decisions topics, each acknowledged by every in-sync replica; where each account's went."""
    control_topic = await _ready(settings)
    topics = settings.topics
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                enable_idempotence=True, **settings.aiokafka_kwargs())
    await producer.start()
    written = []
    try:
        for (key, value), decision in writes:
            # The control record first: a worker that decides about the account after the
            # gateway has the decision then already holds it, or does within a second.
            meta = await producer.send_and_wait(control_topic, value, key=key)
            where = [f"{control_topic}@{meta.offset}"]
            if decision is not None:
                record = encode_decision(decision, time.time())
                for name, payload in ((topics["enforcement"].name, record),
                                      (topics["decisions"].name,
                                       decision_in_force(decision, record))):
                    meta = await producer.send_and_wait(name, payload,
                                                        key=decision.account_id.encode())
                    where.append(f"{name}@{meta.partition}:{meta.offset}")
            written.append(", ".join(where))
    finally:
        await producer.stop()
    return written


def render_decisions(settings: Settings, state: ControlState, now: float) -> str:
    """The operators' decisions on the control topic, those in force first, soonest to end
    first; then those that ran out (a worker holds them until a tombstone replaces them)."""
    held = state.operator_decisions()
    header = (f"{'account':<32} {'action':<9} {'rpm':>4} {'by':<16} {'since':<20} "
              f"{'until':<20} reason")
    lines = [header, "-" * len(header)]
    for d in sorted(held, key=lambda d: (d.until <= now, d.until, d.account_id)):
        reason = d.reason if len(d.reason) <= LIST_REASON_CHARS else \
            d.reason[:LIST_REASON_CHARS - 3] + "..."
        until = _when(d.until) + ("" if d.until > now else " (ran out)")
        rpm = "-" if d.rate_limit_rpm is None else str(d.rate_limit_rpm)
        lines.append(f"{d.account_id:<32} {d.action:<9} {rpm:>4} {d.by:<16} {_when(d.ts):<20} "
                     f"{until:<20} {reason}")
    in_force = sum(1 for d in held if d.until > now)
    topic = settings.topics["control"].name
    lines.append(f"in force: {in_force} operator decisions ({len(held) - in_force} ran out) on "
                 f"{topic} as of {_when(now)}")
    return "\n".join(lines)
