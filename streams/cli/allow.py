"""`distillguard allow`: the allow-list of the control topic, from the command line.

    distillguard allow --org ID | --account ID --reason TEXT [--by NAME]   grant (a record)
    distillguard allow --revoke --org ID | --account ID                   revoke (a tombstone)
    distillguard allow --list                          the allow-list: settings and control topic

A grant or revocation is one record on the control topic (streams/edge/control.py); every worker
applies it within about a second, and an account under an action is lifted at its next event.
Settings (`allow_orgs`, `allow_accounts`) are changed in the settings, not here.

streams/cli/main.py registers the command with `add_allow_parser(sub)`. Errors a user can fix raise
ValueError or TopicError, which the console script prints as one line (exit 2).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
from datetime import UTC, datetime
from typing import IO, Any

from aiokafka import AIOKafkaProducer

from distillguard.models.allowlist import Allowance
from distillguard.streams.edge.control import (
    ControlRecord,
    ControlState,
    allow_record,
    control_key,
    read_control_state,
    revoke_record,
)
from distillguard.streams.edge.settings import Settings, allow_id_problem, load_settings
from distillguard.streams.edge.topics import check_topics_exist, wait_for_broker

# The longest reason shown in full by --list (the record keeps all of it).
LIST_REASON_CHARS = 60


def add_allow_parser(subparsers: Any) -> argparse.ArgumentParser:
    """The `allow` command, on the console script's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "allow", help="allow-list a verified organisation or account (the control topic)",
        description="Grant, revoke or list allowances on the control topic: an allow-listed "
                    "organisation's or account's requests are never throttled or blocked, and "
                    "an action in force is lifted at the account's next event. Every worker "
                    "applies a change within about a second.")
    p.add_argument("--settings", help="TOML settings file (else $DISTILLGUARD_SETTINGS_FILE)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--org", metavar="ID", help="an organisation (the events' org_id)")
    what.add_argument("--account", metavar="ID", help="an account (the events' account_id)")
    what.add_argument("--list", action="store_true",
                      help="print the allow-list: the settings' and the control topic's")
    p.add_argument("--reason", help="why it is verified (required to grant; in every decision "
                                    "that lifts an action for it)")
    p.add_argument("--by", help="who grants it (default: your login name)")
    p.add_argument("--revoke", action="store_true",
                   help="revoke the control topic's allowance (a tombstone)")
    p.set_defaults(func=cmd_allow)
    return p


def cmd_allow(args: argparse.Namespace) -> int:
    settings = load_settings(file=getattr(args, "settings", None))
    if args.list:
        extra = [o for o in ("reason", "by", "revoke") if getattr(args, o)]
        if extra:
            raise ValueError(f"--list takes no --{extra[0]}")
        state = asyncio.run(_read(settings))
        print(render_list(settings, state))
        return 0
    scope, id_ = ("org", args.org) if args.org is not None else ("account", args.account)
    problem = allow_id_problem(id_)
    if problem:
        raise ValueError(f"--{scope} {id_!r} {problem}")
    if args.revoke:
        if args.reason is not None or args.by is not None:
            raise ValueError("--revoke writes a tombstone, which carries no --reason or --by")
        return _revoke(settings, scope, id_)
    if not args.reason or not args.reason.strip():
        raise ValueError(f"--reason is required: say why the {scope} is verified (it is "
                         "named in every decision that lifts an action for it)")
    by = args.by if args.by is not None else _login()
    key, value = allow_record(scope, id_, args.reason, by)  # ValueError as a worker refuses it
    offset = asyncio.run(_write(settings, key, value))
    topic = settings.topics["control"].name
    print(f"allowed {scope} {id_}: {args.reason} (by {by or 'unknown'}); written to {topic} at "
          f"offset {offset}. Every worker applies it within about a second; an action in force "
          f"is lifted at the account's next event.")
    _note_settings(settings, scope, id_, sys.stdout)
    return 0


