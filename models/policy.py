"""Policy: account evidence + cluster verdicts -> a graded, reversible action.

- Evidence decays with event time (half-life), verdicts expire.
- Cluster evidence is combined per kind of key (the strongest `tpl` bucket counts once, not
  four times) with a noisy-or, then with the account model's evidence. Two distinct convicted
  templates the account uses are two crowds: their evidence is combined like two kinds'.
- A convicted template counts in full against a young account using it; against an established
  one, only with a second template (half weight alone).
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
from models.keys import key_kind, template_keys
from models.templates import uses_template

# A kind of key corroborates a block only when its evidence is at least this strong.
CORROBORATION_SCORE = 0.5
# Template evidence counts the account's own recent prompts that are of a convicted template: in
# one of its convicted buckets and near the bucket's signature (`models.templates.uses_template`:
# the template its crowd used, where an unrelated prompt sharing the bucket's band by chance is
# not); a held template verdict no recent prompt uses is no evidence at all. A lone template
# counts once its prompts use MIN_TEMPLATE_BUCKETS of its convicted buckets (before signatures,
# `bands - 1`: measured on campaign_stealth, the third of a template's buckets was convicted
# 1-4 hours after the first; with one, launch-tutorial users were acted on in every evaluation
# run, docs/tuning.md). One template gives half weight, two give full weight and corroborate
# like a second kind: each is its own crowd of accounts. Against a young account one template
# already gives full weight (`_template_weight`).
TEMPLATES_FOR_FULL_WEIGHT = 2
MIN_TEMPLATE_BUCKETS = 2
# Two prompts within this many SimHash bits of each other are near-duplicates of one template
# (templated prompts here are at most a few bits from their template, so at most twice that
# from each other); unrelated prompts are ~32 bits apart and this close with probability 4e-5.
SAME_TEMPLATE_BITS = 16
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
# Evidence from network keys alone (no payment, template, system prompt...) counts at this weight:
# a little under half, so that a campaign-filled provider crowd beside a middling account-model
# anomaly does not throttle an ordinary user of that provider (measured in the new-IP run: at
# half, one was throttled at score 0.604), while a strong anomaly beside it still can (0.72).
NETWORK_ALONE_WEIGHT = 0.45
# The account model alone is never enough to act: its evidence counts at this weight.
ACCOUNT_WEIGHT = 0.5


@dataclass(frozen=True, slots=True)
class Assessment:
    score: float
    action: str
    reasons: list[str]
    cluster_ids: list[str]
    basis: list[str]


def template_use(prompts: list[int], signatures: dict[str, int],
                 bands: int) -> tuple[int, set[str]]:
    """How many distinct convicted templates the prompts use, and the convicted buckets they use.

    `signatures`: convicted template bucket -> its verdict's signature. A prompt uses a convicted
    bucket when it `uses_template` of its signature. Prompts within SAME_TEMPLATE_BITS of each
    other are one template, so the count is the largest number of such prompts that are
    pairwise further apart than that (the prompts of one template never count as two, however
    their bit flips split the bands). A lone template counts once its prompts use
    MIN_TEMPLATE_BUCKETS buckets. Neither the count nor the buckets ever shrink when a verdict
    or a prompt is added (more evidence is never less).
    """
    using: list[int] = []
    used: set[str] = set()
    for simhash in prompts:
        if simhash in using:
            continue
        keys = [k for k in template_keys(simhash, bands)
                if k in signatures and uses_template(simhash, signatures[k])]
        if keys:
            using.append(simhash)
            used.update(keys)
    count = _most_distinct(using)
    if count == 1 and len(used) < MIN_TEMPLATE_BUCKETS:
        count = 0
    return count, used


def _most_distinct(prompts: list[int]) -> int:
    """Size of the largest subset of prompts pairwise more than SAME_TEMPLATE_BITS apart
    (exact; an account holds at most a handful of recent prompts)."""
    if len(prompts) <= 1:
        return len(prompts)
    first, rest = prompts[0], prompts[1:]
    apart = [p for p in rest if (first ^ p).bit_count() > SAME_TEMPLATE_BITS]
    with_first = 1 + _most_distinct(apart)
    if len(apart) == len(rest):
        return with_first  # `first` is related to none: it is in some largest subset
    return max(with_first, _most_distinct(rest))


def _template_weight(templates: int, member: float) -> float:
    """How much of a convicted template's score counts against the account.

    Two templates: in full (two crowds). One template: in full against a young account (or one
    of unknown age, `member_weight` 1), half against an established one. A template is convicted
    because its crowd is young and harvests; a young account using it (near its signature, so
    no chance collision) is one more of that crowd, like a fresh account joining a
    convicted payment instrument, and waiting for it to use a second convicted template leaves a
    slow campaign's accounts, which send a few templated prompts an hour, served for hours. An
    established user sharing one popular prompt with such a crowd is not the crowd: it keeps the
    half weight, and needs a second template or another kind of evidence."""
    if templates >= TEMPLATES_FOR_FULL_WEIGHT or (templates and member >= 1.0):
        return 1.0
    return templates / TEMPLATES_FOR_FULL_WEIGHT


def two_templates_evidence(prompts: list[int], evidence: dict[str, float],
                           signatures: dict[str, int], bands: int) -> float:
    """The strongest noisy-or of two distinct convicted templates the prompts use (0 if none).

    Two templates are two crowds, convicted each on its own accounts: they corroborate a block
    like two kinds of key (`assess`), and their evidence adds up like two kinds' does, rather
    than the stronger alone standing for both. A prompt uses a template as in
    `template_use`, and counts with the strongest bucket it uses (`evidence`: bucket ->
    decayed evidence); two prompts are of distinct templates when more than SAME_TEMPLATE_BITS
    apart. A maximum over pairs, so a further verdict or prompt never lowers it.
    """
    using: list[tuple[int, float]] = []
    for simhash in prompts:
        hits = [evidence[k] for k in template_keys(simhash, bands)
                if k in evidence and uses_template(simhash, signatures[k])]
        if hits:
            using.append((simhash, max(hits)))
    best = 0.0
    for i, (a, ea) in enumerate(using):
        for b, eb in using[i + 1:]:
            if (a ^ b).bit_count() > SAME_TEMPLATE_BITS:
                best = max(best, 1.0 - (1.0 - ea) * (1.0 - eb))
    return best


# Keys that unrelated users share by where they connect from.
NETWORK_KINDS = frozenset({"ip", "asnua"})


def _is_replacement(state: AccountState, key: str, evidence: float, issued_ts: float,
                    now_ts: float, cfg: DetectorConfig) -> bool:
    """Whether holding this verdict makes the account a replacement: a young account first seen
    after the cluster was convicted, on a key it strongly holds. Banned accounts replaced by
    fresh ones on the same payment instruments, proxies, system prompts and templates is how a
    campaign survives enforcement (the hydra pattern); it corroborates a block like a second
    kind of key. Only for what a campaign controls (payment instruments, system prompts,
    templates): not for network keys, an IP prefix or an ASN with a user agent, which fresh users
    behind a shared address or on the same residential ISP join innocently (measured: with
    campaign traffic spread over residential exits, ASN keys made launch-wave users
    "replacements")."""
    return (evidence >= CORROBORATION_SCORE and issued_ts < state.first_ts
            and key_kind(key) not in NETWORK_KINDS
            and (state.created_ts is None
                 or now_ts - state.created_ts <= cfg.young_account_age_s))


def assess(state: AccountState, now_ts: float, cfg: DetectorConfig) -> Assessment:
    by_kind: dict[str, tuple[float, str]] = {}
    in_force = [(k, v) for k, v in state.verdicts.items() if v.expires_ts > now_ts]
    signatures = {k: v.signature for k, v in in_force if k.startswith("tpl:")}
    templates, used = (template_use(state.recent_prompts, signatures, cfg.simhash_bands)
                       if signatures else (0, set()))
    weight = member_weight(state, now_ts, cfg)
    template_weight = _template_weight(templates, weight)
    replaced: str | None = None
    tpl_evidence: dict[str, float] = {}
    for key, v in in_force:
        age = max(0.0, now_ts - v.issued_ts)
        decayed = weight * v.score * 0.5 ** (age / cfg.evidence_half_life_s)
        if key.startswith("tpl:"):
            if key not in used:
                # (a bucket the account's prompts share only by chance, or none: it held the
                # verdict as a member of the bucket, measured possible for a young user beside
                # a template of its own)
                continue
            tpl_evidence[key] = decayed
            decayed *= template_weight
        if (_is_replacement(state, key, decayed, v.issued_ts, now_ts, cfg)
                and (replaced is None or key < replaced)):
            replaced = key
        kind = key_kind(key)
        if kind not in by_kind or decayed > by_kind[kind][0]:
            by_kind[kind] = (decayed, key)
    if templates >= TEMPLATES_FOR_FULL_WEIGHT:
        both = two_templates_evidence(state.recent_prompts, tpl_evidence, signatures,
                                      cfg.simhash_bands)
        if both > by_kind["tpl"][0]:
            by_kind["tpl"] = (both, by_kind["tpl"][1])  # explained by its strongest bucket
    # A kind with no evidence left (a template the account's prompts do not use: weight 0) is
    # no evidence at all: it neither stands beside a network crowd (which alone weighs under
    # half) nor is cited as a reason (measured: a template verdict the account never matched
    # lifted a network crowd to full weight and throttled an ordinary user in the new-IP run).
    by_kind = {kind: sk for kind, sk in by_kind.items() if sk[0] > 0.0}
    if by_kind and replaced is None and all(kind in NETWORK_KINDS for kind in by_kind):
        # Only network crowds (an IP prefix, a provider with a browser's user agent): strangers
        # share these, and a campaign rotating through residential addresses drags ordinary
        # users of the same provider into its crowd. Alone they weigh under half.
        by_kind = {kind: (s * NETWORK_ALONE_WEIGHT, key) for kind, (s, key) in by_kind.items()}
    remaining = 1.0
    for s, _ in by_kind.values():
        remaining *= 1.0 - s
    account = ACCOUNT_WEIGHT * state.account_score
    score = 1.0 - remaining * (1.0 - account)
    corroborating = sum(1 for s, _ in by_kind.values() if s >= CORROBORATION_SCORE)
    if (by_kind.get("tpl", (0.0, ""))[0] >= CORROBORATION_SCORE
            and templates >= TEMPLATES_FOR_FULL_WEIGHT):
        corroborating += 1  # two convicted templates: two crowds
    if replaced is not None:
        corroborating += 1  # the hydra pattern: a fresh account on a convicted campaign's keys
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
    if replaced is not None:
        v = state.verdicts[replaced]
        reasons.append(f"replacement account: first seen {(state.first_ts - v.issued_ts) / 60:.0f}"
                       f" min after cluster {replaced} was convicted")
        basis.append(f"replacement:{v.verdict_id}")
    if account > 0:
        reasons.extend(state.account_reasons)
        basis.append(f"account-window:{state.account_score_window}")
    return Assessment(score=round(score, 4), action=action, reasons=reasons,
                      cluster_ids=cluster_ids, basis=basis)


def decide(state: AccountState, now_ts: float, cfg: DetectorConfig) -> Decision | None:
    """The decision to publish now, if any; updates the account's current action.

    An action in force is reviewed (renewed, or lifted if the evidence has decayed below the
    release score) once half its TTL has run; until then only an escalation can change it.
    """
    active = state.action if now_ts < state.action_until else "allow"
    if active == "allow":
        if not state.verdicts and state.account_score == 0.0:
            return None  # no evidence at all: the common case, decided without assessing
        review_due = False
    else:
        review_due = now_ts >= state.action_until - _ttl(active, cfg) / 2
        if active == "block" and not review_due:
            return None  # nothing is stronger than a block
    a = assess(state, now_ts, cfg)
    wanted = a.action
    basis = a.basis
    if STRENGTH[wanted] > STRENGTH[active]:
        pass  # escalate
    elif not review_due:
        return None
    elif wanted == active:
        basis = [*basis, f"renew:{state.action_until:.0f}"]  # still warranted: renew
    elif a.score < cfg.release_score:
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
        # a float in both builds: a verdict's time to apply is a whole number in the sources
        event_ts=float(max(state.last_ts, now_ts)),
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
