"""`models.cluster_stage.ClusterStage` over summaries built by hand: counting, horizon, verdicts.

The evidence is made unmistakable on purpose (many young, new accounts all harvesting reasoning,
or a large crowd of established accounts) so the tests hold whatever the score weights are,
except where a test needs the score to rise by a known step (`_steady_score` says how).

Summaries carry account windows (`window_s`); a cluster aggregates them into its own coarser
windows (`cluster_window_s`) over `cluster_horizon_windows` of those.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from typing import Any

from distillguard.models.account import Verdict
from distillguard.models.behaviour import JUDGED
from distillguard.models.cluster import ClusterState, cluster_window
from distillguard.models.cluster_stage import (
    VERDICT_UPGRADE_STEP,
    ClusterPartition,
    ClusterStage,
    verdict_id,
)
from distillguard.models.config import DetectorConfig
from distillguard.models.messages import BROADCAST, AccountVerdict, ClusterSummary
from distillguard.models.scoring import cluster_evidence
from distillguard.models.templates import uses_template
from distillguard.models.windows import window_start

CFG = DetectorConfig()
WS = CFG.window_s
CW = CFG.cluster_window_s
H = CFG.cluster_horizon_windows
W0 = window_start(1_700_000_000.0, WS)
C0 = cluster_window(W0, CFG)  # the cluster window W0 falls in (an aligned start)
KEY = "tpl:2:beef"
CAMPAIGN_SIZE = 8 * CFG.cluster_min_accounts  # far above the minimum size


def summary(account: str, ts: float, kind: str = "window", *, key: str = KEY,
            young: bool = True, first_ts: float | None = None, requests: int = 30,
            reasoning: int | None = None, high_value: int | None = None,
            harvest: float = 1.0) -> ClusterSummary:
    """A member's summary; by default of an account that harvests plainly (its own behaviour,
    models/behaviour.py), so a crowd of young ones is a campaign."""
    if kind == "join":  # a join carries the joining request (models/account_stage.py, _join)
        requests = 1
    return ClusterSummary(
        cluster_key=key, account_id=account, kind=kind,
        window_start=window_start(ts, WS), event_ts=ts, requests=requests,
        reasoning=requests if reasoning is None else min(requests, reasoning),
        high_value=requests if high_value is None else min(requests, high_value),
        completion_tokens=requests * 3000, young=young,
        account_first_ts=ts if first_ts is None else first_ts,
        # a template key's accounts send its template (models/cluster.py: a crowd must agree
        # on one to be scored)
        simhash=CROWD_TEMPLATE if key.startswith("tpl:") else 0, harvest=harvest,
        history=JUDGED)


CROWD_TEMPLATE = 0x0123_BEEF_89AB_CDEF


class Harness:
    """One account partition (source 0) sending to one cluster partition.

    `feed` stamps a summary with the tick of its event time after announcing that tick (so
    earlier ticks are judged first, as a source does); `flush` announces the next tick, so
    everything fed so far is judged. `state(key)` and `told` flush first.
    """

    def __init__(self, cfg: DetectorConfig = CFG) -> None:
        self.cfg = cfg
        self.stage = ClusterStage(cfg)
        self.part = ClusterPartition.create(cfg, sources=1)
        self.states: dict[str, ClusterState] = {}
        self._told: list[AccountVerdict] = []
        self.broadcasts: list[Verdict] = []  # convictions and withdrawals, in order
        self.late = 0
        self.tick = 0  # the newest tick announced

    def feed(self, s: ClusterSummary) -> list[AccountVerdict]:
        tick = max(self.tick, int(s.event_ts // self.cfg.cluster_tick_s))
        told = self._announce(tick)
        s = s._replace(tick=tick)
        state, _ = self.stage.on_summary(self.states.get(s.cluster_key), s, self.part)
        self.states[s.cluster_key] = state
        return told

    def flush(self) -> list[AccountVerdict]:
        return self._announce(self.tick + 1)

    def state(self, key: str = KEY) -> ClusterState:
        self.flush()
        return self.states[key]

    @property
    def told(self) -> list[AccountVerdict]:
        self.flush()
        return self._told

    def _announce(self, tick: int) -> list[AccountVerdict]:
        told: list[AccountVerdict] = []
        if tick > self.tick:
            self.tick = tick
            for key in self.stage.on_source_tick(self.part, 0, tick):
                out = self.stage.settle(self.states[key], self.part)
                self.late += out.late
                told += out.verdicts
                self.broadcasts += [av.verdict for av in out.convictions
                                    if not av.verdict.is_template_notice]
        self._told += told
        return told

    def campaign(self, n: int, ts: float, prefix: str = "bot") -> list[str]:
        """n young accounts that joined now and harvest reasoning under KEY."""
        accounts = [f"{prefix}-{i:03d}" for i in range(n)]
        for i, a in enumerate(accounts):
            self.feed(summary(a, ts + i * 0.5, "join"))
        for i, a in enumerate(accounts):
            self.feed(summary(a, ts + 60 + i * 0.5))
        self.flush()
        return accounts


# --- counting over the horizon ----------------------------------------------------------------


def test_cluster_windows_are_whole_multiples_of_account_windows() -> None:
    assert CW % WS == 0 and CW > WS
    assert C0 % CW == 0 and C0 <= W0 < C0 + CW
    starts = [C0 + i * WS for i in range(CW // WS)]
    assert {cluster_window(s, CFG) for s in starts} == {C0}
    assert cluster_window(C0 + CW, CFG) == C0 + CW


def test_counts_distinct_young_and_new_accounts() -> None:
    h = Harness()
    ts = W0 + 30
    long_ago = ts - 30 * 86400
    h.feed(summary("young-new", ts, "join"))
    h.feed(summary("young-new", ts + 1))  # the same account again: counted once
    h.feed(summary("old-seen-before", ts + 2, young=False, first_ts=long_ago))
    h.feed(summary("young-seen-before", ts + 3, young=True, first_ts=long_ago))
    h.feed(summary("old-new", ts + 4, young=False))
    st = h.state()
    assert (st.active, st.active_young, st.active_new) == (4, 2, 2)
    assert set(st.windows) == {C0}
    assert st.windows[C0].accounts == 4
    assert set(st.members) == {"young-new", "old-seen-before", "young-seen-before", "old-new"}


def test_window_summaries_add_their_counts_to_the_cluster_window() -> None:
    h = Harness()
    h.feed(summary("a", C0 + 5, requests=10, reasoning=4, high_value=7))
    h.feed(summary("b", C0 + WS + 5, requests=20, reasoning=0, high_value=20))
    h.feed(summary("a", C0 + 2 * WS + 5, requests=5, reasoning=5, high_value=0))
    win = h.state().windows[C0]
    assert (win.accounts, win.requests, win.reasoning, win.high_value) == (2, 35, 9, 27)
    assert win.completion_tokens == 35 * 3000


def test_a_crowd_of_new_accounts_is_judged_on_their_joining_requests() -> None:
    h = Harness()
    crowd = [f"bot-{i:03d}" for i in range(CAMPAIGN_SIZE)]
    for i, a in enumerate(crowd):  # joins only: no window has closed yet
        h.feed(summary(a, W0 + 10 + i * 0.5, "join"))
    st = h.state()
    assert st.windows[C0].requests == CAMPAIGN_SIZE
    assert st.verdict is not None
    assert {av.account_id for av in h.told} == set(crowd)


def test_account_in_several_windows_is_one_member_active_in_each() -> None:
    h = Harness()
    for w in range(3):
        h.feed(summary("a", C0 + w * CW + 5))
    st = h.state()
    assert st.active == 1 and len(st.members) == 1
    assert [st.windows[C0 + w * CW].accounts for w in range(3)] == [1, 1, 1]


def test_account_windows_of_one_cluster_window_count_the_account_once() -> None:
    h = Harness()
    for w in range(CW // WS):
        h.feed(summary("a", C0 + w * WS + 5, requests=3))
    st = h.state()
    assert set(st.windows) == {C0}
    assert (st.windows[C0].accounts, st.windows[C0].requests) == (1, 3 * (CW // WS))


def test_old_windows_drop_out_of_the_horizon() -> None:
    h = Harness()
    h.feed(summary("early", C0 + 5))
    h.feed(summary("late", C0 + (H - 1) * CW + 5))
    st = h.state()
    assert set(st.windows) == {C0, C0 + (H - 1) * CW}  # still inside the horizon
    assert st.active == 2
    h.feed(summary("later", C0 + H * CW + 5))
    st = h.state()
    assert C0 not in st.windows
    assert set(st.windows) == {C0 + (H - 1) * CW, C0 + H * CW}
    assert st.active == 2  # "early" was last active before the horizon


def test_member_back_after_a_pause_counts_again() -> None:
    h = Harness()
    h.feed(summary("a", C0 + 5))
    h.feed(summary("b", C0 + H * CW + 5))
    st = h.state()
    assert st.active == 1
    h.feed(summary("a", C0 + H * CW + 6))
    st = h.state()
    assert st.active == 2 and st.windows[C0 + H * CW].accounts == 2


def test_summary_older_than_the_horizon_is_counted_late() -> None:
    h = Harness()
    h.feed(summary("a", C0 + H * CW + 5))
    h.feed(summary("b", C0 + CW - 1))  # an account window that closed long ago
    state = h.state()
    assert h.late == 1 and state.late_summaries == 1 and "b" not in state.members
    assert C0 not in state.windows
    # the oldest window still inside the horizon is not late
    h.feed(summary("c", C0 + CW + 1))
    assert h.late == 1 and "c" in h.state().members


# --- conviction -------------------------------------------------------------------------------


def test_campaign_of_young_accounts_harvesting_reasoning_is_convicted() -> None:
    h = Harness()
    accounts = h.campaign(CAMPAIGN_SIZE, W0 + 10)
    st = h.state()
    assert st.verdict is not None
    v = st.verdict
    assert v.score >= CFG.cluster_convict_score
    assert v.cluster_key == KEY and KEY in v.reason
    assert v.expires_ts == v.issued_ts + CFG.verdict_ttl_s
    assert v.verdict_id == verdict_id(KEY, int(v.issued_ts), v.score, CFG.model_version)
    # every active member told; as the conviction grew stronger while the crowd gathered,
    # members were told again, and the last word each one got is the standing verdict
    assert set(Counter(av.account_id for av in h.told)) == set(accounts)
    last = {av.account_id: av.verdict.verdict_id for av in h.told}
    assert set(last.values()) == {v.verdict_id}
    assert all(later.verdict.score >= earlier.verdict.score
               for earlier, later in zip(h.told, h.told[1:], strict=False)
               if earlier.account_id == later.account_id)


# --- a template bucket's signature: the template its crowd uses -------------------------------

TEMPLATE = 0x0123_BEEF_89AB_CDEF  # band 2 is KEY's


def _near(template: int, *bits: int) -> int:
    for b in bits:
        template ^= 1 << b
    return template


def test_a_template_conviction_names_the_template_its_crowd_uses() -> None:
    h = Harness()
    for i in range(CAMPAIGN_SIZE):
        # each a few bits off the template, in other bands than KEY's
        h.feed(summary(f"bot-{i:03d}", W0 + 10 + i, "join")._replace(
            simhash=_near(TEMPLATE, i % 16, 48 + i % 7)))
    st = h.state()
    assert st.template == TEMPLATE
    assert st.verdict is not None and st.verdict.signature == TEMPLATE
    # an infrastructure key has no template: its verdicts carry none
    infra = Harness()
    for i in range(CAMPAIGN_SIZE):
        infra.feed(summary(f"bot-{i:03d}", W0 + 10 + i, "join", key="pay:card-1"))
    v = infra.state("pay:card-1").verdict
    assert v is not None and v.signature == 0


def test_one_account_however_chatty_makes_no_template() -> None:
    # the signature is made of one prompt per member: a single account's prompts are not a crowd
    h = Harness()
    for i in range(20):
        h.feed(summary("chatty", W0 + 10 + 60 * i, "window")._replace(simhash=TEMPLATE))
    assert h.state().template == 0
    # members whose prompts only share the bucket's band (random elsewhere) make none either
    for i, other in enumerate((0x1111_BEEF_2222_3333, 0x4444_BEEF_5555_6666,
                               0x7777_BEEF_8888_9999)):
        h.feed(summary(f"stranger-{i}", W0 + 2000 + i, "join")._replace(simhash=other))
    assert h.state().template == 0


def test_a_prompt_far_from_the_template_is_a_stray_left_out_of_the_crowd() -> None:
    # Measured with campaigns over ten times the accounts: a CoT campaign's template shared a
    # band with a launch tutorial; what the tutorial's users asked must not make the campaign
    # crowd look innocent, nor the campaign's reasoning requests fall on the tutorial's users.
    # Found in review: counted as members, strays still swelled the crowd (and its young share)
    # a template is judged on.
    h = Harness()
    for i in range(3):
        h.feed(summary(f"bot-{i}", W0 + 10 + i, "join")._replace(simhash=_near(TEMPLATE, i)))
    st = h.state()
    assert st.template == TEMPLATE
    win = st.windows[cluster_window(window_start(W0 + 10, WS), CFG)]
    counted = (win.accounts, win.requests, win.reasoning, win.high_value)
    crowd = (st.active, st.active_young, st.active_new)
    stray = 0x5555_BEEF_AAAA_0000  # shares KEY's band only
    for i in range(5):
        h.feed(summary(f"stranger-{i}", W0 + 20 + i)._replace(simhash=stray ^ (1 << i)))
    st = h.state()
    win = st.windows[win.start]
    assert (win.accounts, win.requests, win.reasoning, win.high_value) == counted
    assert (st.active, st.active_young, st.active_new) == crowd
    assert not any(a.startswith("stranger") for a in st.members)  # so never told a verdict
    # a prompt of the template is counted
    h.feed(summary("bot-3", W0 + 30, requests=2)._replace(simhash=_near(TEMPLATE, 60)))
    st = h.state()
    assert st.windows[win.start].requests == counted[1] + 2 and st.active == crowd[0] + 1


def test_a_larger_crowd_of_strays_agreeing_on_a_template_takes_the_bucket_over() -> None:
    # Found in review: three decoy accounts agreeing on a prompt that shares a campaign
    # template's band, sent before the campaign starts, made every campaign account a stray of
    # the bucket, which was then never convicted.
    h = Harness()
    decoy = 0x5555_BEEF_AAAA_0000  # shares KEY's band with TEMPLATE, ~30 bits from it
    for i in range(3):
        h.feed(summary(f"decoy-{i}", W0 + 10 + i, young=False, first_ts=W0 - 86400 * 400,
                       reasoning=0, high_value=0)._replace(simhash=decoy ^ (1 << i)))
    assert h.state().template and uses_template(decoy, h.state().template)
    campaign = [f"bot-{i:03d}" for i in range(12)]
    for i, a in enumerate(campaign):
        h.feed(summary(a, W0 + 100 + i, "join")._replace(simhash=_near(TEMPLATE, i)))
    assert h.state().verdict is None  # strays all: nothing of theirs counted yet
    # at the next cluster window the strays, more than the decoys, take the bucket over
    later = W0 + CW + 10
    for i, a in enumerate(campaign):
        h.feed(summary(a, later + i)._replace(simhash=_near(TEMPLATE, 20 + i)))
    st = h.state()
    assert uses_template(TEMPLATE, st.template)
    assert set(st.members) == set(campaign)  # the decoys are no longer the crowd
    assert st.verdict is not None and uses_template(TEMPLATE, st.verdict.signature)
    assert {av.account_id for av in h.told} == set(campaign)


def test_a_crowd_is_not_handed_over_to_fewer_strays() -> None:
    h = Harness()
    for i in range(6):
        h.feed(summary(f"bot-{i}", W0 + 10 + i, "join")._replace(simhash=_near(TEMPLATE, i)))
    other = 0x5555_BEEF_AAAA_0000
    for i in range(4):
        h.feed(summary(f"other-{i}", W0 + 100 + i, "join")._replace(simhash=other ^ (1 << i)))
    for i in range(6):
        h.feed(summary(f"bot-{i}", W0 + CW + 10 + i)._replace(simhash=_near(TEMPLATE, 30 + i)))
    st = h.state()
    assert uses_template(TEMPLATE, st.template) and not any(a.startswith("other") for a in st.members)


def test_two_accounts_agreeing_beside_a_stranger_make_no_template() -> None:
    # found in review: a majority of three prompts is two; a template crowd needs three
    h = Harness()
    for i, prompt in enumerate((TEMPLATE, _near(TEMPLATE, 5), 0x5555_BEEF_AAAA_0000)):
        h.feed(summary(f"acct-{i}", W0 + 10 + i, "join")._replace(simhash=prompt))
    assert h.state().template == 0
    h.feed(summary("acct-3", W0 + 20, "join")._replace(simhash=_near(TEMPLATE, 9)))
    assert h.state().template and uses_template(TEMPLATE, h.state().template)


def test_members_are_not_told_again_while_the_verdict_holds() -> None:
    h = Harness()
    accounts = h.campaign(CAMPAIGN_SIZE, W0 + 10)
    before = len(h.told)
    for w in range(1, 4):  # more windows of the same campaign, well before renewal is due
        for i, a in enumerate(accounts):
            assert h.feed(summary(a, W0 + w * WS + i * 0.5)) == []
    assert len(h.told) == before


def test_joiner_of_a_convicted_cluster_is_told_at_once() -> None:
    h = Harness()
    h.campaign(CAMPAIGN_SIZE, W0 + 10)
    v = h.state().verdict
    assert v is not None
    joined_at = W0 + 2 * WS + 7
    # the hydra response: a replacement account is acted on at its first request
    h.feed(summary("replacement", joined_at, "join"))
    # told at the end of its tick: it applies from then on (models/account_stage.py)
    tick_end = (int(joined_at) // CFG.cluster_tick_s + 1) * CFG.cluster_tick_s
    assert h.flush() == [AccountVerdict("replacement", v, tick_end)]
    h.feed(summary("replacement", joined_at + 60))
    assert h.flush() == []


def test_conviction_is_renewed_once_half_its_ttl_has_run() -> None:
    h = Harness()
    accounts = h.campaign(CAMPAIGN_SIZE, W0 + 10)
    first = h.state().verdict
    assert first is not None
    h.told.clear()
    later = first.issued_ts + CFG.verdict_ttl_s / 2 + WS
    for i, a in enumerate(accounts):
        h.feed(summary(a, later + i * 0.5))
    renewed = h.state().verdict
    assert renewed is not None and renewed.verdict_id != first.verdict_id
    assert renewed.expires_ts > first.expires_ts
    # every member told; the renewal may be upgraded once more while the crowd regathers in the
    # new horizon (a template key also scores how persistently it is used), and the last word
    # each member got is the standing verdict
    assert set(Counter(av.account_id for av in h.told)) == set(accounts)
    last = {av.account_id: av.verdict.verdict_id for av in h.told}
    assert set(last.values()) == {renewed.verdict_id}


def test_nat_crowd_of_established_accounts_is_not_convicted() -> None:
    h = Harness()
    ts = W0 + 10
    crowd = [f"student-{i:03d}" for i in range(300)]
    for w in range(H):
        for i, a in enumerate(crowd):
            # homework: plenty of reasoning and coding, from accounts the gateway has known for
            # a long time, all behind one address
            h.feed(summary(a, ts + w * WS + i, key="ip:198.51.100.0/24", young=False,
                           first_ts=ts - 400 * 86400, requests=12, reasoning=6, high_value=9))
    st = h.state("ip:198.51.100.0/24")
    assert st.active == 300
    assert st.verdict is None and h.told == []


def test_nat_crowd_seen_for_the_first_time_is_not_convicted() -> None:
    # At detector start every account is "new" to the detector; age is what must protect them.
    h = Harness()
    for i in range(300):
        h.feed(summary(f"student-{i:03d}", W0 + 10 + i, key="ip:198.51.100.0/24", young=False,
                       requests=12, reasoning=6, high_value=9))
    assert h.state("ip:198.51.100.0/24").verdict is None and h.told == []


def test_too_few_accounts_prove_nothing() -> None:
    # KEY is a template bucket; its crowd agrees on a template, so only the minimum stops it
    cfg = dataclasses.replace(CFG, template_min_accounts=5)
    h = Harness(cfg)
    h.campaign(cfg.template_min_accounts - 1, W0 + 10)
    assert h.state().template and h.state().verdict is None and h.told == []
    enough = Harness(cfg)
    enough.campaign(cfg.template_min_accounts, W0 + 10)
    assert enough.state().verdict is not None
    # other keys need cluster_min_accounts, more than a template bucket does
    assert CFG.cluster_min_accounts > CFG.template_min_accounts
    infra = Harness()
    for i in range(CFG.cluster_min_accounts - 1):
        infra.feed(summary(f"bot-{i:03d}", W0 + 10 + i, "join", key="pay:card-1"))
        infra.feed(summary(f"bot-{i:03d}", W0 + 70 + i, key="pay:card-1"))
    assert infra.state("pay:card-1").verdict is None and infra.told == []


def test_same_summaries_give_the_same_verdict_ids() -> None:
    def run() -> list[tuple[str, str]]:
        h = Harness()
        h.campaign(CAMPAIGN_SIZE, W0 + 10)
        return [(av.account_id, av.verdict.verdict_id) for av in h.told]
    first = run()
    assert first and first == run()
    other = DetectorConfig(cluster_horizon_windows=H + 1)
    assert verdict_id(KEY, W0, 0.9, other.model_version) != verdict_id(KEY, W0, 0.9,
                                                                      CFG.model_version)


# --- verdict upgrades and refreshes -----------------------------------------------------------


def _steady(h: Harness, ts: float, harvesting: int, accounts: int = CAMPAIGN_SIZE) -> list[str]:
    """Young, new accounts, each with a window summary of 10 requests at `ts`, the first
    `harvesting` of them harvesting (their own behaviour), the others not (yet): the score
    follows the share of the crowd that harvests."""
    members = [f"bot-{i:03d}" for i in range(accounts)]
    for i, a in enumerate(members):
        h.feed(summary(a, ts + i * 0.1, requests=10, harvest=1.0 if i < harvesting else 0.0))
    return members


STEADY = 3 * CAMPAIGN_SIZE // 4  # harvesting members of a crowd convicted with room to grow


def test_a_stronger_conviction_is_re_issued_to_every_member() -> None:
    h = Harness()
    members = _steady(h, W0 + 10, STEADY)
    first = h.state().verdict
    assert first is not None
    # while the score rose by less than the step, the conviction was not re-issued
    assert cluster_evidence(h.state(), CFG).score < first.score + VERDICT_UPGRADE_STEP
    assert Counter(av.account_id for av in h.told) == Counter(members)
    h.told.clear()
    later = W0 + WS + 10  # the next account window: the same accounts now harvest more
    _steady(h, later, CAMPAIGN_SIZE)
    upgraded = h.state().verdict
    assert upgraded is not None and upgraded.verdict_id != first.verdict_id
    assert upgraded.score >= first.score + VERDICT_UPGRADE_STEP
    assert later <= upgraded.issued_ts and upgraded.expires_ts > first.expires_ts
    # every re-issue went to every active member, each a step above the one before
    by_id: dict[str, list[AccountVerdict]] = {}
    for av in h.told:
        by_id.setdefault(av.verdict.verdict_id, []).append(av)
    assert by_id and upgraded.verdict_id in by_id
    scores = [first.score]
    for told in by_id.values():
        assert Counter(av.account_id for av in told) == Counter(members)
        assert len({av.verdict.score for av in told}) == 1
        scores.append(told[0].verdict.score)
    assert all(b >= a + VERDICT_UPGRADE_STEP for a, b in itertools.pairwise(scores))


def test_a_weaker_or_barely_stronger_cluster_is_not_re_issued() -> None:
    h = Harness()
    _steady(h, W0 + 10, STEADY)
    first = h.state().verdict
    assert first is not None
    h.told.clear()
    _steady(h, W0 + WS + 10, STEADY)  # the same evidence again
    _steady(h, W0 + 2 * WS + 10, STEADY - 2)  # a little weaker
    assert h.told == [] and h.state().verdict == first


def test_a_conviction_still_warranted_is_refreshed_after_verdict_refresh_s() -> None:
    h = Harness()
    members = _steady(h, W0 + 10, STEADY)
    first = h.state().verdict
    assert first is not None
    assert CFG.verdict_refresh_s < CFG.verdict_ttl_s
    h.told.clear()
    # the same evidence keeps coming; not yet refresh_s after the verdict: nothing re-issued
    # (a verdict is issued at the end of a tick, so the tick before the refresh is due)
    tick = CFG.cluster_tick_s
    just_before = first.issued_ts + CFG.verdict_refresh_s - tick - CAMPAIGN_SIZE * 0.1 - 1
    _steady(h, just_before, STEADY)
    assert h.told == [] and h.state().verdict == first
    _steady(h, first.issued_ts + CFG.verdict_refresh_s, STEADY)
    refreshed = h.state().verdict
    assert refreshed is not None and refreshed.verdict_id != first.verdict_id
    assert refreshed.issued_ts == first.issued_ts + CFG.verdict_refresh_s + tick
    assert refreshed.expires_ts == refreshed.issued_ts + CFG.verdict_ttl_s
    assert Counter(av.account_id for av in h.told) == Counter(members)
    assert {av.verdict.verdict_id for av in h.told} == {refreshed.verdict_id}


def test_a_conviction_no_longer_borne_out_is_withdrawn_and_joiners_are_not_told() -> None:
    h = Harness()
    members = _steady(h, W0 + 10, STEADY)
    first = h.state().verdict
    assert first is not None and h.broadcasts == [first]
    h.told.clear()
    # later the members are no longer seen harvesting: the score falls under the score that
    # keeps a conviction (a class's students outnumbering the framers who got it convicted)
    later = W0 + WS + 10
    _steady(h, later, 0)
    assert cluster_evidence(h.state(), CFG).score < CFG.cluster_keep_score
    withdrawal = h.state().verdict
    assert withdrawal is not None and withdrawal.is_withdrawal
    assert not withdrawal.is_template_notice
    assert h.broadcasts == [first, withdrawal]
    assert withdrawal.issued_ts > later and withdrawal.verdict_id != first.verdict_id
    # in force at no event time, not even one before it was issued
    assert withdrawal.expires_ts <= first.issued_ts
    # the members told of the conviction are not told again (they keep what they hold)
    assert h.told == []
    # a replacement account joining while the conviction would still be in force is not told
    joined = later + 600
    assert joined < first.expires_ts
    h.feed(summary("replacement", joined, "join"))
    assert h.flush() == [] and h.told == []
    assert h.broadcasts == [first, withdrawal]  # withdrawn once
    # the crowd harvesting again is convicted again, at the conviction score
    _steady(h, later + WS, CAMPAIGN_SIZE)
    again = h.state().verdict
    assert again is not None and not again.is_withdrawal and again.expires_ts > joined
    assert h.broadcasts[-1] == again
    assert set(members) <= {av.account_id for av in h.told if av.verdict == again}


def test_a_conviction_just_above_the_keep_score_is_not_withdrawn() -> None:
    h = Harness()
    _steady(h, W0 + 10, STEADY)
    first = h.state().verdict
    assert first is not None
    # one member fewer harvesting: weaker, not under the keep score
    _steady(h, W0 + WS + 10, STEADY - 1)
    assert CFG.cluster_keep_score <= cluster_evidence(h.state(), CFG).score < first.score
    assert h.state().verdict == first and h.broadcasts == [first]


def test_an_upgrade_within_one_account_window_reaches_every_member() -> None:
    h = Harness()
    # the same account window: the first members harvest little, the later ones much
    members = _steady(h, W0 + 10, STEADY)
    first = h.state().verdict
    assert first is not None
    h.told.clear()
    for i, a in enumerate(members):
        h.feed(summary(a, W0 + 100 + i * 0.1, requests=40))  # now every one harvests
    upgraded = h.state().verdict
    assert upgraded is not None and upgraded.score >= first.score + VERDICT_UPGRADE_STEP
    told = {av.account_id for av in h.told if av.verdict.score >= upgraded.score}
    assert told == set(members)


# --- expiry -----------------------------------------------------------------------------------


def _advance(h: Harness, ts: float) -> list[str]:
    """Another cluster of the partition moves event time on; return the expired clusters."""
    h.feed(summary("x", ts, key="pay:elsewhere", young=False))  # judged up to ts's tick
    expired = []
    for key in h.stage.expired_clusters(h.part):
        st = h.states.get(key)
        if st is not None and h.stage.is_expired(st, h.part):
            del h.states[key]
            expired.append(key)
    return expired


def test_idle_cluster_expires_by_event_time() -> None:
    h = Harness()
    h.feed(summary("a", W0 + 10, young=False))
    horizon = H * CW
    tick = CFG.cluster_tick_s
    # idle since W0 + 10: expires once every partition is judged past W0 + 10 + horizon
    assert KEY not in _advance(h, W0 + 10 + horizon)
    assert KEY in h.states
    assert KEY in _advance(h, W0 + 10 + horizon + tick)
    assert KEY not in h.states


def test_convicted_cluster_is_kept_while_its_verdict_holds() -> None:
    h = Harness()
    h.campaign(CAMPAIGN_SIZE, W0 + 10)
    v = h.state().verdict
    assert v is not None
    late = CFG.cluster_tick_s
    assert KEY not in _advance(h, v.issued_ts + H * CW + late + 1)
    assert KEY in h.states  # a replacement account joining now must still be told
    expired: list[Any] = []
    for step in range(1, 4):
        expired += _advance(h, v.expires_ts + late + step * WS)
    assert KEY in expired


# --- judged per tick of a watermark aligned over the account partitions ------------------------

TICK_S = CFG.cluster_tick_s
K0 = int(W0 + 10) // TICK_S  # the tick of the campaign's first summaries


def _stamped(s: ClusterSummary, tick: int) -> ClusterSummary:
    return s._replace(tick=tick)


def _campaign_records(sources: int) -> list[tuple[int, Any]]:
    """(source, record) for a campaign spread over `sources` account partitions and three
    ticks, each source announcing its ticks in its own stream order."""
    records: list[tuple[int, Any]] = []
    for k in range(3):
        for src in range(sources):
            records.append((src, ("tick", K0 + k)))
            for i in range(src, CAMPAIGN_SIZE, sources):
                ts = (K0 + k) * TICK_S + i * 0.5
                records.append((src, _stamped(summary(f"bot-{i:03d}", ts, "join" if k == 0
                                                      else "window"), K0 + k)))
    for src in range(sources):
        records.append((src, ("tick", K0 + 3)))
    return records


def _run(records: list[tuple[int, Any]], sources: int) -> list[tuple[str, str]]:
    stage, part = ClusterStage(CFG), ClusterPartition.create(CFG, sources=sources)
    states: dict[str, ClusterState] = {}
    told: list[tuple[str, str]] = []
    for src, r in records:
        if not isinstance(r, ClusterSummary):  # a ("tick", n) record
            for key in stage.on_source_tick(part, src, r[1]):
                out = stage.settle(states[key], part)
                told += [(av.account_id, av.verdict.verdict_id) for av in out.verdicts]
        else:
            states[r.cluster_key], out = stage.on_summary(states.get(r.cluster_key), r, part)
            assert not out.behind
    return told


def _interleave(records: list[tuple[int, Any]], sources: int, seed: int) -> list[tuple[int, Any]]:
    """Another arrival order that keeps each source's own order (as a topic partition does)."""
    import random
    rng = random.Random(seed)
    queues = [[r for r in records if r[0] == src] for src in range(sources)]
    out = []
    while any(queues):
        q = rng.choice([q for q in queues if q])
        out.append(q.pop(0))
    return out


