"""`models.scoring`: the explainable cluster score, and what a prompt template adds to it.

A slow campaign's template never shows as a wave of new accounts: a few of its young accounts
use it in every window, for hours. For `tpl` keys the share of the horizon's windows the key was
used in counts like the share of new accounts, and the template's two harvest tells (high-value
tasks, reasoning requested) combine. These tests build cluster states directly from summaries.
"""

from __future__ import annotations

import dataclasses
import zlib

from models.cluster import ClusterState, add_summary, cluster_window
from models.config import DetectorConfig
from models.messages import ClusterSummary
from models.scoring import cluster_evidence, persistence
from models.windows import window_start

CFG = DetectorConfig()
H = CFG.cluster_horizon_windows
CW = CFG.cluster_window_s
C0 = cluster_window(window_start(1_700_000_000.0, CFG.window_s), CFG)
LONG_AGO = C0 - 10 * 86400.0  # the accounts' first requests: days before, so none is "new"


# The prompt template the accounts of a template key send (each a bit or two off it).
TEMPLATE = 0x0123_4567_89AB_CDEF


def summary(key: str, account: str, ts: float, *, young: bool = True, requests: int = 10,
            reasoning: int = 4, high_value: int = 7, first_ts: float = LONG_AGO,
            simhash: int | None = None) -> ClusterSummary:
    if simhash is None:  # a template key's accounts agree on TEMPLATE
        tpl = key.startswith("tpl:")
        simhash = TEMPLATE ^ (1 << zlib.crc32(account.encode()) % 64) if tpl else 0
    return ClusterSummary(cluster_key=key, account_id=account, kind="window",
                          window_start=window_start(ts, CFG.window_s), event_ts=ts,
                          requests=requests, reasoning=reasoning, high_value=high_value,
                          completion_tokens=requests * 1000, young=young,
                          account_first_ts=first_ts, simhash=simhash)


