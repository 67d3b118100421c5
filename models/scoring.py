"""Explainable evidence: cluster features -> a score in [0, 1] with reasons an analyst can read.

The score is a weighted mix of named evidence items, damped for keys that many established
users share (a campus NAT, a big cloud ASN, a popular tutorial prompt): such a key is only
evidence when its members are young, new and harvest high-value capabilities (the Fraudar idea
of down-weighting popular targets, applied through who the members are).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from models.cluster import ClusterState, horizon_totals
from models.config import DetectorConfig


@dataclass(frozen=True, slots=True)
class ClusterEvidence:
    score: float
    accounts: int
    young_share: float
    new_share: float
    reasoning_share: float
    high_value_share: float
    requests_per_account: float

    def reason(self, cluster_key: str) -> str:
        return (f"cluster {cluster_key} score {self.score:.2f}: {self.accounts} accounts, "
                f"{self.young_share:.0%} young, {self.new_share:.0%} new in the last hour, "
                f"{self.high_value_share:.0%} coding/reasoning/math/tools, "
                f"{self.reasoning_share:.0%} reasoning requested, "
                f"{self.requests_per_account:.1f} requests/account")


def cluster_evidence(state: ClusterState, cfg: DetectorConfig) -> ClusterEvidence:
    n = state.active
    totals = horizon_totals(state)
    requests = max(1, totals.requests)
    young = state.active_young / n if n else 0.0
    new = state.active_new / n if n else 0.0
    reasoning = totals.reasoning / requests
    high_value = totals.high_value / requests
    per_account = totals.requests / n if n else 0.0
    if n < cfg.cluster_min_accounts or totals.requests == 0:
        score = 0.0
    else:
        # Size: 0 at the minimum, 1 at eight times the minimum (log scale).
        size = min(1.0, math.log(n / cfg.cluster_min_accounts) / math.log(8))
        harvest = max(high_value, min(1.0, reasoning / 0.6))
        raw = 0.45 * young + 0.15 * new + 0.40 * harvest
        # Established members make a shared key innocent, however large the crowd.
        raw *= 0.3 + 0.7 * young
        score = raw * (0.85 + 0.15 * size)
    return ClusterEvidence(score=round(min(1.0, score), 4), accounts=n, young_share=young,
                           new_share=new, reasoning_share=reasoning,
                           high_value_share=high_value, requests_per_account=per_account)
