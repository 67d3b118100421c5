"""End to end on fixed-seed traffic: the detector's quality must not fall below a floor.

The full evaluation (`distillguard evaluate`) is in the README; this is a smaller scenario with
the same populations, fast enough for every test run, with a floor a little under what the
detector achieves on it, so a regression fails CI. Measured on it (core 0.7): burst, cot and
hydra 100/100/97.5% acted on, served 10.6/30/39% (at a quarter of their size and two hours,
their crowds form slowly, and core 0.7 waits for an account's own harvest where core 0.6 took
a young account's first templated prompt for enough), no benign account acted on. Core 0.9:
burst served 17.7% (its accounts share a template and a datacenter network but most no card,
and a block on those waits for a session or a machine's pace of twenty requests: a few minutes
at the throttle's 2 a minute first; docs/tuning.md "A block waits for a session"), so its floor
is 0.20 where it was 0.15; hydra served 57.9% (acted on 97.5%, served before action 33.6%):
its accounts without a card, each with a few requests in a crowd not yet proven to harvest
for long in two hours, are held at the throttle until their block, so its floor is 0.60 where
it was 0.50. Core 0.18: burst served 25.3% (acted on 100%, served before action 10.5% as
before, median 5.6 min to action), since a machine's pace blocks at sixty requests instead of
twenty, half an hour at the throttle's 2 a minute (a MOOC's learners and an exam's candidates
send up to ~50 at that pace; docs/tuning.md "A machine's pace at 60 requests"), so its floor is
0.30. The price of not blocking honest crowds that share content, measured.
"""

from __future__ import annotations

import dataclasses

import pytest

from distillguard.models.evaluation import Report
from distillguard.simulator import Scenario
from tests.scenario.reports import core_report

pytestmark = pytest.mark.slow

SCENARIO = dataclasses.replace(Scenario.default(), scale=0.25, duration_h=2.0, seed=11)


@pytest.fixture(scope="module")
def report() -> Report:
    return core_report(SCENARIO)


@pytest.mark.parametrize("campaign", ["campaign_burst", "campaign_cot", "campaign_hydra"])
def test_campaign_accounts_are_acted_on(report: Report, campaign: str) -> None:
    row = report.row(campaign)
    assert row.acted_share >= 0.95, row
    assert row.median_minutes_to_action is not None and row.median_minutes_to_action <= 15, row


@pytest.mark.parametrize("campaign, most_served", [("campaign_burst", 0.30),
                                                   ("campaign_cot", 0.40),
                                                   ("campaign_hydra", 0.60)])
def test_campaigns_harvest_little(report: Report, campaign: str, most_served: float) -> None:
    assert report.row(campaign).served_share <= most_served, report.row(campaign)


@pytest.mark.parametrize("population", ["ordinary", "enterprise", "nat", "launch_wave",
                                        "researchers"])
def test_no_benign_account_is_blocked(report: Report, population: str) -> None:
    assert report.row(population).blocked_share == 0.0, report.row(population)


def test_benign_accounts_are_rarely_throttled(report: Report) -> None:
    assert report.row("all benign").acted_share <= 0.005, report.row("all benign")
