"""Policy: account evidence + cluster verdicts -> a graded, reversible action.

- An allow-listed account or organisation (models/allowlist.py) is never acted on; one under an
  action is lifted at its next decision, the allowance named as the reason.
- A crowd's verdict weighs on an account in proportion to how much the account itself behaves
  like the crowd's harvesters (`behaviour_fit`, models/behaviour.py): an honest user of a key a
  campaign shares (its ISP, its tutorial, its card) is not the campaign. An account with too
  little history to judge takes the crowd's prior instead (the share of its members that are
  suspicious), for keys a campaign controls (cards, system prompts, templates) but not for network
  keys, which strangers share by where they connect from.
- Evidence decays with event time (half-life), verdicts expire.
- Cluster evidence is combined per kind of key (the strongest `tpl` bucket counts once, not
  four times) with a noisy-or, then with the account model's evidence. Two distinct convicted
  templates the account uses are two crowds: their evidence is combined like two kinds'.
- A convicted template counts in full against a young account using it; against an established
  one, only with a second template (half weight alone).
- Throttle before block: a block needs the block score AND corroboration by two kinds of
  shared key (say, a payment instrument and a prompt template), AND the account's own behaviour
  must bear the crowds out once it has history (never a block on a crowd alone); an account
  blocked before (`strikes`) needs one kind. Without a card's crowd, a churned account,
  rotation, a strike or a machine's pace, a block waits until the account's harvest adds up
  to a day (`_may_block`): prompt content and networks are what honest crowds share; until
  then it throttles.
- Hysteresis: an action is lifted (`allow`) only when the score falls below `release_score`.
- Every action has a TTL; one still warranted is renewed once half its TTL has run.
- Monotone: more evidence never gives a weaker action (a property test holds it to that).
"""

from __future__ import annotations

from dataclasses import dataclass

from distillguard.models.account import AccountState
from distillguard.models.allowlist import Allowance, AllowList
from distillguard.models.behaviour import (
    CONFIDENT_REQUESTS,
    HARVESTING,
    ROTATING,
    SAME_TEMPLATE_BITS,
    SUSTAINED_TEMPLATED_REQUESTS,
    harvest,
    harvest_span,
    machine_paced,
    rotation,
)
from distillguard.models.config import DetectorConfig
from distillguard.models.crowd_hours import in_force as crowd_hours_in_force
from distillguard.models.decision import (
    ACCOUNT_ANOMALY,
    ACCOUNT_HARVEST,
    ALLOW,
    ALLOW_LISTED,
    BLOCK,
    CLUSTER_CODES,
    ENFORCE,
    HELD_AT_THROTTLE,
    RELEASED,
    REPLACEMENT_ACCOUNT,
    SHADOW,
    STRENGTH,
    THROTTLE,
    Decision,
    decision_id,
)
from distillguard.models.keys import (
    ASN_CLIENT,
    IP,
    PAYMENT,
    SYSTEM_PROMPT,
    TEMPLATE,
    is_template_key,
    key_kind,
)
from distillguard.models.operator import (
    OPERATOR_ID_PREFIX,
    ORG,
    OperatorDecisions,
    org_handover,
)
from distillguard.models.templates import uses_template

# A kind of key corroborates a block only when its evidence is at least this strong.
CORROBORATION_SCORE = 0.5
# Template evidence counts the account's own recent prompts that are of a convicted template:
# near the convicted bucket's signature (`models.templates.uses_template`: the template its crowd
# used, where an unrelated prompt is one time in 500,000); a carried template verdict no recent
# prompt uses is no evidence at all. One template gives half weight, two give full weight and
# corroborate like a second kind: each is its own crowd of accounts. Against a young account one
# template already gives full weight (`_template_weight`).
TEMPLATES_FOR_FULL_WEIGHT = 2
# Evidence from shared keys weighs less against an established account (Fraudar-like: a crowd
# on a popular key convicts the fresh accounts that make it suspicious, not the old users on it).
ESTABLISHED_WEIGHT = 0.5
_YEAR_S = 365 * 86400.0


