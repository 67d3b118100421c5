"""A real gateway in front of the gate: Debian's nginx with deploy/nginx/nginx.conf.template,
`distillguard gate` reading this test's decisions topic on the real broker, and a stand-in
Messages API behind nginx. The clients are real: the official `anthropic` SDK
(`Anthropic(base_url=<nginx>)`) and curl. nginx maps each API key to its account.

The decision records are written here as the workers write them (key account_id, the
enforcement-decision JSON, a tombstone to lift); the test reads what the clients get: 200, then
429 (RateLimitError) over a throttle's rate, 403 (PermissionDeniedError) when blocked, 200 again
after the tombstone, each within a bound from the record's write, while an ordinary account is
served throughout.

Skipped only where nginx is not installed (with the command to install it); CI installs it
(.ci/run) and sets DGTEST_REQUIRE_NGINX=1, so there a missing nginx is a failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anthropic
import orjson
import pytest

from distillguard.models._build import BUILD_VARIABLES
from distillguard.streams.edge.settings import Settings
from tests.gateway import Nginx, StandInApi, decision_record, nginx_or_skip
from tests.integration.conftest import REPO_ROOT, produce, run_env, wait_until

# The bound within which a decision written to the topic reaches the clients through nginx
# (the issue asks an operator's lift to reach the gate within 5 s).
REACH_S = 5.0
KEYS = {"sk-test-campaign": "acct-campaign", "sk-test-ordinary": "acct-ordinary"}
CAMPAIGN_KEY, ORDINARY_KEY = "sk-test-campaign", "sk-test-ordinary"
MESSAGE = {"model": "claude-stand-in", "max_tokens": 64,
           "messages": [{"role": "user", "content": "Hello"}]}


@pytest.fixture(scope="module")
def nginx_binary() -> str:
    return nginx_or_skip()


@contextmanager
def gate_service(settings: Settings, log_path: Path, *args: str) -> Iterator[str]:
    """`distillguard gate` in its own process on a free port; yields its URL."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DISTILLGUARD_") or k in BUILD_VARIABLES}
    env.update(run_env(settings.app_id.removeprefix("dg-test-"), settings.kafka_bootstrap))
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "distillguard", "gate", "--port", "0",
                                 *args], cwd=REPO_ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        def url() -> str | None:
            assert proc.poll() is None, log_path.read_text()
            m = re.search(r"gate: (http://\S+)", log_path.read_text())
            return m.group(1) if m else None
        yield wait_until(url, 30, "the gate's address")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def get_json(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_ready(gate_url: str) -> None:
    wait_until(lambda: get_json(gate_url + "ready")[0] == 200, 30, "the gate to be ready")


def write(settings: Settings, account: str, value: dict[str, Any] | None) -> float:
    """A record of the decisions topic, as the workers write it; returns when it was written."""
    asyncio.run(produce(settings, [(account.encode(), None if value is None
                                    else orjson.dumps(value))], topic=settings.topic_decisions))
    return time.monotonic()


def client(base_url: str, key: str) -> anthropic.Anthropic:
    # No retries: the test reads each answer as the gateway gives it (the SDK would otherwise
    # wait Retry-After and ask again, as a client should).
    return anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0, timeout=10)


def outcome(sdk: anthropic.Anthropic) -> tuple[int, Any]:
    """(status, the message or the SDK's error) of one request through nginx."""
    try:
        return 200, sdk.messages.create(**MESSAGE)
    except anthropic.APIStatusError as exc:
        return exc.status_code, exc


def curl(url: str, key: str) -> tuple[int, dict[str, str]]:
    """(status, response headers) of one POST /v1/messages by curl."""
    res = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-D", "-", "-X", "POST", f"{url}/v1/messages",
         "-H", f"x-api-key: {key}", "-H", "anthropic-version: 2023-06-01",
         "-H", "content-type: application/json", "--data", json.dumps(MESSAGE)],
        capture_output=True, text=True, check=True, timeout=15)
    lines = res.stdout.strip().splitlines()
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in lines[1:]) if k}
    return status, headers


def until(what: str, step: Callable[[], Any], ordinary: anthropic.Anthropic,
          since: float) -> tuple[Any, float]:
    """Repeat `step` until it returns something, asking for the ordinary account each time (it
    must be served throughout); returns the value and the seconds since `since`."""
    deadline = since + REACH_S
    while time.monotonic() < deadline:
        status, _ = outcome(ordinary)
        assert status == 200, f"the ordinary account got {status} while waiting for {what}"
        value = step()
        if value:
            return value, time.monotonic() - since
    raise AssertionError(f"{what}: not within {REACH_S:g} s of the record's write")


