"""Scoring decisions against labels, the way the gateway would have applied them.

Feed it events in event-time order and decisions as they are made (`observe_event`,
`observe_decision`). A decision takes effect from its `event_ts` on: a blocked request is
not served; a throttled one is served while the account is within `rate_limit_rpm` requests in
the current minute. Per population (the label's `group`) and overall it reports:

- accounts acted on (throttled or blocked) and blocked, as shares of the population;
- median simulated minutes from an account's first request to its first action;
- the share of the population's requests served before the account's first action (what a
  campaign got before the detector reacted), and the share served in all, the throttle allowance
  after the first action included (what it harvested);
- for benign populations the same numbers read as harm: accounts hit, requests denied.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from distillguard.models.config import DetectorConfig
from distillguard.models.decision import ALLOW, BLOCK, Decision
from distillguard.models.events import RequestEvent
from distillguard.models.pipeline import Pipeline


@dataclass(slots=True)
class _Account:
    label: str
    group: str
    requests: int = 0
    served: int = 0
    served_before_action: int = 0
    first_ts: float | None = None
    first_action_ts: float | None = None
    blocked: bool = False
    # Enforcement in force: action, until (event time), rpm, minute bucket, requests in it.
    action: str = ALLOW
    until: float = 0.0
    rpm: int = 0
    minute: int = -1
    in_minute: int = 0


@dataclass(frozen=True, slots=True)
class GroupRow:
    group: str
    label: str
    accounts: int
    acted_share: float
    blocked_share: float
    median_minutes_to_action: float | None
    requests: int
    served_before_action_share: float  # served while the account had not been acted on yet
    served_share: float  # all served, throttle allowance included: the harvest
    denied_requests: int


@dataclass(slots=True)
class Report:
    rows: list[GroupRow] = field(default_factory=list)
    unlabelled_accounts: int = 0

    def row(self, group: str) -> GroupRow:
        return next(r for r in self.rows if r.group == group)

    def to_dict(self) -> dict[str, Any]:
        return {"rows": [_row_dict(r) for r in self.rows],
                "unlabelled_accounts": self.unlabelled_accounts}


def _row_dict(r: GroupRow) -> dict[str, Any]:
    return {f: getattr(r, f) for f in GroupRow.__slots__}


class Evaluation:
    def __init__(self, labels: dict[str, tuple[str, str]]) -> None:
        """`labels`: account id -> (label, group)."""
        self.accounts = {a: _Account(label=lab, group=grp) for a, (lab, grp) in labels.items()}
        self.unlabelled: set[str] = set()

    def observe_event(self, account_id: str, ts: float) -> bool:
        """Record a request; return whether the gateway would have served it."""
        acc = self.accounts.get(account_id)
        if acc is None:
            self.unlabelled.add(account_id)
            return True
        acc.requests += 1
        if acc.first_ts is None:
            acc.first_ts = ts
        served = True
        if acc.action != ALLOW and ts < acc.until:
            if acc.action == BLOCK:
                served = False
            else:
                minute = int(ts // 60)
                if minute != acc.minute:
                    acc.minute, acc.in_minute = minute, 0
                acc.in_minute += 1
                served = acc.in_minute <= acc.rpm
        acc.served += served
        # Before the first action only: a throttle's allowance is served after it.
        acc.served_before_action += served and acc.first_action_ts is None
        return served

    def observe_decision(self, account_id: str, action: str, event_ts: float,
                         ttl_s: int | None, rate_limit_rpm: int | None) -> None:
        acc = self.accounts.get(account_id)
        if acc is None:
            self.unlabelled.add(account_id)
            return
        acc.action = action
        acc.until = event_ts + (ttl_s or 0)
        acc.rpm = rate_limit_rpm or 0
        acc.minute, acc.in_minute = -1, 0
        if action != ALLOW and acc.first_action_ts is None:
            acc.first_action_ts = event_ts
        if action == BLOCK:
            acc.blocked = True

    def report(self) -> Report:
        groups: dict[tuple[str, str], list[_Account]] = {}
        for acc in self.accounts.values():
            if acc.requests:
                groups.setdefault((acc.label, acc.group), []).append(acc)
        rows = [self._row(group, label, accs) for (label, group), accs in sorted(groups.items())]
        for label in ("attack", "benign"):
            accs = [a for a in self.accounts.values() if a.label == label and a.requests]
            if accs:
                rows.append(self._row(f"all {label}", label, accs))
        return Report(rows=rows, unlabelled_accounts=len(self.unlabelled))

    @staticmethod
    def _row(group: str, label: str, accs: list[_Account]) -> GroupRow:
        n = len(accs)
        acted = [a for a in accs if a.first_action_ts is not None]
        minutes = [(a.first_action_ts - a.first_ts) / 60 for a in acted
                   if a.first_ts is not None and a.first_action_ts is not None]
        requests = sum(a.requests for a in accs)
        served = sum(a.served for a in accs)
        before = sum(a.served_before_action for a in accs)
        return GroupRow(
            group=group, label=label, accounts=n, acted_share=len(acted) / n,
            blocked_share=sum(a.blocked for a in accs) / n,
            median_minutes_to_action=max(0.0, statistics.median(minutes)) if minutes else None,
            requests=requests,
            served_before_action_share=before / requests if requests else 1.0,
            served_share=served / requests if requests else 1.0,
            denied_requests=requests - served)


def render(report: Report) -> str:
    """The report as a fixed-width table for a terminal."""
    head = (f"{'population':<20} {'label':<7} {'accounts':>8} {'acted':>7} {'blocked':>8} "
            f"{'median min':>10} {'requests':>9} {'before':>7} {'served':>7} {'denied':>7}")
    lines = [head, "-" * len(head)]
    for r in report.rows:
        if r.group.startswith("all "):
            lines.append("-" * len(head))
        med = "-" if r.median_minutes_to_action is None else f"{r.median_minutes_to_action:.1f}"
        lines.append(f"{r.group:<20} {r.label:<7} {r.accounts:>8} {r.acted_share:>7.1%} "
                     f"{r.blocked_share:>8.1%} {med:>10} {r.requests:>9} "
                     f"{r.served_before_action_share:>7.1%} {r.served_share:>7.1%} "
                     f"{r.denied_requests:>7}")
    if report.unlabelled_accounts:
        lines.append(f"({report.unlabelled_accounts} accounts in the events had no label)")
    return "\n".join(lines)


def evaluate_recorded(events: list[tuple[str, float]], decisions: list[dict[str, Any]],
                      labels: dict[str, tuple[str, str]]) -> Report:
    """Score decisions recorded from a live run against the events that led to them.

    `events` are (account_id, ts); a decision applies to the account's requests after its
    `event_ts` (the request it was made on was already served), as in replay.
    """
    evaluation = Evaluation(labels)
    ordered = sorted(decisions, key=lambda d: (d["event_ts"], d["account_id"]))
    i = 0
    for account_id, ts in sorted(events, key=lambda e: e[1]):
        while i < len(ordered) and ordered[i]["event_ts"] < ts:
            d = ordered[i]
            evaluation.observe_decision(d["account_id"], d["action"], d["event_ts"],
                                        d.get("ttl_s"), d.get("rate_limit_rpm"))
            i += 1
        evaluation.observe_event(account_id, ts)
    return evaluation.report()


def evaluate_core(events: Iterable[RequestEvent], labels: dict[str, tuple[str, str]],
                  cfg: DetectorConfig,
                  on_decision: Callable[[Decision], None] | None = None) -> Report:
    """Run the core over `events` (in event-time order) and score its decisions as they come,
    as a replay does (`streams.offline.replay` adds files, sinks, progress and baselines);
    `on_decision` sees each decision too (the demo compares their ids with the live fleet's)."""
    evaluation = Evaluation(labels)
    pipeline = Pipeline(cfg)
    for ev in events:
        evaluation.observe_event(ev.account_id, ev.ts)
        for d in pipeline.process(ev):
            if on_decision is not None:
                on_decision(d)
            evaluation.observe_decision(d.account_id, d.action, d.event_ts, d.ttl_s,
                                        d.rate_limit_rpm)
    return evaluation.report()