def member_weight(state: AccountState, now_ts: float, cfg: DetectorConfig) -> float:
    """1 for a young (or unknown-age) account, falling to ESTABLISHED_WEIGHT over a year; an
    account that rotates its network and client is no established user, whatever its age
    (bought and aged accounts do), and weighs as much as its rotation figure."""
    if state.created_ts is None:
        return 1.0
    age = now_ts - state.created_ts
    if age <= cfg.young_account_age_s:
        return 1.0
    aged = max(ESTABLISHED_WEIGHT, 1.0 - (age - cfg.young_account_age_s) / _YEAR_S)
    return max(aged, rotation(state.behaviour, state.requests))
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
    reason_codes: list[str]


def template_use(prompts: list[int], signatures: dict[str, int]) -> tuple[int, set[str]]:
    """How many distinct convicted templates the prompts use, and the convicted buckets they use.

    `signatures`: convicted template bucket -> its verdict's signature. A prompt uses a convicted
    bucket when it `uses_template` of its signature (whatever 16-bit bands it shares: a noisy
    prompt of the template may share none). Prompts within SAME_TEMPLATE_BITS of each other are
    one template, so the count is the largest number of such prompts that are pairwise further
    apart than that (the prompts of one template never count as two). Neither the count nor the
    buckets ever shrink when a verdict or a prompt is added (more evidence is never less).
    """
    by_signature: dict[int, list[str]] = {}
    for key, sig in signatures.items():
        if sig:
            by_signature.setdefault(sig, []).append(key)
    using: list[int] = []
    used: set[str] = set()
    for simhash in prompts:
        hit = False
        for sig, keys in by_signature.items():
            if uses_template(simhash, sig):
                used.update(keys)
                hit = True
        if hit and simhash not in using:
            using.append(simhash)
    return _most_distinct(using), used


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


def templates_evidence(evidence: dict[str, float], signatures: dict[str, int]) -> float:
    """The noisy-or of the distinct convicted templates the account uses, each counted with the
    strongest of its buckets (`evidence`: a used bucket -> its decayed evidence).

    Each template is its own crowd, convicted on its own accounts: a campaign spread thinly over
    many templates convicts each crowd weakly, and an account in several of them is the campaign
    (one in one is perhaps a tutorial's user). Buckets whose signatures lie within
    SAME_TEMPLATE_BITS are one template. A further verdict only adds a template or raises one's
    evidence, so it never lowers the result.
    """
    strongest: list[tuple[int, float]] = []  # (a signature of the template, its evidence)
    for key, e in sorted(evidence.items()):
        sig = signatures[key]
        for i, (known, best) in enumerate(strongest):
            if (known ^ sig).bit_count() <= SAME_TEMPLATE_BITS:
                if e > best:
                    strongest[i] = (known, e)
                break
        else:
            strongest.append((sig, e))
    remaining = 1.0
    for _, e in strongest:
        remaining *= 1.0 - e
    return 1.0 - remaining


def content_volume_weight(volume: int) -> float:
    """How much of a content key's evidence counts against an account that has sent `volume`
    high-value requests of it (templated ones, for a template)."""
    return max(0.0, min(1.0, (volume - CONTENT_VOLUME_FLOOR)
                        / (CONTENT_VOLUME_FULL - CONTENT_VOLUME_FLOOR)))


def behaviour_fit(own: float, prior: float) -> float:
    """How much of a crowd's verdict weighs on an account: its own harvest figure (or the
    crowd's prior, when given and larger), full from HARVESTING on."""
    return min(1.0, max(own, prior) / HARVESTING)


