"""Operators' decisions on the real broker: `distillguard override` publishes a manual decision
to the gateway at once (enforcement and decisions topics) and to the control topic, from which a
running worker holds it and decides nothing of its own about the account; `override lift` lifts
it and hands the account back to the detector; `overrides` shows what is held."""

from __future__ import annotations

import argparse
import asyncio
import time
from functools import partial
from typing import Any

import orjson
import pytest

from distillguard.streams.cli.explain import add_explain_parser
from distillguard.streams.cli.override import add_override_parsers
from distillguard.streams.edge.settings import Settings
from tests.conftest import contract_validator, event_dict
from tests.integration.conftest import (
    Fleet,
    command_line,
    consume_until,
    event_records,
    produce,
    wait_for_lag_zero,
    wait_until,
)
from tests.integration.test_allow_list import (
    APPLY_DEADLINE_S,
    HARVEST,
    T0,
    by_every_worker,
    decisions_of,
    logged,
    read_all,
    verdict_record,
)
from tests.integration.test_decisions_topic import in_force

pytestmark = pytest.mark.broker


@pytest.fixture
def cli(run: Settings, monkeypatch: pytest.MonkeyPatch) -> argparse.ArgumentParser:
    """The `override`, `overrides` and `explain` commands as the console script registers
    them, on this test's topics."""
    return command_line(run, monkeypatch, add_override_parsers, add_explain_parser)


def override(cli: argparse.ArgumentParser, *argv: str) -> int:
    args = cli.parse_args(["override", *argv])
    return int(args.func(args))


def overrides(cli: argparse.ArgumentParser, *argv: str) -> int:
    args = cli.parse_args(["overrides", *argv])
    return int(args.func(args))


def one_worker_ready(fleet: Fleet) -> None:
    """One worker, started and through the control topic (an override from now on reaches it)."""
    fleet.start(count=1)
    wait_until(lambda: by_every_worker(fleet, "allow_list_ready"), 90,
               "the worker to read the control topic", fleet)


def send_event(run: Settings, fleet: Fleet, account: str, ts: float, n: int,
               **fields: Any) -> None:
    """One request event of the account, produced and read by the fleet (no lag) on return."""
    asyncio.run(produce(run, event_records([event_dict(account, ts, n, **fields)])))
    assert asyncio.run(wait_for_lag_zero(run, run.topic_requests, run.partitions, 60,
                                         lambda: all(fleet.alive()))) == 0, fleet.logs()