@pytest.mark.broker
def test_the_sdk_through_nginx_gets_429_when_throttled_403_when_blocked_and_200_after_a_lift(
        run: Settings, tmp_path: Path, nginx_binary: str,
        validate: Callable[[str, Any], None]) -> None:
    with StandInApi() as api, gate_service(run, tmp_path / "gate.log") as gate_url:
        wait_ready(gate_url)
        gate = gate_url.removeprefix("http://").rstrip("/")
        with Nginx(nginx_binary, tmp_path / "nginx", gate, api.address, KEYS) as nginx:
            campaign, ordinary = client(nginx.url, CAMPAIGN_KEY), client(nginx.url, ORDINARY_KEY)

            # Before any decision: both served, by the SDK and by curl.
            status, message = outcome(campaign)
            assert status == 200 and message.content[0].text.startswith("Hello"), message
            assert outcome(ordinary)[0] == 200
            assert curl(nginx.url, CAMPAIGN_KEY)[0] == 200
            # A long prompt: nginx buffers its body to a file before the API gets it.
            long = ordinary.messages.create(**{**MESSAGE, "messages": [
                {"role": "user", "content": "Explain step by step. " * 20_000}]})
            assert long.content[0].text.startswith("Hello")

            # Throttled at 6 requests a minute: the first request fits (the bucket holds at
            # least one), the next is over the rate: 429 with Retry-After and the reason.
            throttle = decision_record("acct-campaign", "throttle", ts=time.time(), rpm=6,
                                       reason_codes=("cluster_template", "account_harvest"))
            validate("enforcement-decision", throttle)
            written = write(run, "acct-campaign", throttle)

            def rate_limited() -> anthropic.RateLimitError | None:
                status, err = outcome(campaign)
                return err if status == 429 else None
            err, throttled_after = until("429 for the throttled account", rate_limited,
                                         ordinary, written)
            assert isinstance(err, anthropic.RateLimitError)
            assert int(err.response.headers["retry-after"]) >= 1
            assert err.response.headers["x-distillguard-reason"] == "cluster_template"
            assert err.response.headers["x-distillguard-decision"] == throttle["decision_id"]
            assert err.body["error"]["type"] == "rate_limit_error"
            status, headers = curl(nginx.url, CAMPAIGN_KEY)
            assert status == 429 and int(headers["retry-after"]) >= 1, headers

            # Blocked: 403 with the reason code and the decision id; nothing reaches the API.
            block = decision_record("acct-campaign", "block", ts=time.time(), n=2,
                                    reason_codes=("operator_block",))
            validate("enforcement-decision", block)
            written = write(run, "acct-campaign", block)

            def denied() -> anthropic.PermissionDeniedError | None:
                status, err = outcome(campaign)
                return err if status == 403 else None
            err, blocked_after = until("403 for the blocked account", denied, ordinary, written)
            assert isinstance(err, anthropic.PermissionDeniedError)
            assert err.response.headers["x-distillguard-reason"] == "operator_block"
            assert err.response.headers["x-distillguard-decision"] == block["decision_id"]
            assert "retry-after" not in err.response.headers
            served = api.requests[CAMPAIGN_KEY]
            assert [outcome(campaign)[0] for _ in range(5)] == [403] * 5
            status, headers = curl(nginx.url, CAMPAIGN_KEY)
            assert status == 403 and headers["x-distillguard-reason"] == "operator_block"
            assert api.requests[CAMPAIGN_KEY] == served, "a blocked request reached the API"

            # Lifted: a tombstone, and the account is served again.
            written = write(run, "acct-campaign", None)
            _, lifted_after = until("200 after the tombstone",
                                    lambda: outcome(campaign)[0] == 200, ordinary, written)
            assert curl(nginx.url, CAMPAIGN_KEY)[0] == 200

            health = get_json(gate_url + "health")[1]
    print(f"\nfrom the record's write to the client: throttled {throttled_after * 1000:.0f} ms, "
          f"blocked {blocked_after * 1000:.0f} ms, lifted {lifted_after * 1000:.0f} ms")
    assert health["in_force"] == {} and health["unreadable_records"] == 0, health
    assert health["checks"]["over_budget"] >= 2 and health["checks"]["block"] >= 7, health