# Keys that unrelated users share by where they connect from.
NETWORK_KINDS = frozenset({IP, ASN_CLIENT})
# Keys only a campaign shares with strangers (a payment instrument; a team's or a reseller's card
# is shared by accounts that are not suspicious, so its prior is low): an account too new to be
# judged by its own requests is judged by such a crowd's prior. Not system prompts or templates:
# a tutorial, the docs' example and a popular tool put the same ones in every new user's hands.
PRIOR_KINDS = frozenset({PAYMENT})
# Evidence of a content key (a template, a system prompt) against an account grows with its own
# templated high-value requests (of known crowd templates), from none up to
# CONTENT_VOLUME_FLOOR to full at CONTENT_VOLUME_FULL: a tutorial, homework or a course is a
# few prompts of a few templates with the docs' system prompt, then ordinary use; a campaign's
# accounts keep harvesting its templates.
CONTENT_KINDS = frozenset({TEMPLATE, SYSTEM_PROMPT})
CONTENT_VOLUME_FLOOR = 3
CONTENT_VOLUME_FULL = SUSTAINED_TEMPLATED_REQUESTS
# A content key's crowd proven to harvest for longer than a tutorial lasts (this share of its
# suspicious members, models/scoring.py `proven`) judges its newcomers by its prior, as a card
# does: a churning campaign's fresh accounts are acted on at their first templated requests.
PROVEN_CROWD = 0.5
# ... and such a newcomer is a campaign's fresh account, blocked at once (`churned`), only when
# at least this share of the crowd's members harvest while rotating their network or client
# (`Verdict.rotating`; members that rotate and harvest nothing do not count, since core 0.16):
# a hydra's accounts on a residential proxy pool do; a MOOC's, a bootcamp's or a class's crowd
# does not, however long its members harvest its problems, and its late joiners are throttled
# by the prior, not blocked (measured on the tuning runs of core 0.14, mooc_deadline-s1: the
# hydra's template crowds at 20-90% rotating in 98% of its blocks, the MOOC's at 0%, whose
# late joiners were blocked at their 2nd-4th request; a bootcamp's late joiners, 16 of 16, in
# tests/unit/test_core10_adversary.py). A hydra that keeps each account on one address and
# client gives this up: its fresh accounts are throttled until their own evidence blocks them.
CHURN_ROTATING_SHARE = 0.2


def _is_replacement(state: AccountState, key: str, evidence: float, issued_ts: float,
                    now_ts: float, cfg: DetectorConfig) -> bool:
    """Whether carrying this verdict makes the account a replacement: a young account first seen
    after the cluster was convicted, on a key it strongly shares. Banned accounts replaced by
    fresh ones on the same payment instruments is how a campaign survives enforcement (the hydra
    pattern); it corroborates a block like a second kind of key. Only for what a campaign
    controls (`PRIOR_KINDS`): not for network keys, which fresh users behind a shared address or
    on the same residential ISP join innocently, nor for system prompts and templates, which a
    tutorial puts in every new user's hands (measured: launch-wave users made "replacements" on
    an ASN key, and on the docs' example system prompt)."""
    return (evidence >= CORROBORATION_SCORE and issued_ts < state.first_ts
            and key_kind(key) in PRIOR_KINDS
            and (state.created_ts is None
                 or now_ts - state.created_ts <= cfg.young_account_age_s))


def _may_block(by_kind: dict[str, tuple[float, str]], churned: bool, state: AccountState,
               rotating: float, cfg: DetectorConfig) -> bool:
    """Whether evidence that would block may block, or holds at a throttle for now.

    It may when the account shows what honest crowds do not: a payment instrument's crowd
    corroborates it (`PRIOR_KINDS`: strangers do not share a card), it is a campaign's fresh
    account (`churned`: a replacement on a convicted card, or a newcomer judged by the prior of
    a content crowd strongly convicted, proven to harvest for long and rotating, as a hydra's
    churned accounts are), it rotates its network or client, it was blocked before, it harvests
    at a machine's pace (`models.behaviour.machine_paced`: 60 templated high-value requests or
    more at one a minute or faster; a person reads the answer first), or it has harvested known
    templates for `harvest_session_s` (a day since core 0.10; `models.behaviour.harvest_span`:
    the exam, the class or the tutorial and any other that day, and the days before while they
    follow each other; the time between harvests does not count).

    Otherwise what corroborates is prompt content (convicted templates, a system prompt) and
    perhaps a network: an exam's candidates, a course's students, a workshop's or a viral
    prompt's crowd send the same prompts with reasoning, many on accounts opened for it, at home
    on a big ISP with a common browser or behind a campus NAT, and each looks like a campaign's
    account by its own requests; they stop when the session ends, a campaign goes on. So they
    are throttled, not blocked, for a session (a helper's review: an exam at home on five ISPs,
    195 of 200 candidates blocked when a network crowd beside the content still blocked; a
    class behind its NAT, 40 of 40).
    """
    return _why_block(by_kind, churned, state, rotating, cfg) is not None


