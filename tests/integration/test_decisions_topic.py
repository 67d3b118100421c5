"""The decisions topic on the real broker: a worker writes each enforced decision's record
there too, keyed by account, and a tombstone when an allow lifts it, so reading the compacted
topic from its beginning gives the actions in force (what a gateway rebuilds its state from)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from distillguard.streams.edge.control import allow_record
from distillguard.streams.edge.settings import Settings
from tests.conftest import contract_validator, event_dict
from tests.integration.conftest import Fleet, consume_until, event_records, produce, wait_until
from tests.integration.test_allow_list import (
    APPLY_DEADLINE_S,
    HARVEST,
    T0,
    by_every_worker,
    decisions_of,
    verdict_record,
)

pytestmark = pytest.mark.broker


def in_force(records: list[Any]) -> dict[str, dict[str, Any] | None]:
    """The decisions topic folded as a gateway folds it: the newest value per key."""
    state: dict[str, dict[str, Any] | None] = {}
    for r in records:
        state[r.key.decode()] = None if r.value is None else orjson.loads(r.value)
    return state


def test_the_decisions_topic_holds_the_action_in_force_and_a_tombstone_once_lifted(
        run: Settings, fleet: Fleet) -> None:
    cfg = run.detector
    acted, quiet = "acct-acted", "acct-quiet"
    fleet.start(count=1)
    wait_until(lambda: by_every_worker(fleet, "allow_list_ready"), 90,
               "the worker to read the control topic", fleet)
    asyncio.run(produce(run, event_records([event_dict(acted, T0, 0, org_id="org-x", **HARVEST),
                                            event_dict(quiet, T0, 0, org_id="org-y")])))
    asyncio.run(produce(run, [verdict_record(acted, T0, cfg)], topic=run.topic_account_verdicts))
    later = T0 + cfg.verdict_delay_s
    asyncio.run(produce(run, event_records([event_dict(acted, later, 1, org_id="org-x",
                                                       **HARVEST)])))

    records = asyncio.run(consume_until(run, run.topic_decisions, lambda rs: len(rs) >= 1,
                                        timeout_s=60, alive=lambda: all(fleet.alive())))
    state = in_force(records)
    assert list(state) == [acted], state
    record = state[acted]
    assert record is not None and record["action"] in ("throttle", "block")
    contract_validator("enforcement-decision").validate(record)
    assert record["source"] == "detector" and record["reason_codes"][0] == "cluster_payment"
    # the same record as on the enforcement topic, decision id and all
    enforced = asyncio.run(consume_until(run, run.topic_enforcement, lambda rs: len(rs) >= 1,
                                         timeout_s=30))
    assert decisions_of(enforced)[acted][0] == record

    # Lifted (an allowance, at the account's next event): a tombstone, nothing in force.
    asyncio.run(produce(run, [allow_record("org", "org-x", "verified", "pytest")],
                        topic=run.topic_control))
    wait_until(lambda: by_every_worker(fleet, "allow_granted", id="org-x"), APPLY_DEADLINE_S,
               "the worker to apply the allowance", fleet)
    asyncio.run(produce(run, event_records([event_dict(acted, later + 1, 2, org_id="org-x",
                                                       **HARVEST)])))
    records = asyncio.run(consume_until(run, run.topic_decisions, lambda rs: len(rs) >= 2,
                                        timeout_s=60, alive=lambda: all(fleet.alive())))
    assert in_force(records) == {acted: None}