@pytest.mark.broker
def test_a_restarted_gate_holds_the_blocks_in_force_from_its_first_ready_answer(
        run: Settings, tmp_path: Path, nginx_binary: str) -> None:
    # Many records before it, of accounts lifted, expired, in shadow or still blocked: a gate
    # that has just become ready already blocks the blocked accounts and serves the others.
    now = time.time()
    records: list[tuple[str, dict[str, Any] | None]] = []
    for i in range(3000):
        account = f"acct-{i}"
        records.append((account, decision_record(account, "block", ts=now, n=i)))
        if i % 3 == 0:
            records.append((account, None))  # lifted since
        elif i % 3 == 1:
            records.append((account, decision_record(account, "block", ts=now - 7200,
                                                     ttl_s=3600, n=i + 10_000)))  # expired
    records.append(("acct-shadow", decision_record("acct-shadow", "block", ts=now,
                                                   mode="shadow")))
    asyncio.run(produce(run, [(a.encode(), None if v is None else orjson.dumps(v))
                              for a, v in records], topic=run.topic_decisions))
    keys = {"sk-2": "acct-2", "sk-5": "acct-5", "sk-3": "acct-3", "sk-4": "acct-4",
            "sk-shadow": "acct-shadow"}
    with StandInApi() as api, gate_service(run, tmp_path / "gate.log",
                                           "--fail-mode", "closed") as gate_url:
        gate = gate_url.removeprefix("http://").rstrip("/")
        with Nginx(nginx_binary, tmp_path / "nginx", gate, api.address, keys) as nginx:
            # Before it has caught up, fail mode closed: nothing is served, not even an
            # ordinary account (503 through nginx). It may catch up before the first ask.
            first = curl(nginx.url, "sk-3")
            ready_now = get_json(gate_url + "ready")[0] == 200
            assert first[0] == 503 or ready_now and first[0] == 200, first
            wait_ready(gate_url)
            statuses = {key: curl(nginx.url, key)[0] for key in keys}
            health = get_json(gate_url + "health")[1]
    assert statuses == {"sk-2": 403, "sk-5": 403, "sk-3": 200, "sk-4": 200, "sk-shadow": 200}
    assert health["in_force"] == {"block": 1000} and health["shadow_in_force"] == 1, health
    assert health["records_by_effect"]["expired"] == 1000, health
    assert health["shadow_would_have_hit"] == {"block": 1}, health
    assert api.requests["sk-2"] == 0 and api.requests["sk-3"] == (2 if first[0] == 200 else 1)


def test_nginx_answers_503_when_the_gate_does_not_answer(tmp_path: Path,
                                                        nginx_binary: str) -> None:
    with StandInApi() as api, Nginx(nginx_binary, tmp_path / "nginx", "127.0.0.1:1",
                                    api.address, KEYS) as nginx:
        sdk = client(nginx.url, ORDINARY_KEY)
        status, err = outcome(sdk)
        assert status == 503 and isinstance(err, anthropic.InternalServerError), err
        assert err.response.headers["x-distillguard-reason"] == "gate_unreachable"
        assert api.requests[ORDINARY_KEY] == 0


# ---- a lab trying to get through nginx with header tricks ----------------------------------
def curl_headers(url: str, *headers: str) -> int:
    """The status of one POST /v1/messages by curl with exactly these request headers."""
    args = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
            f"{url}/v1/messages", "-H", "content-type: application/json",
            "--data", json.dumps(MESSAGE)]
    for header in headers:
        args += ["-H", header]
    res = subprocess.run(args, capture_output=True, text=True, check=True, timeout=15)
    return int(res.stdout)