def _why_block(by_kind: dict[str, tuple[float, str]], churned: bool, state: AccountState,
               rotating: float, cfg: DetectorConfig) -> str | None:
    """Which of `_may_block`'s conditions lets the block through, in a reason's words (the
    first that holds, in this order), or None: held at a throttle. A block's reasons say it,
    so that an operator reading one sees why it is not a throttle."""
    if not cfg.harvest_session_s:
        # (the rule off: content and networks block at once, as before core 0.9)
        return "content and networks block at once (harvest_session_s 0)"
    if churned:
        return "a campaign's fresh account"
    for kind, (score, key) in sorted(by_kind.items()):
        if kind in PRIOR_KINDS and score >= CORROBORATION_SCORE:
            return f"a payment instrument's crowd ({key})"
    if state.strikes:
        return f"blocked {state.strikes} time(s) before"
    if rotating >= ROTATING:
        return f"it moves between networks or clients (rotation {rotating:.2f})"
    if machine_paced(state.behaviour, cfg.machine_pace_requests, cfg.machine_pace_per_min):
        return (f"a machine's pace ({cfg.machine_pace_requests} or more templated high-value "
                f"requests in one harvest at {cfg.machine_pace_per_min:g} a minute or faster)")
    span = harvest_span(state.behaviour)
    if span >= cfg.harvest_session_s:
        return (f"harvested known templates for {span / 3600:.1f} h (a block from "
                f"{cfg.harvest_session_s / 3600:.1f} h)")
    return None


