"""Core 0.15 under attack: a newcomer judged by the prior of a content crowd proven to harvest for
long is a campaign's fresh account, blocked at once, only when a fifth of the crowd's members rotate.

The change (models/policy.py `CHURN_ROTATING_SHARE`, `Verdict.rotating`): a newcomer (under
CONFIDENT_REQUESTS requests, not rotating) to a content crowd (a template or a system prompt)
convicted at `cluster_convict_score` and proven (`proven >= PROVEN_CROWD`: its suspicious members
harvest known templates for long) still takes the crowd's prior, and is throttled; it counts as
"churned", which lets a block happen at once (`_may_block`), only when the verdict says at least
0.2 of the crowd's active members rotate (behaviour.rotation >= 0.5). Before it, every proven
crowd's newcomers were churned: a MOOC's and a bootcamp's late joiners were blocked at their
2nd-4th request.

An adversarial review (2026-12-07, branch adversary15, written against the first cut of the
change, which gated `proven` itself in models/scoring.py; ported to the kept cut, which gates
only the block, with the world figures re-measured: the blocks are the same, and the first cut's
unjudged sticky newcomers are now throttled by the prior). "Before" is core 0.14 (b8cece1).

As the lab (young accounts, no card, each of its own address and client, sending the course's
templates with reasoning; 10 slots, an account retired after its life or at its block and
replaced a minute later). Figures "after (core 0.15) / before (b8cece1)":
- L1, a sticky hydra (each account on one residential address and client for its life, no proxy
  rotation) does not rotate, so its fresh accounts are throttled, not blocked:
    0.9/min, life 3 h, 12 h:  49 accounts, 0 blocked, 132 requests served per account /
                              220 accounts, 180 of 210 replacements blocked by their 4th, 28.7.
    0.9/min, life 23.5 h, 48 h (test_core10_adversary's world): 30 accounts, 0 blocked, 863
                              per account (1,268 per full life) / 142 accounts, 112 of 132
                              replacements blocked by their 4th, 182. The lab never meets a block.
    2/min (machine pace), life 3 h, 12 h: 690 accounts, 680 blocked at their 20th-26th (the
                              machine pace), 18.9 each / 2,237 accounts, 1,867 of 2,227
                              replacements blocked by their 4th, 4.4 each.
  What the lab harvests in all is about the same (6,466 / 6,304; 25,899 / 25,812; 13,024 /
  9,917 requests): the change makes it 4.3-4.6x cheaper in accounts (accounts per 1,000
  requests 7.6 / 34.9 at 0.9/min, 53 / 226 at 2/min), and at a person's pace blockless.
- L2, a hydra rotating on some slots (a new ASN and /24 on every request), a blocked account
  replaced at once. Its rotating accounts are still blocked at once by their own rotation
  (492 of 495 by their 8th, either core). The share is of the horizon's *active members*, and a
  churned rotating slot adds one every few minutes: 1 rotating slot of 10 makes the crowd rotate
  part of the time, 62 of 90 sticky replacements blocked by their 4th (before: 69 of 96; the
  first cut: 29 of 56). 2 or 3 rotating slots: 0 of 32 / 0 of 28, before AND after: rotating
  accounts blocked before
  SUSTAINED_TEMPLATED_REQUESTS are suspicious, never sustained, and dilute proven = sustained /
  (suspicious + 2) to 0.2-0.35 (< PROVEN_CROWD). Pre-existing: throwaway harvesters, rotating or
  not, dilute the proof.
- Padding a rotating crowd under a fifth with idle non-rotating members is no new lever: a crowd
  of 12 sustained rotating harvesters needs 49 idle members to rotate under a fifth, but 5 drop
  its score under cluster_convict_score (0.774 < 0.8), below which no newcomer is judged.

As the benign crowd (a bootcamp: 30 young students, an exercise every ~4 min for 8 h; 16 late
joiners, two at each of 1-7 h in, 20 exercises; test_core10_adversary's world):
- no rotation: late joiners 0 of 16 blocked / 16 of 16 at their 2nd request: what the change is
  for, and it holds; the cohort is throttled, never blocked, either core.
- B1 framing: 8 established accounts on a rotating proxy sending chat (not high-value) prompts of
  the course's templates every 4 min from 1 h in make the template crowds >= 20% rotating (8 of
  38): 16 of 16 late joiners blocked at their 2nd-4th request again, and the framers are never
  acted on (0 of 8: they harvest nothing). 5 framers: 0 of 16; 6: 2; 7: 11; 8 every 15 min: 2;
  every 30 min: 0. (A probe: throwaway framers, a fresh rotating account per burst of 12 chat
  prompts, 8 an hour: 8 of 16 late joiners blocked; 22 of the 64 framers blocked themselves.)
- B2 honest rotation: learners on a privacy relay (iCloud Private Relay style: 3 ASNs, a new
  egress /24 on ~30% of their requests) are blocked by their OWN rotation, either core (rotation
  lifts the content hold, `_may_block`): 8 of 8 at a 25% relay share, 12 of 12 at 40%, at their
  5th-25th request. They do not re-frame the late joiners (0 of 16 at 25% and at 40%; a probe:
  1 of 8 at 50% with half the late joiners on the relay, 6 of those 8 blocked): a relay learner's
  rotation reaches a template crowd only in the windows it still sends, and it is blocked then.

Worst legal inputs: a crowd with no active member has rotating share 0, proven 0, score 0 (no
division by zero); the share is inclusive at exactly 0.2 (1 of 5 ... 7 of 35) and a member's
rotation at exactly ROTATING counts.

Tests: guarantees are plain; weaknesses are strict xfails asserting what should hold, their
reasons the measured figures. Existing tests this change breaks (run in this worktree):
test_core10_adversary.py::test_retiring_accounts_before_the_day_burns_most_replacements_at_once
(L1's 48 h world: 20 replacements, none blocked), test_content_session_adversary.py::
test_a_churning_content_campaign_gets_no_more_per_account_than_three_times_before (3,415 / 172
vs 1,448 / 270) and the strict xfail test_core10_adversary.py::test_b2 (now XPASS); the rest
of tests/unit passed (1,482). In the kept cut those two tests state the new figures, and B2 of
test_core10_adversary.py is a plain test.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from functools import cache

import pytest

from distillguard.models.behaviour import ROTATING, SUSTAINED
from distillguard.models.cluster import ClusterState, add_summary
from distillguard.models.config import DetectorConfig
from distillguard.models.pipeline import Pipeline
from distillguard.models.policy import CHURN_ROTATING_SHARE, PROVEN_CROWD
from distillguard.models.scoring import ClusterEvidence, cluster_evidence
from tests.unit.test_content_session_adversary import TEMPLATES
from tests.unit.test_core10_adversary import PERSON_GAP, _campaign, _served
from tests.unit.test_scoring import C0, CW, H, summary
from tests.unit.test_withdrawal_adversary import DAY, PARTITIONS, T0, Actor, World

CFG = DetectorConfig()
RELAY_ASNS = (36183, 13335, 54113)  # a privacy relay's egress networks
STICKY, PROXY, RELAY = "sticky", "proxy", "relay"
assert CHURN_ROTATING_SHARE == 0.2 and PROVEN_CROWD == 0.5


# --- unit: what a crowd's verdict says of its rotation -------------------------------------


def _crowd(harvesters: int, rotating: int = 0, idle: int = 0, idle_rotating: int = 0,
           rotation: float = 1.0, key: str = "tpl:1:5a1a") -> ClusterEvidence:
    """A crowd active over the whole horizon: `harvesters` young members harvesting known
    templates for long (SUSTAINED), the first `rotating` of them at `rotation`; `idle`
    established members that harvest nothing; `idle_rotating` such members on a rotating proxy."""
    state = ClusterState(cluster_key=key)
    n = harvesters + idle + idle_rotating
    for i in range(n):
        ts = C0 + (i * H // n) * CW + 10 + i
        if i < harvesters:
            s = summary(key, f"harvester-{i:03d}", ts, history=SUSTAINED,
                        rotation=rotation if i < rotating else 0.0)
        else:
            s = summary(key, f"idle-{i:03d}", ts, young=False, harvest=0.0, high_value=0,
                        reasoning=0, rotation=1.0 if i >= harvesters + idle else 0.0)
        assert add_summary(state, s, CFG)
    return cluster_evidence(state, CFG)


def _churns(ev: ClusterEvidence) -> bool:
    """Whether a verdict of this evidence has its newcomers blocked at once (models/policy.py:
    proven, convicted, and rotating as the verdict carries it, rounded to 4 places)."""
    return (ev.score >= CFG.cluster_convict_score and ev.proven >= PROVEN_CROWD
            and round(ev.rotating_share, 4) >= CHURN_ROTATING_SHARE)


def _rotates(ev: ClusterEvidence) -> bool:
    return round(ev.rotating_share, 4) >= CHURN_ROTATING_SHARE


def test_a_crowd_with_no_active_member_is_never_proven_nor_rotating() -> None:
    for key in ("tpl:1:5a1a", "sys:0123456789abcdef", "pay:pf-1"):
        ev = cluster_evidence(ClusterState(cluster_key=key), CFG)
        assert (ev.accounts, ev.rotating_share, ev.proven, ev.score) == (0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize("n", [5, 10, 15, 35])
def test_a_fifth_rotating_is_enough_and_one_fewer_is_not(n: int) -> None:
    assert _rotates(_crowd(n, rotating=n // 5))  # (exactly 0.2: inclusive)
    assert not _rotates(_crowd(n, rotating=n // 5 - 1))


def test_a_member_rotating_exactly_at_the_threshold_counts() -> None:
    assert _rotates(_crowd(10, rotating=2, rotation=ROTATING))
    assert not _rotates(_crowd(10, rotating=2, rotation=ROTATING - 1e-9))


def test_padding_a_rotating_crowd_under_a_fifth_costs_more_than_diluting_its_score() -> None:
    # 12 sustained rotating harvesters: 5 idle non-rotating members bring the score under the
    # conviction that judges newcomers at all (0.774 < 0.8; pre-existing), 49 the rotation.
    def fewest(unjudged: Callable[[ClusterEvidence], bool]) -> int:
        return next(u for u in range(200) if unjudged(_crowd(12, rotating=12, idle=u)))

    unscored = fewest(lambda ev: ev.score < CFG.cluster_convict_score)
    unrotating = fewest(lambda ev: ev.rotating_share < CHURN_ROTATING_SHARE)
    assert (unscored, unrotating) == (5, 49)


def test_rotating_members_that_harvest_nothing_do_not_make_a_course_churn() -> None:
    # B1 (unit), a strict xfail of core 0.15: 8 established members on a rotating proxy that
    # harvest nothing beside a course's 30 young sustained learners made its verdict churn (21%
    # rotating, proven 0.94, score 0.857). Since core 0.16 the share counts rotating harvesters.
    ev = _crowd(30, idle_rotating=8)
    assert ev.score >= CFG.cluster_convict_score
    assert not _churns(ev)


# --- the worlds -------------------------------------------------------------------------------


class _Net(World):
    """Worlds whose accounts each keep a network mode: STICKY (their own address, network and
    client), PROXY (a new ASN and /24 on every request) or RELAY (a new egress of RELAY_ASNS on
    ~30% of requests). Hydra slots (`spawn`) replace an account retired or blocked, a minute
    later, also when a decision made at another account's request blocked it."""

    def __init__(self, cfg: DetectorConfig = CFG) -> None:
        super().__init__()
        self.p = Pipeline(cfg, partitions=PARTITIONS)
        self.mode: dict[str, str] = {}
        self.slot: dict[str, int] = {}
        self.rotating_slots: frozenset[int] = frozenset()
        self.life, self.gap = 10**6, PERSON_GAP

    def spawn(self, slot: int, start: float) -> Actor:
        k = self.spawned
        self.spawned += 1
        a = self.add(Actor(f"hydra-{k:04d}", "hydra", start - DAY, f"10.{k // 250}.{k % 250}.9",
                           65000 + k, f"sdk/{k}", None, start, gap=self.gap,
                           requests=self.life, category="math", reasoning=True,
                           templates=TEMPLATES))
        self.slot[a.account] = slot
        self.mode[a.account] = PROXY if slot in self.rotating_slots else STICKY
        return a

    def _send(self, a: Actor, ts: float) -> None:
        self._move(a, self.mode.get(a.account, STICKY))
        super()._send(a, ts)

    def _move(self, a: Actor, mode: str) -> None:
        """Where `a` sends its next request from, by its network mode."""
        r = a.rng
        if mode == PROXY:
            a.asn = 30000 + r.randrange(5000)
            a.ip = f"{r.randrange(60, 90)}.{r.randrange(256)}.{r.randrange(256)}.3"
        elif mode == RELAY and (a.sent == 0 or r.random() < 0.3):
            a.asn = r.choice(RELAY_ASNS)
            a.ip = f"172.{r.randrange(224, 240)}.{r.randrange(256)}.{r.randrange(2, 250)}"

    def run(self, until: float) -> World:
        replaced: set[str] = set()
        while self.queue and self.queue[0][0] < until:
            ts, _, name = heapq.heappop(self.queue)
            a = self.actors[name]
            if a.action != "block" and a.sent < a.requests:
                self._send(a, ts)
            if a.action == "block" or a.sent >= a.requests:
                if name in self.slot and name not in replaced:
                    replaced.add(name)
                    self.spawn(self.slot[name], ts + 60.0)
                continue
            self._push(ts + a.gap * a.rng.uniform(0.9, 1.1), name)
        return self


