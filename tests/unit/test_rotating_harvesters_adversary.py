"""Core 0.16 under attack: a crowd's rotating share counts only its members that harvest while
rotating (models/cluster.py `member_flags`, the third flag; models/scoring.py `rotating_share`;
`Verdict.rotating`, which models/policy.py `assess` compares with CHURN_ROTATING_SHARE to call a
newcomer judged by a proven content crowd's prior a churned campaign account, blocked at once).

An adversarial review (2026-12-07, branch adversary16b). "Before" is core 0.15 (af558c7), "after"
core 0.16 (82db467), both interpreted, on test_churn_rotation_adversary's worlds (a bootcamp of 30
young students and 16 late joiners; a hydra of 10 slots, 3 h lives at 0.9/min, 12 h).

Monotone: the third flag is now `harvesting and rotating`, and `active_rotating` feeds nothing but
`rotating_share`, so a crowd's share can only fall: 0.16 churns no newcomer that 0.15 did not.
No honest crowd's late joiner is newly blocked; the ones newly spared are those of crowds whose
rotating members harvest nothing (B1's framers; the relay learners of B2 harvest, and count the
same either way: 0 of 16 late joiners blocked before and after).

1. The framer, made to harvest (high-value prompts with reasoning of the course's templates on a
   rotating proxy). Figures the same before and after (the framers harvest, so 0.15 counted them
   too): a framer that harvests while rotating is suspicious itself, and blocked at once by its
   own rotation (`_may_block`), before SUSTAINED_TEMPLATED_REQUESTS, so it dilutes the proof
   (proven = sustained / (suspicious + 2)) as much as it lifts the rotation:
   - 2 to 10 persistent framers every 4 min: 0 of 16 late joiners blocked; every framer blocked
     at its 6th-7th request (5-6 served).
   - throwaway framers (a fresh rotating account per burst of 6, every 4 min): 4 an hour, 2 of 16
     late joiners blocked (at their 2nd-3rd), 32 framers, all blocked, 31 by their 4th, 3.1
     served each (the same at a framer's request every 2 min); 2, 3, 5, 6, 8 (65 framers, 64
     blocked) and 16 an hour: 0 of 16.
   - framers warming up first (young, 6 or 8 sticky templated requests, then the proxy, so they
     are sustained when they rotate), 2-6 an hour: 0-1 of 16; blocked at their 9th / 11th.
   Before, chat framers (B1) got 16 of 16 with 8 framers never acted on.
2. The lab keeping its rotating accounts' harvest under HARVESTING (before / after):
   - 2 rotating slots of 10 sending 1 high-value request in 3 (pattern H C C: 3 of the 8 latest
     asks, harvest 0.375): the crowd no longer rotates: sticky replacements blocked at once 90 of
     114 / 0 of 32; requests served per sticky account 41.7 / 129.4. The rotating accounts: 10,
     acted on 10, blocked 0, either core; 129 requests served each, 43 of them high-value.
   - 2 rotating slots harvesting one template only (FOCUS[1] = 0.4 caps harvest at 0.4): 27 of
     52 / 0 of 32; the rotating accounts 0 blocked, 129.4 high-value requests each, either core.
   - 3 rotating slots (H C C): 0 of 28 either core (3 honest-looking members drop the score under
     cluster_convict_score); 1 slot: 0 of 36 either core (10% rotating).
   - low reasoning share does not help: a rotating account's `none` is 0 whatever it asks, and
     1 rotating slot asking no reasoning is blocked by its 4th as before (196 of 197).
   The lab gains nothing it lacked: a hydra that does not rotate at all (L1, a strict xfail of
   test_churn_rotation_adversary) already had 0 sticky replacements blocked and 132 requests
   each under 0.15; the rotating low-harvest accounts earn a third of a sticky account's harvest.
   Pre-existing and larger (either core): a hydra harvesting one template is never acted on,
   rotating or not: 50 accounts, 0 acted on, 6,465 high-value requests with reasoning in 12 h.
"""

from __future__ import annotations

from functools import cache
from itertools import product

import pytest

