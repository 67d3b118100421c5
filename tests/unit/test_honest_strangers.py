"""Honest strangers who share a course's templates: established users, each at home on a network
of their own, sending the same exercises with written-out reasoning. No campaign is among them,
so no one of them may be acted on.

Specifications from a helper's adversarial review (2026-12-06) of a candidate core (0.9, not
merged) that counted "established harvesters each alone on their network, in a template crowd
active longer than a session" as suspicious: it caught a static campaign on aged accounts, and
blocked these students (one 65-minute class: 35 of 40 acted on, 9 blocked; a 4-hour online
course: 40 acted on, 37 blocked; a class after one framer kept the template alive: 40 acted on,
30 blocked). Core 0.8 acts on none of them. Any rule for the aged, static campaign must keep
these green (docs/tuning.md, issue 14).
"""

from __future__ import annotations

import random

from tests.unit.test_withdrawal_adversary import DAY, T0, Actor, World

# A course's six exercises: the templates of the review (drawn after ten others from this seed;
# with the first six draws core 0.9 acted on none, so the draw is kept as the review made it).
_R = random.Random(1414)
_OTHERS = tuple(_R.getrandbits(64) for _ in range(10))
COURSE = tuple(_R.getrandbits(64) for _ in range(6))  # a course's exercises
STUDENTS = 40


def _account(w: World, name: str, kind: str, asn: int, *, start: float, gap: float,
             requests: int) -> None:
    k = len(w.actors)
    w.add(Actor(name, kind, T0 - 400 * DAY, f"100.{k // 250}.{k % 250}.5", asn, f"client/{k}",
                None, start, gap=gap, requests=requests, category="math", reasoning=True,
                templates=COURSE))


def _students_acted(w: World) -> tuple[int, int]:
    students = w.of("student")
    assert len(students) == STUDENTS and all(a.sent for a in students)
    return (sum(a.acted_at is not None for a in students),
            sum(a.blocked_at is not None for a in students))


def test_one_class_of_students_at_home_is_not_acted_on() -> None:
    # one 65-minute session, the students starting within 5 minutes of each other
    w = World()
    rng = random.Random(11)
    for i in range(STUDENTS):
        _account(w, f"stud-{i:02d}", "student", 65200 + i,
                 start=T0 + 2 * 3600 + 450 + rng.uniform(0, 300), gap=65 * 60 / 30, requests=30)
    w.run(T0 + 4 * 3600)
    assert _students_acted(w) == (0, 0)


def test_an_online_course_over_an_afternoon_is_not_acted_on() -> None:
    # each student a 60-90 minute session, the sessions spread over four hours
    w = World()
    rng = random.Random(11)
    for i in range(STUDENTS):
        length = rng.uniform(3600, 5400)
        _account(w, f"stud-{i:02d}", "student", 65200 + i,
                 start=T0 + 60 + rng.uniform(0, 4 * 3600), gap=180.0,
                 requests=int(length / 180))
    w.run(T0 + 6 * 3600)
    assert _students_acted(w) == (0, 0)


def test_a_framer_keeping_the_course_alive_before_class_frames_no_student() -> None:
    w = World()
    rng = random.Random(11)
    _account(w, "framer-0", "framer", 65900, start=T0 + 60, gap=600.0, requests=20)
    for i in range(STUDENTS):
        _account(w, f"stud-{i:02d}", "student", 65200 + i,
                 start=T0 + 2 * 3600 + rng.uniform(0, 300), gap=rng.uniform(100, 160),
                 requests=30)
    w.run(T0 + 4 * 3600)
    assert _students_acted(w) == (0, 0)
