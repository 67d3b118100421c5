"""The floor under the README's figures on the default scenario itself (seed 7, six hours).

The quarter-size scenario of test_detection_floor.py is too small and too short for the
stealthy campaign (20 accounts, two hours: its template crowds never reach the size a cluster
is judged at), so its floor is held here, on the traffic of the README's table (~35 s).
Measured on it (2026-11-26, core 0.6, template buckets scored from 3 accounts): stealth 100%
of accounts acted on, 9.1% of its requests served before action (the issue's target is 10%),
11.9% in all; hydra 100% acted on, 6.6% served before action; no benign account acted on.
"""

from __future__ import annotations

import pytest

from models.evaluation import Report
from simulator import Scenario
from tests.scenario.reports import core_report

pytestmark = pytest.mark.slow

SCENARIO = Scenario.default()  # seed 7


@pytest.fixture(scope="module")
def report() -> Report:
    return core_report(SCENARIO)


@pytest.mark.parametrize("campaign, least_acted, most_before", [
    ("campaign_burst", 0.99, 0.05),
    ("campaign_cot", 0.99, 0.05),
    ("campaign_hydra", 0.99, 0.10),
    ("campaign_stealth", 0.95, 0.10),
])
def test_campaigns_are_acted_on_before_they_harvest(report: Report, campaign: str,
                                                    least_acted: float,
                                                    most_before: float) -> None:
    row = report.row(campaign)
    assert row.acted_share >= least_acted, row
    assert row.served_before_action_share <= most_before, row


def test_no_benign_account_is_acted_on(report: Report) -> None:
    assert report.row("all benign").acted_share == 0.0, report.row("all benign")
