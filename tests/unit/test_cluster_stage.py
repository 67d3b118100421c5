"""`models.cluster_stage.ClusterStage` over summaries built by hand: counting, horizon, verdicts.

The evidence is made unmistakable on purpose (many young, new accounts all harvesting reasoning,
or a large crowd of established accounts) so the tests hold whatever the score weights are.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from models.cluster import ClusterState
from models.cluster_stage import ClusterPartition, ClusterStage, verdict_id
from models.config import DetectorConfig
from models.messages import AccountVerdict, ClusterSummary
from models.windows import window_start

CFG = DetectorConfig()
WS = CFG.window_s
H = CFG.cluster_horizon_windows
W0 = window_start(1_700_000_000.0, WS)
KEY = "tpl:2:beef"
CAMPAIGN_SIZE = 8 * CFG.cluster_min_accounts  # far above the minimum size


def summary(account: str, ts: float, kind: str = "window", *, key: str = KEY,
            young: bool = True, first_ts: float | None = None, requests: int = 30,
            reasoning: int | None = None, high_value: int | None = None) -> ClusterSummary:
    return ClusterSummary(
        cluster_key=key, account_id=account, kind=kind,
        window_start=window_start(ts, WS), event_ts=ts,
        requests=0 if kind == "join" else requests,
        reasoning=0 if kind == "join" else (requests if reasoning is None else reasoning),
        high_value=0 if kind == "join" else (requests if high_value is None else high_value),
        completion_tokens=0 if kind == "join" else requests * 3000, young=young,
        account_first_ts=ts if first_ts is None else first_ts)


class Harness:
    def __init__(self, cfg: DetectorConfig = CFG) -> None:
        self.cfg = cfg
        self.stage = ClusterStage(cfg)
        self.part = ClusterPartition.create(cfg)
        self.states: dict[str, ClusterState] = {}
        self.told: list[AccountVerdict] = []

    def feed(self, s: ClusterSummary) -> list[AccountVerdict]:
        state, out = self.stage.on_summary(self.states.get(s.cluster_key), s, self.part)
        self.states[s.cluster_key] = state
        self.told += out.verdicts
        return out.verdicts

    def campaign(self, n: int, ts: float, prefix: str = "bot") -> list[str]:
        """n young accounts that joined now and harvest reasoning under KEY."""
        accounts = [f"{prefix}-{i:03d}" for i in range(n)]
        for i, a in enumerate(accounts):
            self.feed(summary(a, ts + i * 0.5, "join"))
        for i, a in enumerate(accounts):
            self.feed(summary(a, ts + 60 + i * 0.5))
        return accounts


# --- counting over the horizon ----------------------------------------------------------------


def test_counts_distinct_young_and_new_accounts() -> None:
    h = Harness()
    ts = W0 + 30
    long_ago = ts - 30 * 86400
    h.feed(summary("young-new", ts, "join"))
    h.feed(summary("young-new", ts + 1))  # the same account again: counted once
    h.feed(summary("old-seen-before", ts + 2, young=False, first_ts=long_ago))
    h.feed(summary("young-seen-before", ts + 3, young=True, first_ts=long_ago))
    h.feed(summary("old-new", ts + 4, young=False))
    st = h.states[KEY]
    assert (st.active, st.active_young, st.active_new) == (4, 2, 2)
    win = st.windows[W0]
    assert win.accounts == 4
    assert win.requests == 4 * 30  # the join carries no requests
    assert set(st.members) == {"young-new", "old-seen-before", "young-seen-before", "old-new"}


def test_account_in_several_windows_is_one_member_active_in_each() -> None:
    h = Harness()
    for w in range(3):
        h.feed(summary("a", W0 + w * WS + 5))
    st = h.states[KEY]
    assert st.active == 1 and len(st.members) == 1
    assert [st.windows[W0 + w * WS].accounts for w in range(3)] == [1, 1, 1]


def test_old_windows_drop_out_of_the_horizon() -> None:
    h = Harness()
    h.feed(summary("early", W0 + 5))
    h.feed(summary("late", W0 + (H - 1) * WS + 5))
    st = h.states[KEY]
    assert set(st.windows) == {W0, W0 + (H - 1) * WS}  # still inside the horizon
    assert st.active == 2
    h.feed(summary("later", W0 + H * WS + 5))
    assert W0 not in st.windows
    assert set(st.windows) == {W0 + (H - 1) * WS, W0 + H * WS}
    assert st.active == 2  # "early" was last active before the horizon


def test_member_back_after_a_pause_counts_again() -> None:
    h = Harness()
    h.feed(summary("a", W0 + 5))
    h.feed(summary("b", W0 + H * WS + 5))
    st = h.states[KEY]
    assert st.active == 1
    h.feed(summary("a", W0 + H * WS + 6))
    assert st.active == 2 and st.windows[W0 + H * WS].accounts == 2


def test_summary_older_than_the_horizon_is_counted_late() -> None:
    h = Harness()
    h.feed(summary("a", W0 + H * WS + 5))
    state, out = h.stage.on_summary(h.states[KEY], summary("b", W0 + 5), h.part)
    assert out.late and out.verdicts == []
    assert state.late_summaries == 1 and "b" not in state.members
    assert W0 not in state.windows


# --- conviction -------------------------------------------------------------------------------


def test_campaign_of_young_accounts_harvesting_reasoning_is_convicted() -> None:
    h = Harness()
    accounts = h.campaign(CAMPAIGN_SIZE, W0 + 10)
    st = h.states[KEY]
    assert st.verdict is not None
    v = st.verdict
    assert v.score >= CFG.cluster_convict_score
    assert v.cluster_key == KEY and KEY in v.reason
    assert v.expires_ts == v.issued_ts + CFG.verdict_ttl_s
    assert v.verdict_id == verdict_id(KEY, window_start(v.issued_ts, WS), CFG.model_version)
    # every active member told, each exactly once, all of the same verdict
    told = Counter(av.account_id for av in h.told)
    assert told == Counter(accounts)
    assert {av.verdict.verdict_id for av in h.told} == {v.verdict_id}


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
    v = h.states[KEY].verdict
    assert v is not None
    joined_at = W0 + 2 * WS + 7
    # the hydra response: a replacement account is acted on at its first request
    assert h.feed(summary("replacement", joined_at, "join")) == [AccountVerdict("replacement", v)]
    assert h.feed(summary("replacement", joined_at + 60)) == []


def test_conviction_is_renewed_once_half_its_ttl_has_run() -> None:
    h = Harness()
    accounts = h.campaign(CAMPAIGN_SIZE, W0 + 10)
    first = h.states[KEY].verdict
    assert first is not None
    h.told.clear()
    later = first.issued_ts + CFG.verdict_ttl_s / 2 + WS
    for i, a in enumerate(accounts):
        h.feed(summary(a, later + i * 0.5))
    renewed = h.states[KEY].verdict
    assert renewed is not None and renewed.verdict_id != first.verdict_id
    assert renewed.expires_ts > first.expires_ts
    assert Counter(av.account_id for av in h.told) == Counter(accounts)


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
    st = h.states["ip:198.51.100.0/24"]
    assert st.active == 300
    assert st.verdict is None and h.told == []


def test_nat_crowd_seen_for_the_first_time_is_not_convicted() -> None:
    # At detector start every account is "new" to the detector; age is what must protect them.
    h = Harness()
    for i in range(300):
        h.feed(summary(f"student-{i:03d}", W0 + 10 + i, key="ip:198.51.100.0/24", young=False,
                       requests=12, reasoning=6, high_value=9))
    assert h.states["ip:198.51.100.0/24"].verdict is None and h.told == []


def test_too_few_accounts_prove_nothing() -> None:
    h = Harness()
    h.campaign(CFG.cluster_min_accounts - 1, W0 + 10)
    assert h.states[KEY].verdict is None and h.told == []


def test_same_summaries_give_the_same_verdict_ids() -> None:
    def run() -> list[tuple[str, str]]:
        h = Harness()
        h.campaign(CAMPAIGN_SIZE, W0 + 10)
        return [(av.account_id, av.verdict.verdict_id) for av in h.told]
    first = run()
    assert first and first == run()
    other = DetectorConfig(cluster_horizon_windows=H + 1)
    assert verdict_id(KEY, W0, other.model_version) != verdict_id(KEY, W0, CFG.model_version)


# --- expiry -----------------------------------------------------------------------------------


def _advance(h: Harness, ts: float) -> list[str]:
    """Another cluster of the partition moves event time on; return the expired clusters."""
    h.feed(summary("x", ts, key="pay:elsewhere", young=False))
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
    horizon = H * WS
    late = CFG.allowed_lateness_s
    assert KEY not in _advance(h, W0 + 10 + horizon + late - 1)
    assert KEY in h.states
    assert KEY in _advance(h, W0 + 10 + horizon + late)
    assert KEY not in h.states


def test_convicted_cluster_is_kept_while_its_verdict_holds() -> None:
    h = Harness()
    h.campaign(CAMPAIGN_SIZE, W0 + 10)
    v = h.states[KEY].verdict
    assert v is not None
    late = CFG.allowed_lateness_s
    assert KEY not in _advance(h, v.issued_ts + H * WS + late + 1)
    assert KEY in h.states  # a replacement account joining now must still be told
    expired: list[Any] = []
    for step in range(1, 4):
        expired += _advance(h, v.expires_ts + late + step * WS)
    assert KEY in expired
