"""The gate's pure part: the decisions in force, their token buckets and expiry, and one check.

No I/O and no clock of its own: every call takes `now` (epoch seconds, the gate's wall clock),
so a test drives time by hand. The reader (reader.py) hands it the records of the decisions
topic; the server (server.py) asks it one check per request.

What a record of the decisions topic (key: account_id) means here:

- a tombstone (no value), an `allow`, or a throttle/block that has already expired when read
  (`ts + ttl_s <= now`): no action in force for the account; what the table held for it goes;
- a `throttle` or `block` in mode `enforce`: in force until `ts + ttl_s` by the gate's clock
  (`ttl_s` null: until a later record lifts it); a throttle is a token bucket at the decision's
  `rate_limit_rpm`, holding `burst_s` seconds of its rate (at least one request);
- mode `shadow`: never applied; kept aside so that the checks it would have denied are counted;
- a record the gate cannot read (not a JSON object, an unknown action, no rate on a throttle, an
  `account_id` that is not its key): counted and reported by the reader with where it was; as
  the newest record of its key it also ends what the table held for that key, since a gate
  started later would not see the older record either (compaction keeps the newest only).

A record keyed `org:<org_id>` (ORG_KEY_PREFIX) is an organisation's decision: it applies to a
check that names that organisation (the gateway's optional org header), beside the account's
own; the stronger answer wins (block, then over budget, then within budget, then allow).

    >>> table = DecisionTable(burst_s=0)
    >>> table.apply("acct-1", {"decision_id": "d1", "ts": 1000, "account_id": "acct-1",
    ...     "action": "throttle", "ttl_s": 600, "rate_limit_rpm": 60, "mode": "enforce",
    ...     "reason_codes": ["cluster_template"]}, now=1000)
    'in_force'
    >>> table.check("acct-1", now=1000).status, table.check("acct-1", now=1000).status
    (200, 429)
    >>> table.check("acct-1", now=1001).status    # one request a second
    200
    >>> table.check("acct-1", now=1600).outcome   # expired at ts + ttl_s
    'allow'
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# A record's key for an organisation's decision (the rest of the key is the org_id).
ORG_KEY_PREFIX = "org:"
# The reason code of a decision that carries none (records older than reason codes).
UNSPECIFIED = "unspecified"
# How many seconds of its rate a throttled account may spend at once (its bucket's size).
DEFAULT_BURST_S = 10.0
# Retry-After for a throttle at 0 requests/minute with no end: the client asks again in a minute.
RETRY_AFTER_WITHOUT_END_S = 60
MAX_KEY_CHARS = 256  # an account id is at most 128 (the contract); org: and slack

ACTIONS_IN_FORCE = ("throttle", "block")
FAIL_MODES = ("open", "closed")

# What apply() did with a record.
IN_FORCE, LIFTED, EXPIRED, SHADOW, UNREADABLE = "in_force", "lifted", "expired", "shadow", \
    "unreadable"


@dataclass(frozen=True, slots=True)
class Answer:
    """The answer to one check.

    status: 200 serve it; 403 blocked; 429 throttled and over its budget (retry_after_s says
    when the next request fits); 503 the gate cannot tell (fail mode closed).
    outcome: allow | within_budget | over_budget | block | unavailable."""

    status: int
    outcome: str
    reason: str = ""  # the decision's strongest reason code (or why the gate cannot tell)
    decision_id: str = ""
    retry_after_s: int = 0
    degraded: str = ""  # not_ready | broker_lost when the gate answers without being current


ALLOWED = Answer(200, "allow")
# Severity of an outcome, for the stronger of an account's and its organisation's answers.
SEVERITY = {"allow": 0, "within_budget": 1, "over_budget": 2, "block": 3, "unavailable": 4}


class DecisionError(ValueError):
    """A record of the decisions topic the gate cannot apply; the message says why."""


class Entry:
    """One decision in force (or in shadow): its action, end, and a throttle's bucket."""

    __slots__ = (
        "action",
        "blocked",
        "capacity",
        "decision_id",
        "rate_per_s",
        "reason",
        "refilled_at",
        "tokens",
        "until",
        "within",
    )

    def __init__(self, decision_id: str, action: str, until: float, reason: str,
                 rpm: int, burst_s: float, now: float) -> None:
        # Both go into response headers: printable ASCII only (a header cannot carry more).
        decision_id, reason = header_safe(decision_id), header_safe(reason)
        self.decision_id = decision_id
        self.action = action
        self.until = until
        self.reason = reason
        self.rate_per_s = rpm / 60.0
        # At least one request, so a throttle above 0 rpm always lets its first one through.
        self.capacity = max(1.0, self.rate_per_s * burst_s) if rpm > 0 else 0.0
        self.tokens = self.capacity
        self.refilled_at = now
        # The answers that do not change from check to check, built once.
        self.blocked = Answer(403, "block", reason, decision_id)
        self.within = Answer(200, "within_budget", reason, decision_id)

    def take(self, now: float) -> Answer:
        """A throttled account's request: within its budget (a token taken) or over it."""
        if now > self.refilled_at:
            self.tokens = min(self.capacity,
                              self.tokens + (now - self.refilled_at) * self.rate_per_s)
            self.refilled_at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return self.within
        if self.rate_per_s > 0:
            wait = (1.0 - self.tokens) / self.rate_per_s
        else:
            wait = math.inf
        wait = min(wait, self.until - now)
        retry = RETRY_AFTER_WITHOUT_END_S if math.isinf(wait) else max(1, math.ceil(wait))
        return Answer(429, "over_budget", self.reason, self.decision_id, retry)

    def answer(self, now: float) -> Answer:
        return self.blocked if self.action == "block" else self.take(now)


