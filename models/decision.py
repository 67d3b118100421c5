"""Enforcement decisions as the gateway reads them (`enforcement-decision.schema.json`).

A decision's id is derived from what it rests on (account, action, the evidence ids and the
model version), never from processing time, so a restart or a replay yields the same id and the
gateway can drop duplicates.

>>> decision_id("a", "block", ["v1", "w300"], "mv") == decision_id("a", "block", ["w300", "v1"], "mv")
True
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Final

from distillguard.models.keys import ASN_CLIENT, IP, PAYMENT, SYSTEM_PROMPT, TEMPLATE

# The actions, as the contract spells them; compare against these names, never bare strings.
ALLOW: Final = "allow"
THROTTLE: Final = "throttle"
BLOCK: Final = "block"
ACTIONS = (ALLOW, THROTTLE, BLOCK)
STRENGTH = {ALLOW: 0, THROTTLE: 1, BLOCK: 2}

# A decision's mode (the contract's `mode`).
ENFORCE: Final = "enforce"
SHADOW: Final = "shadow"

# Who made a decision (the contract's `source`).
DETECTOR: Final = "detector"
OPERATOR: Final = "operator"

# Machine-readable reasons (the contract's `reason_codes`), beside the prose of `reasons`; a
# gateway or a dashboard groups and filters on these, never on the prose.
CLUSTER_CODES: dict[str, str] = {PAYMENT: "cluster_payment", IP: "cluster_network",
                                 SYSTEM_PROMPT: "cluster_system_prompt",
                                 ASN_CLIENT: "cluster_asn_client",
                                 TEMPLATE: "cluster_template"}  # by kind of key
REPLACEMENT_ACCOUNT: Final = "replacement_account"
ACCOUNT_HARVEST: Final = "account_harvest"
ACCOUNT_ANOMALY: Final = "account_anomaly"
HELD_AT_THROTTLE: Final = "held_at_throttle"
RELEASED: Final = "released"
ALLOW_LISTED: Final = "allow_listed"
OPERATOR_CODES: dict[str, str] = {ALLOW: "operator_allow", THROTTLE: "operator_throttle",
                                  BLOCK: "operator_block"}  # by action
REASON_CODES = (*CLUSTER_CODES.values(), REPLACEMENT_ACCOUNT, ACCOUNT_HARVEST, ACCOUNT_ANOMALY,
                HELD_AT_THROTTLE, RELEASED, ALLOW_LISTED, *OPERATOR_CODES.values())


def decision_id(account_id: str, action: str, basis: list[str], model_version: str,
                mode: str = "enforce") -> str:
    """Stable id from the decision's basis; the order of `basis` does not matter.

    The mode is part of it: a shadow decision and the enforced one that follows a switch to
    enforcing must not look like duplicates to the gateway.
    """
    text = "|".join([account_id, action, model_version, mode, *sorted(basis)])
    return "dg-" + hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Decision:
    decision_id: str
    account_id: str
    action: str
    score: float
    reasons: list[str]
    event_ts: float
    ttl_s: int | None
    rate_limit_rpm: int | None
    model_version: str
    mode: str
    cluster_ids: list[str] = field(default_factory=list)
    reason_codes: list[str] = field(default_factory=list)  # strongest first, each once
    source: str = DETECTOR
    by: str | None = None  # the operator, for a decision whose source is OPERATOR

    def to_record(self, processed_ts: float) -> dict[str, Any]:
        """The contract's JSON object; `processed_ts` is the edge's wall clock."""
        return {
            "decision_id": self.decision_id,
            "ts": processed_ts,
            "event_ts": self.event_ts,
            "account_id": self.account_id,
            "action": self.action,
            "ttl_s": self.ttl_s,
            "rate_limit_rpm": self.rate_limit_rpm,
            "score": self.score,
            "reasons": self.reasons,
            "reason_codes": self.reason_codes,
            "source": self.source,
            "by": self.by,
            "cluster_ids": self.cluster_ids,
            "model_version": self.model_version,
            "mode": self.mode,
        }
