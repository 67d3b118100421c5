"""`distillguard status` on the real broker: what is written to the topics is what the page shows.

Contract decisions and dead letters are written to this test's own topics, the service is
started as a user would start it (the console command, its own process), and `GET /api/status`
must show them, with the fleet polled from the workers' /health. A broker that does not answer is
a banner and a log line, not a crash. The browser test (test_status_browser.py) drives a real
Chromium over the same service.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from distillguard.models._build import BUILD_VARIABLES
from distillguard.streams.edge.codec import dead_letter_record
from distillguard.streams.edge.settings import Settings
from tests.integration.conftest import REPO_ROOT, produce, run_env, wait_until

pytestmark = pytest.mark.broker

ACCOUNTS = ["acct-burst-001", "acct-burst-002", "acct-burst-003", "acct-hydra-17"]


def small_run(now: float) -> list[dict[str, Any]]:
    """Decisions like a small run's: a campaign of three accounts on one IP prefix, a hydra
    account on a convicted payment fingerprint, one account lifted."""
    out = []
    for i, account in enumerate(ACCOUNTS[:3]):
        out.append({
            "decision_id": f"dg-test-{i}", "ts": now - 120 + i, "event_ts": now - 300 + i,
            "account_id": account, "action": "block" if i else "throttle",
            "ttl_s": 3600, "rate_limit_rpm": None if i else 6, "score": 0.93,
            "reasons": ["score 0.93 -> block",
                        "ip /24 198.51.100: 31 accounts, 27 young, harvest share 0.91",
                        "the account's own requests: harvest 0.95 over 140"],
            "reason_codes": ["cluster_network", "account_harvest"], "source": "detector",
            "cluster_ids": ["ip:198.51.100"], "model_version": "test-model", "mode": "enforce"})
    out.append({
        "decision_id": "dg-test-h", "ts": now - 60, "event_ts": now - 200,
        "account_id": ACCOUNTS[3], "action": "block", "ttl_s": 3600, "rate_limit_rpm": None,
        "score": 0.97, "reasons": ["score 0.97 -> block", "payment fp-77: convicted campaign",
                                   "replacement account: first seen 3 min after"],
        "reason_codes": ["replacement_account", "cluster_payment"], "source": "detector",
        "cluster_ids": ["pay:fp-77"], "model_version": "test-model", "mode": "enforce"})
    out.append({
        "decision_id": "dg-test-lift", "ts": now - 30, "event_ts": now - 100,
        "account_id": ACCOUNTS[0], "action": "allow", "ttl_s": None, "rate_limit_rpm": None,
        "score": 0.1, "reasons": ["score 0.10 -> allow: evidence expired"], "cluster_ids": [],
        "reason_codes": ["released"], "source": "detector",
        "model_version": "test-model", "mode": "enforce"})
    return out


def dead_letters(now: float) -> list[bytes]:
    return [dead_letter_record("record value is not JSON: Expecting value: line 1 column 1",
                               b"{oops", b"k", "dg.requests", 2, off, now - 50)
            for off in (10, 11)] + [
        dead_letter_record("field 'ts' is 86100 s past the latest event time accepted",
                           b"{}", None, "dg.requests", 5, 99, now - 40)]


def write_small_run(settings: Settings, validate: Callable[[str, Any], None]) -> int:
    now = time.time()
    decisions = small_run(now)
    for d in decisions:
        validate("enforcement-decision", d)  # the contract, as the gateway reads it
    # One decision written twice, as a worker does that processes records again after a
    # rebalance (at least once): the page counts it once. And a record that is not JSON.
    asyncio.run(produce(settings, [(d["account_id"].encode(), orjson.dumps(d))
                                   for d in [*decisions, decisions[1]]] + [(b"x", b"not json")],
                        topic=settings.topic_enforcement))
    asyncio.run(produce(settings, [(None, v) for v in dead_letters(now)],
                        topic=settings.topic_dead_letter))
    return len(decisions)


@contextmanager
def fake_worker(status: int, body: dict[str, Any]) -> Iterator[str]:
    """A web port answering /health like a worker (the fleet table needs no Faust process)."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the http.server interface
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


HEALTH = {"status": "ok", "pid": 4242, "lag_total": 17, "events_processed_total": 12345,
          "rss_bytes": 180_000_000, "dead_letters_total": 3, "commits": 9,
          "last_commit_age_s": 1.5, "alignment": {"late_verdicts": 0},
          "partitions": [{"topic": "dg.requests", "partition": p, "lag": 17 if p == 0 else 0}
                         for p in range(6)]}


