"""The demo's comparison of the live fleet with the replay of the same traffic."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from distillguard.models.config import DetectorConfig
from distillguard.models.events import event_from_mapping
from distillguard.models.pipeline import Pipeline
from distillguard.simulator import Scenario, account_labels, generate_events
from distillguard.streams.cli.demo import late_verdicts, parity_line, replayed_report, worker_env
from distillguard.streams.edge.settings import load_settings


def test_the_replayed_report_is_the_core_over_the_demo_traffic() -> None:
    scenario = Scenario.small()
    labels = {lab["account_id"]: (lab["label"], lab["group"]) for lab in account_labels(scenario)}
    report, ids = replayed_report(scenario, DetectorConfig(), labels)
    # the same decisions as the core run by hand over the same events
    pipeline = Pipeline(DetectorConfig())
    decisions = [d for ev in generate_events(scenario)
                 for d in pipeline.process(event_from_mapping(ev))]
    acted = {d.account_id for d in decisions if d.action != "allow"}
    assert ids == {d.decision_id for d in decisions} and ids
    burst = report.row("campaign_burst")
    assert burst.acted_share == pytest.approx(
        len([a for a in acted if labels[a][1] == "campaign_burst"]) / burst.accounts)
    assert burst.acted_share > 0.5 and report.row("all benign").blocked_share == 0.0


def test_the_parity_line_counts_decision_ids_in_both_over_ids_in_either() -> None:
    live = [{"decision_id": "a"}, {"decision_id": "b"}, {"decision_id": "b"},
            {"decision_id": "c"}]
    line = parity_line(live, {"a", "b", "d"})
    assert "50.0% of decision ids in both (2; live 3, replay 3)" in line
    assert "100.0%" in parity_line([], set())  # nothing decided either way: nothing differs


def _health_server(status: int, body: dict) -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the http.server interface
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()


def test_late_verdicts_add_up_over_the_workers_and_a_silent_worker_gives_none() -> None:
    ok = _health_server(200, {"status": "ok", "alignment": {"late_verdicts": 3}})
    stalled = _health_server(503, {"status": "stalled", "alignment": {"late_verdicts": 4}})
    idle = _health_server(200, {"status": "idle", "alignment": {}})
    ports = [next(ok), next(stalled), next(idle)]
    assert late_verdicts(ports) == 7
    assert late_verdicts([*ports, 1]) is None  # nothing listens on port 1
    for gen in (ok, stalled, idle):
        gen.close()


def test_workers_run_the_build_of_the_core_their_parent_was_told_to(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISTILLGUARD_CORE", "interpreted")
    monkeypatch.setenv("DISTILLGUARD_APP_ID", "not-for-the-workers")
    env = worker_env(load_settings(env={}), 7001)
    assert env["DISTILLGUARD_CORE"] == "interpreted"
    assert env["DISTILLGUARD_APP_ID"] == "distillguard"  # its own settings, not the parent's


def test_the_demo_starts_the_status_page_on_its_workers_and_the_run_s_topics() -> None:
    from distillguard.streams.cli.demo import run_settings, status_command
    from distillguard.streams.cli.main import build_parser

    cmd = status_command(8088, [6066, 6067])
    assert cmd[1:] == ["-m", "distillguard", "status", "--port", "8088",
                       "--worker", "127.0.0.1:6066", "--worker", "127.0.0.1:6067"]
    args = build_parser().parse_args(cmd[3:])  # the command line the console script parses
    assert args.worker == ["127.0.0.1:6066", "127.0.0.1:6067"] and args.port == 8088
    # the page reads the run's own topics: the environment the workers get
    env = worker_env(run_settings(load_settings(env={}), "demo-x"), 0)
    assert env["DISTILLGUARD_TOPIC_ENFORCEMENT"] == "distillguard.demo-x.enforcement"
    assert env["DISTILLGUARD_TOPIC_DEAD_LETTER"] == "distillguard.demo-x.dead-letter"
    demo = build_parser().parse_args(["demo", "--status-port", "0", "--hold"])
    assert demo.status_port == 0 and demo.hold is True


def test_the_demo_shows_what_the_gate_answers_for_a_blocked_and_an_ordinary_account() -> None:
    from distillguard.streams.cli.demo_gate import accounts_to_show, gate_lines
    from distillguard.streams.gate.server import GateOptions, build_service, response_for

    decisions = [{"account_id": "a-1", "action": "block", "mode": "enforce"},
                 {"account_id": "a-2", "action": "block", "mode": "enforce"},
                 {"account_id": "a-2", "action": "allow", "mode": "enforce"},
                 {"account_id": "a-3", "action": "throttle", "mode": "enforce"}]
    labels = {"a-1": ("attack", "campaign_burst"), "a-4": ("benign", "ordinary"),
              "a-5": ("benign", "ordinary")}
    assert accounts_to_show(decisions, labels) == [("blocked account", "a-1"),
                                                   ("ordinary account", "a-4")]
    # A gate that blocks a-1 (its real answers, served by a stand-in for its HTTP server).
    svc = build_service("127.0.0.1:1", "demo.decisions", GateOptions())
    svc.gate.caught_up = True
    svc.gate.table.apply("a-1", {"decision_id": "d-1", "ts": 4e9, "account_id": "a-1",
                                 "action": "block", "ttl_s": 60, "mode": "enforce",
                                 "reason_codes": ["cluster_payment"]}, 4e9)

    class Gate(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the http.server interface
            if self.path == "/health":
                data = json.dumps({"records_read": 1, "topic": "demo.decisions",
                                   "in_force": {"block": 1}}).encode()
                status, headers = 200, {}
            else:
                answer = svc.gate.check(self.headers.get("x-distillguard-account", ""), 4e9)
                resp = response_for(answer, nginx=False)
                data, status, headers = resp.body or b"", resp.status, resp.headers
            self.send_response(status)
            for name, value in headers.items():
                if name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Gate)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        lines = gate_lines(f"http://127.0.0.1:{server.server_address[1]}/", decisions, labels)
    finally:
        server.shutdown()
    assert lines == [
        "  blocked account a-1: 403 block (reason cluster_payment, decision d-1)",
        "  ordinary account a-4: 200 allow",
        "  (the gate read 1 records of demo.decisions; in force: {'block': 1})"]
