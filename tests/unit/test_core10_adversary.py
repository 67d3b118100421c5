"""Core 0.10 under attack: prompt content alone blocks only a harvest that lasts a day.

Core 0.10 raised `harvest_session_s` from 3 h to 24 h: an account whose only corroboration is
prompt content shared with convicted crowds (templates, a system prompt) is held at the
throttle (2 rpm) until its harvest of known templates has lasted a day (`harvest_span`: a pause
over HARVEST_PAUSE_S, 2 h, ends a harvest; a day's harvests add up; a harvest starting a day or
more after the day's first starts a new day). A card's crowd, a replacement on a convicted
card, a newcomer judged by a proven content crowd's prior, rotation, a strike or a machine's
pace (20 templated high-value requests at >= 1/min in one harvest) still block at once
(`models/policy.py` `_may_block`).

An adversarial review (2026-12-06; probes in worlds like these, compiled core, fixed seeds;
figures "default (24 h) vs 3 h"):

As the lab (a content-only campaign: each account young, of its own network and client, no card,
sending the course's templates with reasoning; 10 accounts):
- at a person's pace just under the machine's (0.9/min), no pause: blocked at 24.0-24.1 h of
  harvest, 1,298 requests served per account (3 h: 165, at 3.0-3.1 h). 8x per account.
- the same, pausing 2 h 30 min once a day (22 h of harvest, then the pause that starts a new
  day): never blocked, 3,540 requests per account in 72 h, ~1,180 a day and unbounded (3 h: 165
  each, all blocked): 35,400 against 1,651 in all, 21x. (With a pause of exactly 2 h 05 min
  timed from its first request, 2 of 10 accounts were blocked at 26 h: the core's day starts at
  the first request of a template it knows, minutes later; a campaign leaves a margin.)
- interleaving: a templated request every other one (0.91/min templated, under the machine
  pace) and fresh high-value prompts with reasoning between them, at the throttle's 2 rpm, and
  only fresh prompts during the daily pause: never blocked, 7,854 requests per account in 72 h
  (~2,620 a day; 3 h: 335 each, all blocked): 23x in all. Requests that are not of a known
  template neither count toward the machine pace nor end nor extend a harvest.
- bursts of 19 at 2 rpm: the machine pace is an average over the current harvest, measured to
  its latest request, so a burst followed by a pause under 2 h counts as one harvest (38 in 29
  min after two bursts: machine-paced). Bursts only evade it 2 h apart: 19 per ~2 h 14 min,
  ~200 a day, 1.6 h of harvest a day: under the 3-hour session as well (computed from the
  rules; the steady 0.9/min is the campaign's best).
- retiring accounts before the day costs accounts, not requests: a replacement is a newcomer
  to a proven content crowd, judged by its prior (`churned`) and blocked within its first few
  requests, most of the time. Retired at 23.5 h (1,268 requests each), 112 of 132 replacements
  in 48 h were blocked by their 4th request (83 at their 2nd), but one per slot got through
  (throttled, never blocked) and served a full life: 25,812 requests in all, 182 per account.
  At 3 h (blocked at 3 h, then replaced): 23,095 in all, 25 per account (937 accounts); retired
  at 2.9 h, either setting: 21,313, 25 per account. So the 3-hour setting does not cap what a
  churning campaign gets in all either; it costs it 7x the accounts, and the daily pause (W1)
  costs it none.

As the benign crowd (young students, each of its own network, no card, sending the course's
templates with reasoning):
- students retrying an exercise 45-55 s apart: 30 of 30 blocked at their 20th request, under
  either setting (the machine pace); 70 s apart: none.
- a bootcamp's late joiners: its 30-strong cohort is throttled all day, never blocked, but 16 of
  16 students joining from 1 h to 7 h into it are blocked at their second request (a newcomer
  to a proven content crowd, judged by its prior, is `churned`); a 100-minute class's late
  joiners from 30 min in: 8 of 10, at their second or third. (At 3 h the cohort itself was
  blocked, 30 of 30; 12 of 16 late joiners.)
- a class paying on one university card: 30 of 30 blocked at their 4th-5th request, under
  either setting (a card's crowd corroborates a block at once: strangers do not share a card).

Guarantees pass; weaknesses are strict xfails asserting what should hold, their reasons the
measured figures (the 72-hour figures are of probes; the tests run 26-30 h worlds of the same
campaign). What came of it in models/: the daily pause (W1, W2) no longer starts a day's count
afresh; a day's harvest carries into the next while the days follow each other
(`Behaviour.harvested_before_s`): both campaigns blocked 26.5-27.1 h in (1,300 and 2,900
requests per account, once), a day without harvest clears it.

Core 0.15: a newcomer judged by the prior of a content crowd proven to harvest for long is a
campaign's fresh account, blocked at once, only when a fifth of the crowd's members rotate
(models/policy.py `CHURN_ROTATING_SHARE`); otherwise it is throttled. A bootcamp's late joiners
are no longer blocked (B2 holds); the retiring campaign's replacements are no longer either, and
its take in 48 h is what it was (25,899 requests against 25,812: one account per slot always got
through), on 30 accounts instead of 142 (L1 of tests/unit/test_churn_rotation_adversary.py, a
strict xfail).
"""

