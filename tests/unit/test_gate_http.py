"""The gate's HTTP face (streams/gate/server.py) over a real aiohttp server, and its reader's
handling of one record (streams/gate/reader.py), without a broker: the table is filled by hand.
Also deploy/envoy/envoy.yaml: it names the gate's path, port and headers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from distillguard.streams.gate.server import (
    CHECK_PATH,
    DECISION_HEADER,
    DEFAULT_ACCOUNT_HEADER,
    DEFAULT_PORT,
    NGINX_CHECK_PATH,
    OUTCOME_HEADER,
    REASON_HEADER,
    STATUS_HEADER,
    GateError,
    GateOptions,
    GateService,
    build_service,
)
from tests.gateway import decision_record

REPO = Path(__file__).resolve().parents[2]
T0 = 1_800_000_000.0


def service(fail_mode: str = "open", **opts: Any) -> GateService:
    svc = build_service("127.0.0.1:1", "decisions", GateOptions(fail_mode=fail_mode, **opts))
    svc.clock = lambda: T0
    table = svc.gate.table
    table.apply("acct-blocked", decision_record("acct-blocked", "block", ts=T0,
                                                reason_codes=("operator_block",)), T0)
    table.apply("acct-slow", decision_record("acct-slow", "throttle", ts=T0, rpm=6), T0)
    return svc


def with_client(svc: GateService, body: Callable[[TestClient], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        async with TestClient(TestServer(svc.app())) as client:
            return await body(client)
    return asyncio.run(run())


def ask(svc: GateService, path: str, accounts: list[str], method: str = "GET",
        header: str = DEFAULT_ACCOUNT_HEADER) -> list[tuple[int, dict[str, str], bytes]]:
    async def body(client: TestClient) -> list[tuple[int, dict[str, str], bytes]]:
        out = []
        for account in accounts:
            resp = await client.request(method, path, headers={header: account} if account
                                        else {})
            out.append((resp.status, {k.lower(): v for k, v in resp.headers.items()},
                        await resp.read()))
        return out
    return with_client(svc, body)


def test_the_envoy_path_answers_200_403_and_429_with_retry_after() -> None:
    svc = service()
    svc.gate.caught_up = True
    served, blocked, within, over = ask(svc, CHECK_PATH + "/v1/messages",
                                        ["acct-1", "acct-blocked", "acct-slow", "acct-slow"],
                                        method="POST")
    assert served[0] == 200 and served[1][OUTCOME_HEADER] == "allow" and served[2] == b""
    assert blocked[0] == 403 and blocked[1][REASON_HEADER] == "operator_block"
    assert blocked[1][DECISION_HEADER] == "acct-blocked-block-1"
    assert orjson.loads(blocked[2])["error"]["type"] == "permission_error"
    assert within[0] == 200 and within[1][OUTCOME_HEADER] == "within_budget"
    assert over[0] == 429 and over[1]["retry-after"] == "10"
    assert orjson.loads(over[2])["error"]["type"] == "rate_limit_error"


def test_the_nginx_path_denies_with_403_and_says_the_status_in_a_header() -> None:
    svc = service()
    svc.gate.caught_up = True
    answers = ask(svc, NGINX_CHECK_PATH, ["acct-1", "acct-blocked", "acct-slow", "acct-slow"])
    assert [a[0] for a in answers] == [200, 403, 200, 403]
    assert [a[1].get(STATUS_HEADER) for a in answers] == [None, "403", None, "429"]
    assert answers[3][1]["retry-after"] == "10"


def test_a_configured_account_header_is_the_one_read() -> None:
    svc = service(account_header="x-api-key")
    svc.gate.caught_up = True
    assert ask(svc, CHECK_PATH, ["acct-blocked"], header="x-api-key")[0][0] == 403
    assert ask(svc, CHECK_PATH, ["acct-blocked"])[0][0] == 200  # the default header is not
    assert svc.gate.no_account == 1


def test_ready_only_once_caught_up_and_fail_closed_until_then() -> None:
    svc = service(fail_mode="closed")

    async def body(client: TestClient) -> list[Any]:
        before = await client.get("/ready")
        check = await client.get(CHECK_PATH, headers={DEFAULT_ACCOUNT_HEADER: "acct-1"})
        svc.gate.caught_up = True
        after = await client.get("/ready")
        health = await (await client.get("/health")).json()
        return [before.status, check.status, check.headers[REASON_HEADER], after.status, health]

    before, check, reason, after, health = with_client(svc, body)
    assert (before, check, reason, after) == (503, 503, "gate_not_ready", 200)
    assert health["ready"] is True and health["in_force"] == {"block": 1, "throttle": 1}
    assert health["checks"] == {"unavailable": 1} and health["fail_mode"] == "closed"


@pytest.mark.parametrize(("opts", "message"), [
    ({"burst_s": -1}, "--burst-s"), ({"lost_after_s": 0}, "--broker-lost-after"),
    ({"account_header": "x account"}, "header name"), ({"fail_mode": "maybe"}, "open or closed"),
])
def test_bad_options_are_refused_with_a_clear_message(opts: dict[str, Any],
                                                       message: str) -> None:
    with pytest.raises((GateError, ValueError), match=message):
        build_service("127.0.0.1:1", "decisions", GateOptions(**opts))


# ---- the reader, one record at a time ------------------------------------------------------
def record(key: bytes | None, value: bytes | None, offset: int = 0) -> Any:
    return SimpleNamespace(key=key, value=value, partition=3, offset=offset)


def test_the_reader_applies_records_and_reports_the_ones_it_cannot_read() -> None:
    svc = service()
    reader = svc.reader
    reader.clock = lambda: T0
    block = orjson.dumps(decision_record("acct-9", "block", ts=T0))
    with capture_logs() as logs:
        reader.on_record(record(b"acct-9", block, 0))
        reader.on_record(record(b"acct-blocked", b"{not json", 1))
        reader.on_record(record(b"acct-slow", orjson.dumps({"action": "ban"}), 2))
        reader.on_record(record(None, block, 3))
        reader.on_record(record(b"\xff", block, 4))
        reader.on_record(record(b"acct-9", None, 5))
    assert reader.state.read == 6 and reader.state.unreadable == 4
    assert reader.state.next_offsets == {3: 6}
    # The unreadable newest records end what their keys held; the tombstone lifts acct-9.
    assert len(svc.gate.table) == 0
    warned = [entry for entry in logs if entry["event"] == "gate_record_unreadable"]
    assert [(w["offset"], w["reason"].split(":")[0]) for w in warned] == [
        (1, "not JSON"), (2, "not a decision"),
        (3, "a record without a key (the key is the account id)"), (4, "its key is not UTF-8")]
    assert warned[0]["key"] == "acct-blocked" and warned[0]["partition"] == 3


# ---- deploy/envoy/envoy.yaml ---------------------------------------------------------------
def find(node: Any, name: str) -> Any:
    """The first filter named `name` anywhere in the config."""
    if isinstance(node, dict):
        if node.get("name") == name:
            return node
        node = list(node.values())
    if isinstance(node, list):
        for item in node:
            found = find(item, name)
            if found is not None:
                return found
    return None


def test_the_envoy_example_asks_the_gate_s_path_with_its_headers() -> None:
    config = yaml.safe_load((REPO / "deploy" / "envoy" / "envoy.yaml").read_text())
    authz = find(config, "envoy.filters.http.ext_authz")["typed_config"]
    http = authz["http_service"]
    assert http["path_prefix"] == CHECK_PATH
    assert http["server_uri"]["uri"].endswith(f":{DEFAULT_PORT}")
    asked = [p["exact"] for p in http["authorization_request"]["allowed_headers"]["patterns"]]
    assert DEFAULT_ACCOUNT_HEADER in asked
    to_client = [p["exact"] for p in
                 http["authorization_response"]["allowed_client_headers"]["patterns"]]
    assert {"retry-after", REASON_HEADER, DECISION_HEADER} <= set(to_client)
    gate_cluster = next(c for c in config["static_resources"]["clusters"]
                        if c["name"] == http["server_uri"]["cluster"])
    endpoint = gate_cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"]["port_value"] == DEFAULT_PORT
    # The router comes last: ext_authz runs before the request goes anywhere.
    filters = find(config, "envoy.filters.network.http_connection_manager")[
        "typed_config"]["http_filters"]
    assert [f["name"] for f in filters][-2:] == ["envoy.filters.http.ext_authz",
                                                 "envoy.filters.http.router"]


class SilentBroker:
    """A reader's consumer whose broker stops answering when told to."""

    def __init__(self) -> None:
        self.answering = True

    async def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
        if not self.answering:
            raise ConnectionError("the broker does not answer")
        return {tp: 0 for tp in tps}


