"""Core 0.13: the harvest clock counts what a harvest is, and an operator's lift is a pardon.

An adversary's review (2026-12-07, branch `adversary12`) found edges where an honest account is
blocked by the clock of its own requests, or by a strike an operator had already judged wrong:

- a day with no harvest did not always clear the days before: the carry ran from the first
  day's *start*, so a workshop on Monday 09:00-21:00 and Wednesday from 08:30 added up to a
  day's harvest on Wednesday evening;
- idle time inside a harvest counted: a job sending one templated prompt an hour (25 in a day)
  had "harvested for a day";
- one record stamped ahead (past a pause) started a harvest, and the on-time requests after it,
  older than it, joined it with a span of 0 s: a person 3 minutes apart became machine-paced;
- an operator's `override lift` of a wrong block left its strike, so the account's next
  decision on one kind of crowd blocked it again at once.

Each is a test here, beside the guarantees that must not move: a campaign going on for a day
(pausing or not) still reaches a day's harvest, and a block waited out is renewed by its strike.
"""

from __future__ import annotations

from distillguard.models.account import AccountState
from distillguard.models.behaviour import HARVEST_ACTIVE_GAP_S, Behaviour, harvest_span
from distillguard.models.config import DetectorConfig
from distillguard.models.decision import ALLOW, BLOCK, THROTTLE, Decision
from distillguard.models.operator import OperatorDecision, OperatorDecisions
from distillguard.models.policy import _may_block, assess, decide
from tests.unit.test_policy import OTHER, T0, TPL_A, TPL_B, account, template_verdicts, verdict

CFG = DetectorConfig()
HOUR, DAY = 3600.0, 86400.0


def _harvest(b: Behaviour, start: float, gap: float, n: int) -> float:
    """`n` templated high-value requests with reasoning `gap` apart from `start`; the last ts."""
    ts = start
    for i in range(n):
        ts = start + i * gap
        b.observe(asn=65001, client="browser", high_value=True, reasoning=True,
                  template=TPL_A, prefix="100.1.2", ts=ts)
    return ts


def _state(b: Behaviour) -> AccountState:
    st = AccountState.new("acct-1", T0)
    st.behaviour, st.requests = b, max(1, b.high_value)
    return st


def _class_member(strikes: int = 0) -> AccountState:
    """A student at a person's pace in a convicted course: the notebook's system prompt and two
    of the course's templates, all convicted (a card's crowd would block at once: strangers do
    not share a card)."""
    b = Behaviour()
    for i in range(20):
        b.observe(asn=65001, client="browser", high_value=True, reasoning=True,
                  template=(TPL_A, TPL_B, OTHER)[i % 3], prefix="100.1.2", ts=T0 - 3600 + i * 180)
    st = account(verdict("sys:course-notebook", 0.95), *template_verdicts(TPL_A, 0.9),
                 *template_verdicts(TPL_B, 0.9), prompts=(TPL_A, OTHER, TPL_B),
                 behaviour=b, requests=20)
    st.strikes = strikes
    return st


def decide_after_a_lift(st: AccountState, blocked_at: float, lifted_at: float,
                        decision_id: str = "dec-wrong-block") -> Decision | None:
    """The decision at T0 about `st`, blocked at `blocked_at` (by the detector, or by an operator
    if `decision_id` is one of theirs) and the block lifted by an operator at `lifted_at`."""
    st.action, st.action_until = BLOCK, blocked_at + CFG.block_ttl_s
    st.action_decision_id = decision_id
    operator = OperatorDecisions()
    operator.note_lift(st.account_id, lifted_at)
    return decide(st, T0, CFG, operator=operator)


# --- the harvest clock -------------------------------------------------------------------------


def test_a_day_without_harvest_clears_the_days_before() -> None:
    b = Behaviour()
    monday = T0 + 9 * HOUR
    _harvest(b, monday, 600.0, 73)  # Monday 09:00-21:00, one every 10 minutes
    _harvest(b, monday + 2 * DAY - 30 * 60, 600.0, 73)  # Wednesday 08:30-20:30
    assert harvest_span(b) == 12 * HOUR  # Wednesday's alone
    assert not _may_block({}, False, _state(b), 0.0, CFG)


def test_consecutive_days_still_carry_from_the_last_harvests_end() -> None:
    # A campaign pausing 2 h 30 min once a day (an adversary's probe of core 0.10): its days
    # add up, so it reaches a day's harvest a little after a day of harvesting.
    b = Behaviour()
    end = _harvest(b, T0, 60.0, 21 * 60 + 1)  # 21 h at one a minute
    _harvest(b, end + 2.5 * HOUR, 60.0, 3 * 60 + 1)  # the next stretch: 3 h more
    assert harvest_span(b) == 24 * HOUR
    assert _may_block({}, False, _state(b), 0.0, CFG)


