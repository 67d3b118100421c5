"""Labelled traffic from a `Scenario`: events in time order, one label per account, files.

`generate_events` builds every account's request times up front (a few floats per request)
and draws each request's payload only when the account's next request is due in the
time-ordered merge, so memory stays far below holding the events themselves.

>>> from distillguard.simulator.scenario import Scenario
>>> events = list(generate_events(Scenario.small()))
>>> all(a["ts"] <= b["ts"] for a, b in zip(events, events[1:]))
True
>>> {e["account_id"] for e in events} == {l["account_id"] for l in account_labels(Scenario.small())}
True
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .populations import Account
from .roster import GROUPS, LABELS, build_accounts, scenario_groups
from .scenario import Scenario


def merge_sources(accounts: list[Account], seed: int) -> Iterator[tuple[Account, dict[str, Any]]]:
    """Each account's requests in order, merged by (ts, account position), each with the
    account that sent it (a borrowed account's requests are its population's, not the owner's)."""
    heap = [(a.times[0], k, 0) for k, a in enumerate(accounts)]
    heapq.heapify(heap)
    heapreplace, heappop = heapq.heapreplace, heapq.heappop
    prefix = f"ev-{seed}-"
    n = 0
    while heap:
        ts, k, i = heap[0]
        a = accounts[k]
        event = a.pop.request(a, i, ts)
        event["event_id"] = prefix + str(n)
        n += 1
        i += 1
        times = a.times
        if i < len(times):
            heapreplace(heap, (times[i], k, i))
        else:
            heappop(heap)
            a.times = []  # done: free the schedule
            a.marks = None
        yield a, event


def merge_accounts(accounts: list[Account], seed: int) -> Iterator[dict[str, Any]]:
    """Each account's requests in order, merged by (ts, account position)."""
    for _, event in merge_sources(accounts, seed):
        yield event


def generate_events(scenario: Scenario) -> Iterator[dict[str, Any]]:
    """Request events conforming to request-event.schema.json, in nondecreasing `ts` order."""
    yield from merge_accounts(build_accounts(scenario), scenario.seed)


def labels_of(accounts: list[Account]) -> list[dict[str, Any]]:
    """One label per account that sends at least one request, sorted by account_id. An account
    another population also sent on (`Account.borrowed`: a stolen key) keeps its owner's label;
    the label says how many requests each such population sent on it (`also_sent_by`)."""
    labels: dict[str, dict[str, Any]] = {
        a.account_id: {"account_id": a.account_id, "label": a.label, "group": a.group}
        for a in accounts if not a.borrowed}
    for a in accounts:
        if a.borrowed:
            if a.account_id not in labels:
                raise ValueError(f"{a.group} sends on {a.account_id}, which no population owns")
            shared: dict[str, int] = labels[a.account_id].setdefault("also_sent_by", {})
            shared[a.group] = shared.get(a.group, 0) + len(a.times)
    return sorted(labels.values(), key=lambda r: r["account_id"])


def account_labels(scenario: Scenario) -> list[dict[str, Any]]:
    """One label per account that sends at least one request, sorted by account_id."""
    return labels_of(build_accounts(scenario))


def group_counts(accounts_by_group: Counter[str], events_by_group: Counter[str],
                 groups: tuple[str, ...] = GROUPS) -> dict[str, dict[str, Any]]:
    """Counts per group: every group of `groups`, and any other group with accounts."""
    shown = [g for g in GROUPS if g in groups or accounts_by_group[g]]
    return {g: {"label": LABELS[g], "accounts": accounts_by_group[g],
                "events": events_by_group[g]} for g in shown}


def write_files(scenario: Scenario, out_dir: Path) -> dict[str, dict[str, Any]]:
    """Write `out_dir/events.jsonl` and `out_dir/labels.jsonl`; return counts per group of the
    scenario: ``{group: {"label": "attack"|"benign", "accounts": int, "events": int}}`` (the
    accounts a group's labels name; the events its accounts sent, on borrowed ones too)."""
    import orjson  # only the file writer needs it

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    accounts = build_accounts(scenario)
    labels = labels_of(accounts)
    events_by_group: Counter[str] = Counter()
    dumps = orjson.dumps
    with open(out_dir / "events.jsonl", "wb", buffering=1 << 20) as f:
        batch: list[bytes] = []
        for a, event in merge_sources(accounts, scenario.seed):
            events_by_group[a.group] += 1
            batch.append(dumps(event))
            if len(batch) >= 4096:
                f.write(b"\n".join(batch) + b"\n")
                batch.clear()
        if batch:
            f.write(b"\n".join(batch) + b"\n")
    with open(out_dir / "labels.jsonl", "wb") as f:
        f.write(b"".join(dumps(label) + b"\n" for label in labels))
    return group_counts(Counter(label["group"] for label in labels), events_by_group,
                        scenario_groups(scenario))