def test_a_client_is_served_only_with_the_credential_the_gate_checked(
        tmp_path: Path, nginx_binary: str) -> None:
    from distillguard.streams.gate.server import GateOptions, build_service
    from tests.gateway import GateInThread

    svc = build_service("127.0.0.1:1", "unused", GateOptions())
    svc.gate.caught_up = True
    now = time.time()
    for account in ("acct-campaign", "acct-é"):
        svc.gate.table.apply(account, decision_record(account, "block", ts=now), now)
    keys = {**KEYS, "sk-test-unicode": "acct-é"}
    with StandInApi() as api, GateInThread(svc) as gate, \
            Nginx(nginx_binary, tmp_path / "nginx", gate.address, api.address, keys) as nginx:
        blocked = CAMPAIGN_KEY
        tricks = {
            # what nginx checks is what a client may not talk around
            "x-api-key": [f"x-api-key: {blocked}"],
            "bearer": [f"Authorization: Bearer {blocked}"],
            "bearer in lower case": [f"Authorization: bearer {blocked}"],
            "bearer in upper case": [f"Authorization: BEARER {blocked}"],
            "its own account header": ["x-distillguard-account: acct-ordinary",
                                       f"x-api-key: {blocked}"],
            "a key of another case": [f"x-api-key: {blocked.upper()}"],
            "padded": [f"x-api-key:    {blocked}   "],
            "a unicode account": ["x-api-key: sk-test-unicode"],
        }
        for name, headers in tricks.items():
            assert curl_headers(nginx.url, *headers) == 403, name
        assert api.credentials == [], "a blocked request reached the API"

        # Served, but the API sees only the credential checked: the ordinary account's.
        served = {
            "an ordinary key beside a blocked bearer": [f"x-api-key: {ORDINARY_KEY}",
                                                        f"Authorization: Bearer {blocked}"],
            "an unknown key beside a blocked bearer": ["x-api-key: sk-nobody",
                                                       f"Authorization: Bearer {blocked}"],
            "an ordinary key, then the blocked one": [f"x-api-key: {ORDINARY_KEY}",
                                                      f"x-api-key: {blocked}"],
        }
        for name, headers in served.items():
            api.credentials.clear()
            status = curl_headers(nginx.url, *headers)
            assert status == 200, name
            ((api_keys, authorizations),) = api.credentials
            assert blocked not in " ".join(api_keys + authorizations), (name, api.credentials)
            assert len(api_keys) == 1 and authorizations == [], (name, api.credentials)
        # nginx refuses a second Authorization header outright
        assert curl_headers(nginx.url, f"Authorization: Bearer {ORDINARY_KEY}",
                            f"Authorization: Bearer {blocked}") == 400
        # the SDK's own bearer form goes through as it came
        api.credentials.clear()
        assert curl_headers(nginx.url, f"Authorization: Bearer {ORDINARY_KEY}") == 200
        assert api.credentials == [([], [f"Bearer {ORDINARY_KEY}"])]


@pytest.mark.broker
def test_a_gate_on_a_topic_of_hostile_records_is_ready_and_holds_the_real_decisions(
        run: Settings, tmp_path: Path) -> None:
    # A buggy or hostile producer: 5,000 records the gate cannot read (not JSON, JSON null, a
    # key not UTF-8, a key of 300 characters, an account_id that is not the key, ...) around the real
    # decisions, on the real broker. The gate catches up, is ready, holds the real blocks and
    # throttles, counts every bad record, and logs a sample of them, not 5,000 lines.
    now = time.time()
    bad: list[tuple[bytes | None, bytes | None]] = []
    for i in range(5000):
        key = f"acct-bad-{i}".encode()
        # (no record without a key: the broker refuses those on a compacted topic)
        bad.append([(key, b"{not json"), (key, b"null"), (b"\xff" + key, b"{}"),
                    (b"k" * 300, b"{}"),
                    (key, orjson.dumps(decision_record("acct-victim", "allow", ts=now))),
                    ][i % 5])
    real = [(b"acct-victim", orjson.dumps(decision_record("acct-victim", "block", ts=now))),
            (b"acct-slow", orjson.dumps({**decision_record("acct-slow", "throttle", ts=now,
                                                           rpm=0), "ttl_s": 600.0})),
            (b"org:acme", orjson.dumps(decision_record("org:acme", "block", ts=now)))]
    asyncio.run(produce(run, bad[:2500] + real + bad[2500:], topic=run.topic_decisions))
    log_path = tmp_path / "gate.log"
    with gate_service(run, log_path, "--org-header", "x-distillguard-org") as gate_url:
        wait_ready(gate_url)
        health = get_json(gate_url + "health")[1]

        def status(account: str, org: str = "") -> int:
            headers = {"x-distillguard-account": account, "x-distillguard-org": org}
            request = urllib.request.Request(gate_url + "check", headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=5) as r:
                    return r.status
            except urllib.error.HTTPError as exc:
                return exc.code
        statuses = [status("acct-victim"), status("acct-slow"), status("org:acme"),
                    status("acct-of-acme", "acme"), status("acct-bad-1")]
    assert statuses == [403, 429, 403, 200, 200]
    assert health["unreadable_records"] == 5000 and health["records_read"] == 5003, health
    assert health["in_force"] == {"block": 2, "throttle": 1}, health
    lines = [line for line in log_path.read_text().splitlines() if "gate_record" in line]
    assert 20 <= len(lines) <= 40, len(lines)
