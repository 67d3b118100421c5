"""The demo's gate: `distillguard gate` started beside the fleet on the run's decisions topic,
and, once the run is over, what it answers for an account the fleet blocked and for an
ordinary one, asked as a gateway asks (GET /check with the account header).
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from distillguard.streams.gate.server import (
    CHECK_PATH,
    DECISION_HEADER,
    DEFAULT_ACCOUNT_HEADER,
    OUTCOME_HEADER,
    REASON_HEADER,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def start_gate(env: Mapping[str, str], port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """The gate as a process of its own (the run's topics come with `env`)."""
    log = log_path.open("ab")
    return subprocess.Popen([sys.executable, "-m", "distillguard", "gate", "--port", str(port)],
                            cwd=REPO_ROOT, env=dict(env), stdout=log, stderr=subprocess.STDOUT)


def ask(url: str, account: str) -> str:
    """One check, as `status outcome (reason ..., decision ...)`."""
    request = urllib.request.Request(url.rstrip("/") + CHECK_PATH,
                                     headers={DEFAULT_ACCOUNT_HEADER: account})
    try:
        with urllib.request.urlopen(request, timeout=3) as r:
            status, headers = r.status, r.headers
    except urllib.error.HTTPError as exc:
        status, headers = exc.code, exc.headers
    except OSError as exc:
        return f"no answer ({exc})"
    said = ", ".join(f"{name.removeprefix('x-distillguard-')} {headers[name]}"
                     for name in (REASON_HEADER, DECISION_HEADER) if headers.get(name))
    retry = f", Retry-After {headers['Retry-After']}" if headers.get("Retry-After") else ""
    return f"{status} {headers.get(OUTCOME_HEADER, '?')}" + (f" ({said}{retry})" if said else "")


def accounts_to_show(decisions: Sequence[Mapping[str, Any]],
                     labels: Mapping[str, tuple[str, str]]) -> list[tuple[str, str]]:
    """(what, account): the account most recently blocked (else throttled) whose latest decision
    still acts, and an ordinary account the fleet never acted on."""
    latest: dict[str, Mapping[str, Any]] = {}
    for d in decisions:
        latest[str(d.get("account_id"))] = d
    shown: list[tuple[str, str]] = []
    for action in ("block", "throttle"):
        acted = [a for a, d in latest.items() if d.get("action") == action
                 and d.get("mode", "enforce") == "enforce"]
        if acted:
            shown.append((f"{'blocked' if action == 'block' else 'throttled'} account", acted[-1]))
            break
    ordinary = next((a for a, (_, group) in labels.items()
                     if group == "ordinary" and a not in latest), None)
    if ordinary is not None:
        shown.append(("ordinary account", ordinary))
    return shown


def gate_lines(url: str, decisions: Sequence[Mapping[str, Any]],
               labels: Mapping[str, tuple[str, str]]) -> list[str]:
    lines = [f"  {what} {account}: {ask(url, account)}"
             for what, account in accounts_to_show(decisions, labels)]
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=3) as r:
            health = json.loads(r.read())
        lines.append(f"  (the gate read {health['records_read']:,} records of "
                     f"{health['topic']}; in force: {health['in_force'] or 'none'})")
    except (OSError, ValueError, KeyError):
        lines.append("  (the gate's /health did not answer)")
    return lines