def _revoke(settings: Settings, scope: str, id_: str) -> int:
    state = asyncio.run(_read(settings))
    key, value = revoke_record(scope, id_)
    offset = asyncio.run(_write(settings, key, value))
    topic = settings.topics["control"].name
    had = control_key(scope, id_) in state.records
    print(f"revoked {scope} {id_}: tombstone written to {topic} at offset {offset}"
          + ("" if had else " (the control topic did not allow-list it)") + ".")
    _note_settings(settings, scope, id_, sys.stdout)
    return 0


def _note_settings(settings: Settings, scope: str, id_: str, out: IO[str]) -> None:
    listed = settings.allow_orgs if scope == "org" else settings.allow_accounts
    if id_ in listed:
        out.write(f"note: the settings list {scope} {id_} (allow_{scope}s): it stays "
                  "allow-listed whatever the control topic says, until removed there.\n")


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return ""


async def _ready(settings: Settings) -> str:
    """The control topic's name, once the broker answers and the topic exists."""
    kwargs = settings.aiokafka_kwargs()
    topic = settings.topics["control"].name
    await wait_for_broker(settings.kafka_bootstrap, timeout_s=15, client_kwargs=kwargs)
    if await check_topics_exist(settings.kafka_bootstrap, [topic], client_kwargs=kwargs):
        raise ValueError(f"the control topic {topic} does not exist on "
                         f"{settings.kafka_bootstrap}; create it with `distillguard topics "
                         "create`")
    return topic


async def _read(settings: Settings) -> ControlState:
    await _ready(settings)
    return await read_control_state(settings)


async def _write(settings: Settings, key: bytes, value: bytes | None) -> int:
    """Write one record (acknowledged by every in-sync replica); its offset."""
    topic = await _ready(settings)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                enable_idempotence=True, **settings.aiokafka_kwargs())
    await producer.start()
    try:
        meta = await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()
    return int(meta.offset)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def render_list(settings: Settings, state: ControlState) -> str:
    """The allow-list as a worker starting now would hold it: the settings' rows, then the
    control topic's (one the settings also list is marked: the settings' holds)."""
    rows: list[tuple[Allowance, ControlRecord | None, str]] = []
    fixed = {(a.scope, a.id) for a in settings.allowances()}
    for a in settings.allowances():
        rows.append((a, None, "settings"))
    for granted in state.records.values():
        if granted.allowance is None:
            continue  # an operator's decision (`distillguard overrides`)
        shadowed = (granted.scope, granted.id) in fixed
        rows.append((granted.allowance, granted, "control (settings hold)" if shadowed
                     else "control"))
    topic = settings.topics["control"].name
    header = f"{'scope':<8} {'id':<32} {'source':<24} {'by':<16} {'since':<20} reason"
    lines = [header, "-" * len(header)]
    for a, record, source in sorted(rows, key=lambda r: (r[0].scope, r[0].id,
                                                         r[2] != "settings")):
        reason = a.reason if len(a.reason) <= LIST_REASON_CHARS else \
            a.reason[:LIST_REASON_CHARS - 3] + "..."
        lines.append(f"{a.scope:<8} {a.id:<32} {source:<24} {a.by or '-':<16} "
                     f"{_when(record.ts if record else None):<20} {reason}")
    held = {(a.scope, a.id) for a, _, _ in rows}
    orgs = sum(1 for scope, _ in held if scope == "org")
    lines.append(f"in force: {orgs} organisations, {len(held) - orgs} accounts; "
                 f"{len(fixed)} from the settings, {len(state.allowances())} from {topic} "
                 f"({state.read} records read, {len(state.bad)} bad) as of "
                 f"{_when(time.time())}")
    for partition, offset, reason in state.bad[:10]:
        lines.append(f"bad record {topic}:{partition}:{offset}: {reason} (the workers "
                     "dead-letter it)")
    if len(state.bad) > 10:
        lines.append(f"... and {len(state.bad) - 10} more bad records")
    return "\n".join(lines)