def test_an_operators_decision_reaches_the_gateway_at_once_and_silences_the_detector(
        run: Settings, fleet: Fleet, cli: argparse.ArgumentParser,
        capsys: pytest.CaptureFixture[str]) -> None:
    cfg = run.detector
    suspect, quiet = "acct-suspect", "acct-quiet"
    later = T0 + cfg.verdict_delay_s
    one_worker_ready(fleet)
    events = partial(send_event, run, fleet)

    # The detector acts on the suspect.
    events(suspect, T0, 0, **HARVEST)
    asyncio.run(produce(run, [verdict_record(suspect, T0, cfg)],
                        topic=run.topic_account_verdicts))
    events(suspect, later, 1, **HARVEST)
    acted = asyncio.run(consume_until(run, run.topic_enforcement, lambda rs: len(rs) >= 1,
                                      timeout_s=60, alive=lambda: all(fleet.alive())))
    assert decisions_of(acted)[suspect][0]["action"] in ("throttle", "block")

    # 1. An operator allows the suspect for an hour and blocks a quiet account for two.
    assert override(cli, "allow", "--account", suspect, "--for", "1h", "--reason",
                    "customer verified on the phone, T-11", "--by", "alice") == 0
    assert override(cli, "block", "--account", quiet, "--for", "2h", "--reason",
                    "stolen key, I-4", "--by", "bob") == 0
    out = capsys.readouterr().out
    assert "allowed by operator alice for 1 h: customer verified on the phone, T-11" in out
    assert "blocked by operator bob for 2 h: stolen key, I-4" in out
    everything = decisions_of(asyncio.run(read_all(run, "enforcement")))
    allowed, blocked = everything[suspect][-1], everything[quiet][-1]
    for record in (allowed, blocked):
        contract_validator("enforcement-decision").validate(record)
        assert record["source"] == "operator" and record["mode"] == "enforce"
    assert (allowed["action"], allowed["by"], allowed["reason_codes"]) == (
        "allow", "alice", ["operator_allow"])
    assert (blocked["action"], blocked["ttl_s"], blocked["reason_codes"]) == (
        "block", 7200, ["operator_block"])
    state = in_force(asyncio.run(read_all(run, "decisions")))
    assert state[suspect] is None and state[quiet] == blocked  # the gateway's view

    # 2. The worker holds both and decides nothing about either: more evidence against the
    #    suspect, ordinary requests from the blocked account.
    def both_held() -> list[dict[str, Any]] | None:
        lines = logged(fleet, "operator_decision_held")
        return lines if len(lines) == 2 else None
    held = wait_until(both_held, APPLY_DEADLINE_S, "the worker to hold both decisions", fleet)
    with capsys.disabled():
        for line in held:
            print(f"\n{line['account_id']}: held by the worker {line['lag_s'] * 1000:.0f} ms "
                  "after `override` sent its control record (its lag_s)", end="")
    asyncio.run(produce(run, [verdict_record(suspect, later + 10, cfg)],
                        topic=run.topic_account_verdicts))
    for i in range(3):
        events(suspect, later + cfg.verdict_delay_s + 20 + i, 2 + i, **HARVEST)
        events(quiet, later + 20 + i, i)
    assert asyncio.run(wait_for_lag_zero(run, run.topic_account_verdicts, run.partitions, 60,
                                         lambda: all(fleet.alive()))) == 0, fleet.logs()
    after = decisions_of(asyncio.run(read_all(run, "enforcement")))
    assert after[suspect][-1] == allowed and after[quiet] == [blocked], after

    # 3. Revoked: the gateway lifts the block at once; the suspect is the detector's again.
    assert overrides(cli) == 0
    table = capsys.readouterr().out
    assert "in force: 2 operator decisions (0 ran out, not shown), 0 allowances" in table
    assert quiet in table and "stolen key, I-4" in table and "alice" in table
    assert overrides(cli, "--json") == 0
    rows = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {(r["kind"], r["scope"], r["id"], r["action"], r["by"]) for r in rows} == {
        ("decision", "account", suspect, "allow", "alice"),
        ("decision", "account", quiet, "block", "bob")}
    assert override(cli, "lift", "--account", quiet, "--reason", "key rotated",
                    "--by", "bob") == 0
    assert override(cli, "lift", "--account", suspect, "--reason", "second look",
                    "--by", "carol") == 0
    assert override(cli, "lift", "--account", "acct-never", "--by", "carol") == 0
    out = capsys.readouterr().out
    assert "account acct-never: lifted (no operator's decision held" in out
    assert f"account {quiet}: lifted (the operator's decision ended" in out
    lifted = decisions_of(asyncio.run(read_all(run, "enforcement")))[quiet][-1]
    assert (lifted["action"], lifted["by"], lifted["reasons"]) == (
        "allow", "bob", ["lifted by operator bob: key rotated"])
    assert in_force(asyncio.run(read_all(run, "decisions")))[quiet] is None
    wait_until(lambda: len(logged(fleet, "operator_decision_revoked")) == 2, APPLY_DEADLINE_S,
               "the worker to drop both decisions", fleet)
    events(suspect, later + cfg.verdict_delay_s + 60, 9, **HARVEST)

    def detector_again(records: list[Any]) -> bool:
        last = decisions_of(records).get(suspect, [{}])[-1]
        return last.get("source") == "detector" and last.get("action") != "allow"
    again = asyncio.run(consume_until(run, run.topic_enforcement, detector_again, timeout_s=60,
                                      alive=lambda: all(fleet.alive())))
    assert decisions_of(again)[suspect][-1]["reason_codes"][0] == "cluster_payment"
    assert all(fleet.alive()), fleet.logs()