@dataclass(frozen=True, slots=True)
class Decision:
    """The fields of a decision record the gate uses."""

    decision_id: str
    action: str
    ts: float
    ttl_s: int | None
    rate_limit_rpm: int | None
    mode: str
    reason: str

    @property
    def until(self) -> float:
        return math.inf if self.ttl_s is None else self.ts + self.ttl_s


def header_safe(text: str) -> str:
    """`text` with anything but printable ASCII replaced by `?`, for a response header."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(c if " " <= c <= "~" else "?" for c in text)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_decision(key: str, value: Any) -> Decision:
    """A decision record's value (decoded JSON) as the gate uses it; DecisionError otherwise."""
    if not isinstance(value, Mapping):
        raise DecisionError(f"not a JSON object but {type(value).__name__}")
    action = value.get("action")
    if action not in ("allow", "throttle", "block"):
        raise DecisionError(f"action {action!r} is not allow, throttle or block")
    decision_id = value.get("decision_id")
    if not isinstance(decision_id, str) or not decision_id:
        raise DecisionError("no decision_id")
    account = value.get("account_id")
    if not key.startswith(ORG_KEY_PREFIX) and account is not None and account != key:
        raise DecisionError(f"account_id {str(account)[:140]!r} is not the record's key")
    ts = value.get("ts")
    if not _number(ts) or ts < 0:
        raise DecisionError(f"ts {ts!r} is not a time in epoch seconds")
    ttl = value.get("ttl_s")
    if ttl is not None and (not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 1):
        raise DecisionError(f"ttl_s {ttl!r} is neither null nor a whole number of seconds >= 1")
    rpm = value.get("rate_limit_rpm")
    if action == "throttle" and (not isinstance(rpm, int) or isinstance(rpm, bool) or rpm < 0):
        raise DecisionError(f"a throttle with rate_limit_rpm {rpm!r} (a whole number >= 0)")
    mode = value.get("mode", "enforce")
    if mode not in ("enforce", "shadow"):
        raise DecisionError(f"mode {mode!r} is neither enforce nor shadow")
    codes = value.get("reason_codes")
    reason = codes[0] if isinstance(codes, list) and codes and isinstance(codes[0], str) \
        and codes[0] else UNSPECIFIED
    return Decision(decision_id, action, float(ts), ttl, rpm if action == "throttle" else None,
                    mode, reason)