def test_a_broker_silent_for_lost_after_s_is_lost_until_it_answers_again() -> None:
    svc = service(fail_mode="closed", lost_after_s=0.2, probe_s=0.01)
    svc.gate.caught_up = True
    reader, broker = svc.reader, SilentBroker()

    async def run() -> list[tuple[bool, int]]:
        probe = asyncio.create_task(reader._probe(broker, []))  # type: ignore[arg-type]
        seen = []
        try:
            async def until(condition: Callable[[], bool]) -> None:
                deadline = asyncio.get_running_loop().time() + 5
                while not condition():
                    assert asyncio.get_running_loop().time() < deadline
                    await asyncio.sleep(0.01)
            await until(lambda: reader.last_answer_mono > 0)
            seen.append((svc.gate.broker_lost, svc.gate.check("acct-1", T0).status))
            broker.answering = False
            silent_from = asyncio.get_running_loop().time()
            await until(lambda: svc.gate.broker_lost)
            # not before lost_after_s of silence
            assert asyncio.get_running_loop().time() - silent_from >= 0.15
            seen.append((svc.gate.broker_lost, svc.gate.check("acct-1", T0).status))
            broker.answering = True
            await until(lambda: not svc.gate.broker_lost)
            seen.append((svc.gate.broker_lost, svc.gate.check("acct-1", T0).status))
        finally:
            probe.cancel()
        return seen

    with capture_logs() as logs:
        seen = asyncio.run(run())
    assert seen == [(False, 200), (True, 503), (False, 200)]
    events = [e["event"] for e in logs]
    assert events.count("gate_broker_lost") == 1 and events.count("gate_broker_back") == 1


def test_the_nginx_template_asks_the_gate_s_nginx_path_with_its_headers() -> None:
    from tests.gateway import NGINX_TEMPLATE, render_template

    conf = render_template(NGINX_TEMPLATE.read_text(), {
        "PREFIX": "/p", "LISTEN": "127.0.0.1:1", "GATE": "127.0.0.1:2", "UPSTREAM": "127.0.0.1:3",
        "API_KEYS": "/p/keys"})
    assert f"proxy_pass http://distillguard_gate{NGINX_CHECK_PATH};" in conf
    assert f"proxy_set_header {DEFAULT_ACCOUNT_HEADER} $distillguard_account;" in conf
    for header in (STATUS_HEADER, REASON_HEADER, DECISION_HEADER, "retry-after"):
        assert f"$upstream_http_{header.replace('-', '_')};" in conf, header
    with pytest.raises(ValueError, match="@GATE@"):
        render_template(NGINX_TEMPLATE.read_text(), {"PREFIX": "/p"})
