"""The records the stages pass to each other, as plain values with a wire form.

- `ClusterSummary`: account stage -> cluster stage (key: cluster key). What one account did
  under one cluster key in one window, or that it just joined the key (`kind="join"`).
- `AccountVerdict`: cluster stage -> account stage (key: account id). A convicted cluster's
  verdict, re-keyed to each member account.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass
from typing import Any

from models.account import Verdict


@dataclass(frozen=True, slots=True)
class ClusterSummary:
    cluster_key: str
    account_id: str
    kind: str  # "join" (first sight of the key, sent at once) or "window" (a closed window)
    window_start: int
    event_ts: float  # newest event time the summary rests on
    requests: int
    reasoning: int
    high_value: int
    completion_tokens: int
    young: bool
    account_first_ts: float

    def to_wire(self) -> list[Any]:
        return list(astuple(self))

    @classmethod
    def from_wire(cls, w: list[Any]) -> ClusterSummary:
        if not isinstance(w, list) or len(w) != 11:
            raise ValueError("cluster summary must be a list of 11 fields")
        return cls(*w)


@dataclass(frozen=True, slots=True)
class AccountVerdict:
    account_id: str
    verdict: Verdict

    def to_wire(self) -> list[Any]:
        return [self.account_id, self.verdict.to_wire()]

    @classmethod
    def from_wire(cls, w: list[Any]) -> AccountVerdict:
        if not isinstance(w, list) or len(w) != 2:
            raise ValueError("account verdict must be a list of 2 fields")
        return cls(w[0], Verdict.from_wire(w[1]))