def test_a_lift_by_hand_hands_the_detectors_own_action_back_to_the_detector(
        run: Settings, fleet: Fleet, cli: argparse.ArgumentParser) -> None:
    cfg = run.detector
    acct = "acct-lifted"
    later = T0 + cfg.verdict_delay_s
    one_worker_ready(fleet)
    events = partial(send_event, run, fleet, acct, **HARVEST)

    events(T0, 0)
    asyncio.run(produce(run, [verdict_record(acct, T0, cfg)], topic=run.topic_account_verdicts))
    events(later, 1)
    acted = asyncio.run(consume_until(run, run.topic_enforcement, lambda rs: len(rs) >= 1,
                                      timeout_s=60, alive=lambda: all(fleet.alive())))
    first = decisions_of(acted)[acct][0]
    assert first["action"] in ("throttle", "block") and first["source"] == "detector"

    # Lifted by hand: the gateway gets an allow at once (and the decisions topic a tombstone).
    assert override(cli, "lift", "--account", acct, "--reason", "a customer", "--by", "ana") == 0
    lifted = decisions_of(asyncio.run(read_all(run, "enforcement")))[acct][-1]
    assert (lifted["action"], lifted["source"], lifted["by"]) == ("allow", "operator", "ana")
    assert in_force(asyncio.run(read_all(run, "decisions")))[acct] is None
    wait_until(lambda: logged(fleet, "operator_lift_noted", account_id=acct), APPLY_DEADLINE_S,
               "the worker to note the lift", fleet)

    # Handed back to the detector: its next event is decided afresh from the evidence (the
    # campaign's verdict still holds), not left to the action the worker had counted in force.
    events(later + 30, 2)

    def decided_again(records: list[Any]) -> bool:
        return len(decisions_of(records).get(acct, [])) >= 3
    again = decisions_of(asyncio.run(consume_until(
        run, run.topic_enforcement, decided_again, timeout_s=60,
        alive=lambda: all(fleet.alive()))))[acct]
    assert again[-1]["source"] == "detector" and again[-1]["action"] == first["action"]
    assert again[-1]["decision_id"] != first["decision_id"]
    assert all(fleet.alive()), fleet.logs()


def test_an_organisations_override_reaches_the_worker_which_hands_its_accounts_over(
        run: Settings, fleet: Fleet, cli: argparse.ArgumentParser) -> None:
    cfg = run.detector
    member = "acct-member"
    later = T0 + cfg.verdict_delay_s
    one_worker_ready(fleet)
    events = partial(send_event, run, fleet, member, org_id="org-z", **HARVEST)

    events(T0, 0)
    asyncio.run(produce(run, [verdict_record(member, T0, cfg)],
                        topic=run.topic_account_verdicts))
    events(later, 1)
    acted = asyncio.run(consume_until(run, run.topic_enforcement, lambda rs: len(rs) >= 1,
                                      timeout_s=60, alive=lambda: all(fleet.alive())))
    assert decisions_of(acted)[member][0]["source"] == "detector"

    # The operator allows the whole organisation: the decisions topic's org:org-z holds
    # nothing (an allow), and at the member's next event the worker lifts its own block.
    assert override(cli, "allow", "--org", "org-z", "--for", "1h", "--reason",
                    "enterprise pilot, T-30", "--by", "olga") == 0
    wait_until(lambda: logged(fleet, "operator_decision_held", org_id="org-z"),
               APPLY_DEADLINE_S, "the worker to hold the organisation's decision", fleet)
    events(later + 30, 2)

    def handed_over(records: list[Any]) -> bool:
        return decisions_of(records).get(member, [{}])[-1].get("source") == "operator"
    last = decisions_of(asyncio.run(consume_until(
        run, run.topic_enforcement, handed_over, timeout_s=60,
        alive=lambda: all(fleet.alive()))))[member][-1]
    contract_validator("enforcement-decision").validate(last)
    assert (last["action"], last["by"], last["reason_codes"]) == ("allow", "olga",
                                                                  ["operator_allow"])
    assert "organisation org-z" in last["reasons"][0]
    state = in_force(asyncio.run(read_all(run, "decisions")))
    assert state[member] is None and state.get("org:org-z") is None  # an allow: a tombstone
    assert all(fleet.alive()), fleet.logs()


