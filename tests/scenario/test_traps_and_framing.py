"""Benign crowds that share things honestly, and a few harvesters framing them: specifications.

Each honest crowd of the tuning families (simulator/families.py) is a trap a detector judging
keys instead of accounts falls into: a launch wave's tutorial, a campus lab behind its NAT, a
team's or a reseller's card, a CI fleet's system prompt, an open-source tool's prompts, an
enterprise's batches, researchers' benchmarks. Not one account of them may be blocked. And in a
framing family a handful of harvesting accounts copy one crowd's key (its tutorial, card, tool,
NAT, a course's exercises): the detector acts on them, and on no account of the crowd.

The runs are the tuning families at seed 1 and half their size (streams/offline/scenario_sets.py: the
held-out families and seeds are never run here, so that they stay held out). They hold the
floor; `distillguard evaluate` has the figures (docs/tuning.md, "Held-out evaluation").
"""

from __future__ import annotations

from functools import cache

import pytest

from distillguard.models.evaluation import Report
from distillguard.simulator.families import FAMILIES
from distillguard.streams.offline.scenario_sets import TUNING_FAMILIES, TUNING_SEEDS
from tests.scenario.reports import core_report

pytestmark = pytest.mark.slow

SEED = TUNING_SEEDS[0]
SCALE = 0.5

# Every honest crowd of a tuning family, and the family it is run in.
TRAPS = {
    "launch_wave": "launch", "campus_lab": "campus", "nat": "mixed", "enterprise": "mixed",
    "researchers": "mixed", "team_card": "teams", "reseller": "teams", "agent_fleet": "teams",
    "oss_tool": "frame_tool",
}
# Crowds of a course or an exam: many on accounts opened for it, sending its problems with
# reasoning, each looking like a campaign's account by its own requests until the session ends.
# Throttled, not blocked at these runs (docs/tuning.md: core 0.10's day, core 0.15's rotating
# crowds); elsewhere a MOOC's learners retrying at a machine's pace still are (held out: 3.8%).
SESSION_CROWDS = {"bootcamp": "bootcamp", "certification_exam": "exam_day",
                  "mooc": "mooc_deadline"}
# The framing families: the crowd whose key a few harvesters copy.
FRAMED = {"frame_tutorial": "launch_wave", "frame_card": "reseller", "frame_tool": "oss_tool",
          "frame_campus": "campus_lab", "frame_class": "classroom"}


@cache
def report(family: str) -> Report:
    assert family in TUNING_FAMILIES, f"{family} is not a tuning family: it must stay held out"
    return core_report(FAMILIES[family].scenario(SEED, SCALE))


@pytest.mark.parametrize("population, family", sorted({**TRAPS, **SESSION_CROWDS}.items()))
def test_no_account_of_an_honest_crowd_is_blocked(population: str, family: str) -> None:
    row = report(family).row(population)
    assert row.accounts > 0
    assert row.blocked_share == 0.0, row


@pytest.mark.xfail(strict=True, reason="what the detector cannot yet tell apart: a course's or an "
                   "exam's young crowd sending its problems with reasoning at a person's pace, "
                   "and a campaign's young accounts doing the same; throttled (the tuning set of "
                   "distillguard evaluate, core 0.15: bootcamp 97%, certification_exam 99.7%, "
                   "mooc 50% acted on)")
@pytest.mark.parametrize("population, family", sorted(SESSION_CROWDS.items()))
def test_a_session_crowd_is_rarely_throttled(population: str, family: str) -> None:
    assert report(family).row(population).acted_share <= 0.005


@pytest.mark.parametrize("family", sorted({*TRAPS.values(), *FRAMED}))
def test_benign_accounts_are_rarely_throttled(family: str) -> None:
    assert report(family).row("all benign").acted_share <= 0.005, report(family).row(
        "all benign")


@pytest.mark.parametrize("family, crowd", sorted(FRAMED.items()))
def test_harvesters_framing_a_crowd_get_no_account_of_it_acted_on(family: str,
                                                                   crowd: str) -> None:
    r = report(family)
    assert r.row(crowd).acted_share == 0.0, r.row(crowd)
    assert r.row("all benign").acted_share == 0.0, r.row("all benign")


# The framing families where the harvesters are acted on themselves. (At this size a card's or a
# tool's framers are 3-6 accounts, too few to make a crowd of their own templates: they harvest
# unseen, and nobody is acted on for them: docs/tuning.md.)
@pytest.mark.parametrize("family", ["frame_tutorial", "frame_campus"])
def test_harvesters_framing_a_crowd_are_acted_on(family: str) -> None:
    attackers = report(family).row("campaign_framing")
    assert attackers.acted_share >= 0.7, attackers
