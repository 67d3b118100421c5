"""The worker's allow-list without a broker: the app built by `streams.worker.topology.create_app`
hands its core the settings' allowances, and the control reader's keeper changes that same
AllowList while the agents run (the reader itself runs on the broker:
tests/integration/test_allow_list.py)."""

from __future__ import annotations

import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import orjson
import pytest
from faust.topics import Topic
from faust.transport.drivers.aiokafka import Producer as AiokafkaProducer

from distillguard.models.account import Verdict
from distillguard.models.messages import AccountVerdict
from distillguard.streams.edge.codec import encode_verdict
from distillguard.streams.edge.control import GRANTED, allow_record, decode_control
from distillguard.streams.edge.settings import Settings, load_settings
from distillguard.streams.worker.topology import create_app
from tests.agents.test_agents import (
    T0,
    Outbox,
    Sent,
    partition_of,
    request_bytes,
    run,
)

HARVEST = {"reasoning_requested": True, "task_category": "coding"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(env={"DISTILLGUARD_APP_ID": f"dg-agents-{uuid.uuid4().hex[:8]}",
                              "DISTILLGUARD_DATA_DIR": str(tmp_path / "faust"),
                              "DISTILLGUARD_ALLOW_ACCOUNTS": "acct-settings",
                              "DISTILLGUARD_EVENT_TIME_ALIGNMENT": "false"})


@pytest.fixture
def app(settings: Settings) -> faust.App:
    app = create_app(settings)
    app.finalize()
    return app


@pytest.fixture
def outbox(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Outbox:
    """What the agents send, recorded instead of produced (as in tests/agents/test_agents.py:
    Topic.send, Faust's changelog writes, the producer's own send)."""
    box = Outbox(settings)

    async def send(self: Topic, *, key: Any = None, value: Any = None,
                   partition: int | None = None, **_: Any) -> None:
        box.records.append(Sent(self.get_topic_name(), key, value, partition))

    def send_soon(self: Topic, *, key: Any = None, value: Any = None,
                  partition: int | None = None, **_: Any) -> SimpleNamespace:
        box.records.append(Sent(self.get_topic_name(), key, value, partition))
        return SimpleNamespace(message=SimpleNamespace(partition=partition))

    async def produce(self: Any, topic: str, key: bytes | None, value: bytes | None,
                      partition: int | None, *_: Any, **__: Any) -> None:
        box.records.append(Sent(topic, key, value, partition))

    monkeypatch.setattr(Topic, "send", send)
    monkeypatch.setattr(Topic, "send_soon", send_soon)
    monkeypatch.setattr(AiokafkaProducer, "send", produce)
    return box


def convicted(app: faust.App, settings: Settings, accounts: list[str]) -> None:
    """Each account sends a request, is told of a conviction, and sends another once the
    verdict's time to apply has come."""
    cfg = settings.detector

    async def scenario() -> None:
        events, verdicts = app.agents["account_stage"], app.agents["apply_verdicts"]
        for account in accounts:
            p = partition_of(account, settings)
            verdict = Verdict("pay:p", 1.0, T0, T0 + cfg.verdict_ttl_s, "cv-pay",
                              "cluster pay:p convicted", 0, 1.0, 1.0)
            async with events.test_context() as agent:
                await agent.put(request_bytes(account, T0, 0, **HARVEST), key=account.encode(),
                                partition=p)
            async with verdicts.test_context() as agent:
                await agent.put(encode_verdict(AccountVerdict(account, verdict, T0)),
                                key=account.encode(), partition=p)
            async with events.test_context() as agent:
                await agent.put(request_bytes(account, T0 + cfg.verdict_delay_s, 1, **HARVEST),
                                key=account.encode(), partition=p)
    run(scenario)


def actions(outbox: Outbox) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in outbox.to("enforcement"):
        d = orjson.loads(r.value)
        out.setdefault(d["account_id"], []).append(d["action"])
    return out


def test_the_settings_allowances_reach_the_core(app: faust.App, settings: Settings,
                                                outbox: Outbox) -> None:
    allow = app.runtime.allow
    assert list(allow.accounts) == ["acct-settings"]
    assert not app.runtime.control.waiting  # armed only by a real partition assignment
    convicted(app, settings, ["acct-settings", "acct-other"])
    acted = actions(outbox)
    assert "acct-settings" not in acted
    assert acted["acct-other"][0] in ("throttle", "block")


def test_a_record_applied_by_the_workers_keeper_changes_the_cores_allow_list(
        app: faust.App, settings: Settings, outbox: Outbox) -> None:
    keeper = app.runtime.control.keeper
    assert keeper.allow is app.runtime.allow
    assert keeper.apply(decode_control(*allow_record("account", "acct-new", "verified", "op",
                                                     ts=T0))) == GRANTED
    convicted(app, settings, ["acct-new"])
    assert "acct-new" not in actions(outbox)
