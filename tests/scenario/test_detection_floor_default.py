"""The floor under the README's figures on the default scenario itself (seed 7, six hours).

The quarter-size scenario of test_detection_floor.py is too small and too short for the
stealthy campaign (20 accounts, two hours: its template crowds never reach the size a cluster
is judged at), so its floor is held here, on the traffic of the README's table (~35 s).
Measured on it (2026-12-06, core 0.7): stealth 97.5% of accounts acted on, 32% of its
requests served before action; hydra 99.5% acted on, 13% served before action; burst and cot
100% acted on, 1.3% and 3.7% before; no benign account acted on. (Core 0.6 had stealth at 9.1%
and hydra at 6.6% before action, by acting on a young account's first prompt of a template a
crowd of three young accounts had sent: the rule that blocked whole launch waves elsewhere.)
"""

from __future__ import annotations

import pytest

from distillguard.models.evaluation import Report
from distillguard.simulator import Scenario
from tests.scenario.reports import core_report

pytestmark = pytest.mark.slow

SCENARIO = Scenario.default()  # seed 7


@pytest.fixture(scope="module")
def report() -> Report:
    return core_report(SCENARIO)


@pytest.mark.parametrize("campaign, least_acted, most_before", [
    ("campaign_burst", 0.99, 0.05),
    ("campaign_cot", 0.99, 0.05),
    ("campaign_hydra", 0.99, 0.15),
    ("campaign_stealth", 0.95, 0.35),
])
def test_campaigns_are_acted_on_before_they_harvest(report: Report, campaign: str,
                                                    least_acted: float,
                                                    most_before: float) -> None:
    row = report.row(campaign)
    assert row.acted_share >= least_acted, row
    assert row.served_before_action_share <= most_before, row


def test_no_benign_account_is_acted_on(report: Report) -> None:
    assert report.row("all benign").acted_share == 0.0, report.row("all benign")
