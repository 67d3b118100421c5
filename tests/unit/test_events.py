"""`models.events.event_from_mapping` agrees with the gateway contract (request-event.schema.json).

Every row of the table is judged twice: by our validator and by jsonschema on the contract file.
The two verdicts must be equal, and a refusal must carry a reason that names the field, because
that reason is what an operator reads on the dead-letter topic.
"""

from __future__ import annotations

from typing import Any

import pytest

from distillguard.models.events import InvalidEvent, RequestEvent, event_from_mapping
from tests.conftest import contract_validator, event_dict

MISSING = object()  # marks a field to delete from the base event


def _base() -> dict[str, Any]:
    return event_dict("acct-1", 1_700_000_000.5, org_id="org-1", api_key_id="key-1",
                      country="DE", endpoint="/v1/messages", latency_ms=900,
                      system_prompt_hash="sys-abc", tools_count=2,
                      payment_fingerprint="pay-1", account_created_ts=1_690_000_000.0)


REQUIRED = ("event_id", "ts", "account_id", "ip", "model", "prompt_tokens", "completion_tokens",
            "status", "prompt_simhash", "reasoning_requested")

# (id, changes to the base event, field a refusal must name or None for a valid event)
CASES: list[tuple[str, dict[str, Any], str | None]] = [
    ("base", {}, None),
    ("all-optional-null", {k: None for k in (
        "org_id", "api_key_id", "asn", "country", "user_agent", "payment_fingerprint",
        "account_created_ts", "endpoint", "latency_ms", "system_prompt_hash", "tools_count",
        "task_category")}, None),
    ("all-optional-absent", {k: MISSING for k in (
        "org_id", "api_key_id", "asn", "country", "user_agent", "payment_fingerprint",
        "account_created_ts", "endpoint", "latency_ms", "system_prompt_hash", "tools_count",
        "task_category")}, None),
    ("extra-field-allowed", {"something_new": [1, 2, 3]}, None),
    ("ts-integer", {"ts": 1_700_000_000}, None),
    ("ts-zero", {"ts": 0}, None),
    ("ts-2100", {"ts": 4_102_444_800}, None),  # the contract's latest event time
    ("integer-maxima", {"prompt_tokens": 10_000_000, "completion_tokens": 10_000_000,
                        "latency_ms": 86_400_000, "tools_count": 100_000}, None),
    ("tokens-integral-float", {"prompt_tokens": 3.0}, None),  # JSON Schema: 3.0 is an integer
    ("asn-max", {"asn": 4_294_967_295}, None),
    ("status-bounds-low", {"status": 100}, None),
    ("status-bounds-high", {"status": 599}, None),
    ("reasoning-true", {"reasoning_requested": True}, None),
    ("every-category", {"task_category": "tool_use"}, None),
    ("ip-v6", {"ip": "2001:db8::1"}, None),
    ("ip-malformed-text-allowed", {"ip": "not-an-ip"}, None),
    ("id-128-chars", {"event_id": "e" * 128, "account_id": "a" * 128}, None),
    ("id-128-astral", {"account_id": "\U0001F600" * 128}, None),  # code points, not bytes
    ("org-empty-string", {"org_id": ""}, None),
    ("user-agent-512", {"user_agent": "u" * 512}, None),
    # --- missing required fields ---
    *[(f"missing-{f}", {f: MISSING}, f) for f in REQUIRED],
    # --- null required fields ---
    *[(f"null-{f}", {f: None}, f) for f in REQUIRED],
    # --- wrong types ---
    ("event_id-int", {"event_id": 5}, "event_id"),
    ("ts-string", {"ts": "1700000000"}, "ts"),
    ("ts-bool", {"ts": True}, "ts"),
    ("prompt_tokens-bool", {"prompt_tokens": True}, "prompt_tokens"),
    ("completion_tokens-bool", {"completion_tokens": False}, "completion_tokens"),
    ("status-bool", {"status": True}, "status"),
    ("asn-bool", {"asn": True}, "asn"),
    ("tools_count-bool", {"tools_count": True}, "tools_count"),
    ("latency-bool", {"latency_ms": False}, "latency_ms"),
    ("account_created_ts-bool", {"account_created_ts": True}, "account_created_ts"),
    ("prompt_tokens-fraction", {"prompt_tokens": 3.5}, "prompt_tokens"),
    ("prompt_tokens-string", {"prompt_tokens": "12"}, "prompt_tokens"),
    ("status-float-fraction", {"status": 200.5}, "status"),
    ("reasoning-int", {"reasoning_requested": 1}, "reasoning_requested"),
    ("reasoning-string", {"reasoning_requested": "true"}, "reasoning_requested"),
    ("ip-list", {"ip": ["1.2.3.4"]}, "ip"),
    ("model-dict", {"model": {"name": "m"}}, "model"),
    ("user_agent-int", {"user_agent": 7}, "user_agent"),
    ("org-int", {"org_id": 7}, "org_id"),
    ("payment-int", {"payment_fingerprint": 7}, "payment_fingerprint"),
    ("simhash-int", {"prompt_simhash": 255}, "prompt_simhash"),
    ("category-int", {"task_category": 3}, "task_category"),
    # --- negative and out-of-range numbers ---
    ("ts-negative", {"ts": -1.0}, "ts"),
    # A time in milliseconds, or a huge one, would carry its partition's event time years ahead.
    ("ts-milliseconds", {"ts": 1_700_000_000_500}, "ts"),
    ("ts-1e300", {"ts": 1e300}, "ts"),
    ("created-milliseconds", {"account_created_ts": 1_690_000_000_000}, "account_created_ts"),
    # An integral 1e300 is a JSON integer: bounded, or it swamps every sum and breaks encoding.
    ("tokens-1e300", {"completion_tokens": 1e300}, "completion_tokens"),
    ("prompt-tokens-over", {"prompt_tokens": 10_000_001}, "prompt_tokens"),
    ("latency-over-a-day", {"latency_ms": 86_400_001}, "latency_ms"),
    ("tools-over", {"tools_count": 100_001}, "tools_count"),
    ("prompt_tokens-negative", {"prompt_tokens": -1}, "prompt_tokens"),
    ("completion_tokens-negative", {"completion_tokens": -5}, "completion_tokens"),
    ("latency-negative", {"latency_ms": -1}, "latency_ms"),
    ("tools-negative", {"tools_count": -1}, "tools_count"),
    ("asn-negative", {"asn": -1}, "asn"),
    ("asn-over-uint32", {"asn": 4_294_967_296}, "asn"),
    ("created-negative", {"account_created_ts": -0.5}, "account_created_ts"),
    ("status-99", {"status": 99}, "status"),
    ("status-600", {"status": 600}, "status"),
    # --- bad simhash ---
    ("simhash-uppercase", {"prompt_simhash": "0123456789ABCDEF"}, "prompt_simhash"),
    ("simhash-short", {"prompt_simhash": "0123456789abcde"}, "prompt_simhash"),
    ("simhash-long", {"prompt_simhash": "0123456789abcdef0"}, "prompt_simhash"),
    ("simhash-not-hex", {"prompt_simhash": "0123456789abcdeg"}, "prompt_simhash"),
    ("simhash-0x", {"prompt_simhash": "0x23456789abcdef"}, "prompt_simhash"),
    ("simhash-empty", {"prompt_simhash": ""}, "prompt_simhash"),
    # --- bad country ---
    ("country-lower", {"country": "de"}, "country"),
    ("country-three", {"country": "DEU"}, "country"),
    ("country-one", {"country": "D"}, "country"),
    ("country-digits", {"country": "12"}, "country"),
    ("country-int", {"country": 49}, "country"),
    # --- unknown task category ---
    ("category-unknown", {"task_category": "poetry"}, "task_category"),
    ("category-case", {"task_category": "Coding"}, "task_category"),
    ("category-empty", {"task_category": ""}, "task_category"),
    # --- string lengths ---
    ("event_id-empty", {"event_id": ""}, "event_id"),
    ("account_id-empty", {"account_id": ""}, "account_id"),
    ("model-empty", {"model": ""}, "model"),
    ("event_id-129", {"event_id": "e" * 129}, "event_id"),
    ("account_id-129", {"account_id": "a" * 129}, "account_id"),
    ("account_id-129-astral", {"account_id": "\U0001F600" * 129}, "account_id"),
    ("model-129", {"model": "m" * 129}, "model"),
    ("ip-1-char", {"ip": "1"}, "ip"),
    ("ip-46-chars", {"ip": "1" * 46}, "ip"),
    ("org-129", {"org_id": "o" * 129}, "org_id"),
    ("api_key-129", {"api_key_id": "k" * 129}, "api_key_id"),
    ("endpoint-129", {"endpoint": "/" * 129}, "endpoint"),
    ("payment-129", {"payment_fingerprint": "p" * 129}, "payment_fingerprint"),
    ("system_prompt-129", {"system_prompt_hash": "s" * 129}, "system_prompt_hash"),
    ("user_agent-513", {"user_agent": "u" * 513}, "user_agent"),
]