def test_a_tick_is_judged_once_every_source_has_passed_it() -> None:
    stage, part = ClusterStage(CFG), ClusterPartition.create(CFG, sources=3)
    state = None
    for i in range(CAMPAIGN_SIZE):
        state, _ = stage.on_summary(state, _stamped(summary(f"bot-{i:03d}", K0 * TICK_S + i * 0.5,
                                                            "join"), K0), part)
    assert stage.on_source_tick(part, 0, K0 + 1) == []
    assert stage.on_source_tick(part, 1, K0 + 1) == []
    assert state is not None and state.verdict is None and state.active == 0
    assert stage.on_source_tick(part, 2, K0 + 1) == [KEY]  # the last source passes K0
    out = stage.settle(state, part)
    assert state.verdict is not None and state.verdict.issued_ts == (K0 + 1) * TICK_S
    assert {av.account_id for av in out.verdicts} == {f"bot-{i:03d}" for i in range(CAMPAIGN_SIZE)}


def test_the_arrival_order_across_account_partitions_does_not_change_the_verdicts() -> None:
    records = _campaign_records(sources=3)
    in_order = _run(records, 3)
    assert len({v for _, v in in_order}) >= 1 and len(in_order) >= CAMPAIGN_SIZE
    for seed in range(5):
        assert _run(_interleave(records, 3, seed), 3) == in_order