from distillguard.models.behaviour import HARVESTING, ROTATING, SUSTAINED
from distillguard.models.cluster import member_flags
from tests.unit.test_churn_rotation_adversary import (
    PROXY,
    STICKY,
    _blocked_at_once,
    _churns,
    _crowd,
    _Net,
    _replacements,
    _tally,
    add_bootcamp_cohort,
)
from tests.unit.test_content_session_adversary import TEMPLATES
from tests.unit.test_core10_adversary import PERSON_GAP, _served
from tests.unit.test_withdrawal_adversary import DAY, T0, Actor, World

# --- unit: who counts as rotating -------------------------------------------------------------


@pytest.mark.parametrize("young,history", list(product((0, 1), (0, 1, SUSTAINED))))
def test_a_rotating_harvester_is_a_harvesting_suspicious_member(young: int,
                                                                history: int) -> None:
    # (so 0.16's rotating share is never above 0.15's: no newcomer newly blocked)
    for harvest, rotation in product((0.0, HARVESTING - 1e-9, HARVESTING, 1.0),
                                     (0.0, ROTATING - 1e-9, ROTATING, 1.0)):
        h, s, r, _ = member_flags(young, harvest, rotation, history)
        assert r == int(harvest >= HARVESTING and rotation >= ROTATING)
        assert r <= s <= h


@pytest.mark.parametrize("idle_rotating", [8, 15, 30])
def test_no_number_of_rotating_members_that_harvest_nothing_makes_a_course_churn(
        idle_rotating: int) -> None:
    ev = _crowd(30, idle_rotating=idle_rotating)
    assert ev.rotating_share == 0.0 and not _churns(ev)


def test_a_crowd_of_rotating_harvesters_still_churns() -> None:
    ev = _crowd(30, rotating=8)
    assert _churns(ev)


# --- the worlds -------------------------------------------------------------------------------


class _Mixed(_Net):
    """_Net whose hydra slots may follow a pattern of asks (H: a templated high-value request with
    reasoning, h: the same without, C: a chat prompt of no template) and use a subset of the
    templates."""

    def __init__(self) -> None:
        super().__init__()
        self.pattern: dict[str, str] = {}
        self.tpls: dict[str, tuple[int, ...]] = {}
        self.slot_pattern: dict[int, str] = {}
        self.slot_tpls: dict[int, tuple[int, ...]] = {}

    def spawn(self, slot: int, start: float) -> Actor:
        a = super().spawn(slot, start)
        self.pattern[a.account] = self.slot_pattern.get(slot, "H")
        a.templates = self.slot_tpls.get(slot, a.templates)
        return a

    def _send(self, a: Actor, ts: float) -> None:
        p = self.pattern.get(a.account, "H")
        base = a.templates
        if p[a.sent % len(p)] == "C":
            a.category, a.reasoning, a.templates = "chat", False, ()
        else:
            a.category, a.reasoning = "math", p[a.sent % len(p)] == "H"
        super()._send(a, ts)
        a.templates = base

    def high_value_served(self, a: Actor) -> int:
        p = self.pattern.get(a.account, "H")
        return sum(p[i % len(p)] != "C" for i in range(_served(a)))


@cache
def _lab(rotating_slots: tuple[int, ...], pattern: str = "H",
         templates: tuple[int, ...] = TEMPLATES,
         rotating_only: bool = True, hours: float = 12) -> tuple[_Mixed, tuple[Actor, ...]]:
    """_hydra's world (10 slots, 3 h lives at 0.9/min, for `hours`), the rotating slots asking
    by `pattern` from `templates` (every slot, unless `rotating_only`)."""
    w = _Mixed()
    w.rotating_slots = frozenset(rotating_slots)
    w.gap, w.life = PERSON_GAP, int(3 * 3600 / PERSON_GAP)
    for s in range(10):
        if s in rotating_slots:
            w.slot_pattern[s] = pattern
        if s in rotating_slots or not rotating_only:
            w.slot_tpls[s] = templates
    for i in range(10):
        w.spawn(i, T0 + 60 + i * 7)
    w.run(T0 + hours * 3600)
    xs = tuple(a for a in w.of("hydra") if a.sent)
    for a in xs:
        a.kind = w.mode[a.account]
    return w, xs


