"""An adversary's probe of core 0.13 (issue 14, branch `adversary13`): what its four changes to
the harvest clock and to strikes give a campaign, and what they still cost an honest person.

Core 0.13 counts harvest time as *active* time (a gap over HARVEST_ACTIVE_GAP_S counts 30 min),
carries a day only when the next harvest begins within a day of the last one's end, leaves a
request older than the harvest's start out of its pace, and lets an operator's lift take a
block's strike back and an operator's allow clear an account's strikes.

Measured at the core level (the content-only gate, `_may_block`, after every request; the
attacker sends as fast as the documented machine pace allows: the n-th templated high-value
request of a harvest, n >= 20, only once n - 1 < its span in minutes), core 0.10 (b0ff80e)
against core 0.13 (4f2ec88), requests served to one account before the gate opens:

    strategy                                       core 0.10              core 0.13
    one a 61 s, without pause                      1,418 in 1.00 day      1,418 in 1.00 day
    a burst every 2 h (as big as the pace allows)  1,332 in 1.01 days     5,567 in 3.95 days
    a burst every 1 h                              1,393 in 1.01 days     2,845 in 2.02 days
    a burst every 30 min                           1,423 in 1.01 days     1,423 in 1.01 days
    19 at once, a pause of 2 h 1 s, again          never: 228/day         never: 228/day
    bursts every 2 h; quiet 24 h after 23.5 h      (blocked, 1.01 days)   never: 1,150/day
    one a 61 s; quiet until the carry resets        never: 706/day         never: 720/day

(Core 0.18 raised the machine's pace from 20 requests to 60: a burst every 30 min is blocked at
its 60th request; 59 at once after each pause, never blocked, is 708 a day. The tests below
hold today's figures.)

The pace is measured over the harvest's whole span, the harvest's time over its active part: a
gap of just under 2 h earns a burst of ~120 requests and costs 30 min of harvest (4 requests a
minute of harvest against 1). Honest schedules (150 seeded people: 12 sessions of 0.5-4 h at
one request every 2.5-10 min, 3-40 h apart): 46 blocked by core 0.10, 3 by core 0.13, none
earlier than under 0.10. (Measured with this file's `_Campaign` driven for 20 days, the same
code run on each core's sources with DISTILLGUARD_CORE=interpreted.)

The operator's side: a lift of a campaign's block past a day's harvest buys nothing (blocked
again at its next decision); a lift takes back one strike, an allow of the account or of its
whole organisation all of them; and a lift is acted on only at a decision made while the
lifted block would still have held, so an honest student who comes back after the block's
6 h keeps the strike and is blocked again. The tests below hold the guarantees and mark the
weaknesses (strict xfails, with the figures and a fix each).

The same day, before core 0.13 landed, the lead made the fixes proposed here: the pace is
measured over the harvest's active time, a request older than the harvest's start by less than
a pause moves the start back to it, only an account's own allow pardons its strikes (not its
organisation's), and a lift takes back the strike of a block of the detector's decided before
it whether or not the block still holds; and a day's harvest carries into the next only when
it lasted half a day or more (`HARVEST_CARRY_MIN_S`), so a person's daily routine never adds up.
A second look at that form (branch `adversary13b`) found bursts of 19 at once after each pause of
over two hours counted almost no harvest time (~815 requests a day, never blocked); so a harvest
counts at least a minute a request after its first (`HARVEST_S_PER_REQUEST`), and what a
campaign can send every day without a block is where it was: ~720 (just under half a day at the
machine's pace; core 0.10: a whole day on and a day off, ~706). Those seven tests now pass as
plain tests (the finding stays as a comment above each); a twelve-hour shift without a break is
still carried (strict xfail, with the trade-off).
"""

from __future__ import annotations

import pytest

from distillguard.models.account import AccountState
from distillguard.models.behaviour import (
    HARVEST_PAUSE_S,
    MACHINE_PACE_REQUESTS,
    Behaviour,
    harvest_span,
    machine_paced,
)
from distillguard.models.config import DetectorConfig
from distillguard.models.decision import ALLOW, BLOCK, THROTTLE
from distillguard.models.operator import (
    OPERATOR_ID_PREFIX,
    ORG,
    OperatorDecision,
    OperatorDecisions,
)
from distillguard.models.policy import _may_block, assess, decide
from tests.unit.test_harvest_clock_and_lifts import decide_after_a_lift
from tests.unit.test_policy import OTHER, T0, TPL_A, TPL_B, account, template_verdicts, verdict

CFG = DetectorConfig()
HOUR, DAY = 3600.0, 86400.0


