"""The gate's pure part: the decisions in force, their token buckets and expiry, and one check.

No I/O and no clock of its own: every call takes `now` (epoch seconds, the gate's wall clock),
so a test drives time by hand. The reader (reader.py) hands it the records of the decisions
topic; the server (server.py) asks it one check per request.

What a record of the decisions topic (key: account_id) means here:

- a tombstone (no value), an `allow`, or a throttle/block that has already expired when read
  (`ts + ttl_s <= now`): no action in force for the account; what the table held for it goes;
- a `throttle` or `block` in mode `enforce`: in force until `ts + ttl_s` by the gate's clock
  (`ttl_s` null: until a later record lifts it); a `ts` ahead of the gate's clock counts as now
  (a producer's clock gone wrong must not make a ten-minute block last for years); a throttle
  is a token bucket at the decision's `rate_limit_rpm`, holding `burst_s` seconds of its rate
  (at least one request); whole numbers may come as floats (600.0), as the contract's
  "integer" allows;
- mode `shadow`: never applied; kept aside so that the checks it would have denied are counted;
- a record the gate cannot read (not a JSON object, an unknown action, no rate on a throttle, an
  `account_id` that is not its key): counted and reported by the reader with where it was; as
  the newest record of its key it also ends what the table held for that key, since a gate
  started later would not see the older record either (compaction keeps the newest only).

A record keyed `org:<org_id>` (ORG_KEY_PREFIX) whose `account_id` is not that key is an
organisation's decision: it applies to a check that names that organisation (the gateway's
optional org header), beside the account's own; the stronger answer wins (block, then over
budget, then within budget, then allow). One whose `account_id` is the key is the decision of an
account named `org:...` (a legal account id), which applies to that account only. The two share
the key on the topic, so the newest record of the key replaces either.

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
# The longest Retry-After (a day): a 0 rpm throttle with a ttl_s of years is asked again daily.
MAX_RETRY_AFTER_S = 86_400
# A decision's ts this far ahead of the gate's clock is reported (its end counts from now).
TS_AHEAD_REPORTED_S = 60.0
# The longest decision id or reason code put in a response header (the contract's ids: 128).
MAX_HEADER_CHARS = 128
MAX_KEY_CHARS = 256  # an account id is at most 128 (the contract); org: and slack

MAX_SHARED_REASONS = 1024
ACTIONS_IN_FORCE = ("throttle", "block")
ACTION_NAMES = {a: a for a in ("allow", *ACTIONS_IN_FORCE)}  # the one copy of each name
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
        "capacity",
        "decision_id",
        "rate_per_s",
        "reason",
        "refilled_at",
        "standing",
        "tokens",
        "until",
    )

    def __init__(self, decision_id: str, action: str, until: float, reason: str,
                 rpm: int, burst_s: float, now: float) -> None:
        # Both go into response headers: printable ASCII only (a header cannot carry more).
        # The action is one of three strings: shared, not one copy per entry (the table shares
        # the reason codes likewise).
        decision_id, reason = header_safe(decision_id), header_safe(reason)
        self.decision_id = decision_id
        self.action = action = ACTION_NAMES.get(action, action)
        self.until = until
        self.reason = reason
        self.rate_per_s = rpm / 60.0
        # At least one request, so a throttle above 0 rpm always lets its first one through.
        self.capacity = max(1.0, self.rate_per_s * burst_s) if rpm > 0 else 0.0
        self.tokens = self.capacity
        self.refilled_at = now
        # The answer that does not change from check to check, built once: a block's, or a
        # throttle's within its budget.
        self.standing = Answer(403, "block", reason, decision_id) if action == "block" else \
            Answer(200, "within_budget", reason, decision_id)

    def take(self, now: float) -> Answer:
        """A throttled account's request: within its budget (a token taken) or over it."""
        if now > self.refilled_at:
            self.tokens = min(self.capacity,
                              self.tokens + (now - self.refilled_at) * self.rate_per_s)
            self.refilled_at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return self.standing
        if self.rate_per_s > 0:
            wait = (1.0 - self.tokens) / self.rate_per_s
        else:
            wait = math.inf
        wait = min(wait, self.until - now)
        retry = RETRY_AFTER_WITHOUT_END_S if math.isinf(wait) else \
            max(1, min(MAX_RETRY_AFTER_S, math.ceil(wait)))
        return Answer(429, "over_budget", self.reason, self.decision_id, retry)

    def answer(self, now: float) -> Answer:
        return self.standing if self.action == "block" else self.take(now)

    def same_decision(self, other: Entry) -> bool:
        """The same decision delivered again: id, action and rate alike (a producer that reused
        an id for another action or rate has made a new decision)."""
        return (self.decision_id == other.decision_id and self.action == other.action
                and self.rate_per_s == other.rate_per_s)


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

    def until(self, now: float) -> float:
        """When it ends by the gate's clock: `ts + ttl_s`, counted from `now` at the latest."""
        return math.inf if self.ttl_s is None else min(self.ts, now) + self.ttl_s