def assess(state: AccountState, now_ts: float, cfg: DetectorConfig) -> Assessment:
    by_kind: dict[str, tuple[float, str]] = {}
    in_force = [(k, v) for k, v in state.verdicts.items() if v.expires_ts > now_ts]
    signatures = {k: v.signature for k, v in in_force if is_template_key(k)}
    templates, used = (template_use(state.recent_prompts, signatures) if signatures
                       else (0, set()))
    weight = member_weight(state, now_ts, cfg)
    template_weight = _template_weight(templates, weight)
    own = harvest(state.behaviour, state.requests)
    rotating = rotation(state.behaviour, state.requests)
    newcomer = state.requests < CONFIDENT_REQUESTS and rotating < ROTATING
    replaced: str | None = None
    # judged as a newcomer by a strongly convicted content crowd proven to harvest for long, in
    # a crowd that rotates (CHURN_ROTATING_SHARE): a campaign's fresh account, blocked at once
    churned_newcomer = False
    tpl_evidence: dict[str, float] = {}
    for key, v in in_force:
        kind = key_kind(key)
        age = max(0.0, now_ts - v.issued_ts)
        fit = behaviour_fit(own, 0.0)
        if kind in CONTENT_KINDS:
            # (an account that rotates is no tutorial's new user: no volume to wait for)
            fit *= max(content_volume_weight(state.behaviour.templated_high_value), rotating)
        if newcomer and v.score >= cfg.cluster_convict_score and (
                kind in PRIOR_KINDS or (kind in CONTENT_KINDS and v.proven >= PROVEN_CROWD)):
            # (a crowd convicted only weakly, a small template crowd, judges no newcomer: a few
            # heavy attackers in a class's template crowd would have its new students judged)
            prior_fit = behaviour_fit(0.0, v.prior)
            if kind in CONTENT_KINDS and prior_fit > fit and v.rotating >= CHURN_ROTATING_SHARE:
                churned_newcomer = True
            fit = max(fit, prior_fit)
        decayed = weight * fit * v.score * 0.5 ** (age / cfg.evidence_half_life_s)
        if kind == TEMPLATE:
            if key not in used:
                # (a bucket the account's prompts are not of: it carried the verdict as a member
                # of the bucket, measured possible for a young user beside a template of its own)
                continue
            tpl_evidence[key] = decayed
            if templates < TEMPLATES_FOR_FULL_WEIGHT and v.score < cfg.cluster_convict_score:
                # A small template crowd, convicted below the common conviction score, is
                # evidence only beside another template (`templates_evidence`): a campaign
                # spread thinly over many templates is in several, a class's young students in
                # one small crowd by the luck of who came first.
                continue
            decayed *= template_weight
        if (_is_replacement(state, key, decayed, v.issued_ts, now_ts, cfg)
                and (replaced is None or key < replaced)):
            replaced = key
        if kind not in by_kind or decayed > by_kind[kind][0]:
            by_kind[kind] = (decayed, key)
    if templates >= TEMPLATES_FOR_FULL_WEIGHT and TEMPLATE in by_kind:
        combined = templates_evidence(tpl_evidence, signatures)
        if combined > by_kind[TEMPLATE][0]:
            by_kind[TEMPLATE] = (combined, by_kind[TEMPLATE][1])  # explained by its strongest bucket
    # A kind with no evidence left (a template the account's prompts do not use, a crowd the
    # account's behaviour does not fit: weight 0) is no evidence at all: it neither stands beside
    # a network crowd (which alone weighs under half) nor is cited as a reason.
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
    if (by_kind.get(TEMPLATE, (0.0, ""))[0] >= CORROBORATION_SCORE
            and templates >= TEMPLATES_FOR_FULL_WEIGHT):
        corroborating += 1  # two convicted templates: two crowds
    if replaced is not None:
        corroborating += 1  # the hydra pattern: a fresh account on a convicted campaign's keys
    # Never a block on crowds the account's own behaviour does not bear out, once it has the
    # history to judge (a newcomer rests on the crowds' priors); a repeat offender needs one
    # kind of crowd, not two.
    borne_out = newcomer or own >= HARVESTING
    held = False
    why_block: str | None = None
    if (score >= cfg.block_score and borne_out
            and corroborating >= (1 if state.strikes else 2)):
        why_block = _why_block(by_kind, replaced is not None or churned_newcomer, state,
                               rotating, cfg)
        held = why_block is None
        action = THROTTLE if held else BLOCK
    elif score >= cfg.throttle_score:
        action = THROTTLE
    else:
        action = ALLOW
    # Told of enough crowd hours (models/crowd_hours.py): at least a throttle, never a block on
    # it, nor corroboration of one.
    crowd = crowd_hours_in_force(state.crowd_hours, state.crowd_hour_last, now_ts,
                                 cfg.verdict_ttl_s)
    if crowd:
        score = max(score, cfg.throttle_score)
        if action == ALLOW:
            action = THROTTLE
    strongest = sorted(by_kind.values(), key=lambda sk: (-sk[0], sk[1]))
    cluster_ids = [k for _, k in strongest]
    codes = [CLUSTER_CODES[key_kind(k)] for k in cluster_ids]  # one kind each: no repeats
    reasons = [state.verdicts[k].reason for k in cluster_ids]
    basis = [state.verdicts[k].verdict_id for k in cluster_ids]
    if crowd:
        reasons.append(f"{state.crowd_hours} crowd hours of harvest, the latest: "
                       f"{state.crowd_hour_reason}")
        basis.append(f"crowd-hours:{state.crowd_hour_key}:{state.crowd_hour_last}")
        if state.crowd_hour_key not in cluster_ids:
            cluster_ids.append(state.crowd_hour_key)
        if CLUSTER_CODES[key_kind(state.crowd_hour_key)] not in codes:
            codes.append(CLUSTER_CODES[key_kind(state.crowd_hour_key)])
    if replaced is not None:
        v = state.verdicts[replaced]
        reasons.append(f"replacement account: first seen {(state.first_ts - v.issued_ts) / 60:.0f}"
                       f" min after cluster {replaced} was convicted")
        basis.append(f"replacement:{v.verdict_id}")
        codes.append(REPLACEMENT_ACCOUNT)
    if cluster_ids and own >= HARVESTING:
        codes.append(ACCOUNT_HARVEST)  # the account's own requests bear the crowds out
    if cluster_ids:
        reasons.append(f"the account's own requests: harvest {own:.2f} over {state.requests}"
                       + (f", blocked {state.strikes} time(s) before" if state.strikes else ""))
    if why_block is not None:
        reasons.append(f"a block, not a throttle: {why_block}")
    if held:
        reasons.append("held at throttle: no card, rotation, earlier block or machine pace "
                       f"beside the crowds, and harvested for "
                       f"{harvest_span(state.behaviour) / 60:.0f} min "
                       f"{'over days in a row' if state.behaviour.harvested_before_s else 'today'}"
                       f" (a block from "
                       f"{cfg.harvest_session_s / 60:.0f} min)")
    if account > 0:
        reasons.extend(state.account_reasons)
        basis.append(f"account-window:{state.account_score_window}")
        codes.append(ACCOUNT_ANOMALY)
    if held:
        codes.append(HELD_AT_THROTTLE)
    return Assessment(score=round(score, 4), action=action, reasons=reasons,
                      cluster_ids=cluster_ids, basis=basis, reason_codes=codes)