def trickle(key: str, accounts: int = 12, windows: int = H, **kwargs: object) -> ClusterState:
    """`accounts` distinct accounts using the key one after the other, spread evenly over
    `windows` cluster windows (a slow campaign's template: a few accounts per window)."""
    state = ClusterState(cluster_key=key)
    for i in range(accounts):
        ts = C0 + (i * windows // accounts) * CW + 10 + i
        s = summary(key, f"acct-{i:03d}", ts, **kwargs)  # type: ignore[arg-type]
        assert add_summary(state, s, CFG)
    return state


def burst(key: str, accounts: int = 12, **kwargs: object) -> ClusterState:
    """The same accounts and requests, all in one cluster window."""
    state = ClusterState(cluster_key=key)
    for i in range(accounts):
        s = summary(key, f"acct-{i:03d}", C0 + 10 + i, **kwargs)  # type: ignore[arg-type]
        assert add_summary(state, s, CFG)
    return state


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


def test_a_slow_template_crowd_of_young_harvesting_accounts_is_convicted() -> None:
    # 12 young accounts, none new, 70% high-value tasks and 40% reasoning requested: the
    # campaign_stealth mix, used a few accounts at a time over the whole horizon
    slow = cluster_evidence(trickle("tpl:1:5a1a"), CFG)
    assert slow.new_share == 0.0 and slow.persistence == 1.0
    assert slow.score >= CFG.cluster_convict_score
    # the same crowd in one window is not persistent, and as none of it is new, not convicted
    assert cluster_evidence(burst("tpl:1:5a1a"), CFG).score < CFG.cluster_convict_score


def test_persistence_and_the_combined_harvest_count_for_templates_only() -> None:
    for key in ("sys:0123456789abcdef", "ip:203.0.113.0/24", "pay:pf-1", "asnua:7922:abc"):
        ev = cluster_evidence(trickle(key), CFG)
        assert ev.persistence == 0.0
        assert ev.score < CFG.cluster_convict_score, key
        # a shared key's harvest is the stronger of its two tells
        assert ev.score == cluster_evidence(trickle(key, reasoning=0), CFG).score


def test_a_template_showing_both_harvest_tells_scores_above_either_alone() -> None:
    both = cluster_evidence(trickle("tpl:2:0d8a"), CFG).score
    tasks_only = cluster_evidence(trickle("tpl:2:0d8a", reasoning=0), CFG).score
    reasoning_only = cluster_evidence(trickle("tpl:2:0d8a", high_value=0), CFG).score
    assert both > max(tasks_only, reasoning_only)


def test_a_persistent_tutorial_template_that_harvests_nothing_is_not_convicted() -> None:
    # a launch wave's quickstart: young accounts, used all day, chat and writing only; being
    # used all day weighs no more than being new, which a launch wave's accounts are anyway
    scores = set()
    for first_ts in (LONG_AGO, C0):
        ev = cluster_evidence(trickle("tpl:0:605e", accounts=160, reasoning=0, high_value=0,
                                      first_ts=first_ts), CFG)
        assert ev.persistence == 1.0
        assert ev.score < CFG.cluster_convict_score
        scores.add(ev.score)
    assert len(scores) == 1


def test_a_persistent_template_of_established_accounts_is_not_convicted() -> None:
    # an enterprise batch or a campus's homework: used all day, all high-value, but by accounts
    # the gateway has known for long
    ev = cluster_evidence(trickle("tpl:3:2d3b", accounts=60, young=False, reasoning=10,
                                  high_value=10), CFG)
    assert ev.persistence == 1.0 and ev.young_share == 0.0
    assert ev.score < CFG.release_score


def test_more_persistence_never_lowers_the_score() -> None:
    scores = [cluster_evidence(trickle("tpl:1:4deb", windows=w), CFG).score
              for w in range(1, H + 1)]
    assert scores == sorted(scores)


def test_a_templates_reason_names_its_persistence() -> None:
    ev = cluster_evidence(trickle("tpl:1:4deb"), CFG)
    assert "used in 100% of the horizon's windows" in ev.reason("tpl:1:4deb")
    other = cluster_evidence(trickle("sys:0123456789abcdef"), CFG)
    assert "horizon's windows" not in other.reason("sys:0123456789abcdef")


def test_a_templates_crowd_is_sized_by_every_account_it_remembers() -> None:
    # 10 young accounts active in the horizon; 20 more used the template earlier (still
    # remembered, past the horizon): the crowd a slow campaign spreads over hours
    state = trickle("tpl:2:5a1a", accounts=10)
    horizon_only = cluster_evidence(state, CFG)
    for i in range(20):
        state.members[f"earlier-{i:03d}"] = (state.horizon_start(CFG) - CW, 1, LONG_AGO, "", 0)
    remembered = cluster_evidence(state, CFG)
    assert remembered.accounts == horizon_only.accounts == 10  # who is active: the horizon's
    assert remembered.remembered == 30
    assert remembered.score > horizon_only.score
    assert "30 over the last hours" in remembered.reason("tpl:2:5a1a")
    # other keys are sized by the horizon alone
    infra = trickle("pay:pf-1", accounts=10)
    before = cluster_evidence(infra, CFG).score
    for i in range(20):
        infra.members[f"earlier-{i:03d}"] = (infra.horizon_start(CFG) - CW, 1, LONG_AGO, "", 0)
    assert cluster_evidence(infra, CFG).score == before


def test_remembered_members_do_not_make_a_small_crowd_scorable() -> None:
    # (a minimum above the default, so the crowd agrees on a template and only the minimum
    # stands in the way)
    cfg = dataclasses.replace(CFG, template_min_accounts=6)
    state = trickle("tpl:2:5a1a", accounts=cfg.template_min_accounts - 1)
    assert state.template
    for i in range(50):
        state.members[f"earlier-{i:03d}"] = (state.horizon_start(cfg) - CW, 1, LONG_AGO, "", 0)
    assert cluster_evidence(state, cfg).score == 0.0
    enough = trickle("tpl:2:5a1a", accounts=cfg.template_min_accounts)
    assert cluster_evidence(enough, cfg).score > 0.0


def test_template_min_accounts_sets_how_small_a_template_crowd_is_scored() -> None:
    # A tuning knob (docs/tuning.md): four young accounts harvesting with one template in a
    # window are scored and convicted under the default template_min_accounts (3), not under
    # 8; a payment instrument with the same four accounts still needs cluster_min_accounts.
    small = 4
    assert CFG.template_min_accounts <= small < CFG.cluster_min_accounts
    template = burst("tpl:1:abcd", accounts=small, first_ts=C0)
    payment = burst("pay:pf-9", accounts=small, first_ts=C0)
    assert cluster_evidence(template, CFG).score >= CFG.cluster_convict_score
    cautious = dataclasses.replace(CFG, template_min_accounts=8)
    assert cluster_evidence(template, cautious).score == 0.0
    assert cluster_evidence(payment, CFG).score == 0.0
