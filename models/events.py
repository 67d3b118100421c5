"""Request events: the typed form of the gateway's request record, and its validation.

This module owns the contract `request-event.schema.json` on the way in: `event_from_mapping`
turns an already-parsed JSON object into a `RequestEvent` or raises `InvalidEvent` with a reason
an operator can act on. Bytes, UTF-8 and JSON parsing live at the edge (`streams/edge/codec.py`).

>>> ev = event_from_mapping({"event_id": "e1", "ts": 10.0, "account_id": "a", "ip": "10.0.0.1",
...     "model": "m", "prompt_tokens": 5, "completion_tokens": 7, "status": 200,
...     "prompt_simhash": "00000000000000ff", "reasoning_requested": False})
>>> ev.account_id, ev.simhash
('a', 255)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TASK_CATEGORIES = frozenset({"coding", "reasoning", "math", "tool_use", "writing", "chat", "other"})
# Categories a distiller harvests: the capabilities that are expensive to train.
HIGH_VALUE_CATEGORIES = frozenset({"coding", "reasoning", "math", "tool_use"})

_SIMHASH = re.compile(r"^[0-9a-f]{16}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_MAX_ID = 128
_UINT32_MAX = 4_294_967_295
# The latest event time the contract accepts: 2100-01-01T00:00Z in epoch seconds. A time in
# milliseconds (13 digits) or a 1e300 would otherwise move its partition's event time (the
# watermark, which only goes forward) so far ahead that every honest event after it is late.
MAX_EVENT_TS = 4_102_444_800
# Bounds of the contract's integers: a 1e300 is an integral JSON number, and unbounded it would
# swamp every sum it joins and make the state that holds it unencodable (orjson: 64 bits).
MAX_TOKENS = 10_000_000
MAX_LATENCY_MS = 86_400_000
MAX_TOOLS = 100_000


class InvalidEvent(ValueError):
    """A record that is not a valid request event; `reason` is short and names the field."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RequestEvent:
    event_id: str
    ts: float
    account_id: str
    ip: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    status: int
    simhash: int
    reasoning_requested: bool
    org_id: str | None = None
    api_key_id: str | None = None
    asn: int | None = None
    country: str | None = None
    user_agent: str | None = None
    payment_fingerprint: str | None = None
    account_created_ts: float | None = None
    endpoint: str | None = None
    latency_ms: int | None = None
    system_prompt_hash: str | None = None
    tools_count: int | None = None
    task_category: str | None = None

    @property
    def is_high_value(self) -> bool:
        return self.task_category in HIGH_VALUE_CATEGORIES

    @property
    def is_error(self) -> bool:
        return self.status >= 400


def _string(obj: Mapping[str, Any], name: str, *, required: bool, max_len: int = _MAX_ID,
            min_len: int = 1) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise InvalidEvent(f"missing required field '{name}'" if name not in obj
                               else f"field '{name}' must not be null")
        return None
    if not isinstance(value, str):
        raise InvalidEvent(f"field '{name}' must be a string, got {type(value).__name__}")
    if not min_len <= len(value) <= max_len:
        raise InvalidEvent(f"field '{name}' must have {min_len}..{max_len} characters")
    return value


def _number(obj: Mapping[str, Any], name: str, *, required: bool,
            high: float | None = None) -> float | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise InvalidEvent(f"missing required field '{name}'" if name not in obj
                               else f"field '{name}' must not be null")
        return None
    # bool is an int subclass in Python but not a JSON number.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidEvent(f"field '{name}' must be a number, got {type(value).__name__}")
    if value < 0 or math.isnan(value) or math.isinf(value):
        raise InvalidEvent(f"field '{name}' must be a finite number >= 0")
    if high is not None and value > high:
        raise InvalidEvent(f"field '{name}' must be epoch seconds <= {high:.0f} (2100-01-01), "
                           f"got {value:.6g}" + (" (milliseconds?)" if value < high * 1000 else ""))
    return float(value)


def _integer(obj: Mapping[str, Any], name: str, *, required: bool, low: int = 0,
             high: int | None = None) -> int | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise InvalidEvent(f"missing required field '{name}'" if name not in obj
                               else f"field '{name}' must not be null")
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON Schema: 3.0 is an integer
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEvent(f"field '{name}' must be an integer, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        shown = value if abs(value) < 10**15 else f"{float(value):.3g}"  # not 301 digits
        raise InvalidEvent(f"field '{name}' must be {bound}, got {shown}")
    return value


def event_from_mapping(obj: Any) -> RequestEvent:
    """Validate a parsed JSON value against the request-event contract and type it."""
    if not isinstance(obj, Mapping):
        raise InvalidEvent(f"event must be a JSON object, got {type(obj).__name__}")
    simhash_hex = _string(obj, "prompt_simhash", required=True, max_len=16)
    assert simhash_hex is not None
    if not _SIMHASH.match(simhash_hex):
        raise InvalidEvent("field 'prompt_simhash' must be 16 lowercase hex digits")
    reasoning = obj.get("reasoning_requested")
    if not isinstance(reasoning, bool):
        raise InvalidEvent("missing required field 'reasoning_requested'"
                           if "reasoning_requested" not in obj
                           else "field 'reasoning_requested' must be a boolean")
    country = _string(obj, "country", required=False, max_len=2, min_len=2)
    if country is not None and not _COUNTRY.match(country):
        raise InvalidEvent("field 'country' must be two capital letters")
    category = obj.get("task_category")
    if category is not None and (not isinstance(category, str)
                                 or category not in TASK_CATEGORIES):
        raise InvalidEvent(f"field 'task_category' has unknown value {category!r}")
    return RequestEvent(
        event_id=_string(obj, "event_id", required=True),  # type: ignore[arg-type]
        ts=_number(obj, "ts", required=True, high=MAX_EVENT_TS),  # type: ignore[arg-type]
        account_id=_string(obj, "account_id", required=True),  # type: ignore[arg-type]
        ip=_string(obj, "ip", required=True, max_len=45, min_len=2),  # type: ignore[arg-type]
        model=_string(obj, "model", required=True),  # type: ignore[arg-type]
        prompt_tokens=_integer(obj, "prompt_tokens", required=True,  # type: ignore[arg-type]
                               high=MAX_TOKENS),
        completion_tokens=_integer(obj, "completion_tokens",  # type: ignore[arg-type]
                                   required=True, high=MAX_TOKENS),
        status=_integer(obj, "status", required=True, low=100, high=599),  # type: ignore[arg-type]
        simhash=int(simhash_hex, 16),
        reasoning_requested=reasoning,
        org_id=_string(obj, "org_id", required=False, min_len=0),
        api_key_id=_string(obj, "api_key_id", required=False, min_len=0),
        asn=_integer(obj, "asn", required=False, high=_UINT32_MAX),
        country=country,
        user_agent=_string(obj, "user_agent", required=False, max_len=512, min_len=0),
        payment_fingerprint=_string(obj, "payment_fingerprint", required=False, min_len=0),
        account_created_ts=_number(obj, "account_created_ts", required=False,
                                   high=MAX_EVENT_TS),
        endpoint=_string(obj, "endpoint", required=False, min_len=0),
        latency_ms=_integer(obj, "latency_ms", required=False, high=MAX_LATENCY_MS),
        system_prompt_hash=_string(obj, "system_prompt_hash", required=False, min_len=0),
        tools_count=_integer(obj, "tools_count", required=False, high=MAX_TOOLS),
        task_category=category,
    )
