"""A lab harvesting around the clock on established accounts: a gap, measured, with a rule tried.

A crowd counts an account as suspicious when it harvests on a cheap identity: a young account or
one that rotates (models/cluster.py `member_flags`). Established accounts that harvest are what
enterprises' batch jobs, researchers and companies evaluating models do, and their harvest is
theirs; so a lab on established, non-rotating accounts goes unseen (the tuning family
`eval_harness`: 13 accounts of a lab dressed as eval runs, ~5,000 requests each at 15-22 a minute
for 4.5 hours, not one decision, core 0.10).

Tried and reverted (2026-12-06, eighth sitting, "core 0.11"): an account of any age whose
current harvest of known templates (no 2-hour pause in it) had gone on for 3 h at a machine's
pace counted as a suspicious member. On the tuning families it caught the lab (0% -> 100%
blocked, 75% of its requests served before) and the framers (acted on 76.6% -> 99.1%), and
blocked honest established heavy users: enterprise 31.3%, agent fleets 31.7% (none before). An
adversary's review of it (the world below, and more): an app backend relaying its users' prompts
through 6 service accounts all day, 6 of 6 blocked at 3.1 h; a research lab's eval farm, 8 of 8;
CI running a 40-minute suite every ~70 minutes, 6 of 6 (gaps under 2 h join the runs into one);
honest eval customers starting after a lab's marathon got the benchmark prompts convicted, 6 of
6 at their 20th request. And the lab evades it by pausing 2 h 05 min every 2 h 55 min (58% of its
throughput kept, 100% with fresh prompts in the pause), or by one templated request in 16.
Telling the lab from an honest heavy customer needs what neither has on its requests alone:
what a verified customer of that kind sends (the allow-list, per-org baselines), not the price of
its identity.
"""

from __future__ import annotations

import random

import pytest

from distillguard.models.behaviour import HARVEST_PAUSE_S
from tests.unit.test_content_session_adversary import DEFAULT, _world
from tests.unit.test_withdrawal_adversary import DAY, T0, Actor, World

_R = random.Random(11)
LAB_TEMPLATES = tuple(_R.getrandbits(64) for _ in range(4))
BENCHMARKS = tuple(_R.getrandbits(64) for _ in range(4))  # public benchmarks' items
CLOUD_ASN = 15169


def _runner(w: World, name: str, kind: str, k: int, start: float, requests: int,
            templates: tuple[int, ...]) -> Actor:
    """An established service account (400 days old) on a cloud /24 with a pinned SDK and no
    card, sending templated coding prompts with reasoning every ~4 s (15 a minute)."""
    return w.add(Actor(name, kind, start - 400 * DAY, f"34.120.{k}.9", CLOUD_ASN,
                       "openai-python/1.40.0", None, start, gap=4.0, requests=requests,
                       category="coding", reasoning=True, templates=templates))


def _lab_and_evaluators() -> World:
    w = _world(DEFAULT)
    for i in range(12):  # the lab: its templates and a public one, for 5 hours
        _runner(w, f"lab-{i:02d}", "lab", i, T0 + 600 + 20 * i, 4500,
                LAB_TEMPLATES + BENCHMARKS[:1])
    for i in range(12):  # companies' eval runs: the benchmarks, 1 h 50 min, then again
        a = _runner(w, f"eval-{i:02d}", "eval", 100 + i, T0 + 900 + 30 * i, 1650, BENCHMARKS)

        def again(world: World, ts: float, a: Actor = a) -> None:
            a.requests += 1650  # the nightly run's second pass, after a 2 h 20 min pause
            world._push(ts, a.account)
        w.at(a.start + 1650 * 4.4 + HARVEST_PAUSE_S + 1200, again)
    return w.run(T0 + 9 * 3600)


def test_eval_runs_on_established_accounts_are_not_acted_on() -> None:
    w = _lab_and_evaluators()
    evals = w.of("eval")
    assert all(a.sent == 3300 for a in evals), "both runs sent"
    assert [a.account for a in evals if a.acted_at is not None] == []


@pytest.mark.xfail(strict=True, reason=(
    "a lab on established, non-rotating accounts harvesting known templates at 15 a minute for "
    "hours is no crowd's suspicious member: 0 of 12 acted on in 5 h (eval_harness: 0 of 16); "
    "the marathon rule that caught it blocked honest enterprises and agent fleets (31%) and "
    "was reverted (module docstring)"))
def test_a_lab_harvesting_for_hours_on_established_accounts_is_acted_on() -> None:
    w = _lab_and_evaluators()
    lab = w.of("lab")
    assert all(a.acted_at is not None for a in lab), [a.sent for a in lab]
