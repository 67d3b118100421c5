"""`models.policy`: graded, monotone, reversible, idempotent decisions.

Evidence is built explicitly (verdict scores of 1.0, two kinds or one) so the tests hold whatever
the tuned thresholds are; where a threshold matters it is read from the config.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import random
from collections.abc import Callable
from typing import Any

import pytest

from distillguard.models import operator as operator_module
from distillguard.models.account import AccountState, Verdict
from distillguard.models.account_stage import RECENT_PROMPTS
from distillguard.models.allowlist import Allowance, AllowList
from distillguard.models.behaviour import (
    CONFIDENT_REQUESTS,
    HIGH_VALUE,
    MAX_REMEMBERED,
    REASONING,
    SUSTAINED_TEMPLATED_REQUESTS,
    Behaviour,
)
from distillguard.models.config import DetectorConfig
from distillguard.models.decision import REASON_CODES, STRENGTH, Decision, decision_id
from distillguard.models.keys import KINDS, template_keys
from distillguard.models.operator import OperatorDecision, OperatorDecisions, revoked_decision
from distillguard.models.policy import (
    CHURN_ROTATING_SHARE,
    CONTENT_VOLUME_FLOOR,
    CORROBORATION_SCORE,
    ESTABLISHED_WEIGHT,
    NETWORK_ALONE_WEIGHT,
    PROVEN_CROWD,
    SAME_TEMPLATE_BITS,
    TEMPLATES_FOR_FULL_WEIGHT,
    assess,
    decide,
    member_weight,
    template_use,
    templates_evidence,
)
from distillguard.models.templates import SIGNATURE_BITS
from tests.conftest import contract_validator

CFG = DetectorConfig()
# Core 0.9's session (3 h): the session tests use it, for a block to be reached in hours
SESSION_CFG = DetectorConfig(harvest_session_s=3 * 3600)
T0 = 1_700_000_000.0
# Two prompt templates that share no band, and an unrelated prompt.
TPL_A = 0x0123_4567_89AB_CDEF
TPL_B = 0xFEDC_BA98_7654_3210
OTHER = 0x1111_2222_3333_4444


def verdict(key: str, score: float = 1.0, issued: float = T0, ttl: float | None = None,
            vid: str | None = None, signature: int | None = None) -> Verdict:
    """A verdict; a template bucket's signature is, unless given, the template of the test's
    pool whose bucket it is (as the crowd of that template makes it), else none."""
    ttl = CFG.verdict_ttl_s if ttl is None else ttl
    if signature is None:
        signature = SIGNATURE_OF.get(key, 0)
    return Verdict(key, score, issued, issued + ttl, vid or f"cv-{key}-{issued:.0f}",
                   f"cluster {key} convicted", signature)


def template_verdicts(simhash: int, score: float = 1.0, issued: float = T0,
                      ttl: float | None = None) -> list[Verdict]:
    """Verdicts for every bucket of a template, as a convicted template crowd gives them."""
    return [verdict(k, score, issued, ttl, signature=simhash)
            for k in template_keys(simhash, CFG.simhash_bands)]


def harvesting_behaviour() -> Behaviour:
    """What an account harvesting plainly has sent: high-value requests asking for reasoning,
    of several known templates, for longer than a tutorial, a class or an exam lasts."""
    return Behaviour(high_value=2 * SUSTAINED_TEMPLATED_REQUESTS,
                     reasoning=2 * SUSTAINED_TEMPLATED_REQUESTS,
                     templated_high_value=2 * SUSTAINED_TEMPLATED_REQUESTS,
                     recent_asks=[HIGH_VALUE | REASONING] * MAX_REMEMBERED,
                     recent_templates=[TPL_A, TPL_B, OTHER, 0x5A5A_A5A5_3C3C_C3C3] * 2,
                     harvesting_since=T0 - 2 * CFG.harvest_session_s, harvesting_last=T0)


def ordinary_behaviour() -> Behaviour:
    """What an ordinary user has sent: some high-value requests, little reasoning, no templates."""
    return Behaviour(high_value=3, reasoning=1, recent_asks=[HIGH_VALUE, 0, REASONING, 0] * 2,
                     recent_templates=[0] * MAX_REMEMBERED)


def account(*verdicts: Verdict, account_score: float = 0.0, account_id: str = "acct-1",
            last_ts: float = T0, prompts: tuple[int, ...] = (),
            behaviour: Behaviour | None = None, requests: int = 2 * CONFIDENT_REQUESTS
            ) -> AccountState:
    """An account holding `verdicts`; by default one whose own requests bear the crowds out (a
    plain harvester with the history to be judged), so that the evidence counts in full."""
    st = AccountState.new(account_id, last_ts - 600)
    st.last_ts = last_ts
    st.recent_prompts = list(prompts)
    st.requests = requests
    st.behaviour = behaviour if behaviour is not None else harvesting_behaviour()
    for v in verdicts:
        st.verdicts[v.cluster_key] = v
    if account_score:
        st.account_score = account_score
        st.account_score_window = 42
        st.account_reasons = ["account model anomaly on window 42"]
    return st


# --- monotonicity: more evidence never gives a weaker action ---------------------------------


# Templates whose buckets the random verdicts and prompts draw from, so template evidence (which
# rests on the account's own prompts) is exercised; no two share a band value.
POOL = (TPL_A, TPL_B, 0x5A5A_A5A5_3C3C_C3C3)
SIGNATURE_OF = {k: t for t in POOL for k in template_keys(t, CFG.simhash_bands)}


def _random_key(rng: random.Random) -> str:
    kind = "tpl" if rng.random() < 0.5 else rng.choice(KINDS)
    if kind != "tpl":
        return f"{kind}:{rng.randrange(6)}"
    if rng.random() < 0.7:
        return rng.choice(template_keys(rng.choice(POOL), CFG.simhash_bands))
    return f"tpl:{rng.randrange(4)}:{rng.randrange(6):04x}"


def _random_verdict(rng: random.Random, now: float, key: str | None = None) -> Verdict:
    issued = now - rng.uniform(0, 4 * 3600)
    key = key or _random_key(rng)
    signature = SIGNATURE_OF.get(key, rng.choice([0, rng.getrandbits(64)]))
    return Verdict(key, rng.random(), issued, issued + rng.uniform(0, 8 * 3600),
                   f"cv-{rng.getrandbits(32):08x}", "r", signature)


def _random_state(rng: random.Random, now: float) -> AccountState:
    prompts = tuple(rng.choice([*POOL, OTHER]) for _ in range(rng.randrange(4)))
    st = account(account_score=rng.choice([0.0, rng.random()]), last_ts=now, prompts=prompts)
    st.created_ts = rng.choice([None, now - 86400, now - rng.uniform(0, 3 * 365 * 86400)])
    for _ in range(rng.randrange(9)):
        v = _random_verdict(rng, now)
        st.verdicts[v.cluster_key] = v
    return st


def _more_evidence(st: AccountState, rng: random.Random, now: float) -> AccountState:
    more = copy.deepcopy(st)
    choice = rng.randrange(4) if st.verdicts else rng.choice([0, 2, 3])
    if choice == 0:  # one more verdict, under a key not yet held
        key = _random_key(rng)
        while key in more.verdicts:
            key = _random_key(rng)
        more.verdicts[key] = _random_verdict(rng, now, key)
    elif choice == 1:  # a held verdict grows stronger
        key = rng.choice(sorted(more.verdicts))
        v = more.verdicts[key]
        v.score = rng.uniform(v.score, 1.0)
    elif choice == 2:  # the account model grows more certain
        more.account_score = rng.uniform(more.account_score, 1.0)
        more.account_score_window = 43
    else:  # one more prompt of a template (convicted or not), as the account stage appends it
        more.recent_prompts.append(rng.choice(POOL))
    return more


@pytest.mark.parametrize("cfg", [CFG, DetectorConfig(throttle_score=0.3, block_score=0.5,
                                                     release_score=0.2)],
                         ids=["default", "aggressive"])
@pytest.mark.parametrize("seed", range(4))
def test_more_evidence_never_gives_a_weaker_action(cfg: DetectorConfig, seed: int) -> None:
    rng = random.Random(seed)
    actions = set()
    for _ in range(1500):
        now = T0 + rng.uniform(0, 3600)
        st = _random_state(rng, now)
        more = _more_evidence(st, rng, now)
        before, after = assess(st, now, cfg), assess(more, now, cfg)
        actions.add(before.action)
        assert STRENGTH[after.action] >= STRENGTH[before.action], (st, more)
        assert after.score >= before.score
    assert actions == {"allow", "throttle", "block"}  # the property was tested at every level


def test_adding_verdicts_one_by_one_never_weakens() -> None:
    rng = random.Random(5)
    for _ in range(300):
        st = account(last_ts=T0)
        strength = 0
        for _ in range(8):
            v = _random_verdict(rng, T0)
            if v.cluster_key in st.verdicts:
                continue  # replacing a verdict is not adding one
            st.verdicts[v.cluster_key] = v
            s = STRENGTH[assess(st, T0, CFG).action]
            assert s >= strength
            strength = s


# --- template evidence rests on the account's own prompts --------------------------------------


def flip(simhash: int, *bits: int) -> int:
    """A near-duplicate prompt: the same template with a few SimHash bits flipped."""
    for b in bits:
        simhash ^= 1 << b
    return simhash


def convicted(*simhashes: int) -> dict[str, int]:
    """Every bucket of the templates convicted, each with its template as signature (a bucket
    two templates share: the first's)."""
    out: dict[str, int] = {}
    for h in simhashes:
        for k in template_keys(h, CFG.simhash_bands):
            out.setdefault(k, h)
    return out


def test_a_prompt_near_a_convicted_signature_uses_its_template_whatever_bands_it_keeps() -> None:
    # models/policy.py, template_use: a prompt within SIGNATURE_BITS of a convicted bucket's
    # signature uses its template, whether or not it shares that bucket's 16 bits: a noisy
    # prompt of the template may share no band with it at all
    bands, width = CFG.simhash_bands, 64 // CFG.simhash_bands
    conv = convicted(TPL_A)
    assert template_use([TPL_A], conv)[0] == 1
    every_band_flipped = flip(TPL_A, 0, width, 2 * width, 3 * width)
    assert not set(template_keys(every_band_flipped, bands)) & set(conv)
    assert template_use([every_band_flipped], conv)[0] == 1
    assert template_use([TPL_A, TPL_B], convicted(TPL_A, TPL_B))[0] == 2


def test_one_convicted_bucket_of_a_template_is_enough() -> None:
    # a slow campaign's template is convicted bucket by bucket, hours apart: the signature of
    # one convicted bucket already names the template
    one = dict(list(convicted(TPL_A).items())[:1])
    assert template_use([TPL_A], one)[0] == 1
    assert template_use([TPL_A], {})[0] == 0


def test_prompts_far_from_the_signature_use_no_template_whatever_buckets_they_share() -> None:
    # An unrelated prompt that shares two of a convicted template's 16-bit bands by chance
    # (where campaigns are convicted by the thousand, it happens) is ~16 bits from the template
    # in the other two: it is no prompt of the template.
    bands, width = CFG.simhash_bands, 64 // CFG.simhash_bands
    halves = (TPL_A & ((1 << 2 * width) - 1)) | (OTHER & ~((1 << 2 * width) - 1))
    assert len(set(template_keys(halves, bands)) & set(convicted(TPL_A))) == 2
    assert (halves ^ TPL_A).bit_count() > SIGNATURE_BITS
    assert template_use([halves], convicted(TPL_A))[0] == 0
    a = assess(account(*template_verdicts(TPL_A), prompts=(halves,)), T0, CFG)
    assert a.score == 0 and a.action == "allow"
    # and a verdict without a signature (from a core before signatures) matches nothing
    unsigned = {k: 0 for k in convicted(TPL_A)}
    assert template_use([TPL_A], unsigned)[0] == 0


def test_the_prompts_of_one_template_never_count_as_two() -> None:
    rng = random.Random(11)
    for _ in range(500):
        prompts = [flip(TPL_A, *rng.sample(range(64), rng.randrange(0, 6)))
                   for _ in range(RECENT_PROMPTS)]
        assert template_use(prompts, convicted(TPL_A))[0] <= 1
        a = assess(account(*template_verdicts(TPL_A), prompts=tuple(prompts)), T0, CFG)
        assert a.action != "block"  # one crowd is one kind of evidence


def test_a_further_convicted_bucket_never_lowers_the_template_count() -> None:
    rng = random.Random(12)
    buckets = sorted(convicted(*POOL))
    for _ in range(500):
        prompts = [_random_prompt(rng) for _ in range(rng.randrange(1, RECENT_PROMPTS + 1))]
        held: dict[str, int] = {}
        count = 0
        for key in rng.sample(buckets, len(buckets)):
            held[key] = SIGNATURE_OF[key]
            more = template_use(prompts, held)[0]
            assert more >= count, (prompts, held)
            count = more


def test_a_single_band_collision_is_not_a_template() -> None:
    bands = CFG.simhash_bands
    # an unrelated prompt that happens to share band 0 (its low 16 bits) with TPL_A
    collision = (OTHER & ~0xFFFF) | (TPL_A & 0xFFFF)
    hits = set(template_keys(collision, bands)) & set(convicted(TPL_A))
    assert len(hits) == 1
    assert template_use([collision], convicted(TPL_A))[0] == 0
    # nor two of them together, on two bands
    width = 64 // bands
    collides_2 = (OTHER & ~(0xFFFF << 2 * width)) | (TPL_A & (0xFFFF << 2 * width))
    assert template_use([collision, collides_2], convicted(TPL_A))[0] == 0
    assert template_use([collision, OTHER], convicted(TPL_A))[0] == 0
    assert template_use([], convicted(TPL_A))[0] == 0
    assert template_use([TPL_A], {})[0] == 0


def test_prompts_sharing_convicted_buckets_count_once() -> None:
    same_template = [TPL_A, flip(TPL_A, 3), TPL_A, flip(TPL_A, 40)]
    assert template_use(same_template, convicted(TPL_A))[0] == 1
    assert template_use([*same_template, TPL_B], convicted(TPL_A, TPL_B))[0] == 2
    assert template_use([TPL_B, TPL_A, TPL_B], convicted(TPL_A, TPL_B))[0] == 2
    # the account uses only one of the two convicted templates
    assert template_use(same_template, convicted(TPL_A, TPL_B))[0] == 1


def test_a_held_template_verdict_no_prompt_uses_adds_nothing_beside_one_that_is_used() -> None:
    # Found in review: an account holds a bucket's verdict as a member of the bucket, which its
    # prompt shares only by chance (far from the signature); once another template of its own
    # counted, the strong unused bucket counted in full, throttled it, and made it a
    # "replacement". It is no evidence at all.
    weak = [verdict(k, 0.45, signature=TPL_A) for k in template_keys(TPL_A, CFG.simhash_bands)[:2]]
    strong_far = 0x7777_1111_2222_3333
    stray = 0x5A5A_A5A5_3C3C_0000 | (strong_far & 0xFFFF)  # shares its band 0 only
    unused = verdict(template_keys(strong_far, CFG.simhash_bands)[0], 1.0, signature=strong_far)
    for first_ts in (T0 - 600, unused.issued_ts + 60):  # a member before or after its conviction
        st = account(*weak, prompts=(TPL_A, stray))
        st.first_ts = first_ts
        alone = assess(st, T0 + 120, CFG)
        st.verdicts[unused.cluster_key] = unused
        both = assess(st, T0 + 120, CFG)
        assert both == alone, first_ts
        assert both.action == "allow" and unused.cluster_key not in both.cluster_ids


def test_template_verdicts_without_the_accounts_prompts_are_no_evidence() -> None:
    for prompts in [(), (OTHER,), ((OTHER & ~0xFFFF) | (TPL_A & 0xFFFF),)]:
        a = assess(account(*template_verdicts(TPL_A), prompts=prompts), T0, CFG)
        assert a.score == 0 and a.action == "allow", prompts


def test_one_template_gives_half_weight_two_give_full_weight_and_corroborate() -> None:
    # against an established account one template counts half, two in full (each scaled by
    # its member weight)
    score = 0.9
    verdicts = (*template_verdicts(TPL_A, score), *template_verdicts(TPL_B, score))
    one = account(*verdicts, prompts=(TPL_A, OTHER))
    one.created_ts = T0 - 3 * 365 * 86400
    weight = member_weight(one, T0, CFG)
    assert weight < 1.0
    assert assess(one, T0, CFG).score == pytest.approx(
        weight * score / TEMPLATES_FOR_FULL_WEIGHT, abs=1e-4)
    two = account(*verdicts, prompts=(TPL_A, OTHER, TPL_B))
    two.created_ts = one.created_ts
    assert assess(two, T0, CFG).score >= weight * score
    # for a young account: two template crowds corroborate each other like two kinds of key,
    # and their evidence adds up like two kinds' does
    young = assess(account(*verdicts, prompts=(TPL_A, OTHER, TPL_B)), T0, CFG)
    assert young.score == pytest.approx(1 - (1 - score) ** 2, abs=1e-4)
    assert young.score >= CFG.block_score and young.action == "block"
    assert len(young.cluster_ids) == 1  # still one kind in the explanation


def _candidate(harvested_s: float, verdicts: tuple[Verdict, ...]) -> AccountState:
    """A young account that has harvested a crowd's templates for `harvested_s` (an exam's
    candidate, a course's student sending the exercises with reasoning)."""
    st = account(*verdicts, prompts=(TPL_A, OTHER, TPL_B))
    st.behaviour.harvesting_since = T0 - harvested_s
    st.behaviour.harvesting_last = T0
    return st


def test_a_block_says_which_condition_let_it_through() -> None:
    # (an operator reading a block sees why it is not a throttle: a MOOC's learner blocked
    # for moving between home, phone and campus networks read like one blocked by the pace)
    verdicts = (*template_verdicts(TPL_A, 0.9), *template_verdicts(TPL_B, 0.9))
    past = assess(_candidate(SESSION_CFG.harvest_session_s, verdicts), T0, SESSION_CFG)
    assert past.action == "block"
    assert ("a block, not a throttle: harvested known templates for 3.0 h (a block from 3.0 h)"
            in past.reasons)
    again = _candidate(30 * 60, verdicts)
    again.strikes = 1
    d = assess(again, T0, SESSION_CFG)
    assert d.action == "block" and "a block, not a throttle: blocked 1 time(s) before" in d.reasons
    hopping = _candidate(30 * 60, verdicts)
    hopping.behaviour.asn_switches = hopping.requests
    d = assess(hopping, T0, SESSION_CFG)
    assert d.action == "block"
    assert any(r.startswith("a block, not a throttle: it moves between networks or clients")
               for r in d.reasons)
    held = assess(_candidate(30 * 60, verdicts), T0, SESSION_CFG)
    assert held.action == "throttle"
    assert not any(r.startswith("a block, not a throttle") for r in held.reasons)


def test_prompt_content_alone_throttles_for_a_session_and_blocks_past_it() -> None:
    # Two convicted templates are two crowds, enough to block a campaign's account; but an
    # exam's candidates (the held-out family exam_day, core 0.8: 83% of them blocked), a
    # course's students and a viral prompt's senders share the same prompts honestly, many on
    # new accounts, and each harvests by its own requests. They stop when the session ends.
    verdicts = (*template_verdicts(TPL_A, 0.9), *template_verdicts(TPL_B, 0.9))
    in_session = assess(_candidate(30 * 60, verdicts), T0, SESSION_CFG)
    assert in_session.score >= SESSION_CFG.block_score and in_session.action == "throttle"
    assert any(r.startswith("held at throttle: no card, rotation, earlier block or machine") and
               "harvested for 30 min today (a block from 180 min)" in r
               for r in in_session.reasons)
    just_before = _candidate(SESSION_CFG.harvest_session_s - 1, verdicts)
    assert assess(just_before, T0, SESSION_CFG).action == "throttle"
    past = assess(_candidate(SESSION_CFG.harvest_session_s, verdicts), T0, SESSION_CFG)
    assert past.action == "block" and past.score == in_session.score
    assert not any(r.startswith("held at throttle") for r in past.reasons)
    # no templated high-value request of a known template yet (0): no session to outlast
    never = _candidate(0, verdicts)
    never.behaviour.harvesting_since = never.behaviour.harvesting_last = 0.0
    assert assess(never, T0, SESSION_CFG).action == "throttle"
    # the exam is over: its harvest lasted 70 minutes; hours later the verdicts still hold and
    # the throttle is reviewed, or the candidate asks another question: still no block
    done = _candidate(70 * 60, verdicts)
    done.behaviour.harvesting_last = T0 - 4 * 3600
    done.behaviour.harvesting_since = done.behaviour.harvesting_last - 70 * 60
    assert assess(done, T0, SESSION_CFG).action == "throttle"


def test_content_blocks_at_once_beside_a_tell_honest_crowds_do_not_show() -> None:
    verdicts = (*template_verdicts(TPL_A, 0.9), *template_verdicts(TPL_B, 0.9))
    # blocked before: one kind is enough, content included
    struck = _candidate(60, verdicts)
    struck.strikes = 1
    assert assess(struck, T0, CFG).action == "block"
    # a new network and client on every request: no candidate at home does that
    rotating = _candidate(60, verdicts)
    rotating.behaviour.asns = [1, 2, 3, 4, 5, 6, 7, 8]
    rotating.behaviour.asn_switches = rotating.requests - 1
    assert assess(rotating, T0, CFG).action == "block"
    # a payment instrument's crowd beside the template: not content alone
    carded = _candidate(60, (*verdicts, verdict("pay:card-1", 0.9)))
    assert assess(carded, T0, CFG).action == "block"
    # the rule off (0): content blocks at once, as before core 0.9
    off = dataclasses.replace(CFG, harvest_session_s=0)
    assert assess(_candidate(60, verdicts), T0, off).action == "block"


def test_one_template_gives_full_weight_against_a_young_account() -> None:
    # a young account (or one of unknown age) using a convicted template is one more of its
    # crowd: acted on at once; an established one sharing the prompt keeps the half weight
    score = 0.9
    for created in (None, T0 - 86400.0, T0 - CFG.young_account_age_s):
        st = account(*template_verdicts(TPL_A, score), prompts=(TPL_A, OTHER))
        st.created_ts = created
        a = assess(st, T0, CFG)
        assert a.score == pytest.approx(score, abs=1e-4), created
        assert a.action == "throttle", created  # one crowd is one kind: no block
    old = account(*template_verdicts(TPL_A, score), prompts=(TPL_A, OTHER))
    old.created_ts = T0 - CFG.young_account_age_s - 86400.0
    a = assess(old, T0, CFG)
    assert a.score == pytest.approx(member_weight(old, T0, CFG) * score / 2, abs=1e-4)
    assert a.action == "allow"
    # the chance-collision guard still holds for young accounts: a single-band collision is
    # no template at all
    collision = (OTHER & ~0xFFFF) | (TPL_A & 0xFFFF)
    assert assess(account(*template_verdicts(TPL_A, score), prompts=(collision,)),
                  T0, CFG).score == 0.0


def test_templates_evidence_is_the_noisy_or_of_the_distinct_templates() -> None:
    bands = CFG.simhash_bands
    ev_a = {k: 0.7 for k in template_keys(TPL_A, bands)}
    ev_b = {k: 0.6 for k in template_keys(TPL_B, bands)}
    signatures = convicted(TPL_A, TPL_B)
    assert templates_evidence({**ev_a, **ev_b}, signatures) == pytest.approx(1 - 0.3 * 0.4)
    # one template's buckets, however many, count once, with the strongest of them
    assert templates_evidence(ev_a, signatures) == pytest.approx(0.7)
    stronger = {**ev_a, template_keys(TPL_A, bands)[1]: 0.9}
    assert templates_evidence(stronger, signatures) == pytest.approx(0.9)
    # a third template adds to it; a stronger verdict never lowers it
    third = 0x5A5A_A5A5_3C3C_C3C3
    more = {**ev_a, **ev_b, template_keys(third, bands)[0]: 0.5}
    assert templates_evidence(more, {**signatures, template_keys(third, bands)[0]: third}
                              ) == pytest.approx(1 - 0.3 * 0.4 * 0.5)
    assert templates_evidence({**stronger, **ev_b}, signatures) >= 1 - 0.3 * 0.4


def test_a_network_crowd_alone_weighs_half() -> None:
    """A campaign rotating through residential addresses fills a provider's ASN + browser user
    agent crowd; the ordinary young users of that provider share the key and must not be
    throttled for it alone. Any other kind of evidence lifts the halving."""
    for key in ("asnua:7018:f0efeff46ec4", "ip:203.0.113.0/24"):
        alone = assess(account(verdict(key, 1.0)), T0, CFG)
        assert alone.score == pytest.approx(NETWORK_ALONE_WEIGHT) and alone.action == "allow"
        with_payment = assess(account(verdict(key, 1.0), verdict("pay:card-9", 0.7)), T0, CFG)
        assert with_payment.score == pytest.approx(1.0) and with_payment.action == "block"
    both = assess(account(verdict("asnua:7018:f0efeff46ec4", 0.9), verdict("ip:1.2.3.0/24", 0.9)),
                  T0, CFG)
    # two network crowds (an address block and a provider) are two crowds: they may throttle
    assert both.score == pytest.approx(1 - (1 - 0.9 * NETWORK_ALONE_WEIGHT) ** 2, abs=1e-4)
    assert both.action == "throttle"


def test_a_template_the_account_does_not_use_is_no_evidence_beside_a_network_crowd() -> None:
    # Measured in the new-IP run: an ordinary user held a template bucket's verdict (its
    # prompt's one band collided with it) beside a campaign-filled provider crowd; the unused
    # template counted 0 but, present, lifted the crowd to full weight, and it was throttled.
    crowd = verdict("asnua:5617:f0efeff46ec4", 1.0)
    one_bucket = verdict(template_keys(TPL_A, CFG.simhash_bands)[0], 0.9)
    with_unused = assess(account(crowd, one_bucket, prompts=(OTHER,)), T0, CFG)
    alone = assess(account(crowd, prompts=(OTHER,)), T0, CFG)
    assert with_unused == alone
    assert with_unused.score == pytest.approx(NETWORK_ALONE_WEIGHT)
    assert not any(k.startswith("tpl:") for k in with_unused.cluster_ids)
    # and a network crowd beside a middling account-model anomaly still does not throttle
    anomalous = assess(account(crowd, account_score=0.43, prompts=(OTHER,)), T0, CFG)
    assert anomalous.action == "allow"


def test_one_template_alone_never_blocks() -> None:
    a = assess(account(*template_verdicts(TPL_A), account_score=1.0, prompts=(TPL_A,) * 8),
               T0, CFG)
    assert a.action != "block"


def _template_state(rng: random.Random, now: float) -> AccountState:
    """Verdicts on a random part of the pool's buckets, other evidence, and a few prompts
    (the pool's templates, near-duplicates of them, unrelated ones)."""
    verdicts = [_random_verdict(rng, now, k) for k in sorted(convicted(*POOL))
                if rng.random() < 0.6]
    verdicts += [_random_verdict(rng, now) for _ in range(rng.randrange(3))]
    st = account(*verdicts, account_score=rng.choice([0.0, rng.random()]), last_ts=now)
    st.created_ts = rng.choice([None, now - rng.uniform(0, 2 * 365 * 86400)])
    st.recent_prompts = [_random_prompt(rng) for _ in range(rng.randrange(RECENT_PROMPTS))]
    return st


def _random_prompt(rng: random.Random) -> int:
    kind = rng.random()
    if kind < 0.3:
        return rng.getrandbits(64)
    template = rng.choice(POOL)
    if kind < 0.5:
        return template
    # near-duplicates, up to a little past SIGNATURE_BITS from the template
    return flip(template, *rng.sample(range(64), rng.randrange(1, SIGNATURE_BITS + 3)))


@pytest.mark.parametrize("cfg", [CFG, DetectorConfig(throttle_score=0.3, block_score=0.5,
                                                     release_score=0.2)],
                         ids=["default", "aggressive"])
@pytest.mark.parametrize("seed", range(4))
def test_more_convicted_template_prompts_never_weaken_the_action(cfg: DetectorConfig,
                                                                 seed: int) -> None:
    rng = random.Random(seed)
    actions = set()
    for _ in range(1500):
        now = T0 + rng.uniform(0, 3600)
        st = _template_state(rng, now)
        before = assess(st, now, cfg)
        actions.add(before.action)
        more = copy.deepcopy(st)
        for _ in range(RECENT_PROMPTS - len(more.recent_prompts)):
            # the account sends one more prompt of a template; no older prompt is dropped
            more.recent_prompts.append(_random_prompt(rng))
            after = assess(more, now, cfg)
            assert STRENGTH[after.action] >= STRENGTH[before.action], (st, more)
            assert after.score >= before.score
            before = after
    assert actions == {"allow", "throttle", "block"}


def test_two_templates_each_hitting_one_convicted_bucket_count_as_two() -> None:
    # a slow campaign's templates convict band by band: an account's prompts often hit only one
    # convicted bucket of each template, and two such templates are still two crowds
    width = 64 // CFG.simhash_bands
    a_keeps_0 = flip(TPL_A, width, 2 * width, 3 * width)
    b_keeps_3 = flip(TPL_B, 0, width, 2 * width)
    conv = convicted(TPL_A, TPL_B)
    assert template_use([a_keeps_0], conv)[0] == 1
    assert template_use([a_keeps_0, b_keeps_3], conv)[0] == 2
    score = 0.9
    a = assess(account(*template_verdicts(TPL_A, score), *template_verdicts(TPL_B, score),
                       prompts=(a_keeps_0, OTHER, b_keeps_3)), T0, CFG)
    # two crowds: their evidence adds up (templates_evidence)
    assert a.score == pytest.approx(1 - (1 - score) ** 2, abs=1e-4) and a.action == "block"


def test_only_a_few_buckets_of_each_template_convicted_still_count() -> None:
    # one of each template's four buckets convicted: both templates count
    bands = CFG.simhash_bands
    conv = {template_keys(TPL_A, bands)[0]: TPL_A, template_keys(TPL_B, bands)[3]: TPL_B}
    assert template_use([TPL_A, TPL_B], conv)[0] == 2
    assert template_use([TPL_A, TPL_A, flip(TPL_A, 40)], conv)[0] == 1


def test_near_duplicates_within_the_template_distance_are_one_template() -> None:
    rng = random.Random(13)
    conv = convicted(TPL_A, TPL_B)
    for _ in range(300):
        # each at most half the distance from the template, in any bits
        most = SAME_TEMPLATE_BITS // 2
        prompts = [flip(TPL_A, *rng.sample(range(64), rng.randrange(0, most + 1)))
                   for _ in range(RECENT_PROMPTS - 1)]
        assert template_use(prompts, conv)[0] <= 1
        assert template_use([*prompts, TPL_B], conv)[0] <= 2


def test_a_further_prompt_never_lowers_the_template_count() -> None:
    rng = random.Random(14)
    for _ in range(500):
        held = {k: t for k, t in sorted(convicted(*POOL).items()) if rng.random() < 0.6}
        prompts: list[int] = []
        count = 0
        for _ in range(RECENT_PROMPTS):
            prompts.append(_random_prompt(rng))
            more = template_use(prompts, held)[0]
            assert more >= count, (prompts, held)
            count = more


def test_the_template_count_does_not_depend_on_the_order_of_the_prompts() -> None:
    width = 64 // CFG.simhash_bands
    # three near-duplicates of TPL_A, keeping bands {0}, {3} and {1, 2}, and one of TPL_B
    keeps_0 = flip(TPL_A, width, 2 * width, 3 * width)
    keeps_3 = flip(TPL_A, 0, width, 2 * width)
    keeps_12 = flip(TPL_A, 0, 3 * width)
    prompts = [keeps_0, keeps_3, keeps_12, TPL_B]
    counts = {template_use([prompts[i] for i in order], convicted(TPL_A))[0]
              for order in itertools.permutations(range(4))}
    assert len(counts) == 1, counts


def test_near_duplicates_of_one_template_are_one_template() -> None:
    width = 64 // CFG.simhash_bands
    keeps_01 = flip(TPL_A, 2 * width, 3 * width)
    keeps_23 = flip(TPL_A, 0, width)
    assert template_use([keeps_01, keeps_23], convicted(TPL_A))[0] == 1
    a = assess(account(*template_verdicts(TPL_A), prompts=(keeps_01, keeps_23)), T0, CFG)
    assert a.action != "block"  # one crowd is one kind of evidence


def test_a_further_convicted_bucket_never_weakens_template_evidence() -> None:
    a = 0x0123_4567_89AB_CDEF
    b = 0xFEDC_4567_7654_3210  # another template that shares band 2 (4567) with `a`
    shared = set(template_keys(a, 4)) & set(template_keys(b, 4))
    assert shared == {"tpl:2:4567"}
    for shared_signature in (a, b):  # the shared bucket's crowd used either template
        st = account(*(verdict(k, signature=t) for k, t in sorted(convicted(a, b).items())
                       if k not in shared), prompts=(a, b))
        before = assess(st, T0, CFG)
        assert before.action == "block"
        st.verdicts["tpl:2:4567"] = verdict("tpl:2:4567", signature=shared_signature)
        after = assess(st, T0, CFG)
        assert STRENGTH[after.action] >= STRENGTH[before.action] and after.score >= before.score


# --- member weight: established accounts weigh shared-key evidence less ------------------------


def test_member_weight_is_full_for_young_and_unknown_age_accounts() -> None:
    st = account()
    assert member_weight(st, T0, CFG) == 1.0  # age unknown
    for age in (0.0, 3600.0, CFG.young_account_age_s - 1.0, float(CFG.young_account_age_s)):
        st.created_ts = T0 - age
        assert member_weight(st, T0, CFG) == 1.0, age


def test_member_weight_falls_with_age_to_a_floor() -> None:
    st = account()
    weights = []
    for days in range(CFG.young_account_age_s // 86400, 5 * 365, 7):
        st.created_ts = T0 - days * 86400.0
        weights.append(member_weight(st, T0, CFG))
    assert all(a >= b for a, b in itertools.pairwise(weights))  # never rises
    assert weights[0] == 1.0 and weights[1] < 1.0
    assert min(weights) == ESTABLISHED_WEIGHT == 0.5
    st.created_ts = T0 - 30 * 365 * 86400.0
    assert member_weight(st, T0, CFG) == ESTABLISHED_WEIGHT


def test_established_accounts_get_less_weight_from_shared_keys() -> None:
    young = account(verdict("pay:p"), verdict("ip:10.0.0.0/24"))
    young.created_ts = T0 - 86400
    old = account(verdict("pay:p"), verdict("ip:10.0.0.0/24"))
    old.created_ts = T0 - 3 * 365 * 86400
    a_young, a_old = assess(young, T0, CFG), assess(old, T0, CFG)
    assert a_young.action == "block"
    # each kind weighs 0.5: a score of 0.75 throttles, and neither kind corroborates a block
    assert a_old.score == pytest.approx(1 - (1 - ESTABLISHED_WEIGHT) ** 2, abs=1e-4)
    assert a_old.action == "throttle"
    # the account model's own evidence is not a shared key: it is not down-weighted
    model_only = account(account_score=1.0)
    model_only.created_ts = old.created_ts
    assert assess(model_only, T0, CFG).score == assess(account(account_score=1.0), T0, CFG).score


# --- throttle before block --------------------------------------------------------------------


def test_one_kind_of_evidence_throttles_but_never_blocks() -> None:
    a = assess(account(verdict("pay:p"), account_score=1.0), T0, CFG)
    assert a.score >= CFG.block_score and a.action == "throttle"


def test_many_buckets_of_one_kind_are_one_corroboration() -> None:
    st = account(*template_verdicts(TPL_A), account_score=1.0, prompts=(TPL_A,))
    a = assess(st, T0, CFG)
    assert a.action == "throttle"
    assert len(a.cluster_ids) == 1  # the strongest tpl bucket counts once


def test_two_kinds_corroborate_a_block() -> None:
    a = assess(account(verdict("pay:p"), verdict("ip:10.0.0.0/24")), T0, CFG)
    assert a.action == "block"
    assert set(a.cluster_ids) == {"pay:p", "ip:10.0.0.0/24"}


def blockable(ttl: float | None = None, **kwargs: Any) -> AccountState:
    """An account with two corroborating kinds: a payment instrument and a shared network."""
    return account(verdict("pay:p", ttl=ttl), verdict("ip:10.0.0.0/24", ttl=ttl), **kwargs)


def test_weak_second_kind_does_not_corroborate() -> None:
    weak = CORROBORATION_SCORE * 0.9
    a = assess(account(verdict("pay:p"), verdict("ip:10.0.0.0/24", score=weak)), T0, CFG)
    assert a.score >= CFG.block_score and a.action == "throttle"


def test_account_model_alone_never_acts() -> None:
    assert assess(account(account_score=1.0), T0, CFG).action == "allow"


def test_expired_verdicts_are_ignored() -> None:
    st = blockable(ttl=60)
    assert assess(st, T0 + 59, CFG).action == "block"
    a = assess(st, T0 + 60, CFG)
    assert a.action == "allow" and a.score == 0 and a.cluster_ids == []


def test_evidence_decays_by_half_life_in_event_time() -> None:
    st = account(verdict("pay:p", score=0.8))
    assert assess(st, T0, CFG).score == pytest.approx(0.8, abs=1e-4)
    assert assess(st, T0 + CFG.evidence_half_life_s, CFG).score == pytest.approx(0.4, abs=1e-4)


# --- decisions: TTLs, ids, renewal ------------------------------------------------------------


def test_throttle_decision_has_throttle_ttl_and_rate() -> None:
    st = account(verdict("pay:p"))
    d = decide(st, T0, CFG)
    assert d is not None and d.action == "throttle"
    assert (d.ttl_s, d.rate_limit_rpm) == (CFG.throttle_ttl_s, CFG.throttle_rpm)
    assert st.action == "throttle" and st.action_until == T0 + CFG.throttle_ttl_s
    assert st.action_decision_id == d.decision_id


def test_block_decision_has_block_ttl_and_no_rate() -> None:
    st = blockable()
    d = decide(st, T0, CFG)
    assert d is not None and d.action == "block"
    assert (d.ttl_s, d.rate_limit_rpm) == (CFG.block_ttl_s, None)
    assert st.action_until == T0 + CFG.block_ttl_s


def test_no_evidence_no_decision() -> None:
    assert decide(account(), T0, CFG) is None


def test_throttle_escalates_to_block_when_corroborated() -> None:
    st = account(verdict("pay:p"))
    first = decide(st, T0, CFG)
    st.verdicts["ip:10.0.0.0/24"] = verdict("ip:10.0.0.0/24", issued=T0 + 60)
    second = decide(st, T0 + 60, CFG)
    assert first is not None and second is not None
    assert (first.action, second.action) == ("throttle", "block")


def test_same_evidence_is_not_decided_twice_until_renewal() -> None:
    cfg = DetectorConfig(verdict_ttl_s=10 * CFG.throttle_ttl_s, evidence_half_life_s=10**7)
    st = account(verdict("pay:p", ttl=cfg.verdict_ttl_s))
    first = decide(st, T0, cfg)
    assert first is not None
    for dt in (1, 60, cfg.throttle_ttl_s / 2 - 1):
        assert decide(st, T0 + dt, cfg) is None
    renewal = decide(st, T0 + cfg.throttle_ttl_s / 2, cfg)
    assert renewal is not None and renewal.action == "throttle"
    assert renewal.decision_id != first.decision_id
    assert st.action_until == T0 + cfg.throttle_ttl_s / 2 + cfg.throttle_ttl_s


def _fresh_decision(cfg: DetectorConfig = CFG, vid: str = "cv-1") -> Decision:
    d = decide(account(verdict("pay:p", vid=vid)), T0, cfg)
    assert d is not None
    return d


def test_decision_ids_are_stable_for_the_same_basis() -> None:
    assert _fresh_decision().decision_id == _fresh_decision().decision_id
    # the processing order of the basis does not matter
    assert decision_id("a", "block", ["x", "y"], "mv") == decision_id("a", "block", ["y", "x"], "mv")


def test_decision_ids_differ_for_different_bases_and_versions() -> None:
    base = _fresh_decision().decision_id
    assert _fresh_decision(vid="cv-2").decision_id != base
    other_version = DetectorConfig(window_s=CFG.window_s * 2)
    assert other_version.model_version != CFG.model_version
    assert _fresh_decision(other_version).decision_id != base
    assert decision_id("a", "throttle", ["x"], "mv") != decision_id("a", "block", ["x"], "mv")
    assert decision_id("a", "block", ["x"], "mv") != decision_id("b", "block", ["x"], "mv")


# --- hysteresis: lifted only below the release score ------------------------------------------


def _walk(st: AccountState, cfg: DetectorConfig, until: float) -> list[tuple[float, float, Decision]]:
    """Decide every 15 s of event time; no allow may come while the score is >= release."""
    decisions: list[tuple[float, float, Decision]] = []
    t = T0
    while t < until:
        t += 15
        score = assess(st, t, cfg).score
        d = decide(st, t, cfg)
        if d is not None:
            decisions.append((t, score, d))
        if score >= cfg.release_score:
            assert d is None or d.action != "allow", (t, score)
    return decisions


@pytest.mark.parametrize("ttl_s", [1200, 4 * 3600], ids=["review-due-first", "review-later"])
def test_no_allow_while_score_is_at_or_above_release_then_allow(ttl_s: int) -> None:
    # An action in force is reviewed once half its TTL has run (models/policy.py, decide): it is
    # lifted at the first review at which the score is below the release score.
    cfg = DetectorConfig(throttle_score=0.6, block_score=0.85, release_score=0.4,
                         evidence_half_life_s=600, throttle_ttl_s=ttl_s)
    st = account(verdict("pay:p", score=0.9))
    d = decide(st, T0, cfg)
    assert d is not None and d.action == "throttle"
    below_release_at = T0 + 600 * math.log2(0.9 / 0.4)
    review_at = T0 + ttl_s / 2
    lift_due = max(below_release_at, review_at)
    assert lift_due < T0 + ttl_s  # lifted explicitly, before the throttle runs out by itself
    decisions = _walk(st, cfg, lift_due + 300)
    # evidence passed through the band between throttle and release without flapping, then
    # exactly one allow at the first review below the release score
    assert [d.action for _, _, d in decisions] == ["allow"]
    lifted_at, score, allow = decisions[0]
    assert score < cfg.release_score and lifted_at - 15 < lift_due <= lifted_at
    assert allow.ttl_s is None and allow.rate_limit_rpm is None
    assert str(cfg.release_score) in allow.reasons[0]
    assert st.action == "allow"


def test_block_is_not_downgraded_to_throttle_inside_the_band() -> None:
    cfg = DetectorConfig(evidence_half_life_s=600, block_ttl_s=4 * 3600)
    st = blockable()
    d = decide(st, T0, cfg)
    assert d is not None and d.action == "block"
    decisions = _walk(st, cfg, T0 + cfg.block_ttl_s - 15)
    # the score passes the throttle band within minutes; the block stands until its review
    assert [d.action for _, _, d in decisions] == ["allow"]
    lifted_at, score, _ = decisions[0]
    assert score < cfg.release_score
    assert lifted_at == T0 + cfg.block_ttl_s / 2


def test_escalation_is_not_held_back_until_the_review() -> None:
    st = account(verdict("pay:p"))
    first = decide(st, T0, CFG)
    assert first is not None and first.action == "throttle"
    st.verdicts["ip:10.0.0.0/24"] = verdict("ip:10.0.0.0/24", issued=T0 + 1)
    second = decide(st, T0 + 1, CFG)  # long before half the throttle TTL has run
    assert second is not None and second.action == "block"


# --- the published record ---------------------------------------------------------------------


@pytest.mark.parametrize("evidence", ["throttle", "block", "allow"])
def test_decisions_validate_against_the_contract(validate: Callable[[str, Any], None],
                                                 evidence: str) -> None:
    cfg = DetectorConfig(evidence_half_life_s=600)
    st = account(verdict("pay:p"),
                 *([verdict("ip:10.0.0.0/24")] if evidence == "block" else []),
                 account_score=0.5)
    d = decide(st, T0, cfg)
    if evidence == "allow":
        d = None
        t = T0
        while d is None or d.action != "allow":
            t += 60
            d = decide(st, t, cfg)
            assert t < T0 + 86400
    assert d is not None and d.action == evidence
    record = d.to_record(1_700_000_500.0)
    validate("enforcement-decision", record)
    assert record["model_version"] == cfg.model_version
    assert record["mode"] == "enforce"
    assert record["reasons"] and all(r for r in record["reasons"])
    if evidence != "allow":
        assert "cluster pay:p convicted" in record["reasons"]
        assert "account model anomaly on window 42" in record["reasons"]
        assert record["cluster_ids"][0] in {"pay:p", "ip:10.0.0.0/24"}


def test_shadow_mode_marks_decisions_and_keeps_the_model_version(
        validate: Callable[[str, Any], None]) -> None:
    shadow = DetectorConfig(shadow=True)
    d = _fresh_decision(shadow)
    assert d.mode == "shadow"
    assert shadow.model_version == CFG.model_version
    record = d.to_record(T0)
    validate("enforcement-decision", record)
    assert record["mode"] == "shadow"
    assert _fresh_decision(CFG).mode == "enforce"


def test_decision_ids_include_the_mode() -> None:
    # a shadow decision and the enforced one after a switch to enforcing are not duplicates
    shadow, enforced = _fresh_decision(DetectorConfig(shadow=True)), _fresh_decision(CFG)
    assert (shadow.action, shadow.score, shadow.reasons) == (
        enforced.action, enforced.score, enforced.reasons)
    assert shadow.decision_id != enforced.decision_id
    assert decision_id("a", "block", ["x"], "mv", "shadow") != decision_id(
        "a", "block", ["x"], "mv", "enforce")
    assert decision_id("a", "block", ["x"], "mv") == decision_id("a", "block", ["x"], "mv",
                                                                 "enforce")


# --- the hydra pattern: replacement accounts ---------------------------------------------------


def _fresh(*verdicts: Verdict, created_days_ago: float | None = 2.0,
           prompts: tuple[int, ...] = ()) -> AccountState:
    """An account first seen at T0 - 600 (see `account`), created a few days ago."""
    st = account(*verdicts, prompts=prompts)
    st.created_ts = None if created_days_ago is None else T0 - created_days_ago * 86400
    return st


def test_a_fresh_account_on_a_key_convicted_before_it_appeared_is_blocked_as_a_replacement() -> None:
    convicted_before = verdict("pay:p", issued=T0 - 900)
    a = assess(_fresh(convicted_before), T0, CFG)
    assert a.action == "block"
    assert any("replacement account: first seen 5 min after cluster pay:p" in r
               for r in a.reasons)
    assert any(b.startswith("replacement:") for b in a.basis)


def test_a_member_from_before_the_conviction_is_no_replacement() -> None:
    convicted_after = verdict("pay:p", issued=T0 - 60)  # the account was first seen at T0 - 600
    a = assess(_fresh(convicted_after), T0, CFG)
    assert a.action == "throttle" and not any("replacement" in r for r in a.reasons)


def test_joining_a_convicted_network_key_or_being_established_makes_no_replacement() -> None:
    # campus NATs get fresh users, so do residential ISPs: no replacement, and a network crowd
    # alone weighs half (not even a throttle)
    nat = verdict("ip:198.51.100.0/24", issued=T0 - 900)
    assert assess(_fresh(nat), T0, CFG).action == "allow"
    isp = verdict("asnua:3320:5ca1ab1e0000", issued=T0 - 900)
    assert assess(_fresh(isp), T0, CFG).action == "allow"
    old = _fresh(verdict("pay:p", issued=T0 - 900), created_days_ago=400)
    assert assess(old, T0, CFG).action != "block"


def test_weak_evidence_on_the_joined_key_makes_no_replacement() -> None:
    weak = verdict("pay:p", score=CORROBORATION_SCORE * 0.9, issued=T0 - 900)
    assert assess(_fresh(weak), T0, CFG).action != "block"


def test_system_prompts_and_templates_make_no_replacement() -> None:
    # a tutorial puts the docs' example system prompt and its prompts in every new user's
    # hands: only a payment instrument makes a fresh account a replacement
    for key, kwargs in (("sys:docs-example", {}),
                        (template_keys(TPL_A, CFG.simhash_bands)[0], {"signature": TPL_A})):
        v = verdict(key, issued=T0 - 900, **kwargs)
        a = assess(_fresh(v, prompts=(TPL_A,)), T0, CFG)
        assert not any("replacement" in r for r in a.reasons), key


# --- a crowd weighs on an account by the account's own behaviour (framing) --------------------


def test_a_crowd_weighs_nothing_on_an_account_whose_own_requests_are_ordinary() -> None:
    # A handful of attackers that share a card, a tutorial template and an ISP with honest
    # users get those keys convicted; the honest users, whose own requests are ordinary, are
    # not the campaign.
    verdicts = (verdict("pay:reseller-card"), *template_verdicts(TPL_A),
                verdict("asnua:7922:5ca1ab1e0000"), verdict("sys:tool-default"))
    honest = account(*verdicts, prompts=(TPL_A, OTHER), behaviour=ordinary_behaviour())
    a = assess(honest, T0, CFG)
    assert a.action == "allow" and a.score < CFG.throttle_score, a
    # the same verdicts against the attackers, whose own requests harvest: a block
    assert assess(account(*verdicts, prompts=(TPL_A, OTHER)), T0, CFG).action == "block"


def test_a_newcomer_takes_a_cards_prior_but_not_a_networks_nor_an_unproven_content_keys() -> None:
    new = Behaviour()  # one request, nothing to judge it by yet
    card = Verdict("pay:p", 1.0, T0, T0 + CFG.verdict_ttl_s, "cv-p", "card", 0, prior=0.9)
    assert assess(account(card, behaviour=new, requests=1), T0, CFG).action == "throttle"
    honest_card = Verdict("pay:p", 1.0, T0, T0 + CFG.verdict_ttl_s, "cv-p", "card", 0, prior=0.1)
    assert assess(account(honest_card, behaviour=new, requests=1), T0, CFG).action == "allow"
    isp = Verdict("asnua:1:x", 1.0, T0, T0 + CFG.verdict_ttl_s, "cv-i", "isp", 0, prior=1.0)
    assert assess(account(isp, behaviour=new, requests=1), T0, CFG).score == 0.0
    # a template's crowd judges its newcomers only once proven to harvest for longer than a
    # tutorial lasts
    key = template_keys(TPL_A, CFG.simhash_bands)[0]
    unproven = Verdict(key, 1.0, T0, T0 + CFG.verdict_ttl_s, "cv-t", "tpl", TPL_A, prior=1.0,
                       proven=PROVEN_CROWD - 0.01)
    proven = Verdict(key, 1.0, T0, T0 + CFG.verdict_ttl_s, "cv-t2", "tpl", TPL_A, prior=1.0,
                     proven=PROVEN_CROWD)
    assert assess(account(unproven, prompts=(TPL_A,), behaviour=new, requests=1),
                  T0, CFG).score == 0.0
    assert assess(account(proven, prompts=(TPL_A,), behaviour=new, requests=1),
                  T0, CFG).action == "throttle"


def test_a_newcomer_to_a_proven_content_crowd_is_blocked_at_once_only_if_the_crowd_rotates(
) -> None:
    # Two convicted templates of one crowd proven to harvest for long, and a newcomer sending
    # both: judged by the crowd's prior either way. A hydra's crowd rotates through a proxy
    # pool: its fresh account is a campaign's, blocked at once. A MOOC's or a bootcamp's crowd
    # does not: its late joiner is throttled (held), as its cohort is.
    new = Behaviour()

    def crowd(rotating: float) -> list[Verdict]:
        return [dataclasses.replace(v, prior=1.0, proven=1.0, rotating=rotating)
                for tpl in (TPL_A, TPL_B) for v in template_verdicts(tpl)]

    course = assess(account(*crowd(CHURN_ROTATING_SHARE - 0.01), prompts=(TPL_A, TPL_B),
                            behaviour=new, requests=2), T0, CFG)
    hydra = assess(account(*crowd(CHURN_ROTATING_SHARE), prompts=(TPL_A, TPL_B),
                           behaviour=new, requests=2), T0, CFG)
    assert course.score == hydra.score >= CFG.block_score
    assert (course.action, hydra.action) == ("throttle", "block")
    assert "held_at_throttle" in course.reason_codes
    # a verdict from a core before 0.15 carries no rotation: throttled, not blocked
    old = [Verdict.from_wire(v.to_wire()[:9]) for v in crowd(1.0)]
    assert assess(account(*old, prompts=(TPL_A, TPL_B), behaviour=new, requests=2),
                  T0, CFG).action == "throttle"


def test_content_evidence_waits_for_the_accounts_own_templated_harvest() -> None:
    # a tutorial's new user sends a few of its templates with the docs' system prompt, then
    # ordinary requests; a campaign's accounts keep harvesting
    verdicts = (*template_verdicts(TPL_A), verdict("sys:docs-example"))
    for volume, lowest, highest in ((CONTENT_VOLUME_FLOOR, "allow", "allow"),
                                    (SUSTAINED_TEMPLATED_REQUESTS, "throttle", "block")):
        b = harvesting_behaviour()
        b.templated_high_value = volume
        a = assess(account(*verdicts, prompts=(TPL_A,), behaviour=b), T0, CFG)
        assert STRENGTH[lowest] <= STRENGTH[a.action] <= STRENGTH[highest], (volume, a)
    # an account that rotates its network and client is no tutorial's user: nothing to wait for
    b = harvesting_behaviour()
    b.templated_high_value = 0
    b.asns, b.asn_switches = [1, 2, 3, 4, 5, 6, 7, 8], 9
    a = assess(account(*verdicts, prompts=(TPL_A,), behaviour=b), T0, CFG)
    assert a.action == "block", a


def test_a_weak_template_crowd_counts_only_beside_another_template() -> None:
    weak = CFG.cluster_convict_score - 0.1
    one = assess(account(*template_verdicts(TPL_A, weak), prompts=(TPL_A,)), T0, CFG)
    assert one.score == 0.0 and one.action == "allow"
    two = assess(account(*template_verdicts(TPL_A, weak), *template_verdicts(TPL_B, weak),
                         prompts=(TPL_A, TPL_B)), T0, CFG)
    assert two.score == pytest.approx(1 - (1 - weak) ** 2, abs=1e-4)
    assert two.action == "block"


def test_no_block_on_crowds_the_accounts_own_requests_do_not_bear_out() -> None:
    # reasoning on half of its requests, nothing else: a harvest figure under HARVESTING
    b = Behaviour(high_value=8, reasoning=4, recent_asks=[HIGH_VALUE | REASONING,
                                                          HIGH_VALUE] * 4,
                  recent_templates=[0] * MAX_REMEMBERED)
    st = account(verdict("pay:p"), verdict("asnua:7922:5ca1ab1e0000"), behaviour=b)
    a = assess(st, T0, CFG)
    assert a.score >= CFG.block_score and a.action == "throttle", a


def test_a_repeat_offender_is_blocked_on_one_kind_of_crowd() -> None:
    st = account(verdict("pay:p"))
    assert assess(st, T0, CFG).action == "throttle"
    st.strikes = 1
    assert assess(st, T0, CFG).action == "block"


def test_a_block_counts_a_strike() -> None:
    st = account(verdict("pay:p"), verdict("sys:s"))
    assert decide(st, T0, CFG).action == "block" and st.strikes == 1
    assert decide(st, T0 + 60, CFG) is None and st.strikes == 1  # the same block: no new strike


def test_rotation_makes_an_aged_account_weigh_in_full() -> None:
    st = account()
    st.created_ts = T0 - 3 * 365 * 86400
    assert member_weight(st, T0, CFG) == ESTABLISHED_WEIGHT
    st.behaviour.asns, st.behaviour.asn_switches = [1, 2, 3, 4, 5, 6, 7, 8], 9
    assert member_weight(st, T0, CFG) == 1.0


# --- the allow-list ---------------------------------------------------------------------------


def test_an_allow_listed_account_or_organisation_is_never_acted_on() -> None:
    for allowance in (Allowance("account", "acct-1", "verified customer", "settings"),
                      Allowance("org", "org-7", "enterprise contract", "control", "analyst-1")):
        allow = AllowList()
        allow.grant(allowance)
        st = account(verdict("pay:p"), verdict("sys:s"))
        st.org_id = "org-7"
        assert decide(st, T0, CFG, allow) is None and st.action == "allow"
        allow.revoke(allowance.scope, allowance.id)
        assert decide(st, T0 + 1, CFG, allow).action == "block"


def test_an_allowance_lifts_an_action_in_force_with_its_reason(
        validate: Callable[[str, Any], None]) -> None:
    allow = AllowList()
    st = account(verdict("pay:p"), verdict("sys:s"))
    blocked = decide(st, T0, CFG, allow)
    assert blocked is not None and blocked.action == "block"
    allow.grant(Allowance("account", "acct-1", "a paying customer", "control", "analyst-1"))
    lifted = decide(st, T0 + 60, CFG, allow)
    assert lifted is not None and lifted.action == "allow" and st.action == "allow"
    assert lifted.reasons == [
        "allow-listed account acct-1 (control by analyst-1): a paying customer"]
    validate("enforcement-decision", lifted.to_record(processed_ts=T0 + 61))
    # the same lift on the same evidence has the same id (a replay gives it again)
    again = account(verdict("pay:p"), verdict("sys:s"))
    decide(again, T0, CFG, AllowList())
    assert decide(again, T0 + 60, CFG, allow).decision_id == lifted.decision_id
    assert decide(st, T0 + 120, CFG, allow) is None  # nothing more to lift


# --- reason codes: the machine-readable reasons beside the prose ------------------------------


def test_reason_codes_name_the_crowds_strongest_first_then_the_accounts_own_evidence(
        validate: Callable[[str, Any], None]) -> None:
    st = account(verdict("pay:p"), verdict("ip:10.0.0.0/24", score=0.8), account_score=0.5)
    d = decide(st, T0, CFG)
    assert d is not None and d.action == "block"
    assert d.reason_codes == ["cluster_payment", "cluster_network", "account_harvest",
                              "account_anomaly"]
    assert d.source == "detector" and d.by is None
    record = d.to_record(T0 + 1)
    validate("enforcement-decision", record)
    assert (record["reason_codes"], record["source"], record["by"]) == (
        d.reason_codes, "detector", None)


def test_every_kind_of_crowd_has_its_code_and_a_code_is_never_repeated() -> None:
    # four template buckets convicted are one kind, one code
    st = _fresh(verdict("pay:p", issued=T0 - 900), verdict("sys:s"), verdict("asnua:64500|ua"),
                *template_verdicts(TPL_A), prompts=(TPL_A,))
    a = assess(st, T0, CFG)
    assert set(a.reason_codes) >= {"cluster_payment", "cluster_system_prompt",
                                   "cluster_asn_client", "cluster_template",
                                   "replacement_account"}
    assert len(a.reason_codes) == len(set(a.reason_codes))


def test_a_throttle_held_back_from_a_block_says_so_in_its_codes() -> None:
    verdicts = (*template_verdicts(TPL_A, 0.9), *template_verdicts(TPL_B, 0.9))
    held = assess(_candidate(30 * 60, verdicts), T0, CFG)
    assert held.action == "throttle" and held.reason_codes[0] == "cluster_template"
    assert held.reason_codes[-1] == "held_at_throttle"
    past = assess(_candidate(CFG.harvest_session_s, verdicts), T0, CFG)
    assert past.action == "block" and "held_at_throttle" not in past.reason_codes


def test_a_lift_is_coded_released_or_allow_listed() -> None:
    cfg = DetectorConfig(evidence_half_life_s=600)
    st = account(verdict("pay:p", score=0.9))
    assert decide(st, T0, cfg) is not None
    lifted = [d for _, _, d in _walk(st, cfg, T0 + cfg.throttle_ttl_s)]
    assert [d.action for d in lifted] == ["allow"] and lifted[0].reason_codes[0] == "released"
    allow = AllowList()
    st = blockable()
    assert decide(st, T0, CFG, allow) is not None
    allow.grant(Allowance("account", "acct-1", "a paying customer", "control", "analyst-1"))
    d = decide(st, T0 + 60, CFG, allow)
    assert d is not None and d.reason_codes == ["allow_listed"] and d.source == "detector"


def test_the_cores_reason_codes_are_the_contracts() -> None:
    schema = contract_validator("enforcement-decision").schema
    assert sorted(REASON_CODES) == sorted(schema["properties"]["reason_codes"]["items"]["enum"])


# --- operators' manual decisions (models/operator.py) -----------------------------------------


def test_while_an_operators_allow_holds_the_detector_decides_nothing_then_afresh() -> None:
    held = OperatorDecisions()
    st = blockable()
    blocked = decide(st, T0, CFG, None, held)
    assert blocked is not None and blocked.action == "block"
    manual = OperatorDecision("acct-1", "allow", 3600, None, "customer on the phone", "alice",
                              T0 + 60)
    assert held.put(manual)
    st.verdicts["sys:s2"] = verdict("sys:s2", issued=T0 + 120)  # more evidence: still nothing
    assert all(decide(st, t, CFG, None, held) is None for t in (T0 + 61, T0 + 1800, T0 + 3659))
    again = decide(st, manual.until, CFG, None, held)
    assert again is not None and again.action == "block" and again.source == "detector"


def test_an_operators_block_is_not_lifted_by_decaying_evidence_and_ends_with_its_ttl() -> None:
    held = OperatorDecisions()
    st = account(verdict("pay:p", ttl=600))  # evidence gone after ten minutes
    held.put(OperatorDecision("acct-1", "block", 7200, None, "ticket T-1", "bob", T0))
    assert [decide(st, T0 + t, CFG, None, held) for t in (1, 900, 7199)] == [None] * 3
    assert st.action == "block" and st.action_until == T0 + 7200
    # ended: nothing in force (the gateway's TTL ran out too), and no evidence to act on
    assert decide(st, T0 + 7200, CFG, None, held) is None


def test_an_operators_decision_revoked_early_leaves_the_account_to_the_detector() -> None:
    held = OperatorDecisions()
    st = blockable()
    held.put(OperatorDecision("acct-1", "throttle", 86400, 1, "ticket T-2", "carol", T0))
    assert decide(st, T0 + 1, CFG, None, held) is None and st.action == "throttle"
    held.remove("acct-1")
    d = decide(st, T0 + 2, CFG, None, held)
    assert d is not None and d.action == "block" and d.source == "detector"
    quiet = account()
    held.put(OperatorDecision("acct-1", "block", 86400, None, "ticket T-3", "carol", T0))
    assert decide(quiet, T0 + 1, CFG, None, held) is None and quiet.action == "block"
    held.remove("acct-1")
    assert decide(quiet, T0 + 2, CFG, None, held) is None and quiet.action == "allow"


def test_an_operators_decision_beats_an_allowance_of_its_organisation() -> None:
    allow = AllowList()
    allow.grant(Allowance("org", "org-7", "enterprise contract", "settings"))
    held = OperatorDecisions()
    held.put(OperatorDecision("acct-1", "block", 3600, None, "stolen key", "dave", T0))
    st = blockable()
    st.org_id = "org-7"
    assert decide(st, T0 + 1, CFG, allow, held) is None and st.action == "block"


@pytest.mark.parametrize("action", ["allow", "throttle", "block"])
def test_an_operators_decision_record_validates_and_names_who(
        validate: Callable[[str, Any], None], action: str) -> None:
    manual = OperatorDecision("acct-1", action, 5400, 1 if action == "throttle" else None,
                              "ticket T-4", "erin", T0)
    d = manual.to_decision("mv-1")
    record = d.to_record(T0 + 1)
    validate("enforcement-decision", record)
    assert (record["source"], record["by"], record["reason_codes"]) == (
        "operator", "erin", [f"operator_{action}"])
    assert record["ttl_s"] == (None if action == "allow" else 5400)
    assert record["mode"] == "enforce" and d.decision_id == manual.decision_id
    assert d.decision_id.startswith("dg-op-") and len(d.decision_id) <= 128
    assert record["reasons"][0].endswith("by operator erin for 1.5 h: ticket T-4")
    lift = revoked_decision("acct-1", "erin", "resolved", T0 + 2, "mv-1")
    validate("enforcement-decision", lift.to_record(T0 + 2))
    assert lift.action == "allow" and lift.reason_codes == ["operator_allow"]


def test_the_operator_table_is_bounded_and_forgets_what_ran_out_first(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(operator_module, "MAX_OPERATOR_DECISIONS", 2)
    held = OperatorDecisions()
    assert held.put(OperatorDecision("a", "block", 60, None, "r", "x", T0))
    assert held.put(OperatorDecision("b", "block", 3600, None, "r", "x", T0))
    assert not held.put(OperatorDecision("c", "block", 60, None, "r", "x", T0 + 30))
    assert held.put(OperatorDecision("c", "block", 60, None, "r", "x", T0 + 60))  # a ran out
    assert set(held.by_account) == {"b", "c"}


# --- an organisation's operator decision: precedence ------------------------------------------
# account-scope operator decision > org-scope operator decision > allow-list > detector


def org_decision(action: str, ttl: int = 3600, at: float = T0) -> OperatorDecision:
    return OperatorDecision("org-7", action, ttl, 2 if action == "throttle" else None,
                            "abuse from the whole org, I-8", "frank", at, "org")


def test_an_organisations_decision_silences_the_detector_for_its_accounts() -> None:
    held = OperatorDecisions()
    held.put(org_decision("allow"))
    member, stranger = blockable(), blockable()
    member.org_id, stranger.org_id = "org-7", "org-8"
    assert decide(member, T0 + 1, CFG, None, held) is None and member.action == "allow"
    d = decide(stranger, T0 + 1, CFG, None, held)
    assert d is not None and d.action == "block", "another organisation's account: detector"
    # ended: the member is the detector's again
    again = decide(member, T0 + 3600, CFG, None, held)
    assert again is not None and again.action == "block" and again.source == "detector"


def test_an_accounts_own_operator_decision_beats_its_organisations() -> None:
    held = OperatorDecisions()
    held.put(org_decision("block"))
    held.put(OperatorDecision("acct-1", "allow", 3600, None, "verified, T-12", "gina", T0))
    st = blockable()
    st.org_id = "org-7"
    assert held.in_force("acct-1", T0 + 1, "org-7").scope == "account"
    assert decide(st, T0 + 1, CFG, None, held) is None and st.action == "allow"
    held.remove("acct-1")
    assert decide(st, T0 + 2, CFG, None, held) is None and st.action == "block"
    assert held.in_force("acct-1", T0 + 2, "org-7").scope == "org"


def test_an_organisations_operator_decision_beats_an_allowance() -> None:
    allow = AllowList()
    allow.grant(Allowance("account", "acct-1", "enterprise contract", "settings"))
    held = OperatorDecisions()
    held.put(org_decision("block"))
    st = blockable()
    st.org_id = "org-7"
    assert decide(st, T0 + 1, CFG, allow, held) is None and st.action == "block"
    held.remove("org-7", "org")  # lifted: the allowance holds, the detector stays silent
    assert decide(st, T0 + 2, CFG, allow, held) is None


def test_the_detectors_action_is_lifted_once_when_its_organisation_is_allowed() -> None:
    # At the gate the stronger of the account's and the organisation's answers wins: a block of
    # the detector's own would outlast an operator's allow of the organisation.
    held = OperatorDecisions()
    st = blockable()
    st.org_id = "org-7"
    blocked = decide(st, T0, CFG, None, held)
    assert blocked is not None and blocked.action == "block"
    manual = org_decision("allow", at=T0 + 10)
    held.put(manual)
    lift = decide(st, T0 + 11, CFG, None, held)
    assert lift is not None and (lift.action, lift.source, lift.by) == ("allow", "operator",
                                                                       "frank")
    assert lift.account_id == "acct-1" and lift.reason_codes == ["operator_allow"]
    assert "organisation org-7" in lift.reasons[0]
    assert decide(st, T0 + 12, CFG, None, held) is None  # once
    # An organisation's throttle lifts nothing of the detector's: a gateway that does not send
    # the organisation would serve the account freely.
    other, held2 = blockable(), OperatorDecisions()
    other.org_id = "org-7"
    assert decide(other, T0, CFG, None, held2) is not None
    held2.put(org_decision("throttle", at=T0 + 10))
    assert decide(other, T0 + 11, CFG, None, held2) is None and other.action == "throttle"


def test_an_organisations_decision_record_is_keyed_for_the_gate(
        validate: Callable[[str, Any], None]) -> None:
    manual = org_decision("throttle")
    record = manual.to_decision("mv-1").to_record(T0 + 1)
    validate("enforcement-decision", record)
    assert manual.key == "org:org-7" and record["account_id"] == "org-7"
    assert record["reasons"][0].startswith("throttled (organisation org-7) to 2/min")


def test_a_lift_by_hand_ends_the_detectors_action_decided_before_it() -> None:
    held = OperatorDecisions()
    st = blockable()
    blocked = decide(st, T0, CFG, None, held)
    assert blocked is not None and blocked.action == "block"
    assert decide(st, T0 + 5, CFG, None, held) is None  # in force: nothing stronger
    held.note_lift("acct-1", T0 + 10)  # `override lift`: the gateway got an allow
    again = decide(st, T0 + 11, CFG, None, held)
    assert again is not None and again.action == "block" and again.source == "detector", \
        "handed back to the detector: it decides afresh from the evidence"
    assert again.decision_id != blocked.decision_id, "a new decision: not a duplicate's id"
    # a later action of the detector's is not undone by that earlier lift
    assert decide(st, T0 + 12, CFG, None, held) is None and st.action == "block"
    # traffic from the past (event times before the lift): the lift is acted on once
    held.note_lift("acct-1", T0 + 3600)
    assert decide(st, T0 + 13, CFG, None, held) is not None
    assert decide(st, T0 + 14, CFG, None, held) is None and st.action == "block"
    assert held.take_lift("acct-1") == 0.0 and held.take_lift("nobody") == 0.0
