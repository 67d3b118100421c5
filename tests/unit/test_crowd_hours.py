"""Crowd hours (core 0.14): established accounts of many organisations harvesting one content key
together, hour after hour, are throttled at their fourth such hour; an honest crowd is not.

A campaign on aged accounts, each on its own card and organisation, at a person's pace, shows
nothing per account that a research group or an eval customer does not (a study of 390 tuning
runs, branch `issue14-established`). What it shows as a crowd is many organisations and cards
harvesting the same system prompt or template in the same hours (models/crowd_hours.py). These
tests run the whole core (models/pipeline.py) on hand-made traffic.
"""

from __future__ import annotations

import random

from distillguard.models.account import Verdict
from distillguard.models.config import DetectorConfig
from distillguard.models.crowd_hours import (
    HOUR_REQUESTS,
    HOUR_S,
    HOURS_TO_ACT,
    convicts,
    in_force,
    notice,
    record,
)
from distillguard.models.decision import BLOCK, THROTTLE, Decision
from distillguard.models.events import RequestEvent
from distillguard.models.pipeline import Pipeline

T0 = 1_767_225_600  # a clock hour's start
YEAR = 365 * 86400.0
CFG = DetectorConfig()


_TEMPLATES = tuple(random.Random(5).getrandbits(64) for _ in range(4))


def _events(accounts: list[tuple[str, str, str]], per_hour: int, hours: float,
            system_prompt: str = "lab-harness", seed: int = 1,
            reasoning: bool = True, templated: float = 1.0) -> list[RequestEvent]:
    """Each account (id, org, card) sends `per_hour` high-value requests an hour with the same
    system prompt, at a person's uneven pace, from its own home address: a `templated` share of
    its prompts of four shared templates (a few bits of noise each), the others its own."""
    rng = random.Random(seed)

    def prompt() -> int:
        if rng.random() >= templated:
            return rng.getrandbits(64)
        return rng.choice(_TEMPLATES) ^ (1 << rng.randrange(64)) ^ (1 << rng.randrange(64))

    out: list[RequestEvent] = []
    for n, (account, org, card) in enumerate(accounts):
        ts = T0 + rng.uniform(0, 120)
        while ts < T0 + hours * HOUR_S:
            out.append(RequestEvent(
                event_id=f"{account}-{len(out)}", ts=ts, account_id=account,
                ip=f"98.{n % 250}.{n // 250}.7", model="m", prompt_tokens=300,
                completion_tokens=900, status=200, simhash=prompt(),
                reasoning_requested=reasoning, org_id=org, asn=7922 + n,
                user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
                payment_fingerprint=card, account_created_ts=T0 - YEAR,
                system_prompt_hash=system_prompt, task_category="reasoning"))
            ts += rng.uniform(0.6, 1.4) * HOUR_S / per_hour
    out.sort(key=lambda e: e.ts)
    return out


def _decisions(events: list[RequestEvent]) -> dict[str, list[Decision]]:
    pipeline = Pipeline(CFG, partitions=4)
    by_account: dict[str, list[Decision]] = {}
    for d in pipeline.run(events):
        by_account.setdefault(d.account_id, []).append(d)
    return by_account


def _first_action(decisions: list[Decision]) -> Decision | None:
    return next((d for d in decisions if d.action != "allow"), None)


def test_aged_accounts_of_many_orgs_harvesting_one_system_prompt_are_throttled_at_the_fourth_hour() -> None:
    lab = [(f"aged-{i}", f"org-{i}", f"card-{i}") for i in range(6)]
    decided = _decisions(_events(lab, per_hour=30, hours=6))
    for account, _, _ in lab:
        first = _first_action(decided.get(account, []))
        assert first is not None, f"{account} never acted on"
        assert first.action == THROTTLE
        assert "cluster_system_prompt" in first.reason_codes
        assert any("crowd hours" in r for r in first.reasons)
        # told at the end of each hour's twentieth request or so: the fourth hour, not earlier
        assert first.event_ts >= T0 + (HOURS_TO_ACT - 1) * HOUR_S
        assert first.event_ts < T0 + HOURS_TO_ACT * HOUR_S + 15 * 60
        assert all(d.action != BLOCK for d in decided[account]), "a crowd hour never blocks"


def test_three_hours_of_it_are_not_enough() -> None:
    lab = [(f"aged-{i}", f"org-{i}", f"card-{i}") for i in range(6)]
    decided = _decisions(_events(lab, per_hour=30, hours=HOURS_TO_ACT - 1))
    assert not any(_first_action(d) for d in decided.values())


