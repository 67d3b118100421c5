"""A marathon: an established account harvesting at a machine's pace for longer than a session.

A crowd counts an account as suspicious when it harvests on a cheap identity: a young account or
one that rotates (models/cluster.py `member_flags`). Established accounts that harvest are what
enterprises' batch jobs, researchers and companies evaluating models do, and their harvest is
theirs; so a lab on established, non-rotating accounts went unseen (the family `eval_harness`:
13 accounts of a lab dressed as eval runs, ~5,000 requests each at 15-22 a minute for 4.5 hours,
not one decision under core 0.10). What an honest run does not do is go on: an evaluation or a
batch job ends, or pauses, within a session. So an account of any age whose current harvest of
known templates (no pause of HARVEST_PAUSE_S in it) has gone on at a machine's pace for
MARATHON_S is a suspicious member too (models/behaviour.py `MARATHON`, core 0.11).
"""

from __future__ import annotations

import random

from distillguard.models.behaviour import (
    HARVEST_PAUSE_S,
    JUDGED,
    MARATHON,
    MARATHON_S,
    SUSTAINED,
    Behaviour,
    history,
)
from distillguard.models.cluster import member_flags
from tests.unit.test_content_session_adversary import DEFAULT, _world
from tests.unit.test_withdrawal_adversary import DAY, T0, Actor, World

_R = random.Random(11)
LAB_TEMPLATES = tuple(_R.getrandbits(64) for _ in range(4))
BENCHMARKS = tuple(_R.getrandbits(64) for _ in range(4))  # public benchmarks' items
CLOUD_ASN = 15169


def _harvest(b: Behaviour, start: float, gap: float, n: int) -> float:
    for i in range(n):
        b.observe(1, "sdk", True, True, LAB_TEMPLATES[i % 2], None, ts=start + gap * i)
    return start + gap * (n - 1)


def test_history_names_a_marathon_only_past_a_session_at_a_machines_pace() -> None:
    script, person = Behaviour(), Behaviour()
    _harvest(script, 1000.0, 4.0, int(MARATHON_S / 4.0) - 10)  # 15 a minute, not 3 h yet
    assert history(script, 10_000) == SUSTAINED
    _harvest(script, 1000.0 + MARATHON_S, 4.0, 20)  # ... and on past 3 h
    assert history(script, 10_000) == MARATHON
    _harvest(person, 1000.0, 240.0, 200)  # a question every 4 minutes for 13 hours
    assert history(person, 10_000) == SUSTAINED, "a person's pace is no marathon"
    assert history(Behaviour(), 10_000) == JUDGED


def test_a_pause_ends_the_marathon() -> None:
    b = Behaviour()
    end = _harvest(b, 1000.0, 4.0, 1700)  # 1 h 53 min: a nightly eval run
    end = _harvest(b, end + HARVEST_PAUSE_S + 60, 4.0, 1700)  # and another after a pause
    assert history(b, 10_000) == SUSTAINED


def test_a_marathon_on_an_established_account_is_suspicious() -> None:
    harvesting, aged = 0.9, 0
    assert member_flags(aged, harvesting, 0.0, SUSTAINED)[1] == 0, "its harvest is its own"
    assert member_flags(aged, harvesting, 0.0, MARATHON)[1] == 1
    assert member_flags(aged, 0.1, 0.0, MARATHON)[1] == 0, "suspicious means harvesting"


def _runner(w: World, name: str, kind: str, k: int, start: float, requests: int,
            templates: tuple[int, ...]) -> Actor:
    """An established service account (400 days old) on a cloud /24 with a pinned SDK and no
    card, sending templated coding prompts with reasoning every ~4 s (15 a minute)."""
    return w.add(Actor(name, kind, start - 400 * DAY, f"34.120.{k}.9", CLOUD_ASN,
                       "openai-python/1.40.0", None, start, gap=4.0, requests=requests,
                       category="coding", reasoning=True, templates=templates))


def _lab_and_evaluators() -> World:
    w = _world(DEFAULT)
    for i in range(12):  # the lab: its templates and the public ones, for 5 hours
        _runner(w, f"lab-{i:02d}", "lab", i, T0 + 600 + 20 * i, 4500,
                LAB_TEMPLATES + BENCHMARKS[:1])
    for i in range(12):  # companies' eval runs: the benchmarks, 1 h 50 min, then again
        a = _runner(w, f"eval-{i:02d}", "eval", 100 + i, T0 + 900 + 30 * i, 1650, BENCHMARKS)

        def again(world: World, ts: float, a: Actor = a) -> None:
            a.requests += 1650  # the nightly run's second pass, after a 2 h 20 min pause
            world._push(ts, a.account)
        w.at(a.start + 1650 * 4.4 + HARVEST_PAUSE_S + 1200, again)
    return w.run(T0 + 9 * 3600)


def test_a_lab_harvesting_for_hours_on_established_accounts_is_blocked_after_a_session() -> None:
    w = _lab_and_evaluators()
    lab = w.of("lab")
    assert all(a.blocked_at is not None for a in lab), [a.sent for a in lab]
    for a in lab:  # not before a session's worth of harvest: an eval run's length is spared
        assert a.acted_ts is not None and a.first_ts is not None
        assert a.acted_ts - a.first_ts >= MARATHON_S


def test_eval_runs_beside_it_that_end_or_pause_are_not_acted_on() -> None:
    w = _lab_and_evaluators()
    evals = w.of("eval")
    assert all(a.sent == 3300 for a in evals), "both runs sent"
    assert [a.account for a in evals if a.acted_at is not None] == []
