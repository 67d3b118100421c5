"""The baselines the evaluation compares against: what they act on, on explicit traffic."""

from __future__ import annotations

from distillguard.models.baselines import Baselines
from distillguard.models.config import DetectorConfig
from tests.conftest import make_event

T0 = 1_767_225_600.0
LABELS = {"fast": ("attack", "scripted"), "slow": ("benign", "person")}


def feed(b: Baselines, account: str, times: list[float]) -> None:
    for i, ts in enumerate(times):
        b.observe(make_event(account, ts, n=i))


def test_rate_limit_cuts_an_account_over_the_limit_for_the_rest_of_the_minute() -> None:
    b = Baselines(LABELS, DetectorConfig(), limit_per_min=5)
    feed(b, "fast", [T0 + i for i in range(12)])  # 12 requests in one minute
    feed(b, "slow", [T0 + 30 * i for i in range(12)])  # 2 per minute
    report = b.rate_limit.report()
    fast, slow = report.row("scripted"), report.row("person")
    assert fast.acted_share == 1.0 and slow.acted_share == 0.0
    assert fast.requests == 12 and fast.denied_requests == 12 - 5  # 5 served, the rest refused
    assert slow.denied_requests == 0


def test_rate_limit_resets_with_the_minute() -> None:
    b = Baselines(LABELS, DetectorConfig(), limit_per_min=5)
    feed(b, "fast", [T0 + i for i in range(6)] + [T0 + 60 + i for i in range(5)])
    row = b.rate_limit.report().row("scripted")
    assert row.denied_requests == 1  # the 6th of the first minute only


def test_both_baselines_report_the_same_populations() -> None:
    b = Baselines(LABELS, DetectorConfig())
    feed(b, "fast", [T0 + i for i in range(3)])
    feed(b, "slow", [T0 + 5])
    reports = b.reports()
    assert len(reports) == 2
    for report in reports.values():
        assert {r.group for r in report.rows} >= {"scripted", "person"}