def test_a_team_of_one_org_and_card_is_not_a_crowd_of_strangers() -> None:
    team = [(f"member-{i}", "org-acme", "card-acme") for i in range(6)]
    decided = _decisions(_events(team, per_hour=30, hours=8))
    assert not any(_first_action(d) for d in decided.values())


def test_a_team_on_one_card_across_several_orgs_is_not_a_crowd_either() -> None:
    # three cards at least: a reseller's customers, each its own org, on the reseller's card
    team = [(f"customer-{i}", f"org-{i}", "card-reseller") for i in range(6)]
    decided = _decisions(_events(team, per_hour=30, hours=8))
    assert not any(_first_action(d) for d in decided.values())


def test_a_light_crowd_of_strangers_on_a_tool_is_not_a_crowd_hour() -> None:
    users = [(f"user-{i}", f"org-{i}", f"card-{i}") for i in range(12)]
    decided = _decisions(_events(users, per_hour=HOUR_REQUESTS // 2, hours=8))
    assert not any(_first_action(d) for d in decided.values())


def test_heavy_strangers_without_reasoning_are_not_harvesting_it() -> None:
    users = [(f"user-{i}", f"org-{i}", f"card-{i}") for i in range(6)]
    decided = _decisions(_events(users, per_hour=30, hours=8, reasoning=False))
    assert not any(_first_action(d) for d in decided.values())


def test_heavy_independent_users_of_a_coding_agent_are_not_a_campaign() -> None:
    """A popular coding agent sends one fixed system prompt with every request, with tool use
    and reasoning; its heavy users (independent developers, each its own org and card) send 40
    an hour all working day, every prompt their own. They share the system prompt and harvest
    by every count of the hour; what they do not share is a campaign's templates."""
    developers = [(f"dev-{i}", f"org-dev-{i}", f"card-dev-{i}") for i in range(8)]
    decided = _decisions(_events(developers, per_hour=40, hours=9, system_prompt="agent-v2",
                                 templated=0.0))
    assert not any(_first_action(d) for d in decided.values())


def test_a_coding_agents_scaffold_templates_do_not_make_its_heavy_users_harvesters() -> None:
    """The agent also sends its own scaffold prompts (a commit message, a summary of the
    conversation), the same templates for every user: known templates, a quarter of each heavy
    user's requests. An account that once sent a few known templates is no harvester for the rest
    of its life: an hour counts only its requests of known templates (a first cut counted every
    request of an account whose history had reached SUSTAINED)."""
    developers = [(f"dev-{i}", f"org-dev-{i}", f"card-dev-{i}") for i in range(8)]
    decided = _decisions(_events(developers, per_hour=60, hours=9, system_prompt="agent-v2",
                                 templated=0.25))
    assert not any(_first_action(d) for d in decided.values())


def test_a_crowd_hour_needs_orgs_for_four_fifths_of_its_harvesters() -> None:
    assert convicts([(1, 1), (2, 2), (3, 3)])
    assert not convicts([(1, 1), (2, 2)])
    assert not convicts([(1, 1), (2, 2), (3, 3), (1, 4), (2, 5)])  # 3 orgs of 5: a team's
    assert not convicts([(1, 1), (2, 1), (3, 2), (4, 2)])  # two cards
    assert convicts([(1, 1), (2, 2), (3, 3), (4, 4), (1, 5)])  # 4 of 5


def test_an_hour_counts_once_and_a_quiet_day_starts_again() -> None:
    def told(hour: int, key: str = "sys:x") -> Verdict:
        return notice(key, hour, [(1, 1), (2, 2), (3, 3)], "mv")

    hours, last = record(0, 0, told(T0))
    assert (hours, last) == (1, T0)
    assert record(hours, last, told(T0, "tpl:s:00ff")) == (1, T0)  # another key, same hour
    assert record(hours, last, told(T0 - HOUR_S)) == (1, T0)  # late
    hours, last = record(hours, last, told(T0 + 5 * HOUR_S))
    assert hours == 2
    assert record(hours, last, told(last + 2 * 86400)) == (1, last + 2 * 86400)
    assert not in_force(HOURS_TO_ACT - 1, T0, T0, CFG.verdict_ttl_s)
    assert in_force(HOURS_TO_ACT, T0, T0 + HOUR_S, CFG.verdict_ttl_s)
    assert not in_force(HOURS_TO_ACT, T0, T0 + HOUR_S + CFG.verdict_ttl_s, CFG.verdict_ttl_s)