def _send(b: Behaviour, ts: float, template: int = TPL_A) -> None:
    b.observe(asn=65001, client="browser", high_value=True, reasoning=True, template=template,
              prefix="100.1.2", ts=ts)


def _gate(b: Behaviour) -> bool:
    """Whether content-only crowd evidence that would block may block this account now."""
    st = AccountState.new("acct-1", T0)
    st.behaviour, st.requests = b, max(1, b.high_value)
    return _may_block({}, False, st, 0.0, CFG)


class _Campaign:
    """One account of a campaign that knows the rules (the README states them): it sends as
    many templated high-value requests as keep its harvest under a machine's pace."""

    def __init__(self) -> None:
        self.b = Behaviour()
        self.served = 0
        self.since = self.last = 0.0
        self.n = 0

    def _allowed(self, t: float) -> bool:
        if not self.last or t - self.last > HARVEST_PAUSE_S:
            return True
        return self.n + 1 < MACHINE_PACE_REQUESTS or self.n < (t - self.since) / 60.0

    def burst(self, t: float, limit: int = 10**6) -> bool:
        """As many as the pace allows from `t`, half a second apart; False once blockable."""
        for _ in range(limit):
            if not self._allowed(t):
                break
            if not self.last or t - self.last > HARVEST_PAUSE_S:
                self.since, self.n = t, 0
            self.n, self.last = self.n + 1, max(self.last, t)
            _send(self.b, t)
            self.served += 1
            if _gate(self.b):
                return False
            t += 0.5
        return True

    def bursts(self, gap: float, until: float, quiet_after: float | None = None) -> bool:
        """A burst every `gap` s until `until`; with `quiet_after`, silent for a day and a
        second once the harvest reaches it (the carry then ends). False once blockable."""
        t = T0
        while t < until:
            if not self.burst(t):
                return False
            t = max(t, self.last) + gap
            if quiet_after is not None and harvest_span(self.b) >= quiet_after:
                t = self.last + DAY + 1
        return True


def _long_harvester(hours: float) -> Behaviour:
    """A slow campaign's account: three templates, one every 20 minutes for `hours`."""
    b = Behaviour()
    for i in range(int(hours * 3) + 1):
        _send(b, T0 - hours * HOUR + i * 1200.0, (TPL_A, TPL_B, OTHER)[i % 3])
    return b


def _convicted_course(b: Behaviour, strikes: int = 0, org: str | None = None,
                      account_id: str = "acct-1") -> AccountState:
    """An account in a convicted content crowd (a system prompt and two templates)."""
    st = account(verdict("sys:course-notebook", 0.95), *template_verdicts(TPL_A, 0.9),
                 *template_verdicts(TPL_B, 0.9), prompts=(TPL_A, OTHER, TPL_B), behaviour=b,
                 requests=b.high_value, account_id=account_id)
    st.strikes, st.org_id = strikes, org
    return st


# --- guarantees: what core 0.13 still does -----------------------------------------------------


def test_a_campaign_just_under_a_machines_pace_is_blockable_after_a_day() -> None:
    c = _Campaign()
    t = T0
    while c.burst(t, 1):
        t += 61.0
    assert c.served == 1418 and harvest_span(c.b) >= DAY
    assert not machine_paced(c.b)  # the day, not the pace, opened the gate


def test_a_burst_every_half_hour_gains_nothing() -> None:
    # a gap up to HARVEST_ACTIVE_GAP_S counts in full: bursting every 30 minutes is no new
    # harvest (1,423 served in 1.01 days under cores 0.10-0.17, blocked as soon as sending one
    # a minute is). Since core 0.18 (a machine's pace at 60 requests, not 20) the campaign sends
    # 59 at once, then its 60th half an hour later, in the same harvest: 60 in 30 minutes is a
    # machine's pace, blocked at once.
    c = _Campaign()
    assert not c.bursts(1800.0, T0 + 2 * DAY)
    assert c.served == MACHINE_PACE_REQUESTS == 60


def test_one_short_of_the_pace_at_a_time_stays_under_both_clocks() -> None:
    # (the floor a campaign always had, never blockable on content alone; any more in one
    # harvest is paced, any longer harvest counts: 19 at a time, 228 a day, under cores
    # 0.10-0.17; 59 at a time, 708 a day, since core 0.18 raised the pace to 60. Under the
    # ~720 a day that one request a minute for just under half a day already had.)
    c = _Campaign()
    t = T0
    for _ in range(12 * 3):
        assert c.burst(t, MACHINE_PACE_REQUESTS - 1)
        t = c.last + HARVEST_PAUSE_S + 1
    assert c.served == 59 * 36 and t - T0 < 3.1 * DAY


