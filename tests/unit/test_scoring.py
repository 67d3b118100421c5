"""`models.scoring`: a crowd judged by its accounts' own behaviour, never by shares of requests.

A campaign's key is a crowd whose harvesters are on cheap identities (young or rotating); a key an
honest crowd shares has harvesters on established identities (a campus, an enterprise), or
members that do not harvest at all (a launch wave, a reseller's customers), which a handful of
attackers cannot outweigh. A slow campaign's template shows as a crowd that keeps coming back.
These tests build cluster states directly from summaries.
"""

from __future__ import annotations

import dataclasses
import zlib

from distillguard.models.behaviour import JUDGED, SUSTAINED
from distillguard.models.cluster import ClusterState, Member, add_summary, cluster_window
from distillguard.models.config import DetectorConfig
from distillguard.models.messages import ClusterSummary
from distillguard.models.scoring import cluster_evidence, persistence
from distillguard.models.windows import window_start

CFG = DetectorConfig()
H = CFG.cluster_horizon_windows
CW = CFG.cluster_window_s
C0 = cluster_window(window_start(1_700_000_000.0, CFG.window_s), CFG)
LONG_AGO = C0 - 10 * 86400.0  # the accounts' first requests: days before, so none is "new"


# The prompt template the accounts of a template key send (each a bit or two off it).
TEMPLATE = 0x0123_4567_89AB_CDEF


def summary(key: str, account: str, ts: float, *, young: bool = True, requests: int = 10,
            reasoning: int = 4, high_value: int = 7, first_ts: float = LONG_AGO,
            simhash: int | None = None, harvest: float = 1.0, rotation: float = 0.0,
            history: int = JUDGED) -> ClusterSummary:
    """One member's window summary; by default a young account that harvests plainly."""
    if simhash is None:  # a template key's accounts agree on TEMPLATE
        tpl = key.startswith("tpl:")
        simhash = TEMPLATE ^ (1 << zlib.crc32(account.encode()) % 64) if tpl else 0
    return ClusterSummary(cluster_key=key, account_id=account, kind="window",
                          window_start=window_start(ts, CFG.window_s), event_ts=ts,
                          requests=requests, reasoning=reasoning, high_value=high_value,
                          completion_tokens=requests * 1000, young=young,
                          account_first_ts=first_ts, simhash=simhash, harvest=harvest,
                          rotation=rotation, history=history)


