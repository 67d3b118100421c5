"""`streams.cli.watch.LiveView`: counts and renders the latest decisions, on a controlled clock."""

from __future__ import annotations

from typing import Any

from distillguard.streams.cli.watch import LiveView

HEADER_LINES = 5  # title, totals, accounts, blank, column heads


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def record(account: str, action: str, score: float = 0.9, reason: str = "evidence") -> dict[str, Any]:
    return {"decision_id": f"dg-{account}-{action}", "account_id": account, "action": action,
            "score": score, "reasons": [f"score {score:.2f} -> {action}", reason]}


def test_counts_decisions_and_accounts_by_latest_action() -> None:
    clock = Clock()
    view = LiveView(clock=clock)
    view.add(record("a", "throttle"))
    view.add(record("a", "block"))  # a escalated: now blocked, not throttled
    view.add(record("b", "throttle"))
    view.add(record("c", "block"))
    view.add(record("c", "allow"))  # c lifted
    assert view.counts == {"throttle": 2, "block": 2, "allow": 1}
    assert view.accounts == {"a": "block", "b": "throttle", "c": "allow"}
    clock.now += 2.0
    text = view.render()
    assert "decisions 5 (2.5/s)" in text
    assert "block 2" in text and "throttle 2" in text and "allow 1" in text
    assert "accounts now blocked 1, throttled 1" in text
    line = view.status_line("lag 0")
    assert "decisions 5" in line and "blocked 1, throttled 1" in line and line.endswith("| lag 0")


def test_latest_decisions_newest_first_with_their_evidence() -> None:
    view = LiveView(latest=3, clock=Clock())
    for i in range(5):
        view.add(record(f"acct-{i}", "throttle", score=0.5 + i / 10, reason=f"cluster tpl:{i}"))
    rows = view.render().splitlines()[HEADER_LINES:]
    assert len(rows) == 3
    assert [r.split()[1] for r in rows] == ["acct-4", "acct-3", "acct-2"]
    assert "0.90" in rows[0] and "cluster tpl:4" in rows[0]
    assert rows[0].startswith("THROTTLE")


def test_render_is_bounded_however_many_decisions_arrive() -> None:
    clock = Clock()
    view = LiveView(latest=12, clock=clock)
    for i in range(5000):
        view.add(record(f"account-with-a-very-long-identifier-{i}", ["block", "throttle"][i % 2],
                        reason="x" * 500))
        clock.now += 0.01
    lines = view.render(status="partition lag 3").splitlines()
    assert len(lines) <= HEADER_LINES + 12
    assert max(len(line) for line in lines) <= 160  # long ids and reasons are cut
    assert "decisions 5,000" in lines[1]
    assert "partition lag 3" in lines[2]


def test_rate_uses_the_injected_clock_only() -> None:
    clock = Clock(50.0)
    view = LiveView(clock=clock)
    view.add(record("a", "block"))
    clock.now = 60.0
    assert "decisions 1 (0.1/s)" in view.render()
    assert view.last_decision_at == 50.0


def test_empty_view_renders() -> None:
    text = LiveView(clock=Clock()).render(title="watching")
    lines = text.splitlines()
    assert lines[0] == "watching" and len(lines) == HEADER_LINES
    assert "decisions 0 (0.0/s)" in text


def test_record_with_a_single_reason_or_unknown_action() -> None:
    view = LiveView(clock=Clock())
    view.add({"account_id": "z", "action": "block", "score": 1.0, "reasons": ["only one"]})
    view.add({"account_id": "y", "action": "quarantine", "score": 0.1, "reasons": ["odd"]})
    rows = view.render().splitlines()[HEADER_LINES:]
    assert "odd" in rows[0] and rows[0].startswith("?")
    assert "only one" in rows[1]