def test_a_lifted_block_past_a_days_harvest_is_blocked_again_at_once() -> None:
    # Talking an operator into one `override lift` buys a campaign nothing once it has
    # harvested for a day: the strike goes, and the next decision blocks (a new strike).
    b = _long_harvester(25)
    assert harvest_span(b) >= DAY and not machine_paced(b)
    st = _convicted_course(b, strikes=1)
    assert assess(st, T0, CFG).action == BLOCK
    d = decide_after_a_lift(st, blocked_at=T0 - 600, lifted_at=T0 - 60)
    assert d is not None and d.action == BLOCK and st.strikes == 1


def test_a_lift_takes_back_one_strike_not_all() -> None:
    # a repeat offender (3 strikes) talked out of one block: the lift takes one back, the two
    # left let its crowds block it again at once (a new strike)
    st = _convicted_course(_long_harvester(2), strikes=3)
    d = decide_after_a_lift(st, blocked_at=T0 - 600, lifted_at=T0 - 60)
    assert d is not None and d.action == BLOCK and st.strikes == 3


def test_an_operators_block_lifted_leaves_the_detectors_strikes() -> None:
    st = _convicted_course(_long_harvester(2), strikes=2)
    # an operator's own block (its id has OPERATOR_ID_PREFIX) lifted: not the detector's
    # mistake, so its two strikes stay, and its crowds block it again (a third)
    d = decide_after_a_lift(st, blocked_at=T0 - 600, lifted_at=T0 - 60,
                            decision_id=OPERATOR_ID_PREFIX + "block-1")
    assert d is not None and d.action == BLOCK and st.strikes == 3


# --- found in the first cut, fixed; and what is still open ------------------------------------


# Found in core 0.13's first cut and fixed before it landed: core 0.13 measures a harvest's pace
# over its whole span but its time over the active part: a burst of ~120 after each gap of just
# under 2 h stays under a machine's pace and costs 30 min of harvest. Measured: 5,567 requests
# served over 3.95 days before the gate opens (core 0.10: 1,332 in 1.01 days; one a 61 s: 1,418
# in a day). Fix: the pace over the active span (harvesting_last - harvesting_since -
# harvest_idle_s)
def test_bursts_after_gaps_of_two_hours_are_blockable_within_a_day_and_a_half() -> None:
    c = _Campaign()
    assert not c.bursts(HARVEST_PAUSE_S, T0 + 1.5 * DAY)


# Found in core 0.13's first cut and fixed before it landed: with the bursts above, a day's
# quiet after 23.5 h of counted harvest ends the carry (core 0.13: within a day of the last
# harvest's end): ~95 h of bursts, 24 h quiet, again. Measured: never blockable in 20 days,
# 1,150 requests a day (core 0.10's best never-blocked schedule, one a 61 s and quiet until the
# carry resets: 706 a day). Goes with the pace over active time
def test_a_campaign_serving_over_a_thousand_a_day_for_ten_days_is_blockable() -> None:
    c = _Campaign()
    blocked = not c.bursts(HARVEST_PAUSE_S, T0 + 10 * DAY, quiet_after=23.5 * HOUR)
    assert blocked or c.served < 10 * 1000


# Found in core 0.13's first cut and fixed before it landed: a request older than the harvest's
# start is left out of its pace (core 0.13, change 3): behind a record stamped ahead
# (max_event_ahead_s lets a skewed gateway node stamp 300 s ahead), a burst of any size in those
# 300 s is not paced and adds no harvest time (core 0.10: paced). Measured: 200 in 5 minutes,
# not machine-paced, span 0 s. Fix: an older request moves the harvest's start back to it (the
# honest case of test_harvest_clock_and_lifts then has its true span, 26 requests over ~3 h: not
# paced)
def test_a_burst_behind_a_record_stamped_ahead_is_machine_paced() -> None:
    b = Behaviour()
    _send(b, T0)
    ahead = T0 + HARVEST_PAUSE_S + 600.0 + 300.0
    _send(b, ahead)  # the skewed node's record starts a harvest 300 s ahead
    for i in range(200):
        _send(b, ahead - 300.0 + i * 1.5)  # on time, through the other nodes
    assert machine_paced(b)