from __future__ import annotations

import random
from functools import cache

import pytest

from distillguard.models.config import DetectorConfig
from distillguard.models.pipeline import Pipeline
from tests.unit.test_content_session_adversary import (
    DEFAULT,
    ON,
    TEMPLATES,
    _counts,
    _sender,
    _world,
)
from tests.unit.test_withdrawal_adversary import DAY, PARTITIONS, T0, Actor, World

THREE_HOURS = ON  # core 0.9's session, still a setting
assert DEFAULT.harvest_session_s == DAY and THREE_HOURS.harvest_session_s == 3 * 3600
PERSON_GAP = 66.7  # 0.9 templated requests a minute: just under the machine's pace
HARVEST_A_DAY = 21 * 3600 + 50 * 60  # then the pause that starts a new day of harvest
DAILY_PAUSE = 2 * 3600 + 30 * 60


class _Campaign(World):
    """A content-only campaign: young accounts of their own network, no card, sending the
    templates with reasoning every `gap`. `daily_pause`: after HARVEST_A_DAY of its day, an
    account sends no templated prompt for DAILY_PAUSE. `interleave`: every other request is a
    fresh high-value prompt with reasoning (no known template), and so is every request of the
    pause (the account keeps sending through it)."""

    def __init__(self, cfg: DetectorConfig, *, daily_pause: bool = False,
                 interleave: bool = False, respawn_delay: float | None = None) -> None:
        super().__init__(respawn_delay=respawn_delay)
        self.p = Pipeline(cfg, partitions=PARTITIONS)
        self.daily_pause, self.interleave = daily_pause, interleave
        self.day: dict[str, float] = {}  # the account's own idea of its day's start
        self.paused_until: dict[str, float] = {}

    def member(self, kind: str, start: float, templates: tuple[int, ...] = ()) -> Actor:
        k = self.spawned
        self.spawned += 1
        return self.add(Actor(f"{kind}-{k:04d}", kind, start - DAY, f"10.{k // 250}.{k % 250}.9",
                              65000 + k, f"sdk/{k}", None, start, gap=self.base_gap,
                              requests=self.life, category="math", reasoning=True,
                              templates=templates))

    base_gap = PERSON_GAP
    life = 10**6

    def _send(self, a: Actor, ts: float) -> None:
        if a.kind not in ("campaign", "replacement"):
            super()._send(a, ts)
            return
        day = self.day.setdefault(a.account, ts)
        paused_until = self.paused_until.get(a.account, 0.0)
        fresh = ts < paused_until or (self.interleave and a.sent % 2 == 1)
        templates = a.templates
        if fresh:
            a.templates = ()  # a fresh prompt: of no known template
        super()._send(a, ts)
        a.templates = templates
        if not self.daily_pause:
            return
        if paused_until > day and ts >= paused_until:
            self.day[a.account] = ts  # the pause is over: a new day of harvest
        elif paused_until < day and ts - day >= HARVEST_A_DAY:
            self.paused_until[a.account] = ts + DAILY_PAUSE
            if not self.interleave:
                a.gap = DAILY_PAUSE / 0.9  # (World jitters gaps by +-10%)
                return
        a.gap = self.base_gap


