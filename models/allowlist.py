"""Verified organisations and accounts that the detector never acts on.

Operators grant an allowance to an organisation (`org_id`) or an account (`account_id`): from the
settings (the edge builds an `AllowList` at start) or, while the fleet runs, from the control
topic (the edge calls `grant`/`revoke`). The policy (models/policy.py `decide`) consults it
before any action: an allowed account gets no throttle or block, and one under an action when
its allowance arrives is lifted at its next decision, with the allowance as the reason.

Bounded: MAX_ALLOWANCES entries (operators', not clients', data; past it `grant` refuses).

>>> allow = AllowList()
>>> allow.grant(Allowance("org", "org-1", "verified customer", "settings"))
True
>>> allow.lookup("acct-9", "org-1").reason, allow.lookup("acct-9", "org-2")
('verified customer', None)
"""

from __future__ import annotations

from dataclasses import dataclass, field

SCOPES = ("org", "account")
SOURCES = ("settings", "control")
MAX_ALLOWANCES = 100_000


@dataclass(frozen=True, slots=True)
class Allowance:
    scope: str  # "org" or "account"
    id: str
    reason: str
    source: str  # "settings" or "control"
    by: str = ""  # who granted it, when known

    def describe(self) -> str:
        who = f" by {self.by}" if self.by else ""
        return f"allow-listed {self.scope} {self.id} ({self.source}{who}): {self.reason}"

    @property
    def basis(self) -> str:
        """What a decision that lifts an action for this allowance rests on (its id)."""
        return f"allow:{self.scope}:{self.id}:{self.source}"


@dataclass(slots=True)
class AllowList:
    orgs: dict[str, Allowance] = field(default_factory=dict)
    accounts: dict[str, Allowance] = field(default_factory=dict)

    def grant(self, allowance: Allowance) -> bool:
        """Add or replace an allowance; False when the list is full."""
        table = self._table(allowance.scope)
        if allowance.id not in table and len(self) >= MAX_ALLOWANCES:
            return False
        table[allowance.id] = allowance
        return True

    def revoke(self, scope: str, id_: str) -> bool:
        return self._table(scope).pop(id_, None) is not None

    def lookup(self, account_id: str, org_id: str | None) -> Allowance | None:
        """The account's own allowance, else its organisation's, else None."""
        if not self.orgs and not self.accounts:
            return None  # the common case
        found = self.accounts.get(account_id)
        if found is None and org_id:
            found = self.orgs.get(org_id)
        return found

    def _table(self, scope: str) -> dict[str, Allowance]:
        if scope == "org":
            return self.orgs
        if scope == "account":
            return self.accounts
        raise ValueError(f"allowance scope must be one of {SCOPES}, got {scope!r}")

    def __len__(self) -> int:
        return len(self.orgs) + len(self.accounts)