# Found in core 0.13's first cut and fixed before it landed: an organisation's allow clears the
# strikes of every account of the organisation that decides while it holds, accounts no operator
# looked at: a campaign's accounts in an org allowed for an hour (a ticket about another
# account, a reseller) come out needing two kinds of crowd again. Measured: 3 accounts with 2
# strikes each, 0 after one decision each under a 60 s org allow; with one kind of crowd each is
# then THROTTLED, not blocked. Fix: only an account's own allow (or lift) pardons
def test_an_organisations_allow_pardons_no_account_it_did_not_name() -> None:
    operator = OperatorDecisions()
    operator.put(OperatorDecision("org-reseller", ALLOW, 60, None, "ticket T-1", "bob",
                                  T0 - 10, scope=ORG))
    accounts = [_convicted_course(_long_harvester(2), strikes=2, org="org-reseller",
                                  account_id=f"acct-{i}") for i in range(3)]
    for st in accounts:
        decide(st, T0, CFG, operator=operator)
    assert all(st.strikes == 2 for st in accounts)


def test_with_one_kind_of_crowd_a_strike_is_what_blocks() -> None:
    # (what the pardon above is worth: one convicted system prompt, a repeat offender)
    b = _long_harvester(2)
    st = account(verdict("sys:course-notebook", 0.95), prompts=(TPL_A, OTHER, TPL_B),
                 behaviour=b, requests=b.high_value)
    st.strikes = 1
    assert assess(st, T0, CFG).action == BLOCK
    st.strikes = 0
    assert assess(st, T0, CFG).action == THROTTLE


# Found by this review and fixed before core 0.13 landed (a day carries only with half a day's
# harvest or more, HARVEST_CARRY_MIN_S): still (cores 0.10 and 0.13 alike): days follow each
# other when each begins within a day of the last harvest's end, so a person's daily routine
# adds up: 2 h every evening at one templated request every 3 minutes (40 a day) reaches a day's
# harvest on day 12 (492 requests) and content alone may block it. Idea: a break takes as much
# off the carried harvest as it lasts (a leaky bucket): 2 h a day never adds up, a campaign
# pausing 2.5 h a day still does (19 h more a day), and its best never-blocked schedule stays
# ~50% on, as now (a break of 8 h alone as the cut would let 23.5 h on, 8 h off: ~1,060 a day)
def test_a_persons_evening_routine_is_never_a_days_harvest() -> None:
    b = Behaviour()
    for day in range(30):
        for i in range(41):
            _send(b, T0 + day * DAY + 19 * HOUR + i * 180.0)
            assert not _gate(b)


def _class_member(strikes: int) -> AccountState:
    """A student at a person's pace in a convicted course (test_harvest_clock_and_lifts's)."""
    b = Behaviour()
    for i in range(20):
        _send(b, T0 - 3600 + i * 180, (TPL_A, TPL_B, OTHER)[i % 3])
    st = _convicted_course(b, strikes=strikes)
    st.requests = 20
    return st


def test_a_lifted_student_decided_while_the_block_would_hold_is_held_not_blocked() -> None:
    st = _class_member(strikes=1)
    # blocked 2 h ago, lifted an hour in, back an hour later: the block would still hold
    d = decide_after_a_lift(st, blocked_at=T0 - 2 * HOUR, lifted_at=T0 - HOUR)
    assert st.strikes == 0 and d is not None and d.action == THROTTLE


# Found in core 0.13's first cut and fixed before it landed: an operator's lift takes the strike
# back only at a decision made while the lifted block would still have held (now <
# action_until): a student whose wrong block (6 h) was lifted an hour in, and who comes back the
# next morning, keeps the strike, and its one kind of crowd blocks it again at its first request
# (measured: BLOCK, strikes 2). The account's decisions come at its requests, window closes and
# verdicts, so any account that went quiet after its block keeps the strike. Fix: take the
# strike back whenever a lift names a block of the detector's decided before it (`take_lift` >
# the block's decision time), in force or not
def test_a_lifted_student_back_after_the_blocks_ttl_is_not_blocked_again() -> None:
    st = _class_member(strikes=1)
    # blocked last evening, lifted an hour in, back the next morning, the course convicted
    d = decide_after_a_lift(st, blocked_at=T0 - 20 * HOUR, lifted_at=T0 - 19 * HOUR)
    assert st.strikes == 0 and (d is None or d.action != BLOCK)


# --- core 0.13's final form (477f7ca: a day carries only with HARVEST_CARRY_MIN_S or more) -----
# (branch adversary13b; probes as above, 20 days, against 488f570 and 477f7ca, interpreted core.
# Unchanged by the rule: every strategy of the table above. Honest: the 150 seeded people, 3
# blocked by 488f570, none by 477f7ca, and none blocked that 488f570 left alone: the rule only
# ever lowers harvest_span.)


