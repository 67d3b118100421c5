"""What the status page shows, kept in bounded memory: pure aggregates, no I/O, no clock of its own.

`StatusBoard` is fed the records of the enforcement topic (`add_decision`) and of the dead-letter
topic (`add_dead_letter`), and the workers' `/health` answers (`set_worker`); `snapshot()` is the
JSON the page draws. Every collection has a cap, since the service reads the topics from their
start and may run for days: what a cap pushes out is counted (`evicted`), never dropped without a
trace, and the page shows those counts.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from distillguard.streams.worker.dead_letter_log import reason_kind

ACTIONS = ("block", "throttle", "allow")


@dataclass(frozen=True)
class Caps:
    """How much the board keeps; each cap bounds one collection."""

    latest: int = 50  # latest decisions shown
    accounts: int = 200_000  # accounts whose current action is known (the "now blocked" counts)
    clusters: int = 2_000  # clusters under action followed
    cluster_accounts: int = 1_000  # distinct accounts counted exactly per cluster
    top_clusters: int = 12  # clusters the page lists
    bins: int = 1_440  # time bins per series (10 s bins: 4 h of processing time)
    dead_letter_kinds: int = 200  # kinds of dead-letter reasons followed
    fleet_history: int = 360  # lag samples per worker (one per poll: ~12 min at 2 s)
    errors: int = 20  # recent problems listed
    seen_ids: int = 100_000  # recent decision ids and dead-lettered sources, to drop repeats


# Decisions per bin of processing time (the `ts` the worker stamped) and of event time
# (`event_ts`). Processing time is what an operator watches now; event time is when the traffic
# behind the decisions happened, which is what a replay or a fast demo stretches apart.
PROCESSING_BIN_S = 10
EVENT_BIN_S = 60


def _cap_text(text: Any, limit: int = 300) -> str:
    s = str(text)
    return s if len(s) <= limit else s[:limit - 1] + "…"


@dataclass
class ClusterStat:
    """One cluster named by decisions that acted (throttle or block)."""

    decisions: Counter[str] = field(default_factory=Counter)
    accounts: set[str] = field(default_factory=set)
    accounts_beyond_cap: int = 0  # decisions on accounts past the cap (counted, not named)
    evidence: str = ""
    last_ts: float = 0.0
    last_account: str = ""


class TimeBins:
    """Counts per action in fixed-width time bins, at most `cap` bins: the oldest go first."""

    def __init__(self, width_s: int, cap: int) -> None:
        self.width_s = width_s
        self.cap = cap
        self.bins: dict[int, Counter[str]] = {}
        self.evicted_decisions = 0  # decisions in bins pushed out by the cap

    def add(self, ts: float, action: str) -> None:
        start = int(ts // self.width_s) * self.width_s
        self.bins.setdefault(start, Counter())[action] += 1
        while len(self.bins) > self.cap:
            oldest = min(self.bins)
            self.evicted_decisions += sum(self.bins.pop(oldest).values())

    def series(self) -> dict[str, Any]:
        starts = sorted(self.bins)
        return {"bin_s": self.width_s, "start": starts,
                "counts": {a: [self.bins[s][a] for s in starts] for a in ACTIONS},
                "evicted_decisions": self.evicted_decisions}


class StatusBoard:
    def __init__(self, caps: Caps = Caps(), clock: Callable[[], float] = time.time) -> None:
        self.caps = caps
        self.clock = clock
        self.started = clock()
        self.totals: Counter[str] = Counter()  # decisions by action (and "not_a_decision")
        self.modes: Counter[str] = Counter()  # enforce / shadow
        self.by_processing_time = TimeBins(PROCESSING_BIN_S, caps.bins)
        self.by_event_time = TimeBins(EVENT_BIN_S, caps.bins)
        # The latest decisions by their `ts`, not by when they were read: a backlog is read a
        # partition at a time, so the last records read are not the newest. A min-heap of the
        # newest `caps.latest` (the oldest of them on top, pushed out by a newer one).
        self.latest: list[tuple[float, int, dict[str, Any]]] = []
        self._seq = itertools.count()
        # account -> its latest action, least recently decided first (moved to the end on each
        # decision), so the cap pushes out the accounts nobody decided on for longest.
        # The action with the time it runs out (ts + ttl_s; None: no end, as for allow): the
        # gateway applies a decision until its TTL, so an expired block is no longer "now".
        self.accounts: OrderedDict[str, tuple[str, float | None]] = OrderedDict()
        self.clusters: dict[str, ClusterStat] = {}
        self.dead_letters: dict[str, dict[str, Any]] = {}
        self.dead_letters_total = 0
        self.unreadable: Counter[str] = Counter()  # records that are not JSON, by topic role
        self.evicted: Counter[str] = Counter()  # what the caps pushed out, by collection
        self.last_decision_ts: float | None = None
        self.last_dead_letter_ts: float | None = None
        self.fleet: dict[str, dict[str, Any]] = {}
        self.fleet_lag: dict[str, deque[tuple[float, int | None]]] = {}
        self.problems: dict[str, str] = {}  # what is wrong now, by source (the page's banner)
        self.errors: deque[dict[str, Any]] = deque(maxlen=caps.errors)  # recent, resolved too
        self.topics: dict[str, dict[str, Any]] = {}  # role -> name, records read, end offsets
        # Delivery is at least once: a worker that processed records and lost its partitions
        # before it committed (a rebalance) processes them again, and writes the same decision
        # (the same decision_id, the contract says) or the same dead letter (the same source
        # offset) twice. Counted once, the repeats shown apart. Bounded: a repeat of an id
        # older than the last `caps.seen_ids` counts as new.
        self.seen: dict[str, OrderedDict[str, None]] = {"decisions": OrderedDict(),
                                                         "dead_letters": OrderedDict()}
        self.duplicates: Counter[str] = Counter()

    # ---- the enforcement topic -------------------------------------------------------------
    def add_decision(self, record: Any) -> None:
        """One record of the enforcement topic, decoded. A value that is not a contract decision
        is counted under `not_a_decision`, so the totals always add up to the records read."""
        action = record.get("action") if isinstance(record, dict) else None
        account = record.get("account_id") if isinstance(record, dict) else None
        if action not in ACTIONS or not isinstance(account, str):
            self.totals["not_a_decision"] += 1
            return
        assert isinstance(record, dict)
        if self._repeat("decisions", record.get("decision_id")):
            return
        self.totals[action] += 1
        self.modes[str(record.get("mode", "?"))] += 1
        ts = _number(record.get("ts"))
        event_ts = _number(record.get("event_ts"))
        if ts is not None:
            self.by_processing_time.add(ts, action)
            self.last_decision_ts = ts if self.last_decision_ts is None \
                else max(self.last_decision_ts, ts)
        if event_ts is not None:
            self.by_event_time.add(event_ts, action)
        reasons = [str(r) for r in record.get("reasons") or []]
        clusters = [str(c) for c in record.get("cluster_ids") or []]
        entry = {
            "ts": ts, "event_ts": event_ts, "account_id": _cap_text(account, 128),
            "action": action, "score": _number(record.get("score")),
            "mode": record.get("mode"), "ttl_s": record.get("ttl_s"),
            # the first reason is the summary ("score 0.93 -> block"); the next the evidence
            "reason": _cap_text(reasons[1] if len(reasons) > 1 else (reasons or [""])[0]),
            "cluster_ids": [_cap_text(c, 80) for c in clusters[:4]],
        }
        item = (ts if ts is not None else 0.0, next(self._seq), entry)
        if len(self.latest) < self.caps.latest:
            heapq.heappush(self.latest, item)
        else:
            heapq.heappushpop(self.latest, item)
        # Each account's decisions are on one partition (the key is the account), so the order
        # read is the order decided: the last one read is the account's action now.
        self.accounts.pop(account, None)
        ttl = _number(record.get("ttl_s"))
        self.accounts[account] = (action, ts + ttl if ts is not None and ttl else None)
        while len(self.accounts) > self.caps.accounts:
            self.accounts.popitem(last=False)
            self.evicted["accounts"] += 1
        if action != "allow":
            for i, cluster in enumerate(clusters):
                self._add_cluster(cluster, account, action, ts or 0.0,
                                  _evidence(cluster, i, reasons))

    def _repeat(self, kind: str, key: Any) -> bool:
        """True when `key` was seen (among the recent ones); remembers it otherwise."""
        if not isinstance(key, str) or not key:
            return False  # nothing to recognise it by: counted
        seen = self.seen[kind]
        if key in seen:
            self.duplicates[kind] += 1
            return True
        seen[key] = None
        if len(seen) > self.caps.seen_ids:
            seen.popitem(last=False)
        return False

    def _add_cluster(self, cluster: str, account: str, action: str, ts: float,
                     evidence: str) -> None:
        stat = self.clusters.get(cluster)
        if stat is None:
            if len(self.clusters) >= self.caps.clusters:
                # The cluster with the fewest accounts goes, the oldest among equals: the page
                # lists the largest clusters, which a cap must not push out.
                smallest = min(self.clusters,
                               key=lambda k: (len(self.clusters[k].accounts),
                                              self.clusters[k].last_ts))
                del self.clusters[smallest]
                self.evicted["clusters"] += 1
            stat = self.clusters[cluster] = ClusterStat()
        stat.decisions[action] += 1
        if account in stat.accounts or len(stat.accounts) < self.caps.cluster_accounts:
            stat.accounts.add(account)
        else:
            stat.accounts_beyond_cap += 1
        if evidence:
            stat.evidence = evidence
        stat.last_ts = max(stat.last_ts, ts)
        stat.last_account = account

    # ---- the dead-letter topic -------------------------------------------------------------
    def add_dead_letter(self, record: Any) -> None:
        """One record of the dead-letter topic (streams/edge/codec.py `dead_letter_record`)."""
        if isinstance(record, dict) and isinstance(record.get("source_offset"), int) \
                and record["source_offset"] >= 0 and self._repeat(
                    "dead_letters", f"{record.get('source_topic')}|"
                                    f"{record.get('source_partition')}|{record['source_offset']}"):
            return
        self.dead_letters_total += 1
        reason = record.get("reason") if isinstance(record, dict) else None
        if not isinstance(reason, str) or not reason:
            reason = "(a dead-letter record without a reason)"
        # Counted by kind (the reason with its numbers taken out), as the workers' log counts
        # them: "86100 s past" and "86200 s past" are one kind.
        kind = reason_kind(reason)
        entry = self.dead_letters.get(kind)
        if entry is None:
            if len(self.dead_letters) >= self.caps.dead_letter_kinds:
                kind = "(other kinds: more than the page follows)"
                entry = self.dead_letters.get(kind)
            if entry is None:
                entry = self.dead_letters[kind] = {"kind": kind, "count": 0}
        entry["count"] += 1
        entry["example"] = _cap_text(reason)
        if isinstance(record, dict):
            entry["source"] = (f"{record.get('source_topic')}[{record.get('source_partition')}]"
                               f"@{record.get('source_offset')}")
            ts = _number(record.get("ts"))
            if ts is not None:
                entry["last_ts"] = ts
                self.last_dead_letter_ts = ts if self.last_dead_letter_ts is None \
                    else max(self.last_dead_letter_ts, ts)

    def add_unreadable(self, role: str) -> None:
        """A record whose value is not JSON (or is empty): counted, shown, not lost."""
        self.unreadable[role] += 1

    # ---- the fleet -------------------------------------------------------------------------
    def set_worker(self, url: str, health: dict[str, Any] | None, error: str | None = None,
                   status: str = "unreachable") -> None:
        """A worker's /health answer (also a 503's body), or the error when it did not answer
        (`status`: `unreachable`, or `waiting` for one that may still be starting)."""
        now = self.clock()
        if health is None:
            self.fleet[url] = {"url": url, "status": status, "error": error,
                               "checked_ts": now}
            lag = None
        else:
            parts = health.get("partitions") or []
            lag = health.get("lag_total")
            self.fleet[url] = {
                "url": url, "status": health.get("status", "?"), "pid": health.get("pid"),
                "uptime_s": health.get("uptime_s"), "lag": lag,
                "partitions": _partitions_by_topic(parts),
                "events": health.get("events_processed_total"),
                "commits": health.get("commits"), "rss_bytes": health.get("rss_bytes"),
                "last_commit_age_s": health.get("last_commit_age_s"),
                "dead_letters": health.get("dead_letters_total"),
                "late_verdicts": (health.get("alignment") or {}).get("late_verdicts"),
                "checked_ts": now,
            }
        history = self.fleet_lag.setdefault(url, deque(maxlen=self.caps.fleet_history))
        history.append((now, lag if isinstance(lag, int) else None))

    # ---- problems (the banner) -------------------------------------------------------------
    def problem(self, source: str, message: str | None) -> bool:
        """Set (a message) or clear (None) what is wrong with `source`; True when it changed,
        so the caller logs each problem once, not at every retry."""
        before = self.problems.get(source)
        if message is None:
            self.problems.pop(source, None)
            if before is not None:
                self.errors.append({"ts": self.clock(), "source": source,
                                    "message": f"resolved: {before}"})
            return before is not None
        self.problems[source] = message
        if before != message:
            self.errors.append({"ts": self.clock(), "source": source, "message": message})
        return before != message

    # ---- the page's JSON -------------------------------------------------------------------
    def top_clusters(self) -> list[dict[str, Any]]:
        ranked = sorted(self.clusters.items(),
                        key=lambda kv: (-(len(kv[1].accounts) + kv[1].accounts_beyond_cap),
                                        -kv[1].last_ts, kv[0]))
        return [{"cluster_id": _cap_text(k, 120),
                 "accounts": len(s.accounts),
                 "accounts_beyond_cap": s.accounts_beyond_cap,
                 "block": s.decisions["block"], "throttle": s.decisions["throttle"],
                 "evidence": s.evidence, "last_ts": s.last_ts,
                 "last_account": _cap_text(s.last_account, 128)}
                for k, s in ranked[:self.caps.top_clusters]]

    def snapshot(self) -> dict[str, Any]:
        now = self.clock()
        now_actions = Counter(action for action, until in self.accounts.values()
                              if until is None or until > now)
        decisions = sum(self.totals[a] for a in ACTIONS)
        return {
            "now": now,
            "started": self.started,
            "problems": [{"source": k, "message": v} for k, v in sorted(self.problems.items())],
            "errors": list(self.errors),
            "topics": self.topics,
            "decisions": {
                "total": decisions,
                "by_action": {a: self.totals[a] for a in ACTIONS},
                "not_a_decision": self.totals["not_a_decision"],
                "by_mode": dict(self.modes),
                "last_ts": self.last_decision_ts,
                "accounts_now": {a: now_actions[a] for a in ACTIONS},
                "accounts_known": len(self.accounts),
            },
            "by_processing_time": self.by_processing_time.series(),
            "by_event_time": self.by_event_time.series(),
            "latest": [e for _, _, e in sorted(self.latest, key=lambda x: (-x[0], -x[1]))],
            "clusters": {"followed": len(self.clusters), "top": self.top_clusters()},
            "dead_letters": {
                "total": self.dead_letters_total,
                "last_ts": self.last_dead_letter_ts,
                "by_reason": sorted(self.dead_letters.values(), key=lambda e: -e["count"]),
            },
            "unreadable": dict(self.unreadable),
            "duplicates": {k: self.duplicates[k] for k in self.seen},
            "evicted": {**self.evicted,
                        "processing_bins_decisions": self.by_processing_time.evicted_decisions,
                        "event_bins_decisions": self.by_event_time.evicted_decisions},
            "fleet": {
                "workers": [self.fleet[u] for u in sorted(self.fleet)],
                "lag_history": {u: [[round(t, 1), lag] for t, lag in h]
                                for u, h in sorted(self.fleet_lag.items())},
            },
        }


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else None


def _partitions_by_topic(parts: Any) -> dict[str, list[int]]:
    """A worker's assigned source partitions by topic, as `/health` lists them one by one."""
    out: dict[str, list[int]] = {}
    for p in parts if isinstance(parts, list) else []:
        if isinstance(p, dict) and isinstance(p.get("partition"), int):
            out.setdefault(str(p.get("topic")), []).append(p["partition"])
    return {t: sorted(ps) for t, ps in sorted(out.items())}


def _evidence(cluster: str, index: int, reasons: list[str]) -> str:
    """The reason about `cluster`: one that names it, else the one in its place (the core puts
    each cluster's verdict reason after the summary, in the order of `cluster_ids`)."""
    for r in reasons:
        if cluster in r:
            return _cap_text(r)
    if len(reasons) > index + 1:
        return _cap_text(reasons[index + 1])
    return _cap_text(reasons[0]) if reasons else ""
