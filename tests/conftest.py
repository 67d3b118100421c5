"""Shared test fixtures: the gateway contract, and a factory for request events.

The contract schemas are the repository's own `contract/` (the interface with the gateway,
owned here); tests validate what the project reads and writes against those files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

# First: importing streams chooses the build of the core the tests run (models/_build.py).
import distillguard.streams  # noqa: F401
from distillguard.models.events import RequestEvent, event_from_mapping

CONTRACT_DIR = Path(__file__).resolve().parents[1] / "contract"


def contract_dir() -> Path:
    """The repository's `contract/`: a clone needs nothing beside it."""
    return CONTRACT_DIR


@cache
def contract_validator(name: str) -> Draft202012Validator:
    """`name`: request-event, enforcement-decision or account-label."""
    schema = json.loads((contract_dir() / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@pytest.fixture
def validate() -> Callable[[str, Any], None]:
    def check(name: str, obj: Any) -> None:
        errors = sorted(contract_validator(name).iter_errors(obj), key=str)
        assert not errors, f"{name} contract violated: {errors[0].message}"
    return check


_EVENT_DEFAULTS: dict[str, Any] = {
    "ip": "203.0.113.10", "model": "claude-x-large", "prompt_tokens": 120,
    "completion_tokens": 800, "status": 200, "prompt_simhash": "0123456789abcdef",
    "reasoning_requested": False, "asn": 64500, "user_agent": "sdk/1.0",
    "payment_fingerprint": None, "account_created_ts": None, "task_category": "chat",
}


def clear_settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No DISTILLGUARD_ setting of the shell reaches the test, but the core's build choice
    (DISTILLGUARD_CORE)."""
    for name in list(os.environ):
        if name.startswith("DISTILLGUARD_") and name != "DISTILLGUARD_CORE":
            monkeypatch.delenv(name)


def event_dict(account_id: str, ts: float, n: int = 0, **fields: Any) -> dict[str, Any]:
    """A valid request event as the gateway writes it; override any field by keyword."""
    return {"event_id": f"{account_id}-{n}-{ts}", "ts": ts, "account_id": account_id,
            **_EVENT_DEFAULTS, **fields}


def make_event(account_id: str, ts: float, n: int = 0, **fields: Any) -> RequestEvent:
    """A typed event for the core: one line per event in a scenario test."""
    return event_from_mapping(event_dict(account_id, ts, n, **fields))


@pytest.fixture
def event() -> Callable[..., RequestEvent]:
    return make_event
