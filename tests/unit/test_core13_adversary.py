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
it lasted half a day or more (`HARVEST_CARRY_MIN_S`), so a person's daily routine never adds up
while what a campaign can send every day without a block stays where it was (~710 requests: just
under half a day at the machine's pace, against a whole day on and a day off). Those six tests
now pass as plain tests (the finding stays as a comment above each).
"""

from __future__ import annotations

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
    # a gap up to HARVEST_ACTIVE_GAP_S counts in full: bursting every 30 minutes is blocked as
    # soon as sending one a minute is (1,423 served in 1.01 days under cores 0.10 and 0.13)
    c = _Campaign()
    assert not c.bursts(1800.0, T0 + 2 * DAY)
    assert c.served == 1423


def test_nineteen_at_a_time_stays_under_both_clocks_as_before() -> None:
    # (the floor a campaign always had, core 0.10 as 0.13: 228 a day, never blockable on
    # content alone; any more in one harvest is paced, any longer harvest counts)
    c = _Campaign()
    t = T0
    for _ in range(12 * 3):
        assert c.burst(t, 19)
        t = c.last + HARVEST_PAUSE_S + 1
    assert c.served == 19 * 36 and t - T0 < 3.1 * DAY


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