def header_safe(text: str) -> str:
    """`text` with anything but printable ASCII replaced by `?`, for a response header, and cut
    at MAX_HEADER_CHARS (a longer one would overflow the gateway's buffer for the check's
    response headers: nginx then answers 502, and the account gets 503 instead of its answer)."""
    text = text[:MAX_HEADER_CHARS]
    if text.isascii() and text.isprintable():
        return text
    return "".join(c if " " <= c <= "~" else "?" for c in text)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: Any, least: int) -> int | None:
    """`value` as a whole number >= least (600 and 600.0 alike, as JSON Schema's "integer"
    counts them), None when it is not one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= least else None
    if _number(value) and float(value).is_integer() and value >= least:
        return int(value)
    return None


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
    raw_ttl = value.get("ttl_s")
    ttl = None if raw_ttl is None else _whole(raw_ttl, 1)
    if raw_ttl is not None and ttl is None:
        raise DecisionError(f"ttl_s {raw_ttl!r} is neither null nor a whole number of seconds "
                            f">= 1")
    raw_rpm = value.get("rate_limit_rpm")
    rpm = _whole(raw_rpm, 0) if action == "throttle" else None
    if action == "throttle" and rpm is None:
        raise DecisionError(f"a throttle with rate_limit_rpm {raw_rpm!r} (a whole number >= 0)")
    mode = value.get("mode", "enforce")
    if mode not in ("enforce", "shadow"):
        raise DecisionError(f"mode {mode!r} is neither enforce nor shadow")
    codes = value.get("reason_codes")
    reason = codes[0] if isinstance(codes, list) and codes and isinstance(codes[0], str) \
        and codes[0] else UNSPECIFIED
    return Decision(decision_id, action, float(ts), ttl, rpm, mode, reason)


def is_org_record(key: str, value: Any) -> bool:
    """Is this record of key `org:...` an organisation's decision (its account_id is not the
    key), rather than the decision of an account whose id starts with `org:`?"""
    return key.startswith(ORG_KEY_PREFIX) and not (
        isinstance(value, Mapping) and value.get("account_id") == key)


class DecisionTable:
    """The decisions in force, by account id (`entries`) and by organisation id (`orgs`), and
    their checks.

    Bounded by the topic it is read from: one entry per key, as the compacted topic keeps one
    record per key, and an entry leaves at its end (`sweep`) or with the next record of its key.
    """

    def __init__(self, burst_s: float = DEFAULT_BURST_S) -> None:
        if burst_s < 0:
            raise ValueError("burst_s must be 0 or more")
        self.burst_s = burst_s
        self.entries: dict[str, Entry] = {}  # by account id
        self.shadow: dict[str, Entry] = {}
        self.orgs: dict[str, Entry] = {}  # by org id (the key without `org:`)
        self.org_shadow: dict[str, Entry] = {}
        self.has_orgs = False
        # (end, order, key, entry): the entries' ends, soonest first, for sweep(); an item whose
        # key has moved on to another entry is dropped when it comes up.
        self._ends: list[tuple[float, int, str, Entry]] = []
        self._order = 0
        self.applied: Counter[str] = Counter()  # records by what apply() did with them
        self.shadow_checks: Counter[str] = Counter()  # checks a shadow decision would have hit
        self.ts_ahead = 0  # records whose ts was ahead of the gate's clock (ends from now)
        # One copy of each reason code (a few dozen; capped, as a producer could send any)
        self._reasons: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.entries) + len(self.orgs)

    def in_force(self) -> Counter[str]:
        return Counter(e.action for held in (self.entries, self.orgs) for e in held.values())

    def shadow_in_force(self) -> int:
        return len(self.shadow) + len(self.org_shadow)

    # ---- records of the decisions topic ----------------------------------------------------
    def apply(self, key: str, value: Any, now: float) -> str:
        """One record of the decisions topic (`value`: its decoded JSON, None for a tombstone).

        Returns what it did: in_force, lifted, expired, shadow, or unreadable (the reader says
        why, from `parse_decision`, before calling `forget`)."""
        if value is None:
            return self._drop(key, LIFTED)
        decision = parse_decision(key, value)  # DecisionError: the caller reports and forgets
        if decision.ts > now + TS_AHEAD_REPORTED_S and decision.ttl_s is not None:
            self.ts_ahead += 1
        by_org = is_org_record(key, value)
        held, shadow, slot = (self.orgs, self.org_shadow, key[len(ORG_KEY_PREFIX):]) if by_org \
            else (self.entries, self.shadow, key)
        old = held.get(slot)
        self._clear(key)  # the newest record of the key replaces whatever kind it held
        if decision.action == "allow":
            self.applied[LIFTED] += 1
            return LIFTED
        until = decision.until(now)
        if until <= now:
            self.applied[EXPIRED] += 1
            return EXPIRED
        if by_org:
            self.has_orgs = True
        reason = self._reasons.get(decision.reason, decision.reason)
        if len(self._reasons) < MAX_SHARED_REASONS:
            self._reasons.setdefault(reason, reason)
        entry = Entry(decision.decision_id, decision.action, until, reason,
                      decision.rate_limit_rpm or 0, self.burst_s, now)
        if decision.mode == "shadow":
            shadow[slot] = entry
            self._remember_end(slot, entry)
            self.applied[SHADOW] += 1
            return SHADOW
        if old is not None and old.same_decision(entry):
            # The same decision delivered again (at-least-once): its bucket goes on as it was.
            old.until = entry.until
            entry = old
        elif old is not None and old.action == "throttle" and entry.action == "throttle":
            # A new throttle does not hand the account a fresh burst: it keeps what it had.
            refilled = min(old.capacity, old.tokens + max(0.0, now - old.refilled_at)
                           * old.rate_per_s)
            entry.tokens = min(entry.capacity, refilled)
        held[slot] = entry
        self._remember_end(slot, entry)
        self.applied[IN_FORCE] += 1
        return IN_FORCE

    def forget(self, key: str) -> str:
        """What the table held for `key` goes: its newest record could not be read."""
        return self._drop(key, UNREADABLE)

    def _drop(self, key: str, what: str) -> str:
        self._clear(key)
        self.applied[what] += 1
        return what

    def _clear(self, key: str) -> None:
        self.entries.pop(key, None)
        self.shadow.pop(key, None)
        if key.startswith(ORG_KEY_PREFIX):
            org = key[len(ORG_KEY_PREFIX):]
            self.orgs.pop(org, None)
            self.org_shadow.pop(org, None)

    def _held(self) -> tuple[dict[str, Entry], ...]:
        return (self.entries, self.shadow, self.orgs, self.org_shadow)

    def _remember_end(self, slot: str, entry: Entry) -> None:
        if math.isinf(entry.until):
            return
        self._order += 1
        heapq.heappush(self._ends, (entry.until, self._order, slot, entry))
        if len(self._ends) > 2 * sum(map(len, self._held())) + 1024:
            # Ends of entries replaced before they came up: rebuilt so they cannot pile up.
            self._ends = [(e.until, i, k, e) for i, (k, e) in enumerate(
                [item for held in self._held() for item in held.items()])
                if not math.isinf(e.until)]
            heapq.heapify(self._ends)

    def sweep(self, now: float) -> int:
        """Entries whose end has come leave the table; returns how many."""
        gone = 0
        while self._ends and self._ends[0][0] <= now:
            _, _, slot, entry = heapq.heappop(self._ends)
            if entry.until > now:
                continue  # its end moved on (the decision delivered again): pushed anew
            for held in self._held():
                if held.get(slot) is entry:
                    del held[slot]
                    gone += 1
        return gone

    # ---- checks ----------------------------------------------------------------------------
    def check(self, account: str, now: float, org: str = "") -> Answer:
        """The answer for one request of `account` (of organisation `org`, when given)."""
        answer = self._check_key(self.entries, account, now)
        if org and self.has_orgs:
            by_org = self._check_key(self.orgs, org, now)
            if SEVERITY[by_org.outcome] > SEVERITY[answer.outcome]:
                answer = by_org
        if self.shadow:
            self._count_shadow(account, now)
        return answer

    @staticmethod
    def _check_key(held: dict[str, Entry], slot: str, now: float) -> Answer:
        entry = held.get(slot)
        if entry is None:
            return ALLOWED
        if entry.until <= now:
            del held[slot]
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
