"""A rule tried for core 0.16 and not kept: a template crowd as a "session" until its template has
been in use for an hour. What it was for is a gap still; what it let through is guarded here.

The rule (branch core16-session, 2026-12-07): a template crowd under a fifth of whose members
rotate scores 0 until its template was used in 4 of the horizon's 8 fifteen-minute windows (a
class on one exercise and an exam's candidates on one question move on within minutes; a
campaign harvests its templates for hours). On the tuning set it spared the bootcamp's cohort
(acted on 97% -> 0%) and newly missed 7 targets: the framing campaigns and the exam's lab were
acted on up to an hour later (served before action 4.6% -> 15.0% in frame_class-s1, 2.8% ->
13.2% in frame_card-s2). An adversary (branch adversary16) then beat it for nothing: a lab that
harvests its template families in turn, a quarter hour each, or one family in pulses of 45
minutes every 2 hours, keeps every template crowd under 4 windows and was never acted on (10
sticky young accounts at 2 a minute: 0 acted on and 4,772 requests served in 4 h; at 0.9 a
minute, 0 of 10). No threshold closes that (under a threshold p the lab runs ceil(1/p)+
families), and a class that touches 4 quarter hours (50 minutes from the hour, 40 from ten past)
or is framed by one account posting its exercises beforehand was throttled anyway. docs/tuning.md
("Tried for core 0.16 and not kept") has the figures.

The plain tests hold what the cores since 0.15 do to such labs (every account throttled within
minutes and blocked, whatever the schedule: within a quarter hour until core 0.18 blocked a
machine's pace at 60 requests instead of 20, within 50 minutes since), so that a later session
rule cannot give it away unseen.
The strict xfail is the gap the rule was for: a 40-minute class of young students, each on its
own network, sending the course's exercises with reasoning, is throttled (30 of 30 at 15-19
minutes, none blocked). What would tell the class from the lab is how long its *accounts*
harvest (a timetable of templates does not reset that), or how much each sends (a class's
students a handful, a lab's accounts hundreds); neither was kept yet (docs/tuning.md).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import cache

import pytest

from distillguard.models.config import DetectorConfig
from distillguard.models.pipeline import Pipeline
from tests.unit.test_content_session_adversary import TEMPLATES
from tests.unit.test_withdrawal_adversary import DAY, PARTITIONS, T0, Actor, World

CFG = DetectorConfig()
MACHINE_GAP = 30.0  # two templated requests a minute
PERSON_GAP = 66.7  # 0.9 a minute: under the machine's pace
_R = random.Random(16)
# A lab's template families: each a set of prompt templates it harvests (math with reasoning).
FAMILIES = tuple(tuple(_R.getrandbits(64) for _ in range(6)) for _ in range(3))


class _Lab(World):
    """Young accounts (opened the day before), each on an address, a network and a client of
    its own, no card, sending math with reasoning. An account's templates may follow a schedule
    (`plan`: event time -> templates, () to send nothing then)."""

    def __init__(self) -> None:
        super().__init__()
        self.p = Pipeline(CFG, partitions=PARTITIONS)
        self.plan: dict[str, Callable[[float], tuple[int, ...]]] = {}

    def person(self, kind: str, start: float, *, gap: float, requests: int,
               templates: tuple[int, ...] = TEMPLATES) -> Actor:
        k = len(self.actors)
        return self.add(Actor(f"{kind}-{k:04d}", kind, start - DAY, f"100.{k // 250}.{k % 250}.5",
                              65200 + k, f"client/{k}", None, start, gap=gap,
                              requests=requests, category="math", reasoning=True,
                              templates=templates))

    def _send(self, a: Actor, ts: float) -> None:
        plan = self.plan.get(a.account)
        if plan is not None:
            templates = plan(ts)
            if not templates:
                return  # off: nothing sent now
            a.templates = templates
        super()._send(a, ts)


def in_turn(families: int, slot_s: float) -> Callable[[float], tuple[int, ...]]:
    """FAMILIES[0..families-1] in turn, each for `slot_s`."""
    return lambda ts: FAMILIES[int((ts - T0) // slot_s) % families]


def pulse(on_s: float, period_s: float) -> Callable[[float], tuple[int, ...]]:
    """One family, harvested for `on_s` of every `period_s`, nothing between."""
    return lambda ts: FAMILIES[0] if (ts - T0) % period_s < on_s else ()


@cache
def lab(hours: float, schedule: tuple[str, float, float]) -> tuple[Actor, ...]:
    """10 accounts harvesting at two a minute from T0 + 1 min on `schedule`: ("in turn",
    families, slot_s) or ("pulse", on_s, period_s)."""
    w = _Lab()
    for i in range(10):
        a = w.person("lab", T0 + 60.0 + i * 7, gap=MACHINE_GAP, requests=10**6,
                     templates=FAMILIES[0])
        kind, x, y = schedule
        w.plan[a.account] = in_turn(int(x), y) if kind == "in turn" else pulse(x, y)
    w.run(T0 + hours * 3600)
    return tuple(w.of("lab"))


@cache
def classroom(minutes: float, students: int = 30) -> tuple[Actor, ...]:
    """A class of young students from T0 + 1 h, each starting within 5 minutes, an exercise of
    the course's TEMPLATES every ~200 s (150-250) for `minutes`."""
    w = _Lab()
    rng = random.Random(3)
    start = T0 + 3600
    for _ in range(students):
        gap = rng.uniform(150, 250)
        w.person("student", start + rng.uniform(0, 300), gap=gap,
                 requests=max(1, int(minutes * 60 / gap)))
    w.run(start + minutes * 60 + 2 * 3600)
    return tuple(w.of("student"))


