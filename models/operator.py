"""Operators' manual decisions: a person's block, throttle or allow of an account or of an
organisation (every account whose events carry its org_id), for a time.

An operator decides with `distillguard override` (streams/cli/override.py): the command
publishes the decision itself to the decisions topic (and, for an account, the enforcement
topic), so the gateway applies it at once, and writes it to the control topic, from which every
worker holds it in an `OperatorDecisions` (the edge calls `put`/`remove`). While it is in force
the detector makes no decision about the account (models/policy.py `decide`): a manual block is
not lifted by the evidence decaying, a manual allow is not overruled by the next verdict. When it
runs out, or is lifted, the detector decides afresh from the account's evidence.

Precedence (`OperatorDecisions.in_force`, then the policy): an operator's decision about the
account > an operator's decision about its organisation > an allowance (models/allowlist.py) >
the detector. The narrower operator decision wins because it is the more deliberate one: an
operator who blocks an organisation and then allows one of its accounts means that account.

Time: an operator decision holds from when it was written until `ts + ttl_s`, compared with the
event time the detector decides at (live, near the wall clock). No lower bound: a worker behind
its input must not undo a block written minutes after the events it is still deciding on.

Bounded: MAX_OPERATOR_DECISIONS entries (operators', not clients', data); when full, `put`
forgets those that ran out, and refuses if none has.

>>> held = OperatorDecisions()
>>> held.put(OperatorDecision("acct-1", "block", 3600, None, "ticket T-7", "alice", 1000.0))
True
>>> held.in_force("acct-1", 4599.0).action, held.in_force("acct-1", 4600.0)
('block', None)
>>> held.put(OperatorDecision("org-9", "throttle", 600, 5, "abuse I-2", "bob", 1000.0, ORG))
True
>>> held.in_force("acct-2", 1001.0, org_id="org-9").scope   # any account of org-9
'org'
>>> held.in_force("acct-1", 1001.0, org_id="org-9").action  # the account's own comes first
'block'
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from distillguard.models.decision import (
    ALLOW,
    BLOCK,
    ENFORCE,
    OPERATOR,
    OPERATOR_CODES,
    THROTTLE,
    Decision,
)

MAX_OPERATOR_DECISIONS = 100_000
# A manual action is for an incident, not for ever: at most 30 days (the allow-list is for an
# account verified for good; a block for good belongs to the gateway's own account controls).
MAX_OPERATOR_TTL_S = 30 * 86400
# Decision ids of manual decisions begin so: the policy tells an operator's action in force
# from the detector's by it (models/policy.py `decide`).
OPERATOR_ID_PREFIX = "dg-op-"
# What an operator decides about: one account, or every account of an organisation.
ACCOUNT, ORG = "account", "org"
SCOPES = (ACCOUNT, ORG)
# The decisions-topic key of an organisation's decision (streams/gate/table.py reads it so).
ORG_KEY_PREFIX = "org:"


@dataclass(frozen=True, slots=True)
class OperatorDecision:
    account_id: str  # the account's id; for scope ORG, the organisation's id (its org_id)
    action: str  # ALLOW, THROTTLE or BLOCK
    ttl_s: int  # how long it holds (for an allow: how long the detector stays silent)
    rate_limit_rpm: int | None  # for a throttle
    reason: str
    by: str  # the operator
    ts: float  # when it was written, by the writer's clock
    scope: str = ACCOUNT  # ACCOUNT or ORG

    @property
    def key(self) -> str:
        """Its key on the decisions topic: the account id, or `org:<org_id>`."""
        return self.account_id if self.scope == ACCOUNT else ORG_KEY_PREFIX + self.account_id

    @property
    def until(self) -> float:
        return self.ts + self.ttl_s

    @property
    def decision_id(self) -> str:
        """Stable: the same record read again (a restart) gives the same id."""
        text = "|".join([self.account_id, self.action, str(self.ttl_s),
                         str(self.rate_limit_rpm), self.by, repr(self.ts)])
        if self.scope != ACCOUNT:
            text = f"{self.scope}|{text}"
        return OPERATOR_ID_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:32]

    def describe(self) -> str:
        hours = self.ttl_s / 3600
        span = f"{hours:g} h" if hours >= 1 else f"{self.ttl_s / 60:g} min"
        verb = {ALLOW: "allowed", THROTTLE: "throttled", BLOCK: "blocked"}[self.action]
        rate = f" to {self.rate_limit_rpm}/min" if self.action == THROTTLE else ""
        whose = f" (organisation {self.account_id})" if self.scope == ORG else ""
        return f"{verb}{whose}{rate} by operator {self.by} for {span}: {self.reason}"

    def to_decision(self, model_version: str) -> Decision:
        """The enforcement record of this decision: enforced whatever the detector's mode (a
        person decided it); an allow carries no TTL (it lifts, as the contract says). An
        organisation's carries the org id as its account_id and goes under the key `org:<id>`
        (`key`), which the gate applies to checks naming that organisation."""
        return Decision(
            decision_id=self.decision_id,
            account_id=self.account_id,
            action=self.action,
            score=0.0 if self.action == ALLOW else 1.0,
            reasons=[self.describe()],
            event_ts=self.ts,
            ttl_s=None if self.action == ALLOW else self.ttl_s,
            rate_limit_rpm=self.rate_limit_rpm if self.action == THROTTLE else None,
            model_version=model_version,
            mode=ENFORCE,
            reason_codes=[OPERATOR_CODES[self.action]],
            source=OPERATOR,
            by=self.by,
        )


def revoked_decision(account_id: str, by: str, reason: str, ts: float,
                     model_version: str, scope: str = ACCOUNT) -> Decision:
    """The allow that ends an action before its time (`distillguard override lift`): the
    detector decides the account afresh from its next event. For scope ORG, `account_id` is the
    organisation's id."""
    text = "|".join([scope, account_id, "revoke", by, repr(ts)])
    return Decision(
        decision_id=OPERATOR_ID_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:32],
        account_id=account_id, action=ALLOW, score=0.0,
        reasons=[f"lifted by operator {by}: {reason}"], event_ts=ts, ttl_s=None,
        rate_limit_rpm=None, model_version=model_version, mode=ENFORCE,
        reason_codes=[OPERATOR_CODES[ALLOW]], source=OPERATOR, by=by)