def test_an_idle_account_partition_stops_holding_the_cluster_stage_back() -> None:
    stage, part = ClusterStage(CFG), ClusterPartition.create(CFG, sources=2)
    state, _ = stage.on_summary(None, _stamped(summary("a", K0 * TICK_S), K0), part)
    stage.on_source_tick(part, 1, K0)  # source 1 is at K0 and then goes quiet
    idle = stage.idle_ticks
    assert stage.on_source_tick(part, 0, K0 + idle) == []  # held back by source 1
    assert stage.on_source_tick(part, 0, K0 + idle + 1) == [KEY]  # no longer
    stage.settle(state, part)
    assert "a" in state.members
    # source 1 wakes up with a summary of a tick judged without it: late, counted, kept
    state, out = stage.on_summary(state, _stamped(summary("b", K0 * TICK_S + 1), K0), part)
    assert out.behind and state.pending[-1].tick == part.judged_before
    stage.on_source_tick(part, 1, K0 + idle + 5)
    stage.on_source_tick(part, 0, K0 + idle + 5)
    stage.settle(state, part)
    assert "b" in state.members and state.pending == []


def test_each_conviction_is_broadcast_once_to_every_account_partition() -> None:
    stage, part = ClusterStage(CFG), ClusterPartition.create(CFG, sources=1)
    state = None
    for i in range(CAMPAIGN_SIZE):
        state, _ = stage.on_summary(state, _stamped(summary(f"bot-{i:03d}", K0 * TICK_S + i * 0.5,
                                                            "join"), K0), part)
    stage.on_source_tick(part, 0, K0 + 1)
    assert state is not None
    out = stage.settle(state, part)
    assert state.verdict is not None
    convictions = [c for c in out.convictions if not c.verdict.is_template_notice]
    assert convictions == [AccountVerdict(BROADCAST, state.verdict, (K0 + 1) * TICK_S)]
    # (and, once, that the bucket's crowd agreed on a template: models/templates.py)
    notices = [c for c in out.convictions if c.verdict.is_template_notice]
    assert [(n.account_id, n.verdict.signature) for n in notices] == [(BROADCAST, state.template)]
    # a joiner told later is told alone; the conviction is not broadcast again
    state, _ = stage.on_summary(state, _stamped(summary("joiner", (K0 + 1) * TICK_S, "join"),
                                                K0 + 1), part)
    stage.on_source_tick(part, 0, K0 + 2)
    out = stage.settle(state, part)
    assert [av.account_id for av in out.verdicts] == ["joiner"] and out.convictions == []