def _apply(changes: dict[str, Any]) -> dict[str, Any]:
    obj = _base()
    for key, value in changes.items():
        if value is MISSING:
            obj.pop(key, None)
        else:
            obj[key] = value
    return obj


def _ours(obj: Any) -> tuple[bool, str | None]:
    try:
        event_from_mapping(obj)
    except InvalidEvent as exc:
        return False, exc.reason
    return True, None


@pytest.mark.parametrize(("changes", "field"), [(c, f) for _, c, f in CASES],
                         ids=[i for i, _, _ in CASES])
def test_verdict_equals_contract(changes: dict[str, Any], field: str | None) -> None:
    obj = _apply(changes)
    contract_ok = contract_validator("request-event").is_valid(obj)
    # The table's own expectation must match the contract, or the row tests nothing.
    assert contract_ok is (field is None), "table row disagrees with the contract itself"
    ours_ok, reason = _ours(obj)
    assert ours_ok is contract_ok, f"ours={ours_ok} ({reason}), contract={contract_ok}"
    if field is not None:
        assert reason is not None and f"'{field}'" in reason, reason


@pytest.mark.parametrize("value", [[], "event", 42, None, ["a", 1]])
def test_non_object_is_refused_like_the_contract(value: Any) -> None:
    assert not contract_validator("request-event").is_valid(value)
    ours_ok, reason = _ours(value)
    assert not ours_ok
    assert reason is not None and "object" in reason


