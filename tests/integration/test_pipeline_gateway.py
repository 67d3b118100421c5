"""The whole path a gateway team adopts, end to end on the real broker: simulated traffic into
the requests topic, a worker deciding, the decisions topic it writes, `distillguard gate`
reading it, Debian's nginx with deploy/nginx/nginx.conf.template asking the gate per request,
and the official `anthropic` SDK as the client of campaign and ordinary accounts (each with its
API key, which nginx maps to the account).

What the gateway team needs to hold: the campaign's accounts get 403 (blocked) or 429
(throttled, over their rate) within a bounded time of the worker's decision reaching the
decisions topic; ordinary accounts keep 200 throughout; an operator's allow (one command) lifts
a block at the gate within 5 s. The seconds are printed (`pytest -s`) as well as bounded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anthropic
import orjson
import pytest

from distillguard.models._build import BUILD_VARIABLES
from distillguard.simulator import Scenario, account_labels, generate_events
from distillguard.streams.edge.settings import Settings
from tests.gateway import Nginx, StandInApi, nginx_or_skip
from tests.integration.conftest import (
    REPO_ROOT,
    Fleet,
    consume_until,
    event_records,
    produce,
    run_env,
    wait_for_lag_zero,
)
from tests.integration.test_gateway_nginx import (
    client,
    gate_service,
    outcome,
    until,
    wait_ready,
)

pytestmark = [pytest.mark.broker, pytest.mark.slow]

# The fleet test's scenario: ~22k events over 1.5 simulated hours, campaigns of tens of accounts.
SCENARIO = dataclasses.replace(Scenario.default(), scale=0.25, duration_h=1.5, seed=11)
CAMPAIGN_ACCOUNTS_CHECKED = 6
ORDINARY_ACCOUNTS = 4


def api_key(account: str) -> str:
    return f"sk-test-{account}"


def in_force(records: list[Any]) -> dict[str, dict[str, Any]]:
    """The decisions topic folded as a gateway folds it: the newest value per key, tombstones
    and allows leaving nothing in force."""
    state: dict[str, dict[str, Any]] = {}
    for r in records:
        key = r.key.decode()
        value = None if r.value is None else orjson.loads(r.value)
        if value is None or value["action"] == "allow":
            state.pop(key, None)
        else:
            state[key] = value
    return state


def denied(sdk: anthropic.Anthropic, action: str) -> int | None:
    """One request; the status if it is the denial the action calls for (a throttled account
    is served within its rate, so keep asking until it is over it)."""
    status, _ = outcome(sdk)
    wanted = 403 if action == "block" else 429
    return status if status == wanted else None


def operator(settings: Settings, *args: str) -> None:
    """The operator's command, as an analyst types it, against this test's topics."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DISTILLGUARD_") or k in BUILD_VARIABLES}
    env.update(run_env(settings.app_id.removeprefix("dg-test-"), settings.kafka_bootstrap))
    res = subprocess.run([sys.executable, "-m", "distillguard", *args], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def test_a_workers_decisions_reach_sdk_clients_through_nginx_and_an_operator_lifts_one(
        run: Settings, fleet: Fleet, tmp_path: Path) -> None:
    nginx_binary = nginx_or_skip()
    events = list(generate_events(SCENARIO))
    labels = {lab["account_id"]: lab["label"] for lab in account_labels(SCENARIO)}
    busiest = [a for a, _ in Counter(e["account_id"] for e in events).most_common()]
    attack = [a for a in busiest if labels[a] == "attack"]
    ordinary = [a for a in busiest if labels[a] == "benign"][:ORDINARY_ACCOUNTS]
    keys = {api_key(a): a for a in attack + ordinary}

    fleet.start(count=1)
    with StandInApi() as api, gate_service(run, tmp_path / "gate.log") as gate_url:
        wait_ready(gate_url)
        gate = gate_url.removeprefix("http://").rstrip("/")
        with Nginx(nginx_binary, tmp_path / "nginx", gate, api.address, keys) as nginx:
            sdks = {a: client(nginx.url, api_key(a)) for a in attack + ordinary}
            assert all(outcome(sdks[a])[0] == 200 for a in attack[:3] + ordinary), \
                "before any decision every account is served"

            asyncio.run(produce(run, event_records(events)))
            # The fleet settled first (every stage's input read), so the folded topic is the
            # state in force while the clients ask: a decision still changing under the test
            # (a throttle released a moment later) would be a race, not the gate's fault.
            for _ in range(2):
                for topic in (run.topic_requests, run.topic_cluster_summaries,
                              run.topic_account_verdicts):
                    lag = asyncio.run(wait_for_lag_zero(run, topic, run.partitions, 240,
                                                        alive=lambda: all(fleet.alive())))
                    assert lag == 0, f"{topic}: lag {lag}\n{fleet.logs()}"

            def enough(records: list[Any]) -> bool:
                return len(set(in_force(records)) & set(attack)) >= CAMPAIGN_ACCOUNTS_CHECKED

            records = asyncio.run(consume_until(run, run.topic_decisions, enough,
                                                timeout_s=240,
                                                alive=lambda: all(fleet.alive())))
            seen = time.monotonic()
            state = in_force(records)
            assert enough(records), f"too few campaign accounts acted on: {sorted(state)}"
            assert not set(state) & set(ordinary), "an ordinary account was acted on"

            reached: list[float] = []
            for account in [a for a in attack if a in state][:CAMPAIGN_ACCOUNTS_CHECKED]:
                action = state[account]["action"]
                _, after = until(f"{account}'s {action} at the gate",
                                 lambda a=account, act=action: denied(sdks[a], act),
                                 sdks[ordinary[0]], seen)
                reached.append(after)
            for account in ordinary:
                assert outcome(sdks[account])[0] == 200, f"{account} was not served"
            print(f"\ncampaign accounts denied at the gate {min(reached):.2f}-"
                  f"{max(reached):.2f} s after their decisions were on the topic")

            blocked = next((a for a in attack if state.get(a, {}).get("action") == "block"),
                           None)
            assert blocked, "no campaign account blocked in this scenario"
            assert outcome(sdks[blocked])[0] == 403
            started = time.monotonic()
            operator(run, "override", "allow", "--account", blocked, "--for", "1h",
                     "--reason", "pytest: a verified customer", "--by", "pytest")
            _, lifted = until(f"the operator's allow of {blocked} at the gate",
                              lambda: outcome(sdks[blocked])[0] == 200, sdks[ordinary[0]],
                              started)
            print(f"an operator's allow served the blocked account {lifted:.2f} s after the "
                  "command started (the command's own start-up included)")
    assert all(fleet.alive()), fleet.logs()
