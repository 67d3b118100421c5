"""Cluster stage: window summaries per shared key -> cluster verdicts for the member accounts.

Driven per cluster key by the Faust agent and by offline replay alike. Per summary the work is
O(horizon): fold the summary in, recompute the explainable cluster score, and
- convict the cluster when the score reaches `cluster_convict_score`, telling every active
  member (one `AccountVerdict` per account, keyed by account for the account stage);
- tell a member that joins a convicted cluster at once (the hydra response);
- re-issue a conviction that has grown stronger, or that is `verdict_refresh_s` old and still
  warranted (evidence against members decays from the verdict's issue time).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from models.account import Verdict
from models.cluster import ClusterState, add_summary, members_to_tell, tell_member
from models.config import DetectorConfig
from models.due import DueIndex
from models.messages import AccountVerdict, ClusterSummary
from models.scoring import cluster_evidence
from models.windows import Watermark

# A conviction is re-issued when the cluster's score has risen by this much since.
VERDICT_UPGRADE_STEP = 0.05


@dataclass(slots=True)
class ClusterPartition:
    """What one partition of the cluster stage keeps besides the per-cluster states."""

    watermark: Watermark
    due: DueIndex = field(default_factory=DueIndex)

    @classmethod
    def create(cls, cfg: DetectorConfig) -> ClusterPartition:
        return cls(watermark=Watermark(cfg.allowed_lateness_s))


@dataclass(slots=True)
class ClusterOutputs:
    verdicts: list[AccountVerdict] = field(default_factory=list)
    late: bool = False


def verdict_id(cluster_key: str, issued_ts: float, score: float, model_version: str) -> str:
    # The score is part of it: an upgrade within the same moment is a new verdict to tell.
    text = f"{cluster_key}|{issued_ts!r}|{score!r}|{model_version}"
    return "cv-" + hashlib.sha256(text.encode()).hexdigest()[:24]


class ClusterStage:
    def __init__(self, cfg: DetectorConfig) -> None:
        self.cfg = cfg

    def on_summary(self, state: ClusterState | None, s: ClusterSummary,
                   part: ClusterPartition) -> tuple[ClusterState, ClusterOutputs]:
        cfg = self.cfg
        part.watermark.observe(s.event_ts)
        if state is None:
            state = ClusterState(cluster_key=s.cluster_key)
            # One expiry hint per cluster; `is_expired` re-registers it while the key lives.
            part.due.register(state.cluster_key, s.event_ts + self._idle_after(state))
        out = ClusterOutputs()
        if not add_summary(state, s, cfg):
            out.late = True
            return state, out
        v = state.verdict
        if v is None and state.active < cfg.cluster_min_accounts:
            return state, out  # too few accounts to convict: the common case, not scored
        evidence = cluster_evidence(state, cfg)
        in_force = v is not None and v.expires_ts > s.event_ts
        if evidence.score >= cfg.cluster_convict_score and (
                v is None or not in_force
                or evidence.score >= v.score + VERDICT_UPGRADE_STEP
                or s.event_ts - v.issued_ts >= cfg.verdict_refresh_s):
            # Convict, or re-issue a conviction that has grown stronger or needs confirming:
            # evidence against members decays from the verdict's issue time.
            v = Verdict(cluster_key=state.cluster_key, score=evidence.score,
                        issued_ts=s.event_ts, expires_ts=s.event_ts + cfg.verdict_ttl_s,
                        verdict_id=verdict_id(state.cluster_key, s.event_ts, evidence.score,
                                              cfg.model_version),
                        reason=evidence.reason(state.cluster_key))
            state.verdict = v
            for account in members_to_tell(state, v.verdict_id, cfg):
                out.verdicts.append(AccountVerdict(account, v))
        elif in_force and v is not None and tell_member(state, s.account_id, v.verdict_id):
            # A member new to a convicted cluster is told at once: the hydra response.
            out.verdicts.append(AccountVerdict(s.account_id, v))
        return state, out

    def expired_clusters(self, part: ClusterPartition) -> list[str]:
        return part.due.pop_due(part.watermark.value)

    def is_expired(self, state: ClusterState, part: ClusterPartition) -> bool:
        """Idle past its horizon with no verdict in force: the edge deletes it."""
        expired = state.last_ts + self._idle_after(state) <= part.watermark.value
        if not expired:
            part.due.register(state.cluster_key, state.last_ts + self._idle_after(state))
        return expired

    def _idle_after(self, state: ClusterState) -> float:
        cfg = self.cfg
        horizon = cfg.cluster_horizon_windows * cfg.cluster_window_s
        if state.verdict is not None:
            return max(horizon, state.verdict.expires_ts - state.last_ts)
        return horizon