# Marks the id of the action in force when an operator lifted it (models/operator.py).
LIFTED_BY_HAND = "lifted:"


def decide(state: AccountState, now_ts: float, cfg: DetectorConfig,
           allow: AllowList | None = None,
           operator: OperatorDecisions | None = None) -> Decision | None:
    """The decision to publish now, if any; updates the account's current action.

    An action in force is reviewed (renewed, or lifted if the evidence has decayed below the
    release score) once half its TTL has run; until then only an escalation can change it. An
    allow-listed account is never acted on, and one under an action is lifted at once. While an
    operator's decision about the account or its organisation is in force (models/operator.py;
    the account's own first) the detector decides nothing: the operator's command published it
    (an organisation's under the key `org:<org_id>`; an organisation's allow lifts, once, an
    action of the detector's own about one of its accounts); once it runs out or is lifted, the
    account is decided afresh.
    """
    manual = operator.in_force(state.account_id, now_ts, state.org_id or "") \
        if operator is not None else None
    if manual is not None:
        handover = None
        if (manual.scope == ORG and manual.action == ALLOW and state.action != ALLOW
                and now_ts < state.action_until
                and not state.action_decision_id.startswith(OPERATOR_ID_PREFIX)):
            # The detector's own action about the account is in force at the gateway, where
            # the stronger of the account's and the organisation's answers wins: lifted, so
            # that the operator's allow of the organisation applies. (An organisation's
            # throttle or block lifts nothing: a gateway that does not send the organisation
            # would then serve the account freely; the detector's action runs out instead.)
            handover = org_handover(state.account_id, manual, now_ts, cfg.model_version)
        if manual.action == ALLOW and manual.scope != ORG:
            # An operator vouches for the account: the blocks the detector gave it were wrong,
            # and must not license the next one on a single kind of crowd evidence when the
            # allowance ends (an adversary's probe: a student whose wrong block was lifted was
            # blocked again at its next request). Only the account's own allow: an
            # organisation's names no account an operator looked at.
            state.strikes = 0
        # Recorded as the action in force, so that when it ends the detector starts from
        # nothing in force (the gateway's view) rather than from its own earlier action.
        state.action, state.action_until = manual.action, manual.until
        state.action_decision_id = manual.decision_id
        return handover
    lifted_at = operator.take_lift(state.account_id) if operator is not None else 0.0
    if (lifted_at and state.action == BLOCK
            and not state.action_decision_id.startswith(OPERATOR_ID_PREFIX)
            and state.action_until - _ttl(BLOCK, cfg) < lifted_at):
        # An operator lifted a block of the detector's own: it was a mistake, and its strike
        # goes, whether the account's next decision comes while it would still hold or after
        # it ran out (a student back the next morning).
        state.strikes = max(0, state.strikes - 1)
    if state.action != ALLOW and now_ts < state.action_until and (
            state.action_decision_id.startswith(OPERATOR_ID_PREFIX)
            or state.action_until - _ttl(state.action, cfg) < lifted_at):
        # Lifted early (`override lift`, which gave the gateway an allow): an operator's
        # decision, or the detector's own decided before the lift. Nothing is in force.
        state.action, state.action_until = ALLOW, 0.0
        state.action_decision_id = LIFTED_BY_HAND + state.action_decision_id
    active = state.action if now_ts < state.action_until else ALLOW
    allowance = allow.lookup(state.account_id, state.org_id) if allow is not None else None
    if allowance is not None:
        return None if active == ALLOW else _lift_allowed(state, now_ts, cfg, allowance)
    if active == ALLOW:
        if not state.verdicts and state.account_score == 0.0 and not state.crowd_hours:
            return None  # no evidence at all: the common case, decided without assessing
        review_due = False
    else:
        review_due = now_ts >= state.action_until - _ttl(active, cfg) / 2
        if active == BLOCK and not review_due:
            return None  # nothing is stronger than a block
    a = assess(state, now_ts, cfg)
    wanted = a.action
    basis = a.basis
    if STRENGTH[wanted] > STRENGTH[active]:
        if state.action_decision_id.startswith(LIFTED_BY_HAND):
            # the same evidence as the action lifted by hand: a new decision, a new id (a
            # consumer dropping duplicate ids must not drop it)
            basis = [*basis, f"after:{state.action_decision_id}"]
    elif not review_due:
        return None
    elif wanted == active:
        basis = [*basis, f"renew:{state.action_until:.0f}"]  # still warranted: renew
    elif a.score < cfg.release_score:
        wanted = ALLOW  # evidence has decayed below the hysteresis band: lift
        basis = [*basis, f"lift:{state.action_decision_id}"]
    else:
        return None
    summary = f"score {a.score:.2f} -> {wanted}"
    codes = a.reason_codes
    if wanted == ALLOW:
        summary += f" (below release score {cfg.release_score})"
        codes = [RELEASED, *(c for c in codes if c != HELD_AT_THROTTLE)]
    if wanted == BLOCK and active != BLOCK:
        state.strikes += 1
    return _decision(state, now_ts, cfg, wanted, a.score, [summary, *a.reasons], basis,
                     a.cluster_ids, codes)