def test_a_working_week_at_a_tools_templates_never_adds_up_to_a_day() -> None:
    # 09:00-17:00 at one templated request every 10 minutes, five days running (core 0.13's
    # first cut carried every day: blockable on Wednesday afternoon)
    b = Behaviour()
    for day in range(5):
        for i in range(49):
            b.observe(asn=65001, client="browser", high_value=True, reasoning=True,
                      template=TPL_A, prefix="100.1.2", ts=T0 + day * DAY + 9 * HOUR + i * 600.0)
            assert not _may_block({}, False, _state(b), 0.0, CFG)


def test_a_campaign_harvesting_most_of_each_day_adds_up() -> None:
    # 13 h of harvest a day just under the machine's pace (one every 61 s), an 11-hour rest:
    # carried, blockable on day 2
    b = Behaviour()
    for day in range(3):
        _harvest(b, T0 + day * DAY, 61.0, int(13 * HOUR / 61.0))
        if _may_block({}, False, _state(b), 0.0, CFG):
            break
    assert day == 1 and harvest_span(b) >= CFG.harvest_session_s


def test_an_hourly_job_has_not_harvested_for_a_day() -> None:
    b = Behaviour()
    _harvest(b, T0, HOUR, 25)  # 24 h of span, 25 requests
    assert harvest_span(b) == 24 * HARVEST_ACTIVE_GAP_S
    assert not _may_block({}, False, _state(b), 0.0, CFG)


def test_a_slow_campaign_every_twenty_minutes_harvests_for_all_its_time() -> None:
    b = Behaviour()
    _harvest(b, T0, 20 * 60.0, 73)  # 24 h
    assert harvest_span(b) == DAY and _may_block({}, False, _state(b), 0.0, CFG)


def test_one_record_stamped_ahead_makes_no_machine_of_a_person() -> None:
    b = Behaviour()
    last = _harvest(b, T0, 180.0, 10)
    b.observe(asn=65001, client="browser", high_value=True, reasoning=True, template=TPL_A,
              prefix="100.1.2", ts=last + 3 * HOUR)  # a skewed gateway node's record
    _harvest(b, last + 180.0, 180.0, 25)  # the person goes on, 3 minutes apart
    assert not _may_block({}, False, _state(b), 0.0, CFG)


def test_a_late_request_that_moves_the_start_back_counts_its_gap_as_any_gap() -> None:
    b = Behaviour()
    _harvest(b, T0, 600.0, 7)  # an hour
    b.observe(asn=65001, client="browser", high_value=True, reasoning=True, template=TPL_A,
              prefix="100.1.2", ts=T0 - 90 * 60)  # arrives late: 90 minutes before the start
    assert b.harvesting_since == T0 - 90 * 60
    assert harvest_span(b) == HOUR + HARVEST_ACTIVE_GAP_S  # not HOUR + 90 minutes


def test_a_script_at_a_machines_pace_is_still_machine_paced() -> None:
    b = Behaviour()
    _harvest(b, T0, 45.0, CFG.machine_pace_requests)
    assert _may_block({}, False, _state(b), 0.0, CFG)


# --- strikes and an operator's judgement ----------------------------------------------------------


def test_a_class_member_is_held_and_a_strike_lets_the_crowds_block() -> None:
    held = assess(_class_member(), T0, CFG)
    assert held.action == THROTTLE and "held_at_throttle" in held.reason_codes
    assert assess(_class_member(strikes=1), T0, CFG).action == BLOCK


def test_a_block_lifted_by_an_operator_does_not_count_as_an_earlier_block() -> None:
    st = _class_member(strikes=1)
    d = decide_after_a_lift(st, blocked_at=T0 - 600, lifted_at=T0 - 60)
    assert st.strikes == 0
    assert d is not None and d.action == THROTTLE  # held, as any member of the class


def test_an_operators_allow_pardons_the_accounts_blocks() -> None:
    st = _class_member(strikes=2)
    operator = OperatorDecisions()
    operator.put(OperatorDecision(st.account_id, ALLOW, 3600, None, "ticket T-9", "alice",
                                  T0 - 60))
    assert decide(st, T0, CFG, operator=operator) is None  # the operator's allow is in force
    assert st.strikes == 0
    # once it runs out the detector decides afresh: held at the throttle, not blocked
    d = decide(st, T0 + 3600, CFG, operator=operator)
    assert d is not None and d.action == THROTTLE


def test_a_block_waited_out_is_renewed_at_once_by_its_strike() -> None:
    st = account(verdict("pay:pf-hydra", 0.95), requests=40)
    st.strikes, st.action, st.action_until = 1, BLOCK, T0
    st.action_decision_id = "dec-block"
    d = decide(st, T0, CFG)
    assert d is not None and d.action == BLOCK