@cache
def _campaign(cfg: DetectorConfig, hours: float, *, daily_pause: bool = False,
              interleave: bool = False, gap: float = PERSON_GAP,
              life: int = 10**6) -> tuple[Actor, ...]:
    w = _Campaign(cfg, daily_pause=daily_pause, interleave=interleave,
                  respawn_delay=60.0 if life < 10**6 else None)
    w.base_gap, w.life = gap, life
    for i in range(10):
        w.member("campaign", T0 + 60 + i * 7, TEMPLATES)
    w.run(T0 + hours * 3600)
    return tuple(a for a in w.of("campaign") + w.of("replacement") if a.sent)


def _served(a: Actor) -> int:
    """Requests served to the account (its blocked request is not)."""
    return a.blocked_at - 1 if a.blocked_at is not None else a.sent


def _blocked_after_h(a: Actor) -> float:
    assert a.first_ts is not None
    return (next(ts for ts, x in a.decisions if x == "block") - a.first_ts) / 3600


# --- the lab's side: guarantees that hold ---------------------------------------------------


def test_a_campaign_just_under_the_machine_pace_is_blocked_once_its_harvest_lasts_a_day() -> None:
    # 0.9/min, no pause: 1,298 requests per account (3 h: 165); the price of the day, 8x
    day, session = _campaign(DEFAULT, 26), _campaign(THREE_HOURS, 4)
    assert all(a.blocked_at is not None and 24 <= _blocked_after_h(a) <= 24.5 for a in day)
    assert all(a.blocked_at is not None and 3 <= _blocked_after_h(a) <= 3.5 for a in session)
    per_day = sum(map(_served, day)) / len(day)
    per_session = sum(map(_served, session)) / len(session)
    assert 1200 <= per_day <= 1400 and 150 <= per_session <= 180


def test_retiring_accounts_before_the_day_has_the_replacements_throttled_at_once() -> None:
    # Each account retired at 23.5 h of harvest (1,268 requests). Until core 0.15 its
    # replacement, a newcomer to a crowd proven to harvest for long, was judged by the crowd's
    # prior and blocked at once: 112 of 132 by their 4th request; but one per slot got through
    # the rollover and served a full life, 25,812 requests in 48 h in all. Since core 0.15
    # only a crowd that rotates has its newcomers blocked so (models/policy.py
    # `CHURN_ROTATING_SHARE`: a MOOC's and a bootcamp's late joiners were blocked the same
    # way): the replacements are still judged by the prior, throttled at their first request,
    # and none is blocked; 30 accounts serve 25,899 requests in 48 h (the throttle's 2 a minute
    # does not slow 0.9 a minute: L1 of test_churn_rotation_adversary.py, a strict xfail).
    xs = _campaign(DEFAULT, 48, life=int(23.5 * 3600 / PERSON_GAP))
    originals = [a for a in xs if a.kind == "campaign"]
    replacements = [a for a in xs if a.kind == "replacement"]
    assert all(a.blocked_at is None and a.sent > 1200 for a in originals)
    assert len(replacements) >= 10
    assert all(a.acted_at is not None and a.acted_at <= 2 and a.blocked_at is None
               for a in replacements)


# --- the lab's side: weaknesses (strict xfails) ---------------------------------------------


# W1 and W2 were strict xfails of this review: never blocked, ~1,180 and ~2,620 requests a day
# per account, unbounded. Fixed: a day's harvest is carried into the next while the days follow
# each other (models/behaviour.py `harvested_before_s`), so the pause that starts a new day
# no longer starts the count afresh; a day without any harvest clears it.


def test_w1_a_campaign_pausing_once_a_day_is_blocked() -> None:
    session = _campaign(THREE_HOURS, 4, daily_pause=True)
    assert all(a.blocked_at is not None for a in session)  # (blocked at 3 h)
    day = _campaign(DEFAULT, 30, daily_pause=True)
    # measured: blocked 26.7-27.1 h after its first request, 1,300-1,303 requests each
    assert all(a.blocked_at is not None and 26 <= _blocked_after_h(a) <= 28 for a in day)
    assert all(_served(a) < 1400 for a in day)