@cache
def _hydra(rotating_slots: tuple[int, ...] = (), gap: float = PERSON_GAP) -> tuple[Actor, ...]:
    """10 slots, each account's life 3 h of harvest at `gap`, for 12 h."""
    w = _Net()
    w.rotating_slots = frozenset(rotating_slots)
    w.gap, w.life = gap, int(3 * 3600 / gap)
    for i in range(10):
        w.spawn(i, T0 + 60 + i * 7)
    w.run(T0 + 12 * 3600)
    xs = tuple(a for a in w.of("hydra") if a.sent)
    for a in xs:
        a.kind = w.mode[a.account]  # (what the tests tell apart)
    return xs


def _replacements(xs: tuple[Actor, ...], mode: str = STICKY) -> list[Actor]:
    """The slots' accounts after their first (hydra-0000 to hydra-0009)."""
    return [a for a in xs if a.kind == mode and int(a.account.removeprefix("hydra-")) >= 10]


def _blocked_at_once(xs: list[Actor]) -> int:
    return sum(a.blocked_at is not None and a.blocked_at <= 4 for a in xs)


def add_bootcamp_cohort(w: World, templates: tuple[int, ...]) -> list[Actor]:
    """test_core10_adversary's bootcamp, on `templates`: 30 young students (kind "student") from
    1 h in, an exercise every ~4 min for 8 h; 16 late joiners (kind "late"), two at each of 1,
    1.5, 2, 3, 4, 5, 6 and 7 h after, 20 exercises each. Returns the students."""
    rng = random.Random(3)
    students = []
    for i in range(30):
        k = len(w.actors)
        students.append(w.add(Actor(
            f"stud-{i:02d}", "student", T0 - DAY, f"100.{k // 250}.{k % 250}.5", 65200 + k,
            f"client/{k}", None, T0 + 3600 + rng.uniform(0, 600), gap=rng.uniform(200, 280),
            requests=8 * 3600 // 240, category="math", reasoning=True, templates=templates)))
    for j, h in enumerate((1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0) * 2):
        k = len(w.actors)
        w.add(Actor(f"late-{j:02d}", "late", T0 - DAY, f"100.{k // 250}.{k % 250}.5",
                    65200 + k, f"client/{k}", None, T0 + 3600 + h * 3600 + j * 37,
                    gap=rng.uniform(200, 280), requests=20, category="math", reasoning=True,
                    templates=templates))
    return students


@cache
def _bootcamp(relay: int = 0, framers: int = 0, framer_gap: float = 240.0) -> World:
    """test_core10_adversary's bootcamp with late joiners: 30 young students (the first `relay`
    of them on a privacy relay), an exercise every ~4 min for 8 h; 16 late joiners, two at
    each of 1, 1.5, 2, 3, 4, 5, 6 and 7 h in, 20 exercises. `framers`: established accounts on
    a rotating proxy sending chat prompts of the course's templates every `framer_gap` from
    1 h in."""
    w = _Net()
    for a in add_bootcamp_cohort(w, TEMPLATES)[:relay]:
        w.mode[a.account] = RELAY
        a.kind = "relay"
    for f in range(framers):
        a = w.add(Actor(f"framer-{f:02d}", "framer", T0 - 400 * DAY, "192.0.2.1", 1, "x", None,
                        T0 + 3600 + f * 13, gap=framer_gap, requests=10**6, category="chat",
                        reasoning=False, templates=TEMPLATES))
        w.mode[a.account] = PROXY
    return w.run(T0 + 9.2 * 3600)


def _tally(w: World, kind: str) -> tuple[int, int, int]:
    """(accounts, acted on, blocked)"""
    xs = w.of(kind)
    assert xs and all(a.sent for a in xs)
    return (len(xs), sum(a.acted_at is not None for a in xs),
            sum(a.blocked_at is not None for a in xs))


# --- the benign crowd: guarantees -----------------------------------------------------------


@pytest.mark.parametrize("relay", [8, 12])
def test_learners_on_a_privacy_relay_do_not_make_their_course_judge_its_late_joiners(
        relay: int) -> None:
    # (25% and 40% of the cohort: their rotation reaches the crowd only in the windows they
    # still send, and they are blocked at once: B2)
    assert _tally(_bootcamp(relay=relay), "late") == (16, 16, 0)


def test_framing_needs_a_fifth_of_the_crowd_and_never_blocks_the_cohort() -> None:
    assert _tally(_bootcamp(framers=5), "late")[2] == 0  # (core 0.15, 6: 2 of 16; 7: 11; 8: 16)
    assert _tally(_bootcamp(framers=8), "student") == (30, 30, 0)
    assert _tally(_bootcamp(framers=8, framer_gap=1800.0), "late")[2] == 0


def test_b1_rotating_strangers_cannot_have_a_courses_late_joiners_blocked() -> None:
    # B1 framing, a strict xfail of core 0.15: 8 established accounts on a rotating proxy sending
    # chat prompts of a bootcamp's templates every 4 min (8 of 38 members rotate) made its crowd
    # rotate, and 16 of 16 late joiners were blocked at their 2nd-4th request. Since core 0.16
    # members that rotate and harvest nothing do not make a crowd rotate.
    assert _tally(_bootcamp(framers=8), "late")[2] == 0


# --- the benign crowd: weaknesses -----------------------------------------------------------


@pytest.mark.xfail(strict=True, reason="B2 (pre-existing, the same before and after): learners "
                   "on a privacy relay (3 ASNs, a new egress /24 on ~30% of requests) rotate by "
                   "`rotation`, which lifts the content hold (`_may_block`): 8 of 8 blocked at "
                   "their 9th-25th request at a 25% relay share (12 of 12 at 40%), while their "
                   "classmates at home are throttled, never blocked")
def test_b2_learners_on_a_privacy_relay_are_not_blocked() -> None:
    assert _tally(_bootcamp(relay=8), "relay")[2] == 0


# --- the lab: guarantees --------------------------------------------------------------------


def test_a_hydras_rotating_accounts_are_still_blocked_at_once() -> None:
    xs = [a for a in _hydra((0, 1, 2)) if a.kind == PROXY]
    assert len(xs) > 400
    assert sum(a.blocked_at is not None and a.blocked_at <= 8 for a in xs) >= 0.99 * len(xs)


def test_one_churned_rotating_slot_makes_the_crowd_rotate_part_of_the_time() -> None:
    # 1 rotating slot of 10: the slot's churn keeps ~20-30% of the horizon's members rotating,
    # and 62 of 90 sticky replacements are blocked by their 4th request (before: 69 of 96;
    # the first cut of the change, which gated the proof itself: 29 of 56)
    reps = _replacements(_hydra((0,)))
    assert _blocked_at_once(reps) >= 0.3 * len(reps)


def test_the_worlds_the_weaknesses_stand_on_are_as_they_say() -> None:
    # (what the strict xfails below take for granted, so that none of them fails for another
    # reason than the one it names)
    framed = _bootcamp(framers=8)
    assert _tally(framed, "framer")[1] == 0  # the framing costs the framers nothing
    assert _tally(_bootcamp(relay=8), "student") == (22, 22, 0)  # classmates at home: held
    for rotating_slots, gap in (((), PERSON_GAP), ((), 30.0), ((0, 1), PERSON_GAP)):
        assert len(_replacements(_hydra(rotating_slots, gap))) >= 30
    two_days = _campaign(CFG, 48, life=int(23.5 * 3600 / PERSON_GAP))
    assert sum(map(_served, two_days)) > 25_000


# --- the lab: weaknesses --------------------------------------------------------------------


@pytest.mark.xfail(strict=True, reason="L1: a hydra that keeps each account on one residential "
                   "address and client for its life does not rotate: its fresh accounts are "
                   "throttled by the prior, not blocked. 0.9/min, life 3 h, 12 h: "
                   "0 of 39 replacements blocked, 132 requests served per account (before: 180 "
                   "of 210 blocked by their 4th, 28.7 each); at 2/min the machine pace blocks "
                   "them at their 20th-26th, 18.9 each (before: 1,867 of 2,227 by their 4th, "
                   "4.4 each): 4.3-4.6x fewer accounts for the same harvest")
@pytest.mark.parametrize("gap", [PERSON_GAP, 30.0], ids=["person-pace", "machine-pace"])
def test_l1_a_sticky_hydras_fresh_accounts_are_blocked_at_once(gap: float) -> None:
    reps = _replacements(_hydra((), gap))
    assert _blocked_at_once(reps) >= 0.8 * len(reps)


@pytest.mark.xfail(strict=True, reason="L1 over two days (test_core10_adversary's world): a "
                   "sticky lab at 0.9/min retiring each account at 23.5 h of harvest is never "
                   "blocked: 30 accounts, 0 blocked, 25,899 requests (1,268 per full life; "
                   "before: 112 of 132 replacements blocked by their 4th, 182 per account)")
def test_l1_a_sticky_hydra_retiring_before_the_day_is_blocked() -> None:
    xs = _campaign(CFG, 48, life=int(23.5 * 3600 / PERSON_GAP))
    assert sum(map(_served, xs)) / len(xs) < 250


@pytest.mark.xfail(strict=True, reason="L2 (pre-existing, the same before and after): a sticky "
                   "hydra with 2 of its 10 slots rotating (each blocked account replaced at "
                   "once) is >= 20% rotating but not proven: its rotating accounts, blocked "
                   "before SUSTAINED_TEMPLATED_REQUESTS, are suspicious and never sustained, "
                   "and dilute proven = sustained / (suspicious + 2) to 0.2-0.35: 0 of 32 "
                   "sticky replacements blocked at once, 129 requests served each (before: 0 of "
                   "31, 132)")
def test_l2_throwaway_harvesters_do_not_dilute_the_proof() -> None:
    reps = _replacements(_hydra((0, 1)))
    assert _blocked_at_once(reps) >= 0.8 * len(reps)