def _lift_allowed(state: AccountState, now_ts: float, cfg: DetectorConfig,
                  allowance: Allowance) -> Decision:
    return _decision(state, now_ts, cfg, ALLOW, 0.0, [allowance.describe()],
                     [allowance.basis, f"lift:{state.action_decision_id}"], [], [ALLOW_LISTED])


def _decision(state: AccountState, now_ts: float, cfg: DetectorConfig, action: str,
              score: float, reasons: list[str], basis: list[str],
              cluster_ids: list[str], reason_codes: list[str]) -> Decision:
    ttl_s = _ttl(action, cfg) if action != ALLOW else None
    mode = SHADOW if cfg.shadow else ENFORCE
    decision = Decision(
        decision_id=decision_id(state.account_id, action, basis, cfg.model_version, mode),
        account_id=state.account_id,
        action=action,
        score=score,
        reasons=reasons,
        # a float in both builds: a verdict's time to apply is a whole number in the sources
        event_ts=float(max(state.last_ts, now_ts)),
        ttl_s=ttl_s,
        rate_limit_rpm=cfg.throttle_rpm if action == THROTTLE else None,
        model_version=cfg.model_version,
        mode=mode,
        cluster_ids=cluster_ids,
        reason_codes=reason_codes,
    )
    state.action = action
    state.action_until = now_ts + ttl_s if ttl_s else 0.0
    state.action_score = score
    state.action_decision_id = decision.decision_id
    return decision


def _ttl(action: str, cfg: DetectorConfig) -> int:
    return cfg.block_ttl_s if action == BLOCK else cfg.throttle_ttl_s
