"""The gate's HTTP face: one check per request, as nginx `auth_request` and Envoy's ext_authz
HTTP service ask it, plus /ready and /health.

    ANY /check[/...]        Envoy ext_authz (path_prefix /check), or any client:
                            200 serve | 403 blocked | 429 over the throttle's budget, with
                            Retry-After | 503 the gate cannot tell and fails closed
    ANY /nginx/check[/...]  nginx auth_request, which only tells 2xx from 401 and 403: every
                            denial is a 403 whose `x-distillguard-status` header says what the
                            client must get (403, 429, 503); nginx reads it with
                            auth_request_set (deploy/nginx/distillguard.conf.template)
    GET /ready              200 once the table has caught up with the topic, 503 before
    GET /health             what the gate holds, has read and has answered, as JSON

The account is the value of a request header (`--account-header`, default
x-distillguard-account), which the gateway sets (nginx: a `map` from the API key; Envoy: the
header its authentication filter adds); `--org-header` names an optional organisation header.
Every answer carries `x-distillguard-outcome`; a throttled or blocked account's also the
decision's strongest reason code (`x-distillguard-reason`) and id (`x-distillguard-decision`).
A denial's body is an error in the shape of the Messages API's (what Envoy hands the client).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from aiohttp import web

from distillguard.streams.edge.http_service import start_site, stop_on_signals
from distillguard.streams.gate.reader import DecisionsReader, quiet_repeats
from distillguard.streams.gate.table import DEFAULT_BURST_S, Answer, DecisionTable, Gate

log = structlog.get_logger("distillguard")

DEFAULT_PORT = 8089
DEFAULT_ACCOUNT_HEADER = "x-distillguard-account"
CHECK_PATH = "/check"
NGINX_CHECK_PATH = "/nginx/check"
# Response headers (lower case, as HTTP/2 and Envoy carry them).
OUTCOME_HEADER = "x-distillguard-outcome"
REASON_HEADER = "x-distillguard-reason"
DECISION_HEADER = "x-distillguard-decision"
STATUS_HEADER = "x-distillguard-status"  # nginx: the status the client must get
DEGRADED_HEADER = "x-distillguard-degraded"
RESPONSE_HEADERS = (OUTCOME_HEADER, REASON_HEADER, DECISION_HEADER, STATUS_HEADER,
                    DEGRADED_HEADER, "retry-after")
# The Messages API's error type for each denial (what its clients, the SDK included, expect).
ERROR_TYPES = {403: "permission_error", 429: "rate_limit_error", 503: "overloaded_error"}


class GateError(Exception):
    pass


@dataclass
class GateOptions:
    port: int = DEFAULT_PORT
    bind: str = "127.0.0.1"
    fail_mode: str = "open"
    account_header: str = DEFAULT_ACCOUNT_HEADER
    org_header: str = ""
    burst_s: float = DEFAULT_BURST_S
    topic: str = ""  # default: the settings' decisions topic
    lost_after_s: float = 10.0
    probe_s: float = 1.0
    sweep_s: float = 1.0


def error_body(answer: Answer) -> bytes:
    what = {"block": "this account is blocked",
            "over_budget": "this account is throttled and over its request rate",
            "unavailable": "the request could not be checked"}.get(answer.outcome, "denied")
    message = f"{what} (reason {answer.reason or 'unspecified'}"
    message += f", decision {answer.decision_id})" if answer.decision_id else ")"
    return orjson.dumps({"type": "error", "error": {
        "type": ERROR_TYPES.get(answer.status, "api_error"), "message": message}})


def response_for(answer: Answer, nginx: bool) -> web.Response:
    """The HTTP answer to one check (`nginx`: every denial as a 403 with the real status in
    x-distillguard-status)."""
    headers = {OUTCOME_HEADER: answer.outcome}
    if answer.reason:
        headers[REASON_HEADER] = answer.reason
    if answer.decision_id:
        headers[DECISION_HEADER] = answer.decision_id
    if answer.degraded:
        headers[DEGRADED_HEADER] = answer.degraded
    if answer.status == 200:
        return web.Response(status=200, headers=headers)
    if answer.retry_after_s:
        headers["Retry-After"] = str(answer.retry_after_s)
    headers[STATUS_HEADER] = str(answer.status)
    return web.Response(status=403 if nginx else answer.status, body=error_body(answer),
                        content_type="application/json", headers=headers)


class GateService:
    def __init__(self, gate: Gate, reader: DecisionsReader, opts: GateOptions,
                 clock: Callable[[], float] = time.time) -> None:
        self.gate = gate
        self.reader = reader
        self.opts = opts
        self.clock = clock
        self.url = ""
        self.started = clock()

    def check(self, request: web.Request, nginx: bool) -> web.Response:
        headers = request.headers
        org = headers.get(self.opts.org_header, "") if self.opts.org_header else ""
        answer = self.gate.check(headers.get(self.opts.account_header, ""), self.clock(), org)
        return response_for(answer, nginx)

    def health(self) -> dict[str, Any]:
        gate, state = self.gate, self.reader.state
        return {
            "status": "ok" if gate.current else (gate.degraded or "?"),
            "ready": gate.caught_up, "broker_lost": gate.broker_lost,
            "fail_mode": gate.fail_mode,
            "topic": state.topic, "partitions": state.partitions,
            "records_read": state.read, "unreadable_records": state.unreadable,
            "lag": state.lag(), "caught_up_after_s": state.caught_up_after_s,
            "problem": state.last_problem or None,
            "in_force": dict(gate.table.in_force()),
            "shadow_in_force": gate.table.shadow_in_force(),
            "records_by_effect": dict(gate.table.applied),
            "checks": dict(gate.checks), "checks_without_account": gate.no_account,
            "shadow_would_have_hit": dict(gate.table.shadow_checks),
            "account_header": self.opts.account_header, "org_header": self.opts.org_header,
            "uptime_s": round(self.clock() - self.started, 1),
        }

    def app(self) -> web.Application:
        app = web.Application()

        async def check(request: web.Request) -> web.Response:
            return self.check(request, nginx=False)

        async def nginx_check(request: web.Request) -> web.Response:
            return self.check(request, nginx=True)

        async def ready(request: web.Request) -> web.Response:
            ok = self.gate.caught_up
            return web.Response(status=200 if ok else 503, content_type="application/json",
                                body=orjson.dumps({"ready": ok, "lag": self.reader.state.lag()}))

        async def health(request: web.Request) -> web.Response:
            return web.Response(body=orjson.dumps(self.health()),
                                content_type="application/json",
                                headers={"Cache-Control": "no-store"})

        for path, handler in ((CHECK_PATH, check), (NGINX_CHECK_PATH, nginx_check)):
            app.router.add_route("*", path, handler)
            app.router.add_route("*", path + "/{tail:.*}", handler)
        app.router.add_get("/ready", ready)
        app.router.add_get("/health", health)
        return app

    async def sweep(self) -> None:
        while True:
            await asyncio.sleep(self.opts.sweep_s)
            self.gate.table.sweep(self.clock())

    async def serve(self, ready: Callable[[str], None] = lambda url: None) -> None:
        """Run until cancelled or SIGTERM/SIGINT; `ready(url)` once the checks are served."""
        try:
            runner, self.url = await start_site(self.app(), self.opts.bind, self.opts.port)
        except OSError as exc:
            raise GateError(f"cannot serve on {self.opts.bind}:{self.opts.port}: "
                            f"{exc.strerror or exc} (--port to choose another)") from exc
        stop = stop_on_signals()
        tasks = [asyncio.create_task(self.reader.run()), asyncio.create_task(self.sweep())]
        ready(self.url)
        log.info("gate_serving", url=self.url, topic=self.reader.topic,
                 fail_mode=self.gate.fail_mode, account_header=self.opts.account_header,
                 org_header=self.opts.org_header or None)
        try:
            await stop.wait()
        finally:
            self.reader.stopping = True
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await runner.cleanup()


def build_service(bootstrap: str, topic: str, opts: GateOptions,
                  client_kwargs: dict[str, Any] | None = None) -> GateService:
    # not `x < 0` alone: nan and inf pass it (inf: no throttle holds; nan or inf lost-after:
    # a lost broker is never noticed, so the fail mode never answers)
    if not (math.isfinite(opts.burst_s) and opts.burst_s >= 0):
        raise GateError("--burst-s must be a number of seconds, 0 or more")
    if not (math.isfinite(opts.lost_after_s) and opts.lost_after_s > 0):
        raise GateError("--broker-lost-after must be a number of seconds more than 0")
    for name in (opts.account_header, opts.org_header):
        if name and not all(c.isalnum() or c in "-_" for c in name):
            raise GateError(f"header name {name!r}: letters, digits, - and _ only")
    gate = Gate(DecisionTable(burst_s=opts.burst_s), fail_mode=opts.fail_mode)
    reader = DecisionsReader(gate, bootstrap, topic, client_kwargs, probe_s=opts.probe_s,
                             lost_after_s=opts.lost_after_s)
    return GateService(gate, reader, opts)


def run_gate(bootstrap: str, topic: str, opts: GateOptions,
             client_kwargs: dict[str, Any] | None = None) -> int:
    service = build_service(bootstrap, topic, opts, client_kwargs)
    quiet_repeats()  # aiokafka's repeated lines (a deleted topic: a thousand a second)

    def ready(url: str) -> None:
        # The line the demo, the tests and a person look for.
        print(f"gate: {url} (checks at {url.rstrip('/')}{CHECK_PATH}, nginx auth_request at "
              f"{url.rstrip('/')}{NGINX_CHECK_PATH}; reading {topic}, fail mode "
              f"{opts.fail_mode})", flush=True)

    try:
        asyncio.run(service.serve(ready))
    except KeyboardInterrupt:
        pass
    log.info("gate_stopped", checks=dict(service.gate.checks))
    return 0