def org_handover(account_id: str, manual: OperatorDecision, ts: float,
                 model_version: str) -> Decision:
    """The allow that lifts the detector's own action about an account of an organisation under
    an operator's decision (`manual`, scope ORG), so that the gate applies the organisation's
    decision to it (the stronger of the two answers would win otherwise)."""
    text = "|".join([account_id, "org-handover", manual.decision_id, repr(ts)])
    return Decision(
        decision_id=OPERATOR_ID_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:32],
        account_id=account_id, action=ALLOW, score=0.0,
        reasons=[f"the detector's action lifted: {manual.describe()}"], event_ts=ts,
        ttl_s=None, rate_limit_rpm=None, model_version=model_version, mode=ENFORCE,
        reason_codes=[OPERATOR_CODES[ALLOW]], source=OPERATOR, by=manual.by)


@dataclass(slots=True)
class OperatorDecisions:
    by_account: dict[str, OperatorDecision] = field(default_factory=dict)
    by_org: dict[str, OperatorDecision] = field(default_factory=dict)
    # When an operator lifted each account's action (`distillguard override lift`: the control
    # tombstone's record time): the gateway got an allow then, so an action the detector had
    # decided before it is no longer in force (models/policy.py `decide`). Newest last; bounded.
    lifted: dict[str, float] = field(default_factory=dict)

    def note_lift(self, account_id: str, ts: float) -> None:
        """An operator lifted the account's action at `ts` (the newest lift counts)."""
        self.lifted.pop(account_id, None)
        if len(self.lifted) >= MAX_OPERATOR_DECISIONS:
            del self.lifted[next(iter(self.lifted))]  # the oldest lift: long acted upon
        self.lifted[account_id] = ts

    def take_lift(self, account_id: str) -> float:
        """When an operator lifted the account's action (0.0: not since last asked), forgotten
        once asked: the account's next decision has acted on it (with traffic from the past a
        remembered lift would undo every later action whose event time is before it)."""
        return self.lifted.pop(account_id, 0.0) if self.lifted else 0.0

    def _table(self, scope: str) -> dict[str, OperatorDecision]:
        return self.by_org if scope == ORG else self.by_account

    def put(self, decision: OperatorDecision) -> bool:
        """Add or replace a decision; False when the table is full."""
        table = self._table(decision.scope)
        if decision.account_id not in table and len(self) >= MAX_OPERATOR_DECISIONS:
            # full: first forget those that ran out before this one was written
            for held in (self.by_account, self.by_org):
                for ended in [a for a, d in held.items() if d.until <= decision.ts]:
                    del held[ended]
            if len(self) >= MAX_OPERATOR_DECISIONS:
                return False
        table[decision.account_id] = decision
        return True

    def remove(self, id_: str, scope: str = ACCOUNT) -> bool:
        return self._table(scope).pop(id_, None) is not None

    def held(self, id_: str, scope: str = ACCOUNT) -> OperatorDecision | None:
        return self._table(scope).get(id_)

    def in_force(self, account_id: str, now_ts: float,
                 org_id: str = "") -> OperatorDecision | None:
        """The decision that holds for the account now: its own, else its organisation's."""
        if self.by_account:
            found = self.by_account.get(account_id)
            if found is not None and now_ts < found.until:
                return found
        if org_id and self.by_org:
            found = self.by_org.get(org_id)
            if found is not None and now_ts < found.until:
                return found
        return None  # the common case: nothing held at all

    def __len__(self) -> int:
        return len(self.by_account) + len(self.by_org)
