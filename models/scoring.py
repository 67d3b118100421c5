"""Explainable evidence: cluster features -> a score in [0, 1] with reasons an analyst can read.

The score is a weighted mix of named evidence items, damped for keys that many established
users share (a campus NAT, a big cloud ASN, a popular tutorial prompt): such a key is only
evidence when its members are young, new and harvest high-value capabilities (the Fraudar idea
of down-weighting popular targets, applied through who the members are).

A prompt template has a second way to show a campaign besides a wave of new accounts: a slow
campaign's accounts keep coming back to its templates, a few at a time, window after window, so
for a `tpl` key the share of the horizon's windows the crowd was active in counts like the share
of new accounts (whichever is larger). A tutorial wave is as persistent but harvests nothing,
enterprise batches and a campus's homework are as persistent but their accounts are established:
the other terms keep those down. And a template's harvest combines its two tells (high-value
tasks, reasoning requested) as independent signs rather than taking the stronger one.

For the same reason a template's crowd is sized by every account the cluster remembers using it
(members are kept until idle for `idle_expiry_s`), not only those active in the horizon: a slow
campaign spreads its accounts over hours, a few at a time, so the horizon shows a fraction of
its crowd. Only the size term uses it; who the members are (young, new) and what they ask is
still judged over the horizon, and a key needs `min_accounts` active members to be scored at
all (`template_min_accounts` for a template bucket, whose crowd must also agree on a template:
models/cluster.py; `cluster_min_accounts` for the other keys).
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
    # Share of the horizon's windows the key was used in; scored for template keys only.
    persistence: float = 0.0
    # Distinct accounts the cluster remembers (active within idle_expiry_s); the size of a
    # template's crowd (0 for other keys: their size is the horizon's).
    remembered: int = 0

    def reason(self, cluster_key: str) -> str:
        template = cluster_key.startswith("tpl:")
        persistent = (f", used in {self.persistence:.0%} of the horizon's windows"
                      if template else "")
        crowd = (f" ({self.remembered} over the last hours)"
                 if template and self.remembered > self.accounts else "")
        return (f"cluster {cluster_key} score {self.score:.2f}: {self.accounts} accounts{crowd}, "
                f"{self.young_share:.0%} young, {self.new_share:.0%} new in the last hour"
                f"{persistent}, "
                f"{self.high_value_share:.0%} coding/reasoning/math/tools, "
                f"{self.reasoning_share:.0%} reasoning requested, "
                f"{self.requests_per_account:.1f} requests/account")


def min_accounts(cluster_key: str, cfg: DetectorConfig) -> int:
    """Active members a key needs before it is scored at all."""
    if cluster_key.startswith("tpl:"):
        return cfg.template_min_accounts
    return cfg.cluster_min_accounts


def persistence(state: ClusterState, cfg: DetectorConfig) -> float:
    """Share of the horizon's windows in which the key was used at all (0..1)."""
    used = sum(1 for w in state.windows.values() if w.requests > 0)
    return min(1.0, used / cfg.cluster_horizon_windows)


def cluster_evidence(state: ClusterState, cfg: DetectorConfig) -> ClusterEvidence:
    n = state.active
    totals = horizon_totals(state)
    requests = max(1, totals.requests)
    young = state.active_young / n if n else 0.0
    new = state.active_new / n if n else 0.0
    reasoning = totals.reasoning / requests
    high_value = totals.high_value / requests
    per_account = totals.requests / n if n else 0.0
    template = state.cluster_key.startswith("tpl:")
    persistent = persistence(state, cfg) if template else 0.0
    # A template's crowd: every account remembered using it, not only the horizon's.
    remembered = max(n, len(state.members)) if template else 0
    least = min_accounts(state.cluster_key, cfg)
    if n < least or totals.requests == 0 or (template and not state.template):
        # (a template bucket whose members agree on no template, models/cluster.py: prompts
        # that share 16 bits by chance, or a crowd too small to tell, is no template crowd;
        # a verdict without a signature would match nobody until its next re-issue)
        score = 0.0
    else:
        # Size: 0 up to cluster_min_accounts, 1 at eight times it (log scale), for every kind:
        # a lower template_min_accounts lets a smaller template crowd be scored, not score
        # higher.
        crowd = remembered if template else n
        size = max(0.0, min(1.0, math.log(crowd / cfg.cluster_min_accounts) / math.log(8)))
        asks_reasoning = min(1.0, reasoning / 0.6)
        if template:
            # What one prompt template is used for: high-value tasks and requests for written-out
            # reasoning are two tells of its content, and a template showing both moderately
            # (a slow campaign's mix) harvests as much as one showing one strongly.
            harvest = 1.0 - (1.0 - high_value) * (1.0 - asks_reasoning)
        else:
            harvest = max(high_value, asks_reasoning)
        # A wave of new accounts, or (templates) a crowd that keeps coming back.
        raw = 0.45 * young + 0.15 * max(new, persistent) + 0.40 * harvest
        # Established members make a shared key innocent, however large the crowd.
        raw *= 0.3 + 0.7 * young
        score = raw * (0.85 + 0.15 * size)
    return ClusterEvidence(score=round(min(1.0, score), 4), accounts=n, young_share=young,
                           new_share=new, reasoning_share=reasoning,
                           high_value_share=high_value, requests_per_account=per_account,
                           persistence=persistent, remembered=remembered)
