"""`models.policy`: graded, monotone, reversible, idempotent decisions.

Evidence is built explicitly (verdict scores of 1.0, two kinds or one) so the tests hold whatever
the tuned thresholds are; where a threshold matters it is read from the config.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable
from typing import Any

import pytest

from models.account import AccountState, Verdict
from models.config import DetectorConfig
from models.decision import STRENGTH, Decision, decision_id
from models.keys import KINDS
from models.policy import CORROBORATION_SCORE, assess, decide

CFG = DetectorConfig()
T0 = 1_700_000_000.0


def verdict(key: str, score: float = 1.0, issued: float = T0, ttl: float | None = None,
            vid: str | None = None) -> Verdict:
    ttl = CFG.verdict_ttl_s if ttl is None else ttl
    return Verdict(key, score, issued, issued + ttl, vid or f"cv-{key}-{issued:.0f}",
                   f"cluster {key} convicted")


def account(*verdicts: Verdict, account_score: float = 0.0, account_id: str = "acct-1",
            last_ts: float = T0) -> AccountState:
    st = AccountState.new(account_id, last_ts - 600)
    st.last_ts = last_ts
    for v in verdicts:
        st.verdicts[v.cluster_key] = v
    if account_score:
        st.account_score = account_score
        st.account_score_window = 42
        st.account_reasons = ["account model anomaly on window 42"]
    return st


# --- monotonicity: more evidence never gives a weaker action ---------------------------------


def _random_key(rng: random.Random) -> str:
    kind = rng.choice(KINDS)
    return f"{kind}:{rng.randrange(6)}" if kind != "tpl" else f"tpl:{rng.randrange(4)}:{rng.randrange(6):04x}"


def _random_verdict(rng: random.Random, now: float, key: str | None = None) -> Verdict:
    issued = now - rng.uniform(0, 4 * 3600)
    return Verdict(key or _random_key(rng), rng.random(), issued,
                   issued + rng.uniform(0, 8 * 3600), f"cv-{rng.getrandbits(32):08x}", "r")


def _random_state(rng: random.Random, now: float) -> AccountState:
    st = account(account_score=rng.choice([0.0, rng.random()]), last_ts=now)
    for _ in range(rng.randrange(5)):
        v = _random_verdict(rng, now)
        st.verdicts[v.cluster_key] = v
    return st


def _more_evidence(st: AccountState, rng: random.Random, now: float) -> AccountState:
    more = copy.deepcopy(st)
    choice = rng.randrange(3) if st.verdicts else rng.choice([0, 2])
    if choice == 0:  # one more verdict, under a key not yet held
        key = _random_key(rng)
        while key in more.verdicts:
            key = _random_key(rng)
        more.verdicts[key] = _random_verdict(rng, now, key)
    elif choice == 1:  # a held verdict grows stronger
        key = rng.choice(sorted(more.verdicts))
        v = more.verdicts[key]
        v.score = rng.uniform(v.score, 1.0)
    else:  # the account model grows more certain
        more.account_score = rng.uniform(more.account_score, 1.0)
        more.account_score_window = 43
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


# --- throttle before block --------------------------------------------------------------------


def test_one_kind_of_evidence_throttles_but_never_blocks() -> None:
    a = assess(account(verdict("pay:p"), account_score=1.0), T0, CFG)
    assert a.score >= CFG.block_score and a.action == "throttle"


def test_many_buckets_of_one_kind_are_one_corroboration() -> None:
    st = account(*(verdict(f"tpl:{i}:abcd") for i in range(4)), account_score=1.0)
    a = assess(st, T0, CFG)
    assert a.action == "throttle"
    assert len(a.cluster_ids) == 1  # the strongest tpl bucket counts once


def test_two_kinds_corroborate_a_block() -> None:
    a = assess(account(verdict("pay:p"), verdict("tpl:0:abcd")), T0, CFG)
    assert a.action == "block"
    assert set(a.cluster_ids) == {"pay:p", "tpl:0:abcd"}


def test_weak_second_kind_does_not_corroborate() -> None:
    weak = CORROBORATION_SCORE * 0.9
    a = assess(account(verdict("pay:p"), verdict("ip:10.0.0.0/24", score=weak)), T0, CFG)
    assert a.score >= CFG.block_score and a.action == "throttle"


def test_account_model_alone_never_acts() -> None:
    assert assess(account(account_score=1.0), T0, CFG).action == "allow"


def test_expired_verdicts_are_ignored() -> None:
    st = account(verdict("pay:p", ttl=60), verdict("tpl:0:abcd", ttl=60))
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
    st = account(verdict("pay:p"), verdict("tpl:0:abcd"))
    d = decide(st, T0, CFG)
    assert d is not None and d.action == "block"
    assert (d.ttl_s, d.rate_limit_rpm) == (CFG.block_ttl_s, None)
    assert st.action_until == T0 + CFG.block_ttl_s


def test_no_evidence_no_decision() -> None:
    assert decide(account(), T0, CFG) is None


def test_throttle_escalates_to_block_when_corroborated() -> None:
    st = account(verdict("pay:p"))
    first = decide(st, T0, CFG)
    st.verdicts["tpl:0:abcd"] = verdict("tpl:0:abcd", issued=T0 + 60)
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


def test_no_allow_while_score_is_at_or_above_release_then_allow() -> None:
    cfg = DetectorConfig(throttle_score=0.6, block_score=0.85, release_score=0.4,
                         evidence_half_life_s=600, throttle_ttl_s=4 * 3600)
    st = account(verdict("pay:p", score=0.9))
    d = decide(st, T0, cfg)
    assert d is not None and d.action == "throttle"
    below_release_at = T0 + 600 * math.log2(0.9 / 0.4)
    decisions: list[tuple[float, float, Decision]] = []
    t = T0
    while t < below_release_at + 300:
        t += 15
        score = assess(st, t, cfg).score
        d = decide(st, t, cfg)
        if d is not None:
            decisions.append((t, score, d))
        if score >= cfg.release_score:
            assert d is None or d.action != "allow", (t, score)
    # evidence passed through the band between throttle and release without flapping, then
    # exactly one allow once it fell below the release score
    assert [d.action for _, _, d in decisions] == ["allow"]
    lifted_at, score, allow = decisions[0]
    assert score < cfg.release_score and lifted_at - 15 < below_release_at <= lifted_at
    assert allow.ttl_s is None and allow.rate_limit_rpm is None
    assert str(cfg.release_score) in allow.reasons[0]
    assert st.action == "allow"


def test_block_is_not_downgraded_to_throttle_inside_the_band() -> None:
    cfg = DetectorConfig(evidence_half_life_s=600, block_ttl_s=4 * 3600)
    st = account(verdict("pay:p"), verdict("tpl:0:abcd"))
    d = decide(st, T0, cfg)
    assert d is not None and d.action == "block"
    for dt in range(15, 3600, 15):
        d = decide(st, T0 + dt, cfg)
        if d is not None:
            assert d.action == "allow"
            assert assess(st, T0 + dt, cfg).score < cfg.release_score
            break
    else:
        pytest.fail("evidence decayed for an hour of half-lives and the block was never lifted")


# --- the published record ---------------------------------------------------------------------


@pytest.mark.parametrize("evidence", ["throttle", "block", "allow"])
def test_decisions_validate_against_the_contract(validate: Callable[[str, Any], None],
                                                 evidence: str) -> None:
    cfg = DetectorConfig(evidence_half_life_s=600)
    st = account(verdict("pay:p"), *([verdict("tpl:0:abcd")] if evidence == "block" else []),
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
        assert record["cluster_ids"][0] in {"pay:p", "tpl:0:abcd"}


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