class DecisionTable:
    """The decisions in force, by key (an account id, or `org:<org_id>`), and their checks.

    Bounded by the topic it is read from: one entry per key, as the compacted topic keeps one
    record per key, and an entry leaves at its end (`sweep`) or with the next record of its key.
    """

    def __init__(self, burst_s: float = DEFAULT_BURST_S) -> None:
        if burst_s < 0:
            raise ValueError("burst_s must be 0 or more")
        self.burst_s = burst_s
        self.entries: dict[str, Entry] = {}
        self.shadow: dict[str, Entry] = {}
        self.has_orgs = False
        # (end, order, key): the entries' ends, soonest first, for sweep(); an item whose key
        # has moved on to another entry is dropped when it comes up.
        self._ends: list[tuple[float, int, str, Entry]] = []
        self._order = 0
        self.applied: Counter[str] = Counter()  # records by what apply() did with them
        self.shadow_checks: Counter[str] = Counter()  # checks a shadow decision would have hit

    def __len__(self) -> int:
        return len(self.entries)

    def in_force(self) -> Counter[str]:
        return Counter(e.action for e in self.entries.values())

    # ---- records of the decisions topic ----------------------------------------------------
    def apply(self, key: str, value: Any, now: float) -> str:
        """One record of the decisions topic (`value`: its decoded JSON, None for a tombstone).

        Returns what it did: in_force, lifted, expired, shadow, or unreadable (the reader says
        why, from `parse_decision`, before calling `forget`)."""
        if value is None:
            return self._drop(key, LIFTED)
        decision = parse_decision(key, value)  # DecisionError: the caller reports and forgets
        if key.startswith(ORG_KEY_PREFIX):
            self.has_orgs = True
        self.shadow.pop(key, None)
        if decision.action == "allow":
            return self._drop(key, LIFTED)
        if decision.until <= now:
            return self._drop(key, EXPIRED)
        entry = Entry(decision.decision_id, decision.action, decision.until, decision.reason,
                      decision.rate_limit_rpm or 0, self.burst_s, now)
        if decision.mode == "shadow":
            self.entries.pop(key, None)
            self.shadow[key] = entry
            self._remember_end(key, entry)
            self.applied[SHADOW] += 1
            return SHADOW
        old = self.entries.get(key)
        if old is not None and old.decision_id == entry.decision_id:
            # The same decision delivered again (at-least-once): its bucket goes on as it was.
            old.until = entry.until
        else:
            if old is not None and old.action == "throttle" and entry.action == "throttle":
                # A new throttle does not hand the account a fresh burst: it keeps what it had.
                refilled = min(old.capacity, old.tokens + max(0.0, now - old.refilled_at)
                               * old.rate_per_s)
                entry.tokens = min(entry.capacity, refilled)
            self.entries[key] = entry
            self._remember_end(key, entry)
        self.applied[IN_FORCE] += 1
        return IN_FORCE

    def forget(self, key: str) -> str:
        """What the table held for `key` goes: its newest record could not be read."""
        self.shadow.pop(key, None)
        return self._drop(key, UNREADABLE)

    def _drop(self, key: str, what: str) -> str:
        self.entries.pop(key, None)
        self.shadow.pop(key, None)
        self.applied[what] += 1
        return what

    def _remember_end(self, key: str, entry: Entry) -> None:
        if math.isinf(entry.until):
            return
        self._order += 1
        heapq.heappush(self._ends, (entry.until, self._order, key, entry))
        if len(self._ends) > 2 * (len(self.entries) + len(self.shadow)) + 1024:
            # Ends of entries replaced before they came up: rebuilt so they cannot pile up.
            self._ends = [(e.until, i, k, e) for i, (k, e) in enumerate(
                [*self.entries.items(), *self.shadow.items()]) if not math.isinf(e.until)]
            heapq.heapify(self._ends)

    def sweep(self, now: float) -> int:
        """Entries whose end has come leave the table; returns how many."""
        gone = 0
        while self._ends and self._ends[0][0] <= now:
            _, _, key, entry = heapq.heappop(self._ends)
            for held in (self.entries, self.shadow):
                if held.get(key) is entry:
                    del held[key]
                    gone += 1
        return gone

    # ---- checks ----------------------------------------------------------------------------
    def check(self, account: str, now: float, org: str = "") -> Answer:
        """The answer for one request of `account` (of organisation `org`, when given)."""
        answer = self._check_key(account, now)
        if org and self.has_orgs:
            by_org = self._check_key(ORG_KEY_PREFIX + org, now)
            if SEVERITY[by_org.outcome] > SEVERITY[answer.outcome]:
                answer = by_org
        if self.shadow:
            self._count_shadow(account, now)
        return answer

    def _check_key(self, key: str, now: float) -> Answer:
        entry = self.entries.get(key)
        if entry is None:
            return ALLOWED
        if entry.until <= now:
            del self.entries[key]
            return ALLOWED
        return entry.answer(now)

    def _count_shadow(self, account: str, now: float) -> None:
        entry = self.shadow.get(account)
        if entry is not None and entry.until > now:
            self.shadow_checks[entry.action] += 1


class Gate:
    """The table with what the gate knows of itself: has it caught up, does it reach the
    broker, and what to answer when either is not so (the fail mode).

    fail mode `open`: answer from what the table holds (accounts whose decisions were already
    read are still throttled and blocked; the others are served), marked degraded; `closed`:
    answer 503 for every request until the gate is current again."""

    def __init__(self, table: DecisionTable, fail_mode: str = "open") -> None:
        if fail_mode not in FAIL_MODES:
            raise ValueError(f"fail mode {fail_mode!r}: open or closed")
        self.table = table
        self.fail_mode = fail_mode
        self.caught_up = False
        self.broker_lost = False
        self.checks: Counter[str] = Counter()  # by outcome
        self.no_account = 0

    @property
    def current(self) -> bool:
        return self.caught_up and not self.broker_lost

    @property
    def degraded(self) -> str:
        if not self.caught_up:
            return "not_ready"
        return "broker_lost" if self.broker_lost else ""

    def check(self, account: str, now: float, org: str = "") -> Answer:
        """One request: `account` is the gateway's account header ("" when it sent none)."""
        if not self.current:
            answer = self._degraded(account, now, org)
        elif not account:
            # A gateway that names no account is misconfigured: the fail mode decides.
            self.no_account += 1
            answer = ALLOWED if self.fail_mode == "open" else \
                Answer(503, "unavailable", "no_account")
        else:
            answer = self.table.check(account, now, org)
        self.checks[answer.outcome] += 1
        return answer

    def _degraded(self, account: str, now: float, org: str) -> Answer:
        why = self.degraded
        if self.fail_mode == "closed":
            return Answer(503, "unavailable", f"gate_{why}", degraded=why)
        if not account:
            self.no_account += 1
            return Answer(200, "allow", degraded=why)
        a = self.table.check(account, now, org)
        return Answer(a.status, a.outcome, a.reason, a.decision_id, a.retry_after_s, why)