@contextmanager
def status_service(settings: Settings, workers: list[str], log_path: Path,
                   bootstrap: str | None = None) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`distillguard status` in its own process on a free port; yields it and its page URL."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DISTILLGUARD_") or k in BUILD_VARIABLES}
    env.update(run_env(settings.app_id.removeprefix("dg-test-"),
                       bootstrap or settings.kafka_bootstrap))
    args = [a for w in workers for a in ("--worker", w)] or ["--workers", "0"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "distillguard", "status", "--port", "0",
                                 "--poll", "0.5", "--startup-grace", "0", *args], cwd=REPO_ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        def url() -> str | None:
            assert proc.poll() is None, log_path.read_text()
            m = re.search(r"status page: (http://\S+)", log_path.read_text())
            return m.group(1) if m else None
        yield proc, wait_until(url, 30, "the status page's address")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def get_status(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "api/status", timeout=5) as r:
        assert r.headers["Content-Type"].startswith("application/json")
        return json.loads(r.read())


def test_the_page_shows_what_the_topics_hold_and_the_fleet(
        run: Settings, validate: Callable[[str, Any], None], tmp_path: Path) -> None:
    count = write_small_run(run, validate)
    with fake_worker(200, HEALTH) as worker, \
            status_service(run, [worker, "127.0.0.1:1"], tmp_path / "status.log") as (proc, url):
        snap = wait_until(lambda: (s := get_status(url))["decisions"]["total"] == count
                          and s["dead_letters"]["total"] == 3 and s["unreadable"]
                          and s["duplicates"]["decisions"] and s["fleet"]["workers"]
                          and len(s["fleet"]["workers"]) == 2 and s,
                          30, "the page to show the run")
        with urllib.request.urlopen(url, timeout=5) as r:
            html = r.read().decode()
        assert r.status == 200 and "<title>distillguard status</title>" in html
        assert proc.poll() is None
    d = snap["decisions"]
    assert d["by_action"] == {"block": 3, "throttle": 1, "allow": 1}
    assert d["accounts_now"] == {"block": 3, "throttle": 0, "allow": 1}  # burst-001 lifted
    assert snap["unreadable"] == {"enforcement": 1}  # the record that is not JSON, counted
    assert snap["duplicates"] == {"decisions": 1, "dead_letters": 0}
    assert snap["latest"][0]["account_id"] == ACCOUNTS[0]
    assert snap["latest"][0]["action"] == "allow"
    top = snap["clusters"]["top"]
    assert [c["cluster_id"] for c in top] == ["ip:198.51.100", "pay:fp-77"]
    assert top[0]["accounts"] == 3 and top[0]["evidence"].startswith("ip /24 198.51.100")
    kinds = {e["kind"]: e["count"] for e in snap["dead_letters"]["by_reason"]}
    assert kinds == {"record value is not JSON: Expecting value: line N column N": 2,
                     "field 'ts' is N s past the latest event time accepted": 1}
    assert sum(sum(v) for v in snap["by_processing_time"]["counts"].values()) == count
    fleet = {w["url"]: w for w in snap["fleet"]["workers"]}
    ok = fleet[f"http://{worker}/health"]
    assert ok["status"] == "ok" and ok["lag"] == 17 and ok["events"] == 12345
    assert ok["partitions"] == {"dg.requests": [0, 1, 2, 3, 4, 5]}
    assert fleet["http://127.0.0.1:1/health"]["status"] == "unreachable"
    assert any(p["source"] == "worker http://127.0.0.1:1/health" for p in snap["problems"])
    assert snap["topics"]["enforcement"]["name"] == run.topic_enforcement


def test_a_broker_that_does_not_answer_is_a_banner_and_a_log_line(
        run: Settings, tmp_path: Path) -> None:
    log = tmp_path / "status.log"
    with status_service(run, [], log, bootstrap="127.0.0.1:1") as (proc, url):
        snap = wait_until(lambda: (s := get_status(url))["problems"] and s, 30,
                          "the broker problem on the page")
        # it keeps running without its broker: still answering, the problem still shown, a
        # second later by its own clock (a probe or two on)
        wait_until(lambda: (s := get_status(url))["now"] >= snap["now"] + 1.0
                   and s["problems"] and s, 30, "the page still answering a second later")
        assert proc.poll() is None, "the service must keep running without its broker"
    (problem,) = snap["problems"]
    assert problem["source"] == "broker" and "127.0.0.1:1 does not answer" in problem["message"]
    text = log.read_text()
    assert "status_problem" in text and "does not answer" in text
    assert "Traceback" not in text
