"""Throttle before block (issue 14, branch `exp16-machine-pace-hold`): a machine's pace alone
blocks at once only at 60 templated high-value requests of one harvest (`machine_pace_requests`,
20 until core 0.18), at one a minute or faster on average over it.

What the 20 blocked, measured on the tuning families' seeds 1-2 and fresh seeds 3-8 of
mooc_deadline, exam_day, bootcamp and frame_fleet (54 runs): a MOOC's learners retrying the
assignment's prompts one to three a minute (mooc_deadline seed 4: 182 of 1,211 blocked, seed 6:
133, seed 7: 43) and an exam's candidates answering a question a minute (exam_day seed 7: 179 of
927, seed 8: 222 of 726). At 60: none of them (the remaining MOOC blocks, 8, 7, 1, 1, are not the
pace's). The most any honest account of those runs sent in one harvest at one a minute or faster
is 53 (an exam's candidate; counting every high-value request as templated). On the held-out
set (`distillguard evaluate`, seeds 201-202 of every family) benign accounts blocked went from
0.15% to 0.01%: a MOOC's learners 3.8% -> 0.07%, an exam's candidates 1.3% -> 0. The price, with
acted on and served before action unchanged everywhere: the requests a campaign at a machine's
pace is served in all while throttled at 2 a minute before its 60th (tuning seeds: the fast
campaign of mixed seed 1 3.1% -> 6.2%, framers 5.6% -> 15.0% at frame_card seed 2, 5.9% ->
13.5% at frame_campus seed 1). A hold on the harvest's time instead (the machine's pace blocks
only after 30, 60 or 120 min of it) spared the same accounts at 60 min but cost 2-3x more
(15.2%, 23.1%, 25.4%); 40 requests left 58 and 76 candidates blocked.
"""

from __future__ import annotations

from distillguard.models.behaviour import HARVEST_PAUSE_S, Behaviour, machine_paced
from distillguard.models.config import DetectorConfig
from tests.unit.test_core13_adversary import _gate, _send
from tests.unit.test_policy import T0

CFG = DetectorConfig()
THROTTLE_GAP_S = 60.0 / CFG.throttle_rpm


def test_the_default_is_sixty() -> None:
    assert CFG.machine_pace_requests == 60


def test_a_candidate_answering_53_questions_a_minute_apart_is_held() -> None:
    b = Behaviour()
    for i in range(53):  # the most an honest account of the runs sent at a machine's pace
        _send(b, T0 + 50.0 * i)
    assert machine_paced(b, 20) and not machine_paced(b, CFG.machine_pace_requests)
    assert not _gate(b)


def test_a_script_is_blocked_at_its_sixtieth() -> None:
    b = Behaviour()
    for i in range(CFG.machine_pace_requests):
        _send(b, T0 + THROTTLE_GAP_S * i)
        assert _gate(b) == (i + 1 == CFG.machine_pace_requests)


def _bursts(days: int, per_burst: int) -> tuple[int, bool]:
    """`per_burst` at the throttle's pace, then a pause of 2 h 1 s (a new harvest), again."""
    b, n, t = Behaviour(), 0, T0
    while t - T0 < days * 86400:
        for i in range(per_burst):
            _send(b, t + THROTTLE_GAP_S * i)
            n += 1
            if _gate(b):
                return n, True
        t += THROTTLE_GAP_S * (per_burst - 1) + HARVEST_PAUSE_S + 1
    return n, False


def test_bursts_just_under_the_pace_get_less_than_a_persons_pace() -> None:
    # The adversary's best under the pace alone: bursts of 59 at the throttle's 2 a minute,
    # each after a pause that starts a new harvest: 590 the first day (228 with 20), never
    # blocked; one every 61 s, as before, ~720 a day never blocked (HARVEST_CARRY_MIN_S).
    n, blocked = _bursts(5, CFG.machine_pace_requests - 1)
    assert not blocked and n / 5 < 600