def test_valid_event_is_typed_faithfully() -> None:
    obj = _base()
    ev = event_from_mapping(obj)
    assert isinstance(ev, RequestEvent)
    assert ev.simhash == int(obj["prompt_simhash"], 16)
    assert (ev.event_id, ev.account_id, ev.ip, ev.model) == (
        obj["event_id"], obj["account_id"], obj["ip"], obj["model"])
    assert (ev.prompt_tokens, ev.completion_tokens, ev.status) == (
        obj["prompt_tokens"], obj["completion_tokens"], obj["status"])
    assert ev.ts == obj["ts"] and isinstance(ev.ts, float)
    assert (ev.country, ev.asn, ev.tools_count, ev.task_category) == ("DE", 64500, 2, "chat")
    assert ev.account_created_ts == obj["account_created_ts"]


def test_integral_float_is_typed_as_int() -> None:
    ev = event_from_mapping(_apply({"prompt_tokens": 3.0, "asn": 64500.0}))
    assert ev.prompt_tokens == 3 and type(ev.prompt_tokens) is int
    assert ev.asn == 64500 and type(ev.asn) is int


@pytest.mark.parametrize("category,high_value", [
    ("coding", True), ("reasoning", True), ("math", True), ("tool_use", True),
    ("writing", False), ("chat", False), ("other", False), (None, False)])
def test_high_value_categories(category: str | None, high_value: bool) -> None:
    assert event_from_mapping(_apply({"task_category": category})).is_high_value is high_value


@pytest.mark.parametrize("field,value", [("ts", float("nan")), ("ts", float("inf")),
                                         ("account_created_ts", float("inf"))])
def test_non_finite_numbers_are_refused(field: str, value: float) -> None:
    # Not representable in JSON at all (the edge's parser never yields them), so stricter than
    # jsonschema's Python check is right: a NaN timestamp would poison every window.
    ok, reason = _ours(_apply({field: value}))
    assert not ok and reason is not None and f"'{field}'" in reason


@pytest.mark.parametrize("field,value", [("country", "DE\n"),
                                         ("prompt_simhash", "0123456789abcdef\n")])
def test_trailing_newline_is_refused(field: str, value: str) -> None:
    # JSON Schema patterns are ECMA-262, where `$` does not match before a final newline
    # (Python's `re` does, so jsonschema's verdict is not the reference here).
    ok, reason = _ours(_apply({field: value}))
    assert not ok and reason is not None and f"'{field}'" in reason


@pytest.mark.parametrize("value", [["coding"], {"coding": 1}])
def test_unhashable_task_category_is_an_invalid_event(value: Any) -> None:
    obj = _apply({"task_category": value})
    assert not contract_validator("request-event").is_valid(obj)
    ok, reason = _ours(obj)
    assert not ok and reason is not None and "'task_category'" in reason
