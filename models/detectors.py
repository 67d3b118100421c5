"""Online anomaly models on window summaries (River), built by small factories.

Models score window summaries, never single events, so their cost grows with windows. Every
model scores before it learns, and does not learn from windows it finds anomalous or from
accounts already being acted on, so a sustained campaign cannot teach it that it is normal.

>>> m = AccountModel.create(seed=1, n_trees=5, height=4, window_size=10)
>>> features = {"a": 0.1, "b": 0.2}
>>> 0.0 <= m.score_and_learn(features, may_learn=True) <= 1.0
True
"""

from __future__ import annotations

from dataclasses import dataclass

from river import anomaly

# Windows whose score reaches this are not learned from (River's protect_anomaly_detector idea).
PROTECT_SCORE = 0.8


@dataclass
class AccountModel:
    """HalfSpaceTrees over per-account window features (all in [0, 1])."""

    hst: anomaly.HalfSpaceTrees
    seen: int = 0
    warmup: int = 0

    @classmethod
    def create(cls, seed: int, n_trees: int, height: int, window_size: int) -> AccountModel:
        hst = anomaly.HalfSpaceTrees(n_trees=n_trees, height=height, window_size=window_size,
                                     seed=seed)
        # HST's mass profiles are empty until its first reference window is full: scores
        # before then say nothing, so they are reported as 0.
        return cls(hst=hst, warmup=2 * window_size)

    def score_and_learn(self, features: dict[str, float], may_learn: bool) -> float:
        score = 0.0
        if self.seen >= self.warmup:
            score = float(self.hst.score_one(features))  # type: ignore[no-untyped-call]  # river is untyped
        if may_learn and score < PROTECT_SCORE:
            self.hst.learn_one(features)  # type: ignore[no-untyped-call]  # river is untyped
            self.seen += 1
        return score
