"""The withdrawal (core 0.8) under attack: what a campaign can and cannot buy with it.

A conviction of a content key (a template, a system prompt) whose crowd falls under
`cluster_keep_score` is withdrawn: the account partitions stop handing it to accounts that newly
join the key (models/cluster_stage.py `_withdraw`, `WITHDRAWN_KINDS`). A campaign whose payment
card is convicted could try to *dilute* the card's crowd with cheap accounts that harvest
nothing (each counts as half an honest member, models/scoring.py), so that its fresh replacement
accounts (the hydra churn) are no longer acted on at their first request; and a hydra whose
replacements are blocked at their first request fills its card's crowd with such members by
itself. Measured when cards were withdrawn too (the first cut of core 0.8): 28 one-request
accounts withdrew a card of 26 suspicious members and let 50 of 57 replacements go unjudged
(core 0.7: 22); a hydra replacing each blocked account after a minute withdrew its own card
~13 minutes after every conviction (1,933 of 2,348 replacement requests served before action,
core 0.7: 882). So a card's conviction is never withdrawn, which these tests hold.

These tests drive the whole core (`models.pipeline.Pipeline`) with a small reactive world: a
campaign of `SLOTS` concurrent young accounts on one card, each harvesting written-out reasoning
for `LIFE` requests and then replaced by a fresh account (as the simulator's hydra does); a
blocked account stops and its slot's next account starts when it would have ended (or after
`respawn_delay`). One established account per partition keeps every partition's clock moving.

The comparison with core 0.7 replaces `ClusterStage._withdraw` by what core 0.7 did in its place
(nothing, then the hydra response to new members): possible with the interpreted core only.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache

import pytest

from distillguard.models._build import current_build
from distillguard.models.account import Verdict
from distillguard.models.cluster import members_to_tell
from distillguard.models.cluster_stage import ClusterStage
from distillguard.models.config import DetectorConfig
from distillguard.models.events import event_from_mapping
from distillguard.models.messages import AccountVerdict
from distillguard.models.partitioning import partition_for
from distillguard.models.pipeline import Pipeline
from distillguard.models.scoring import cluster_evidence

CFG = DetectorConfig()
T0 = 1_767_225_600  # 2026-01-01 00:00 UTC: aligned to every window and tick
DAY = 86400
PARTITIONS = 12
CARD = "pf-hydra"
KEY = f"pay:{CARD}"
SLOTS = 10  # concurrent campaign accounts
LIFE = 12  # requests per campaign account
GAP = 90.0  # seconds between an account's requests
DILUTE_AT = T0 + 3600  # the campaign is convicted by then
HORIZON = CFG.cluster_horizon_windows * CFG.cluster_window_s
TICK = CFG.cluster_tick_s
DELAY = CFG.verdict_delay_s
INTERPRETED = current_build() == "interpreted"
needs_interpreted = pytest.mark.skipif(
    not INTERPRETED, reason="compares with core 0.7 by replacing a method of the core")


@dataclass(slots=True)
class Actor:
    account: str
    kind: str  # campaign, replacement, dilution, probe, ticker
    created: float
    ip: str
    asn: int
    user_agent: str
    card: str | None
    start: float
    gap: float = GAP
    requests: int = LIFE
    category: str = "reasoning"
    reasoning: bool = True
    templates: tuple[int, ...] = ()  # prompts within 3 bits of one of these; else random
    sent: int = 0
    first_ts: float | None = None
    action: str = "allow"
    acted_at: int | None = None  # its requests served when first throttled or blocked
    acted_ts: float | None = None  # and the event time of that decision
    blocked_at: int | None = None
    decisions: list[tuple[float, str]] = field(default_factory=list)  # (event time, action)
    rng: random.Random = field(default_factory=random.Random)


class World:
    """A campaign on one card, its replacements, and whatever else a test adds."""

    def __init__(self, respawn_delay: float | None = None) -> None:
        self.p = Pipeline(CFG, partitions=PARTITIONS)
        self.actors: dict[str, Actor] = {}
        self.queue: list[tuple[float, int, str]] = []
        self.hooks: list[tuple[float, int, Callable[[World, float], None]]] = []
        self.seq = 0
        self.spawned = 0
        self.respawn_delay = respawn_delay  # None: a slot's next account starts on schedule
        self.card_verdicts: list[Verdict] = []  # the card crowd's verdicts, as they changed
        self._tickers()

    # --- who sends ---------------------------------------------------------------------
    def add(self, a: Actor) -> Actor:
        a.rng = random.Random(a.account)
        self.actors[a.account] = a
        self._push(a.start, a.account)
        return a

    def _push(self, ts: float, account: str) -> None:
        heapq.heappush(self.queue, (ts, self.seq, account))
        self.seq += 1

    def _tickers(self) -> None:
        have: set[int] = set()
        i = 0
        while len(have) < PARTITIONS:
            name = f"tick-{i}"
            if partition_for(name, PARTITIONS) not in have:
                have.add(partition_for(name, PARTITIONS))
                self.add(Actor(name, "ticker", T0 - 400 * DAY, f"198.51.{i}.7", 64000 + i,
                               f"browser/{i}", None, T0 + i, gap=30.0, requests=10**9,
                               category="chat", reasoning=False))
            i += 1

    def campaign(self, templates: tuple[int, ...] = ()) -> None:
        for i in range(SLOTS):
            self.member("campaign", T0 + 60 + i * LIFE * GAP / SLOTS, templates)

    def member(self, kind: str, start: float, templates: tuple[int, ...] = ()) -> Actor:
        """A young campaign account of its own address and network, on the card."""
        k = self.spawned
        self.spawned += 1
        return self.add(Actor(f"{kind}-{k:04d}", kind, start - DAY, f"10.{k // 250}.{k % 250}.9",
                              65000 + k, "sdk/2.0", CARD, start, templates=templates))

    def dilute(self, start: float, n: int, requests: int = 1, aged: bool = False,
               harvest: bool = False, gap: float = 60.0) -> list[Actor]:
        """n accounts on the card, each of its own address, network and client: chat (or
        reasoning, `harvest`), young (created a day before) or `aged` (400 days)."""
        out = []
        for j in range(n):
            k = sum(1 for a in self.actors.values() if a.kind == "dilution")
            out.append(self.add(Actor(
                f"dilution-{k:04d}", "dilution", start - (400 * DAY if aged else DAY),
                f"172.{16 + k // 250}.{k % 250}.9", 66000 + k, f"browser/d{k}", CARD,
                start + j, gap=gap, requests=requests,
                category="reasoning" if harvest else "chat", reasoning=harvest)))
        return out

    def at(self, ts: float, fn: Callable[[World, float], None]) -> None:
        heapq.heappush(self.hooks, (ts, self.seq, fn))
        self.seq += 1

    # --- run ---------------------------------------------------------------------------
    def run(self, until: float) -> World:
        while self.queue and self.queue[0][0] < until:
            ts, _, name = heapq.heappop(self.queue)
            while self.hooks and self.hooks[0][0] <= ts:
                hts, _, fn = heapq.heappop(self.hooks)
                fn(self, hts)
            a = self.actors[name]
            if a.action == "block" or a.sent >= a.requests:
                continue
            self._send(a, ts)
            churns = a.kind in ("campaign", "replacement")
            if a.action == "block" or a.sent >= a.requests:
                if churns:
                    nxt = (ts + self.respawn_delay if self.respawn_delay is not None
                           else max(ts, a.start + a.requests * a.gap) + 60.0)
                    self.member("replacement", nxt, a.templates)
                continue
            self._push(ts + a.gap * a.rng.uniform(0.9, 1.1), name)
        return self

    def system_prompt_of(self, a: Actor) -> str | None:
        """The system prompt `a` sends (none here; worlds of courses with a notebook's)."""
        return None

    def _send(self, a: Actor, ts: float) -> None:
        if a.templates:
            simhash = a.rng.choice(a.templates)
            for _ in range(a.rng.randint(0, 3)):
                simhash ^= 1 << a.rng.randrange(64)
        else:
            simhash = a.rng.getrandbits(64)
        ev = event_from_mapping({
            "event_id": f"{a.account}-{a.sent}", "ts": ts, "account_id": a.account,
            "ip": a.ip, "model": "m", "prompt_tokens": 100, "completion_tokens": 900,
            "status": 200, "prompt_simhash": f"{simhash:016x}",
            "reasoning_requested": a.reasoning, "asn": a.asn, "user_agent": a.user_agent,
            "payment_fingerprint": a.card, "account_created_ts": a.created,
            "task_category": a.category,
            **({"system_prompt_hash": sp} if (sp := self.system_prompt_of(a)) else {})})
        a.sent += 1
        if a.first_ts is None:
            a.first_ts = ts
        for d in self.p.process(ev):
            b = self.actors.get(d.account_id)
            if b is None:
                continue
            b.action = d.action
            b.decisions.append((d.event_ts, d.action))
            if d.action != "allow" and b.acted_at is None:
                b.acted_at, b.acted_ts = b.sent, d.event_ts
            if d.action == "block" and b.blocked_at is None:
                b.blocked_at = b.sent
        card = self.p.clusters.get(KEY)
        if card is not None and card.verdict is not None and (
                not self.card_verdicts
                or self.card_verdicts[-1].verdict_id != card.verdict.verdict_id):
            self.card_verdicts.append(card.verdict)

    # --- what happened -----------------------------------------------------------------
    def of(self, kind: str) -> list[Actor]:
        return [a for a in self.actors.values() if a.kind == kind]

    def withdrawals(self) -> list[Verdict]:
        return [v for v in self.card_verdicts if v.is_withdrawal]

    def convictions(self) -> list[Verdict]:
        return [v for v in self.card_verdicts if not v.is_withdrawal]

    def suspicious(self) -> int:
        return cluster_evidence(self.p.clusters[KEY], CFG).suspicious


@contextmanager
def core_07() -> Iterator[None]:
    """What core 0.7 did where core 0.8 withdraws: nothing, then tell the members new to the
    key (checked against the parent commit's core: the same decisions on these worlds)."""
    def tell(self: ClusterStage, state: object, v: Verdict, score: float, now_ts: int,
             out: object) -> None:
        for account in members_to_tell(state, v.verdict_id, self.cfg):  # type: ignore[arg-type]
            out.verdicts.append(AccountVerdict(account, v, now_ts))  # type: ignore[attr-defined]

    original = ClusterStage._withdraw
    ClusterStage._withdraw = tell  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        ClusterStage._withdraw = original  # type: ignore[method-assign]


def campaign_before_dilution() -> World:
    w = World()
    w.campaign()
    w.run(DILUTE_AT - 1)
    return w


@cache
def suspicious_at_dilution() -> int:
    return campaign_before_dilution().suspicious()


# --- 1. a card is never withdrawn ----------------------------------------------------------


@pytest.mark.parametrize("dilution", [
    pytest.param({"per_member": 2.0}, id="young-one-request-2x"),
    pytest.param({"per_member": 3.0, "aged": True}, id="aged-one-request-3x"),
    pytest.param({"per_member": 1.0, "aged": True, "harvest": True, "requests": 4},
                 id="aged-harvesting"),
])
def test_a_dilution_does_not_withdraw_a_card_and_replacements_are_acted_on_at_once(
        dilution: dict[str, object]) -> None:
    w = campaign_before_dilution()
    suspicious = w.suspicious()
    convicted = w.card_verdicts[-1]
    assert not convicted.is_withdrawal and convicted.score >= CFG.cluster_convict_score
    # an hour of a churning campaign: its crowd is the horizon's accounts, not the concurrent
    assert suspicious >= 2 * SLOTS
    kwargs = dict(dilution)
    per_member = float(kwargs.pop("per_member"))  # type: ignore[arg-type]
    w.dilute(DILUTE_AT, int(per_member * suspicious), **kwargs)  # type: ignore[arg-type]
    w.run(DILUTE_AT + 1800)
    # (enough to take the crowd under the keep score: what withdrew it in the first cut)
    assert cluster_evidence(w.p.clusters[KEY], CFG).score < CFG.cluster_keep_score
    assert w.withdrawals() == []
    # a fresh replacement joining now is still acted on at its first request
    late = [a for a in w.of("replacement") if a.first_ts is not None
            and a.first_ts >= DILUTE_AT + 600]
    assert late and all(a.acted_at == 1 for a in late)


@pytest.mark.parametrize("respawn_delay", [60.0, 300.0])
def test_a_hydra_replacing_blocked_accounts_keeps_its_card_convicted(
        respawn_delay: float) -> None:
    def run() -> World:
        w = World(respawn_delay=respawn_delay)
        w.campaign()
        return w.run(T0 + 4 * 3600)

    w = run()
    assert w.convictions() and w.withdrawals() == []
    reps = [a for a in w.of("replacement") if a.first_ts is not None
            and a.first_ts >= w.convictions()[0].issued_ts + DELAY]
    assert len(reps) > 3 * SLOTS
    # every one acted on, and most at its first request (the first cut: 128 never acted on).
    # (Measured at 60 s: 297 of 337 at the first, 29 at the third, 11 at their last, while an
    # hourly refresh re-issued the card's conviction at 0.68-0.71, under the convict score that
    # lets a crowd's prior judge a newcomer: core 0.7 does the same.)
    assert all(a.acted_at is not None for a in reps)
    assert sum(1 for a in reps if a.acted_at == 1) >= 0.85 * len(reps)
    if INTERPRETED:  # and exactly what core 0.7 decided
        with core_07():
            before = run()
        assert ({a.account: a.decisions for a in w.actors.values()}
                == {a.account: a.decisions for a in before.actors.values()})


# --- 4. flapping -----------------------------------------------------------------------------


@needs_interpreted
def test_template_crowds_flapping_by_themselves_cost_little_and_release_no_one() -> None:
    """A template crowd is convicted at `template_convict_score` and kept at
    `cluster_keep_score`, both 0.6: a withdrawn template crowd is convicted again at the score
    it was withdrawn under, so crowds near it flap (measured: 34 withdrawals in 3 h with 5
    templates and 10 slots). Bounded here: the members told again at each re-conviction, and
    what the campaign's replacements get served before they are acted on."""
    rng = random.Random(99)
    templates = tuple(rng.getrandbits(64) for _ in range(5))

    def run() -> tuple[int, int, int]:
        w = World()
        withdrawals = [0]
        forward = w.p._to_accounts

        def count(out, decisions):  # type: ignore[no-untyped-def]
            withdrawals[0] += sum(1 for c in out.convictions if c.verdict.is_withdrawal)
            return forward(out, decisions)

        w.p._to_accounts = count  # type: ignore[method-assign]
        w.campaign(templates)
        w.run(T0 + 3 * 3600)
        reps = w.of("replacement")
        served = sum(a.acted_at if a.acted_at is not None else a.sent for a in reps)
        return withdrawals[0], w.p.counts["verdicts"], served

    flaps, told, served = run()
    with core_07():
        none, told_07, served_07 = run()
    assert none == 0 and flaps > 0
    assert told <= 1.25 * told_07
    assert served <= served_07 + 5
