"""Operators' manual decisions: a person's block, throttle or allow of one account, for a time.

An operator decides about an account with `distillguard decide` (streams/cli/decide.py): the
command publishes the decision itself to the enforcement and decisions topics, so the gateway
applies it at once, and writes it to the control topic, from which every worker holds it in an
`OperatorDecisions` (the edge calls `put`/`remove`). While it is in force the detector makes no
decision about the account (models/policy.py `decide`): a manual block is not lifted by the
evidence decaying, a manual allow is not overruled by the next verdict. When it runs out, or is
revoked, the detector decides afresh from the account's evidence.

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


@dataclass(frozen=True, slots=True)
class OperatorDecision:
    account_id: str
    action: str  # ALLOW, THROTTLE or BLOCK
    ttl_s: int  # how long it holds (for an allow: how long the detector stays silent)
    rate_limit_rpm: int | None  # for a throttle
    reason: str
    by: str  # the operator
    ts: float  # when it was written, by the writer's clock

    @property
    def until(self) -> float:
        return self.ts + self.ttl_s

    @property
    def decision_id(self) -> str:
        """Stable: the same record read again (a restart) gives the same id."""
        text = "|".join([self.account_id, self.action, str(self.ttl_s),
                         str(self.rate_limit_rpm), self.by, repr(self.ts)])
        return OPERATOR_ID_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:32]

    def describe(self) -> str:
        hours = self.ttl_s / 3600
        span = f"{hours:g} h" if hours >= 1 else f"{self.ttl_s / 60:g} min"
        verb = {ALLOW: "allowed", THROTTLE: "throttled", BLOCK: "blocked"}[self.action]
        rate = f" to {self.rate_limit_rpm}/min" if self.action == THROTTLE else ""
        return f"{verb}{rate} by operator {self.by} for {span}: {self.reason}"

    def to_decision(self, model_version: str) -> Decision:
        """The enforcement record of this decision: enforced whatever the detector's mode (a
        person decided it); an allow carries no TTL (it lifts, as the contract says)."""
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
                     model_version: str) -> Decision:
    """The allow that ends an operator's decision before its time: the detector decides the
    account afresh from its next event."""
    text = "|".join([account_id, "revoke", by, repr(ts)])
    return Decision(
        decision_id=OPERATOR_ID_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:32],
        account_id=account_id, action=ALLOW, score=0.0,
        reasons=[f"operator decision revoked by {by}: {reason}"], event_ts=ts, ttl_s=None,
        rate_limit_rpm=None, model_version=model_version, mode=ENFORCE,
        reason_codes=[OPERATOR_CODES[ALLOW]], source=OPERATOR, by=by)


@dataclass(slots=True)
class OperatorDecisions:
    by_account: dict[str, OperatorDecision] = field(default_factory=dict)

    def put(self, decision: OperatorDecision) -> bool:
        """Add or replace an account's decision; False when the table is full."""
        if (decision.account_id not in self.by_account
                and len(self.by_account) >= MAX_OPERATOR_DECISIONS):
            # full: first forget those that ran out before this one was written
            for ended in [a for a, d in self.by_account.items() if d.until <= decision.ts]:
                del self.by_account[ended]
            if len(self.by_account) >= MAX_OPERATOR_DECISIONS:
                return False
        self.by_account[decision.account_id] = decision
        return True

    def remove(self, account_id: str) -> bool:
        return self.by_account.pop(account_id, None) is not None

    def in_force(self, account_id: str, now_ts: float) -> OperatorDecision | None:
        if not self.by_account:
            return None  # the common case
        found = self.by_account.get(account_id)
        return found if found is not None and now_ts < found.until else None

    def __len__(self) -> int:
        return len(self.by_account)