def trickle(key: str, accounts: int = 12, windows: int = H, **kwargs: object) -> ClusterState:
    """`accounts` distinct accounts using the key one after the other, spread evenly over
    `windows` cluster windows (a slow campaign's template: a few accounts per window)."""
    state = ClusterState(cluster_key=key)
    for i in range(accounts):
        ts = C0 + (i * windows // accounts) * CW + 10 + i
        s = summary(key, f"acct-{i:03d}", ts, **kwargs)  # type: ignore[arg-type]
        assert add_summary(state, s, CFG)
    return state


def burst(key: str, accounts: int = 12, prefix: str = "acct", state: ClusterState | None = None,
          **kwargs: object) -> ClusterState:
    """The same accounts and requests, all in one cluster window (added to `state`, if given)."""
    state = state if state is not None else ClusterState(cluster_key=key)
    for i in range(accounts):
        s = summary(key, f"{prefix}-{i:03d}", C0 + 10 + i, **kwargs)  # type: ignore[arg-type]
        assert add_summary(state, s, CFG)
    return state


def remembered_member(state: ClusterState) -> Member:
    """A young harvesting member last active just before the horizon (still remembered)."""
    return (state.horizon_start(CFG) - CW, 1, LONG_AGO, "", 0, 1.0, 0.0, JUDGED, 0, 0, 0, 0, 0, 0)


def test_a_crowd_of_young_harvesting_accounts_is_a_campaign() -> None:
    for key in ("pay:pf-1", "sys:0123456789abcdef", "tpl:1:5a1a", "asnua:7922:abc"):
        ev = cluster_evidence(trickle(key), CFG)
        assert ev.accounts == ev.harvesting == ev.suspicious == 12, key
        assert ev.score >= CFG.cluster_convict_score, (key, ev)
        assert ev.prior == 1.0


def test_a_crowd_whose_harvesters_are_established_is_not_convicted_however_large() -> None:
    # a campus's students or an enterprise's batch accounts: the harvest is theirs
    for key in ("ip:198.51.100.0/24", "tpl:3:2d3b", "pay:pf-org"):
        ev = cluster_evidence(trickle(key, accounts=200, young=False), CFG)
        assert ev.harvesting == 200 and ev.suspicious == 0
        assert ev.score == 0.0, key
        # a third of them new this term does not make it a campaign either
        mixed = trickle(key, accounts=60, young=False)
        mixed = burst(key, accounts=30, prefix="new", state=mixed)
        assert cluster_evidence(mixed, CFG).score < CFG.template_convict_score, key


def test_a_handful_of_attackers_cannot_convict_an_honest_crowds_key() -> None:
    # framing: a few harvesting young accounts share a card, a tool's system prompt or an
    # egress /24 with many honest members who do not harvest (a reseller's customers, a
    # tool's users, people behind a CGNAT)
    for key in ("pay:reseller", "sys:tool-default", "ip:100.64.0.0/24"):
        crowd = burst(key, accounts=150, prefix="honest", harvest=0.1)
        crowd = burst(key, accounts=10, prefix="attacker", state=crowd)
        ev = cluster_evidence(crowd, CFG)
        assert ev.suspicious == 10
        assert ev.score < CFG.template_convict_score, (key, ev)
        assert ev.prior < 0.1


def test_the_first_few_members_do_not_convict_a_crowd_by_the_luck_of_who_came_first() -> None:
    # young students of a class that is mostly established come first: fewer than a template
    # crowd needs are not scored at all, and as many convict it only weakly (a weak template
    # conviction counts against an account only beside another template: models/policy.py)
    few = burst("tpl:1:abcd", accounts=CFG.template_min_accounts - 1)
    assert cluster_evidence(few, CFG).score == 0.0
    least = burst("tpl:1:abcd", accounts=CFG.template_min_accounts)
    assert cluster_evidence(least, CFG).score < CFG.cluster_convict_score
    # a campaign's crowd keeps growing young and harvesting, and is convicted
    assert cluster_evidence(trickle("tpl:1:abcd", accounts=12), CFG).score >= \
        CFG.cluster_convict_score


def test_members_not_seen_harvesting_yet_weigh_against_a_conviction_by_half() -> None:
    convicted = cluster_evidence(burst("pay:p", accounts=12), CFG).score
    with_newcomers = burst("pay:p", accounts=12)
    with_newcomers = burst("pay:p", accounts=6, prefix="new", state=with_newcomers, harvest=0.0)
    as_honest = burst("pay:p", accounts=12)
    as_honest = burst("pay:p", accounts=6, prefix="honest", state=as_honest, young=False)
    scores = [cluster_evidence(s, CFG).score for s in (with_newcomers, as_honest)]
    assert convicted > scores[0] > scores[1]


def test_rotating_members_are_as_cheap_as_young_ones() -> None:
    # bought and aged accounts that rotate their network and client on most requests
    aged = cluster_evidence(trickle("tpl:1:5a1a", young=False, rotation=1.0), CFG)
    assert aged.rotating_share == 1.0 and aged.suspicious == 12
    assert aged.score >= CFG.cluster_convict_score
    assert "0% young, 100% rotating" in aged.reason("tpl:1:5a1a")


def test_a_crowd_proven_to_harvest_for_long_says_so() -> None:
    ev = cluster_evidence(trickle("tpl:1:5a1a", history=SUSTAINED), CFG)
    assert ev.proven == 12 / 14  # (two honest members assumed beside those seen)
    assert cluster_evidence(trickle("tpl:1:5a1a"), CFG).proven == 0.0


def test_a_template_bucket_whose_members_agree_on_no_template_is_not_scored() -> None:
    # The same young, harvesting crowd: as one template, convicted; as unrelated prompts that
    # share the bucket's 16 bits by chance (models/cluster.py: no template), not scored at all
    # (its verdict would match no prompt of its members).
    assert cluster_evidence(trickle("tpl:1:5a1a"), CFG).score >= CFG.cluster_convict_score
    strangers = ClusterState(cluster_key="tpl:1:5a1a")
    for i in range(12):
        unrelated = (0x9E37_79B9_7F4A_7C15 * (i + 1)) & (2**64 - 1)
        ts = C0 + (i * H // 12) * CW + 10 + i
        assert add_summary(strangers, summary("tpl:1:5a1a", f"acct-{i:03d}", ts,
                                              simhash=unrelated), CFG)
    assert strangers.template == 0
    assert cluster_evidence(strangers, CFG).score == 0.0


def test_persistence_is_the_share_of_the_horizons_windows_the_key_was_used_in() -> None:
    assert persistence(trickle("tpl:0:abcd", accounts=H), CFG) == 1.0
    assert persistence(trickle("tpl:0:abcd", accounts=H, windows=H // 2), CFG) == 0.5
    assert persistence(burst("tpl:0:abcd"), CFG) == 1 / H


def test_a_template_crowd_that_keeps_coming_back_counts_like_a_wave_of_new_accounts() -> None:
    # a slow campaign's template: none of its accounts new, a few of them in every window
    slow = cluster_evidence(trickle("tpl:1:5a1a"), CFG)
    assert slow.new_share == 0.0 and slow.persistence == 1.0
    once = cluster_evidence(burst("tpl:1:5a1a"), CFG)
    assert slow.score > once.score
    # so does any key's: a campaign's card used for hours by accounts that are no longer new
    for key in ("sys:0123456789abcdef", "ip:203.0.113.0/24", "pay:pf-1", "asnua:7922:abc"):
        assert cluster_evidence(trickle(key), CFG).score > cluster_evidence(burst(key),
                                                                            CFG).score, key


def test_a_tutorial_crowd_that_harvests_nothing_is_not_scored() -> None:
    # a launch wave's quickstart: young accounts, used all day, asking ordinary things
    ev = cluster_evidence(trickle("tpl:0:605e", accounts=160, harvest=0.2, first_ts=C0), CFG)
    assert ev.persistence == 1.0 and ev.young_share == 1.0 and ev.harvesting == 0
    assert ev.score == 0.0


def test_more_persistence_never_lowers_the_score() -> None:
    scores = [cluster_evidence(trickle("tpl:1:4deb", windows=w), CFG).score
              for w in range(1, H + 1)]
    assert scores == sorted(scores)


def test_a_crowds_reason_names_its_harvesters_and_a_templates_persistence() -> None:
    ev = cluster_evidence(trickle("tpl:1:4deb"), CFG)
    text = ev.reason("tpl:1:4deb")
    assert "used in 100% of the horizon's windows" in text
    assert "12 accounts, 12 harvesting, 12 of them young or rotating" in text
    other = cluster_evidence(trickle("sys:0123456789abcdef"), CFG)
    assert "horizon's windows" not in other.reason("sys:0123456789abcdef")


def test_a_templates_crowd_is_sized_by_every_account_it_remembers() -> None:
    # a few young accounts active in the horizon; 20 more used the template earlier (still
    # remembered, past the horizon): the crowd a slow campaign spreads over hours
    active = CFG.template_min_accounts
    state = trickle("tpl:2:5a1a", accounts=active)
    horizon_only = cluster_evidence(state, CFG)
    for i in range(20):
        state.members[f"earlier-{i:03d}"] = remembered_member(state)
    remembered = cluster_evidence(state, CFG)
    assert remembered.accounts == horizon_only.accounts == active  # the horizon's are active
    assert remembered.remembered == active + 20
    assert remembered.score > horizon_only.score
    assert f"{active + 20} over the last hours" in remembered.reason("tpl:2:5a1a")
    # other keys are sized by the horizon alone
    infra = trickle("pay:pf-1", accounts=10)
    before = cluster_evidence(infra, CFG).score
    for i in range(20):
        infra.members[f"earlier-{i:03d}"] = remembered_member(infra)
    assert cluster_evidence(infra, CFG).score == before


def test_remembered_members_do_not_make_a_small_crowd_scorable() -> None:
    # (a minimum above the default, so the crowd agrees on a template and only the minimum
    # stands in the way)
    cfg = dataclasses.replace(CFG, template_min_accounts=6)
    state = trickle("tpl:2:5a1a", accounts=cfg.template_min_accounts - 1)
    assert state.template
    for i in range(50):
        state.members[f"earlier-{i:03d}"] = remembered_member(state)
    assert cluster_evidence(state, cfg).score == 0.0
    enough = trickle("tpl:2:5a1a", accounts=cfg.template_min_accounts)
    assert cluster_evidence(enough, cfg).score > 0.0


def test_min_accounts_count_suspicious_members() -> None:
    # A tuning knob (docs/tuning.md): a template crowd is scored from template_min_accounts
    # suspicious members, another key from cluster_min_accounts; honest members do not count.
    small = CFG.template_min_accounts
    assert small < CFG.cluster_min_accounts
    assert cluster_evidence(burst("tpl:1:abcd", accounts=small), CFG).score > 0.0
    assert cluster_evidence(burst("pay:pf-9", accounts=small), CFG).score == 0.0
    honest = burst("pay:pf-9", accounts=small)
    honest = burst("pay:pf-9", accounts=40, prefix="old", state=honest, young=False)
    assert cluster_evidence(honest, CFG).score == 0.0
    cautious = dataclasses.replace(CFG, template_min_accounts=8)
    assert cluster_evidence(burst("tpl:1:abcd", accounts=small), cautious).score == 0.0


def test_a_newcomer_is_judged_by_every_member_the_crowd_remembers() -> None:
    # a tutorial's template kept up by a handful of attackers after its wave of new users moved
    # on: the active crowd is the attackers', the remembered crowd the wave's
    state = trickle("tpl:1:5a1a", accounts=12)
    assert cluster_evidence(state, CFG).prior == 1.0
    for i in range(200):
        m = remembered_member(state)
        state.members[f"tutorial-{i:03d}"] = (*m[:5], 0.1, *m[6:])  # did not harvest
    assert cluster_evidence(state, CFG).prior == 12 / 212


def test_a_handful_of_attackers_gives_no_newcomer_prior() -> None:
    few = burst("tpl:1:5a1a", accounts=CFG.cluster_min_accounts - 1)
    assert cluster_evidence(few, CFG).prior == 0.0
    enough = burst("tpl:1:5a1a", accounts=CFG.cluster_min_accounts)
    assert cluster_evidence(enough, CFG).prior == 1.0