def _person(sessions: list[tuple[float, float]], pace_s: float) -> bool:
    """A person at one templated request every `pace_s` through each (start, length) session;
    whether the gate ever opens."""
    b = Behaviour()
    for start, length in sessions:
        t = T0 + start
        while t <= T0 + start + length:
            _send(b, t)
            if _gate(b):
                return True
            t += pace_s
    return False


def test_a_twelve_hour_shift_with_a_lunch_hour_never_adds_up() -> None:
    # 07:00-12:00 and 13:00-19:00 at one templated request every 10 minutes, three days running
    # (the lunch hour counts 30 min: 11.5 h a day, not carried). 488f570 carried every day:
    # blockable at the end of the third shift's morning (143 requests); 477f7ca: never
    sessions = [(d * DAY + 7 * HOUR + o, length) for d in range(3)
                for o, length in ((0.0, 5 * HOUR), (6 * HOUR, 6 * HOUR))]
    assert not _person(sessions, 600.0)


def _half_days_and_bursts(days: int, run_s: float = 11.98 * HOUR, bursts: int = 5) -> _Campaign:
    """Every day: a harvest of `run_s` just under the machine's pace (its day stays under
    HARVEST_CARRY_MIN_S, so it is never carried), then `bursts` harvests of 19 at once, each
    after a pause of 2 h 1 s (span ~9 s each: they cost no harvest time)."""
    c = _Campaign()
    for d in range(days):
        start = T0 + d * DAY
        for k in range(int(run_s // 60) + 1):
            if not c.burst(start + 60.0 * k):
                return c
        for _ in range(bursts):
            if not c.burst(c.last + HARVEST_PAUSE_S + 1, 19):
                return c
    return c


# Found in core 0.13 as of 477f7ca and fixed before it landed (a harvest counts at least a minute
# a request after its first, HARVEST_S_PER_REQUEST): what a campaign can send every day without a block
# is not ~710 (docs/tuning.md, the module docstring) but ~815: 11.98 h of harvest a day just under
# the machine's pace (~719) leaves half a day in which five harvests of 19 at once, each after a
# pause of 2 h 1 s, add 95 requests and ~45 s of harvest time (a burst under
# MACHINE_PACE_REQUESTS is never paced and its span is ~0), so the day stays under
# HARVEST_CARRY_MIN_S and is never carried. Measured: never blockable in 20 days, 16,300 served
# (815/day; a whole day's harvest, then a day of such bursts: ~801/day; one a 61 s for 11.99 h a
# day: 720/day; 12.01 h a day: blockable at day 1.5; a sixth burst: blockable on day 2). Under
# 488f570 the same schedule is blockable on day 2 (1,650 served), its best ~720/day. Fix idea: a
# harvest counts at least (requests - 1) / machine_pace_per_min minutes (19 at once: 18 min),
# so that harvest time, not pauses, bounds what is served: five bursts then add 1.5 h, the day
# carries, and the ceiling is ~720/day for any schedule (a person's 3-minute pace is unaffected;
# 19 every 2 h alone stays the 228/day floor)
def test_bursts_in_the_off_half_day_add_nothing_to_what_a_campaign_sends() -> None:
    c = _half_days_and_bursts(10)
    assert c.served < 10 * 750 or _gate(c.b)


# Found in core 0.13's final form (and 488f570 alike): a person on a twelve-hour shift without a
# break at a tool's templates, one request every 10 minutes, 07:00-19:00, harvests 12 h a day:
# carried, two shifts running are a day's harvest. Measured: blockable at the end of the second
# shift (146 requests; 12.5 h days at one every 15 min: 98 requests, the second evening; 11.5 h
# days: never). The cut at 12 h is both what a person's day may last and half what a campaign
# may send every day: moving it up for the shift lets a campaign send 60 more a day per hour.
# Fix idea: carry a day's harvest only as far as its pace bears it out, e.g. at most its
# requests x the time between a person's requests that `machine_paced` takes as a machine's
# (HARVEST_ACTIVE_GAP_S at most): a campaign at one a minute or faster carries its hours in full,
# the shift worker's 72 requests carry 72 min... though a slow campaign (one every 20 min,
# test_a_lifted_block_past_a_days_harvest_is_blocked_again_at_once) would then need days more
@pytest.mark.xfail(strict=True, reason=(
    "cores 0.13 (488f570 and 477f7ca): a 12-hour shift 07:00-19:00 at one templated request "
    "every 10 min is carried into the next; blockable at the end of the second shift (146 "
    "requests)"))
def test_a_twelve_hour_shift_worker_is_never_a_days_harvest() -> None:
    assert not _person([(d * DAY + 7 * HOUR, 12 * HOUR) for d in range(3)], 600.0)