def test_w2_a_campaign_interleaving_fresh_prompts_is_blocked() -> None:
    session = _campaign(THREE_HOURS, 4, daily_pause=True, interleave=True, gap=33.0)
    assert all(a.blocked_at is not None for a in session)  # (blocked at 3 h)
    day = _campaign(DEFAULT, 30, daily_pause=True, interleave=True, gap=33.0)
    # measured: blocked 26.5-26.6 h in, 2,891-2,907 requests each (half of them fresh prompts)
    assert all(a.blocked_at is not None and 26 <= _blocked_after_h(a) <= 28 for a in day)
    assert all(_served(a) < 3000 for a in day)


# --- the benign crowd's side ----------------------------------------------------------------


@cache
def _retrying_class(cfg: DetectorConfig, gap: float) -> World:
    """30 young students retrying an exercise of the course's templates every ~`gap`."""
    w = _world(cfg)
    rng = random.Random(3)
    for i in range(30):
        _sender(w, f"stud-{i:02d}", "student", start=T0 + 3600 + rng.uniform(0, 300),
                gap=gap * rng.uniform(0.95, 1.05), requests=30)
    return w.run(T0 + 3 * 3600)


def test_students_retrying_more_than_a_minute_apart_are_throttled_not_blocked() -> None:
    n, acted, blocked = _counts(_retrying_class(DEFAULT, 70.0))
    assert blocked == 0 and acted == n


# Until issue 14's exp16 a strict xfail: students retrying an exercise 45-55 s apart harvested at a
# machine's pace (20 templated high-value requests at >= 1/min), 30 of 30 blocked at their 20th
# request; the pace now blocks at 60 (`machine_pace_requests`), and they send 30.
@pytest.mark.parametrize("gap", [45.0, 55.0])
def test_b1_students_retrying_quickly_are_not_blocked(gap: float) -> None:
    assert _counts(_retrying_class(DEFAULT, gap))[2] == 0


@cache
def _bootcamp_with_late_joiners(cfg: DetectorConfig) -> World:
    """A bootcamp of 30 students (an exercise every ~4 minutes for 8 h) and 16 late joiners,
    two at each of 1, 1.5, 2, 3, 4, 5, 6 and 7 h into it, sending 20 exercises."""
    w = _world(cfg)
    rng = random.Random(3)
    for i in range(30):
        _sender(w, f"stud-{i:02d}", "student", start=T0 + 3600 + rng.uniform(0, 600),
                gap=rng.uniform(200, 280), requests=8 * 3600 // 240)
    for j, h in enumerate((1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0) * 2):
        _sender(w, f"late-{j:02d}", "late", start=T0 + 3600 + h * 3600 + j * 37,
                gap=rng.uniform(200, 280), requests=20)
    return w.run(T0 + 10 * 3600)


def test_by_default_a_bootcamps_cohort_is_throttled_never_blocked() -> None:
    n, acted, blocked = _counts(_bootcamp_with_late_joiners(DEFAULT))
    assert blocked == 0 and acted == n


def test_b2_a_bootcamps_late_joiners_are_not_blocked() -> None:
    # Until core 0.15 (a strict xfail here) a newcomer to a content crowd proven to harvest for
    # long was judged by its prior and counted as churned: 16 of 16 of a bootcamp's late
    # joiners (1 h to 7 h in) blocked at their second request while its cohort was never
    # blocked. Now only a crowd whose members rotate has its newcomers blocked so
    # (models/policy.py `CHURN_ROTATING_SHARE`).
    n, acted, blocked = _counts(_bootcamp_with_late_joiners(DEFAULT), "late")
    assert n == 16 and blocked == 0 and acted == n


@pytest.mark.xfail(strict=True, reason="a card's crowd corroborates a block at once: a class "
                   "of 30 young students paying on one university card, 30 of 30 blocked at "
                   "their 4th-5th request under either setting (a design choice: strangers do "
                   "not share a card; a team's card is shared by accounts not suspicious)")
def test_b3_a_class_on_one_university_card_is_not_blocked() -> None:
    w = _world(DEFAULT)
    rng = random.Random(3)
    for i in range(30):
        a = _sender(w, f"stud-{i:02d}", "student", start=T0 + 3600 + rng.uniform(0, 600),
                    gap=rng.uniform(150, 250), requests=30)
        a.card = "pf-university"
    w.run(T0 + 4 * 3600)
    assert _counts(w)[2] == 0