@cache
def _harvesting_framers(per_hour: int, burst: int = 6) -> World:
    """_bootcamp's course, framed by throwaway established accounts on a rotating proxy, each
    sending `burst` high-value prompts with reasoning of the course's templates every 4 min, a
    fresh one `per_hour` from the course's start."""
    w = _Net()
    add_bootcamp_cohort(w, TEMPLATES)
    for f in range(int(8.2 * per_hour)):
        a = w.add(Actor(f"framer-{f:03d}", "framer", T0 - 400 * DAY, f"192.0.{f // 250}.{f % 250}",
                        64600 + f, f"x{f}", None, T0 + 3600 + f * 3600 / per_hour, gap=240.0,
                        requests=burst, category="math", reasoning=True, templates=TEMPLATES))
        w.mode[a.account] = PROXY
    return w.run(T0 + 9.2 * 3600)


# --- 1. the framer, made to harvest -------------------------------------------------------------


def test_harvesting_framers_pay_a_blocked_account_each_and_frame_at_most_two_late_joiners() -> None:
    # 4 throwaway harvesting framers an hour (the most measured: 8 and 16 an hour frame none,
    # their unsustained suspicious accounts dilute the proof): 2 of 16 late joiners blocked, the
    # same before and after; every framer blocked by its 6th request, 31 of 32 by their 4th
    w = _harvesting_framers(4)
    assert _tally(w, "late")[2] <= 2
    framers = w.of("framer")
    assert _tally(w, "framer") == (len(framers), len(framers), len(framers))
    assert all(a.blocked_at is not None and a.blocked_at <= 6 for a in framers)
    assert sum(map(_served, framers)) / len(framers) < 4


# --- 2. the lab keeping its rotating accounts' harvest under HARVESTING -------------------------


def test_rotating_accounts_that_mix_chat_earn_a_third_of_a_sticky_accounts_harvest() -> None:
    # 2 rotating slots of 10, 1 high-value request in 3: never blocked (either core), but 43
    # high-value requests each to a sticky account's 129: rotating under HARVESTING is worse
    # for the lab than not rotating at all (L1)
    w, xs = _lab((0, 1), "HCC")
    rot = [a for a in xs if a.kind == PROXY]
    sticky = [a for a in xs if a.kind == STICKY]
    assert rot and sticky
    per = {k: sum(map(w.high_value_served, ys)) / len(ys)
           for k, ys in ((PROXY, rot), (STICKY, sticky))}
    assert per[PROXY] <= 0.4 * per[STICKY]


def test_a_rotating_account_asking_no_reasoning_is_still_blocked_at_once() -> None:
    # (a rotating account's harvest does not rest on reasoning: `none` is 0 once it rotates)
    _, xs = _lab((0,), "h", hours=3)
    rot = [a for a in xs if a.kind == PROXY]
    assert sum(a.blocked_at is not None and a.blocked_at <= 8 for a in rot) >= 0.95 * len(rot)


@pytest.mark.xfail(strict=True, reason="2 of a hydra's 10 slots rotating and sending 1 "
                   "high-value request in 3 (harvest 0.375 < HARVESTING) no longer count as "
                   "rotating: 0 of 32 sticky replacements blocked at once, 129.4 requests served "
                   "per sticky account (core 0.15: 90 of 114 by their 4th, 41.7). No new lever: "
                   "a hydra not rotating at all (L1) had 0 blocked and 132 each under 0.15")
def test_a_hydra_whose_rotating_accounts_mix_chat_has_its_fresh_accounts_blocked() -> None:
    reps = _replacements(_lab((0, 1), "HCC")[1])
    assert _blocked_at_once(reps) >= 0.5 * len(reps)


def test_a_rotating_hydra_harvesting_one_template_is_acted_on() -> None:
    # (a strict xfail until core 0.17: FOCUS[1] = 0.4 capped a one-template account's harvest
    # at 0.4 < HARVESTING, rotating or not: 50 accounts, 0 acted on, 6,465 high-value requests
    # with reasoning in 12 h; since 0.17 an account hopping networks is not excused its focus)
    _, xs = _lab(tuple(range(10)), "H", TEMPLATES[:1])
    assert sum(a.acted_at is not None for a in xs) >= 0.5 * len(xs)