def test_a_source_reported_idle_is_not_waited_for_until_its_next_tick() -> None:
    """The edge reports a partition with nothing to read (`SourceIdle`, event-time alignment):
    the ticks the others passed are judged without it; its next tick makes it count again,
    and its summaries of ticks judged meanwhile come behind (the stated failure)."""
    stage, part = ClusterStage(CFG), ClusterPartition.create(CFG, sources=3)
    state = None
    for i in range(CAMPAIGN_SIZE):
        state, _ = stage.on_summary(state, _stamped(summary(f"bot-{i:03d}", K0 * TICK_S + i * 0.5,
                                                            "join"), K0), part)
    assert stage.on_source_tick(part, 0, K0 + 1) == []
    assert stage.on_source_tick(part, 1, K0 + 2) == []
    assert stage.on_source_idle(part, 2) == [KEY]  # source 2 never announced: not waited for
    assert part.judged_before == K0 + 1
    assert stage.on_source_idle(part, 2) == []  # once
    assert stage.on_source_tick(part, 2, K0 + 1) == []  # back, behind the others
    assert stage.on_source_tick(part, 0, K0 + 3) == []  # waited for again: min is source 2's
    assert part.judged_before == K0 + 1
    assert stage.on_summary(state, _stamped(summary("late", K0 * TICK_S), K0), part)[1].behind
    stage.on_source_tick(part, 2, K0 + 3)
    assert part.judged_before == K0 + 2