def _blocked_within(xs: tuple[Actor, ...], minutes: float) -> int:
    return sum(a.first_ts is not None and any(
        x == "block" and ts - a.first_ts <= minutes * 60 for ts, x in a.decisions) for a in xs)


def _acted_within(xs: tuple[Actor, ...], minutes: float) -> int:
    return sum(a.first_ts is not None and a.acted_ts is not None
               and a.acted_ts - a.first_ts <= minutes * 60 for a in xs)


@pytest.mark.parametrize("schedule", [("in turn", 3, 900.0), ("pulse", 2700.0, 7200.0)],
                         ids=["three-families-a-quarter-hour-each", "45-minutes-every-2-hours"])
def test_a_lab_keeping_its_templates_to_short_stretches_is_throttled_at_once_and_blocked(
        schedule: tuple[str, float, float]) -> None:
    # (every account throttled at 4-5 minutes whatever the schedule; under the session rule not
    # kept: 0 of 10 acted on.) Blocked by its machine's pace: at core 0.16-0.17 (20 requests)
    # at its 23rd-26th request, 11-12 minutes in; since core 0.18 (60) 31-33 minutes in under
    # pulses, 41-45 minutes in when its families take turns a quarter hour each.
    xs = lab(1.0, schedule)
    assert _acted_within(xs, 6) == len(xs) == 10
    assert _blocked_within(xs, 50) == len(xs)


def test_the_class_world_is_as_the_xfail_says() -> None:
    # (so that the strict xfail below fails for no other reason than the one it names)
    xs = classroom(40)
    assert sum(a.sent for a in xs) == 332
    assert sum(a.acted_at is not None for a in xs) == 30
    assert not any(a.blocked_at for a in xs)


@pytest.mark.xfail(strict=True, reason="a 40-minute class of 30 young students, each on its own "
                   "network, an exercise of the course's templates with reasoning every ~200 s: "
                   "30 of 30 throttled at 15-19 minutes, none blocked (the session rule tried "
                   "for core 0.16 spared it and let a timetable of templates through, above)")
def test_a_one_session_class_of_young_students_is_not_acted_on() -> None:
    assert sum(a.acted_at is not None for a in classroom(40)) == 0