def test_a_throttle_by_hand_carries_its_rate_and_several_accounts_take_one_command(
        run: Settings, cli: argparse.ArgumentParser, capsys: pytest.CaptureFixture[str]) -> None:
    assert override(cli, "throttle", "--account", "acct-t", "--account", "acct-u",
                    "--account", "acct-t", "--rpm", "3", "--for", "45m", "--reason", "noisy",
                    "--by", "dana") == 0
    records = {r.key.decode(): orjson.loads(r.value)
               for r in asyncio.run(read_all(run, "decisions"))}
    assert sorted(records) == ["acct-t", "acct-u"]  # each once
    for account, record in records.items():
        assert (record["account_id"], record["action"], record["rate_limit_rpm"],
                record["ttl_s"]) == (account, "throttle", 3, 2700)
        assert record["reasons"] == ["throttled to 3/min by operator dana for 45 min: noisy"]
    assert override(cli, "lift", "--account", "acct-t", "--account", "acct-u",
                    "--reason", "quiet now", "--by", "dana") == 0
    out = capsys.readouterr().out
    assert out.count(": lifted (the operator's decision ended") == 2
    assert in_force(asyncio.run(read_all(run, "decisions"))) == {"acct-t": None, "acct-u": None}


def test_explain_shows_the_decision_in_force_the_history_and_what_is_held(
        run: Settings, cli: argparse.ArgumentParser, capsys: pytest.CaptureFixture[str]) -> None:
    now = time.time()

    def record(account: str, action: str, ts: float, **fields: Any) -> dict[str, Any]:
        return {"decision_id": f"dg-{account}-{action}-{ts:.0f}", "ts": ts, "event_ts": ts - 5,
                "account_id": account, "action": action,
                "ttl_s": None if action == "allow" else 3600,
                "rate_limit_rpm": 2 if action == "throttle" else None, "score": 0.9,
                "reasons": [f"score 0.90 -> {action}", "cluster pay:p convicted"],
                "reason_codes": ["cluster_payment", "account_harvest"], "source": "detector",
                "by": None, "cluster_ids": ["pay:p"], "model_version": "mv", "mode": "enforce",
                **fields}
    throttled = record("acct-x", "throttle", now - 600)
    blocked = record("acct-x", "block", now - 300)
    others = [record(f"acct-{i}", "block", now - 100) for i in range(20)]
    asyncio.run(produce(run, [(b"acct-x", orjson.dumps(throttled)),
                              *[(d["account_id"].encode(), orjson.dumps(d)) for d in others],
                              (b"acct-x", orjson.dumps(blocked))], topic=run.topic_enforcement))
    asyncio.run(produce(run, [(b"acct-x", orjson.dumps(throttled)),
                              (b"acct-x", orjson.dumps(blocked)), (b"acct-y", b"{}"),
                              (b"acct-y", None)], topic=run.topic_decisions))
    assert override(cli, "throttle", "--account", "acct-x", "--rpm", "1", "--for", "2h",
                    "--reason", "watching it", "--by", "erin") == 0
    capsys.readouterr()

    args = cli.parse_args(["explain", "acct-x", "--json"])
    assert args.func(args) == 0
    found = orjson.loads(capsys.readouterr().out)
    # the operator's throttle is the newest record on both topics now
    assert found["in_force"]["source"] == "operator" and found["in_force"]["by"] == "erin"
    assert [h["action"] for h in found["history"]] == ["throttle", "block", "throttle"]
    assert found["operator_decision"]["action"] == "throttle"
    assert found["operator_decision"]["in_force"] is True

    args = cli.parse_args(["explain", "acct-x", "--history", "2"])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "in force: throttle to 1/min until" in text and "by the operator erin" in text
    assert "codes: operator_throttle" in text
    assert "operator's decision held: throttled to 1/min by operator erin for 2 h" in text
    assert "decisions on the enforcement topic since 24h ago: 3, the newest 2:" in text
    assert "cluster_payment,account_harvest  score 0.90 -> block" in text

    args = cli.parse_args(["explain", "acct-y"])
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "in force: nothing (lifted)" in text and "since 24h ago: 0" in text
