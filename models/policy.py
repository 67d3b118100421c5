"""Policy: account evidence + cluster verdicts -> a graded, reversible action.

- Evidence decays with event time (half-life), verdicts expire.
- Cluster evidence is combined per kind of key (the strongest `tpl` bucket counts once, not
  four times) with a noisy-or, then with the account model's evidence.
- Throttle before block: a block needs the block score AND corroboration by two kinds of
  shared key (say, a payment instrument and a prompt template).
- Hysteresis: an action is lifted (`allow`) only when the score falls below `release_score`.
- Every action has a TTL; one still warranted is renewed once half its TTL has run.
- Monotone: more evidence never gives a weaker action (a property test holds it to that).
"""

from __future__ import annotations

from dataclasses import dataclass

from models.account import AccountState
from models.config import DetectorConfig
from models.decision import STRENGTH, Decision, decision_id
from models.keys import key_kind

# A kind of key corroborates a block only when its evidence is at least this strong.
CORROBORATION_SCORE = 0.5
# Template verdicts are counted in buckets: a prompt template falls in `simhash_bands` buckets
# (one per band), so an account using one convicted template holds about that many verdicts,
# one using two holds twice as many, and an unrelated prompt that collides with a convicted
# 16-bit band by chance holds one. Template evidence grows from nothing at one bucket to full
# weight at two templates' worth, and two templates' worth corroborates like a second kind:
# each template cluster is its own crowd of accounts.
# Evidence from shared keys weighs less against an established account (Fraudar-like: a crowd
# on a popular key convicts the fresh accounts that make it suspicious, not the old users on it).
ESTABLISHED_WEIGHT = 0.5
_YEAR_S = 365 * 86400.0


def member_weight(state: AccountState, now_ts: float, cfg: DetectorConfig) -> float:
    """1 for a young (or unknown-age) account, falling to ESTABLISHED_WEIGHT over a year."""
    if state.created_ts is None:
        return 1.0
    age = now_ts - state.created_ts
    if age <= cfg.young_account_age_s:
        return 1.0
    return max(ESTABLISHED_WEIGHT, 1.0 - (age - cfg.young_account_age_s) / _YEAR_S)
# The account model alone is never enough to act: its evidence counts at this weight.
ACCOUNT_WEIGHT = 0.5


@dataclass(frozen=True, slots=True)
class Assessment:
    score: float
    action: str
    reasons: list[str]
    cluster_ids: list[str]
    basis: list[str]


def assess(state: AccountState, now_ts: float, cfg: DetectorConfig) -> Assessment:
    by_kind: dict[str, tuple[float, str]] = {}
    in_force = [(k, v) for k, v in state.verdicts.items() if v.expires_ts > now_ts]
    buckets = sum(1 for k, _ in in_force if key_kind(k) == "tpl")
    template_weight = min(1.0, max(0, buckets - 1) / (2 * cfg.simhash_bands - 1))
    weight = member_weight(state, now_ts, cfg)
    for key, v in in_force:
        age = max(0.0, now_ts - v.issued_ts)
        decayed = weight * v.score * 0.5 ** (age / cfg.evidence_half_life_s)
        if key_kind(key) == "tpl":
            decayed *= template_weight
        kind = key_kind(key)
        if kind not in by_kind or decayed > by_kind[kind][0]:
            by_kind[kind] = (decayed, key)
    remaining = 1.0
    for s, _ in by_kind.values():
        remaining *= 1.0 - s
    account = ACCOUNT_WEIGHT * state.account_score
    score = 1.0 - remaining * (1.0 - account)
    corroborating = sum(1 for s, _ in by_kind.values() if s >= CORROBORATION_SCORE)
    if by_kind.get("tpl", (0.0, ""))[0] >= CORROBORATION_SCORE and buckets > cfg.simhash_bands:
        corroborating += 1  # more than one template's worth of convicted buckets
    if score >= cfg.block_score and corroborating >= 2:
        action = "block"
    elif score >= cfg.throttle_score:
        action = "throttle"
    else:
        action = "allow"
    strongest = sorted(by_kind.values(), key=lambda sk: (-sk[0], sk[1]))
    cluster_ids = [k for _, k in strongest]
    reasons = [state.verdicts[k].reason for k in cluster_ids]
    basis = [state.verdicts[k].verdict_id for k in cluster_ids]
    if account > 0:
        reasons.extend(state.account_reasons)
        basis.append(f"account-window:{state.account_score_window}")
    return Assessment(score=round(score, 4), action=action, reasons=reasons,
                      cluster_ids=cluster_ids, basis=basis)


def decide(state: AccountState, now_ts: float, cfg: DetectorConfig) -> Decision | None:
    """The decision to publish now, if any; updates the account's current action."""
    a = assess(state, now_ts, cfg)
    active = state.action if now_ts < state.action_until else "allow"
    wanted = a.action
    basis = a.basis
    if STRENGTH[wanted] > STRENGTH[active]:
        pass  # escalate
    elif wanted == active != "allow":
        ttl = _ttl(active, cfg)
        if now_ts < state.action_until - ttl / 2:
            return None
        basis = [*basis, f"renew:{state.action_until:.0f}"]  # still warranted: renew
    elif active != "allow" and a.score < cfg.release_score:
        wanted = "allow"  # evidence has decayed below the hysteresis band: lift
        basis = [*basis, f"lift:{state.action_decision_id}"]
    else:
        return None
    ttl_s = _ttl(wanted, cfg) if wanted != "allow" else None
    summary = f"score {a.score:.2f} -> {wanted}"
    if wanted == "allow":
        summary += f" (below release score {cfg.release_score})"
    mode = "shadow" if cfg.shadow else "enforce"
    decision = Decision(
        decision_id=decision_id(state.account_id, wanted, basis, cfg.model_version, mode),
        account_id=state.account_id,
        action=wanted,
        score=a.score,
        reasons=[summary, *a.reasons],
        event_ts=max(state.last_ts, now_ts),
        ttl_s=ttl_s,
        rate_limit_rpm=cfg.throttle_rpm if wanted == "throttle" else None,
        model_version=cfg.model_version,
        mode=mode,
        cluster_ids=a.cluster_ids,
    )
    state.action = wanted
    state.action_until = now_ts + ttl_s if ttl_s else 0.0
    state.action_score = a.score
    state.action_decision_id = decision.decision_id
    return decision


def _ttl(action: str, cfg: DetectorConfig) -> int:
    return cfg.block_ttl_s if action == "block" else cfg.throttle_ttl_s
