"""The content session (core 0.9 candidate) under attack: prompt content alone throttles for a
session, and blocks only past it or beside a tell honest crowds do not show.

`models/policy.py` `_blocks_on_content`: when the only corroboration of a block is prompt content
(convicted templates, a system prompt), the account is throttled unless it rotates, was blocked
before, or its current harvest of known templates (`models.behaviour.harvest_span`, from the
first to the latest templated high-value request; a pause over HARVEST_PAUSE_S starts another)
has lasted `harvest_session_s` (3 h). Any other kind of key at evidence >= 0.5 (a card, an IP
prefix, an ASN + client) or a replacement account still blocks at once. `harvest_session_s = 0`
restores core 0.8's rule exactly; the pipeline tests of a guarantee also run the world with the
rule off, to show what they catch.

From a helper's adversarial review (2026-12-06; probes in worlds like these, interpreted core),
on -> off (core 0.8):
- an exam at home, 200 young candidates each on a network of its own, 100 min: 0 blocked (200);
  a 140-minute exam: 0 (with the first cut, `now - harvesting_since`: 80 of 100, every one
  blocked after its last request by the timer renewing its throttle); two classes 4.5 h apart:
  0 of 60 (first cut: 60, at the afternoon's first request);
- a content-only campaign at 1 rpm per account: ~183 requests per account before its block at
  180 min (~8). Retiring each account at 160 min of harvest: 318 requests per account, none
  blocked (5.2 per account: 1,193 accounts burnt for 6,231 requests over 8 h). Harvesting 165
  min then pausing 125 min: 1,650 requests per account in a day, none ever blocked (~11, all
  blocked): the pause that ends an exam's harvest resets a campaign's too;
- an exam at home on 5 big ISPs and 3 browsers: 195 of 200 blocked (200), by ASN + client
  crowds, which `_blocks_on_content` counts as "not content"; a class in a campus lab behind its
  NAT: 40 of 40 (40), by the IP prefix crowd; a 7-hour bootcamp: 60 of 60, past 3 h.

Guarantees pass. Weaknesses assert what should hold: those with a concrete fix (W1 network
crowds, W2 the pause reset) FAIL NOW; trade-offs and edge cases of the design are strict xfails.
"""

from __future__ import annotations

import dataclasses
import random

import pytest

from distillguard.models.account import AccountState
from distillguard.models.behaviour import HARVEST_PAUSE_S, Behaviour, harvest_span
from distillguard.models.config import DetectorConfig
from distillguard.models.decision import STRENGTH
from distillguard.models.pipeline import Pipeline
from distillguard.models.policy import assess
from tests.unit.test_policy import (
    OTHER,
    TPL_A,
    TPL_B,
    _more_evidence,
    _random_state,
    account,
    template_verdicts,
)
from tests.unit.test_policy import T0 as PT0  # (the policy helpers' verdicts are issued at it)
from tests.unit.test_withdrawal_adversary import DAY, PARTITIONS, T0, Actor, World

# Core 0.9's session of 3 h, still a setting: these tests hold what that setting does. The
# default since core 0.10 is a day (DAY_SESSION; the last tests).
ON = DetectorConfig(harvest_session_s=3 * 3600)
OFF = dataclasses.replace(ON, harvest_session_s=0)  # core 0.8's rule
SESSION = ON.harvest_session_s
DEFAULT = DetectorConfig()
_R = random.Random(7)
TEMPLATES = tuple(_R.getrandbits(64) for _ in range(6))  # a course's exercises, an exam's questions
ISPS = (7922, 7018, 701, 20115, 22773)
BROWSERS = ("Mozilla/5.0 Chrome/131", "Mozilla/5.0 Safari/18", "Mozilla/5.0 Firefox/133")


def _world(cfg: DetectorConfig) -> World:
    w = World()
    w.p = Pipeline(cfg, partitions=PARTITIONS)  # (the tickers are actors: the same world)
    return w


def _sender(w: World, name: str, kind: str, *, start: float, gap: float, requests: int,
            ip: str | None = None, asn: int | None = None, ua: str | None = None) -> Actor:
    """A young account (opened the day before) sending the templates with reasoning; by default
    on an address, a network and a client of its own, and no card."""
    k = len(w.actors)
    return w.add(Actor(name, kind, start - DAY, ip or f"100.{k // 250}.{k % 250}.5",
                       asn or 65200 + k, ua or f"client/{k}", None, start, gap=gap,
                       requests=requests, category="math", reasoning=True, templates=TEMPLATES))


def _exam(cfg: DetectorConfig, candidates: int, minutes: float, seed: int = 3,
          network: str = "own", idle_after: float = 2.5 * 3600) -> World:
    """An exam: young candidates starting within 10 minutes, a question every ~200 s."""
    w = _world(cfg)
    rng = random.Random(seed)
    for i in range(candidates):
        kw: dict[str, object] = {}
        if network == "isp":  # at home on a few big ISPs, with a few browsers
            kw = {"asn": rng.choice(ISPS), "ua": rng.choice(BROWSERS),
                  "ip": f"{rng.randrange(60, 90)}.{rng.randrange(256)}.{rng.randrange(256)}.7"}
        elif network == "campus":  # a campus lab behind the university's NAT
            kw = {"asn": 786, "ua": f"browser/{i}", "ip": f"131.111.8.{10 + i % 2}"}
        _sender(w, f"cand-{i:03d}", "student", start=T0 + 3600 + rng.uniform(0, 600),
                gap=rng.uniform(150, 250), requests=int(minutes * 60 / 200),
                **kw)  # type: ignore[arg-type]
    w.run(T0 + 1.5 * 3600 + minutes * 60 + idle_after)
    return w


def _counts(w: World, kind: str = "student") -> tuple[int, int, int]:
    """(accounts, acted on, blocked)"""
    xs = w.of(kind)
    assert xs and all(a.sent for a in xs)
    return (len(xs), sum(a.acted_at is not None for a in xs),
            sum(a.blocked_at is not None for a in xs))


def _content_only(*, harvested_s: float, idle_s: float = 0.0,
                  behaviour: Behaviour | None = None) -> AccountState:
    """A young account using two convicted templates (two crowds: enough to block, content
    only), that harvested them for `harvested_s` up to `idle_s` before now (PT0)."""
    verdicts = (*template_verdicts(TPL_A, 0.9), *template_verdicts(TPL_B, 0.9))
    st = account(*verdicts, prompts=(TPL_A, OTHER, TPL_B), last_ts=PT0 - idle_s,
                 behaviour=behaviour)
    if behaviour is None:
        st.behaviour.harvesting_last = PT0 - idle_s
        st.behaviour.harvesting_since = PT0 - idle_s - harvested_s
    return st


# --- guarantees that hold ------------------------------------------------------------------


def test_exam_candidates_at_home_are_throttled_not_blocked() -> None:
    n, acted, blocked = _counts(_exam(ON, 40, 100))
    assert blocked == 0 and acted >= 0.9 * n
    assert _counts(_exam(OFF, 40, 100, idle_after=0))[2] >= 0.9 * n  # core 0.8 blocks them


def test_no_candidate_is_blocked_for_the_time_it_spent_idle() -> None:
    # The first cut measured `now - harvesting_since`, and a timer renews an idle account's
    # throttle: a 140-minute exam had 80 of 100 candidates blocked after their last request.
    assert assess(_content_only(harvested_s=100 * 60), PT0, ON).action == "throttle"
    assert assess(_content_only(harvested_s=100 * 60, idle_s=90 * 60), PT0, ON).action == "throttle"
    w = _exam(ON, 40, 140)
    assert [a.account for a in w.of("student") if a.blocked_at is not None] == []


def test_two_classes_of_a_course_the_same_day_are_two_harvests() -> None:
    # (first cut: 60 of 60 blocked at the afternoon's first request; a pause of HARVEST_PAUSE_S
    # ends a harvest)
    def run(cfg: DetectorConfig) -> World:
        w = _world(cfg)
        rng = random.Random(3)
        for i in range(60):
            _sender(w, f"stud-{i:02d}", "student", start=T0 + 3600 + rng.uniform(0, 300),
                    gap=rng.uniform(120, 160), requests=30)

        def afternoon(w: World, ts: float) -> None:
            for a in w.of("student"):
                a.requests += 30
                w._push(ts + rng.uniform(0, 300), a.account)

        w.at(T0 + 5.5 * 3600, afternoon)  # a class at 1 h, another at 5.5 h
        assert 5.5 * 3600 - (3600 + 80 * 60) > HARVEST_PAUSE_S
        w.run(T0 + 7.5 * 3600)
        return w

    w = run(ON)
    assert all(a.sent == 60 for a in w.of("student"))  # (both classes sent)
    n, acted, blocked = _counts(w)
    assert blocked == 0 and acted >= 0.9 * n


def _content_campaign(cfg: DetectorConfig, gap: float) -> list[Actor]:
    w = _world(cfg)
    for i in range(15):
        _sender(w, f"camp-{i:02d}", "campaign", start=T0 + 60 + i * 7, gap=gap,
                requests=10**6, ua="sdk/2.0")
    w.run(T0 + 3.5 * 3600)
    return w.of("campaign")


def test_a_content_only_campaign_at_a_persons_pace_is_blocked_once_past_the_session() -> None:
    # a templated request every 4 minutes: as slow as an exam's candidate, so only the session
    # tells them apart
    on = _content_campaign(ON, gap=240.0)
    assert all(a.blocked_at is not None for a in on)
    for a in on:  # blocked past the session (timed from its first request of a known template)
        assert a.first_ts is not None
        blocked_ts = next(ts for ts, x in a.decisions if x == "block")
        assert SESSION <= blocked_ts - a.first_ts <= SESSION + 30 * 60
    # the cost of the session, per account: ~45 requests; core 0.8 blocked after a few
    assert all(a.blocked_at is not None and a.blocked_at <= 12
               for a in _content_campaign(OFF, gap=240.0))


def test_a_content_campaign_at_a_machines_pace_is_throttled_at_once_blocked_at_its_60th() -> None:
    # Two requests a minute (the first cut of core 0.9 served such an account all it asked for
    # 3 h, at the throttle's 2 rpm; the independent validation world's chain-of-thought
    # campaign, ~110 requests an hour per account, went from 100% blocked to none):
    # `machine_pace_requests` templated high-value requests at one a minute or faster is no
    # person's exam or class (`machine_paced`). (At one a minute on average the pace is on the
    # line.) Core 0.18 raised it from 20 to 60 (a MOOC's learners and an exam's candidates send
    # up to ~50): measured, the 15 accounts throttled at their 9th-13th request (~5 min) and
    # blocked at their 62nd-66th, 30.5-32.8 minutes in (at 20: within half an hour, their ~30th).
    on = _content_campaign(ON, gap=30.0)
    for a in on:
        assert a.blocked_at is not None and a.first_ts is not None and a.acted_at is not None
        blocked_ts = next(ts for ts, x in a.decisions if x == "block")
        assert a.acted_at <= 15, "throttled long before the pace blocks it"
        assert ON.machine_pace_requests <= a.blocked_at <= ON.machine_pace_requests + 10
        assert blocked_ts - a.first_ts <= 35 * 60


def test_content_shared_beside_a_card_still_blocks_at_once() -> None:
    # (not decision for decision: a template crowd convicted before the card's holds a few
    # early accounts at throttle for minutes; what each account gets served is the same)
    def per_account(cfg: DetectorConfig) -> float:
        w = _world(cfg)
        w.campaign(TEMPLATES)  # young accounts on one card, harvesting the templates
        w.run(T0 + 2 * 3600)
        xs = [a for a in w.of("campaign") + w.of("replacement") if a.sent]
        assert sum(a.blocked_at is not None for a in xs) >= 0.9 * len(xs)
        return sum(a.sent for a in xs) / len(xs)

    assert per_account(ON) <= 1.25 * per_account(OFF)


def test_a_rotating_content_campaign_is_still_blocked_at_once() -> None:
    class Rotating(World):
        def _send(self, a: Actor, ts: float) -> None:
            if a.kind == "campaign":  # a residential proxy: a new network on every request
                a.asn = 30000 + a.rng.randrange(5000)
                a.ip = (f"{a.rng.randrange(60, 90)}.{a.rng.randrange(256)}"
                        f".{a.rng.randrange(256)}.3")
            super()._send(a, ts)

    def run(cfg: DetectorConfig) -> list[int | None]:
        w = Rotating()
        w.p = Pipeline(cfg, partitions=PARTITIONS)
        for i in range(15):
            _sender(w, f"camp-{i:02d}", "campaign", start=T0 + 60 + i * 7, gap=60.0,
                    requests=200, ua="sdk/2.0")
        w.run(T0 + 1.5 * 3600)
        return [a.blocked_at for a in w.of("campaign")]

    on = run(ON)
    assert all(b is not None and b <= 15 for b in on)
    assert on == run(OFF)


def test_a_struck_account_is_blocked_on_content_alone() -> None:
    st = _content_only(harvested_s=60)
    assert assess(st, PT0, ON).action == "throttle"
    st.strikes = 1
    assert assess(st, PT0, ON).action == "block"


def test_the_harvest_survives_the_state_wire_and_a_core_08_state_starts_one() -> None:
    b = Behaviour()
    b.observe(1, "c", True, True, TPL_A, "10.0.0.0/24", T0 + 10)
    b.observe(1, "c", True, True, TPL_A, "10.0.0.0/24", T0 + 70)
    assert Behaviour.from_wire(b.to_wire()) == b and harvest_span(b) == 60
    # an 11-field state (core 0.8): no harvest yet; its next templated high-value request starts
    # one (the one-off cost of the upgrade: a campaign's accounts get a fresh session)
    old = Behaviour.from_wire(b.to_wire()[:11])
    assert (old.harvesting_since, old.harvesting_last, harvest_span(old)) == (0.0, 0.0, 0.0)
    old.observe(1, "c", True, True, TPL_A, "10.0.0.0/24", T0 + 500)
    assert old.harvesting_since == T0 + 500
    # a request that is not templated, or not high-value, starts none
    fresh = Behaviour()
    fresh.observe(1, "c", False, True, TPL_A, None, T0)
    fresh.observe(1, "c", True, True, 0, None, T0)
    assert harvest_span(fresh) == 0.0 and fresh.harvesting_since == 0.0


@pytest.mark.parametrize("seed", range(2))
def test_more_evidence_never_weakens_the_action_around_the_session(seed: int) -> None:
    # test_policy's property runs with harvests long past the session (`harvesting_behaviour`):
    # here the harvest, the strikes and the rotation vary, so the held throttle is among the
    # levels compared
    rng = random.Random(seed)
    levels = set()
    for _ in range(2500):
        now = PT0 + rng.uniform(0, 3600)
        st = _random_state(rng, now)
        b = st.behaviour
        b.harvesting_last = rng.choice([0.0, now - rng.uniform(0, 3600)])
        b.harvesting_since = b.harvesting_last and b.harvesting_last - rng.uniform(0, 2 * SESSION)
        st.strikes = rng.choice([0, 0, 1])
        if rng.random() < 0.3:
            b.asns = list(range(8))
            b.asn_switches = rng.randrange(st.requests)
        more = _more_evidence(st, rng, now)
        before, after = assess(st, now, ON), assess(more, now, ON)
        levels.add((before.action, any(r.startswith("held at throttle") for r in before.reasons)))
        assert STRENGTH[after.action] >= STRENGTH[before.action], (st, more)
    assert ("throttle", True) in levels and ("block", False) in levels


# --- weaknesses with a concrete fix: these FAIL NOW ------------------------------------------


def test_w1_exam_candidates_at_home_on_big_isps_are_not_blocked() -> None:
    """FAILS NOW (measured: 195 of 200 blocked; core 0.8: 200). Candidates on a few big ISPs
    with a few browsers make ASN + client crowds of young harvesters; `_blocks_on_content`
    counts any kind but content as a tell, network kinds included, though network keys are what
    strangers share by where they connect from (policy.NETWORK_KINDS). Fix: only a card
    (PRIOR_KINDS) or a replacement lifts the hold, not a network crowd (measured with that
    change: 0 of 200 blocked, the campaign guarantees above unchanged)."""
    n, acted, blocked = _counts(_exam(ON, 200, 100, network="isp", idle_after=0))
    assert blocked == 0 and acted >= 0.9 * n


def test_w1_a_class_in_a_campus_lab_behind_its_nat_is_not_blocked() -> None:
    """FAILS NOW (measured: 40 of 40 blocked, on `ip:` + `tpl:`; core 0.8: 40). The IP prefix
    of a campus NAT is shared by honest strangers: the same fix."""
    n, acted, blocked = _counts(_exam(ON, 40, 65, network="campus", idle_after=0))
    assert blocked == 0 and acted >= 0.9 * n


def _bursts(bursts: int, burst_s: float, pause_s: float, gap: float = 30.0) -> Behaviour:
    """What a campaign account harvesting in bursts shows: a templated high-value request with
    reasoning every `gap` for `burst_s`, then a pause of `pause_s`, `bursts` times."""
    b = Behaviour()
    t = PT0 - bursts * (burst_s + pause_s) + pause_s
    for _ in range(bursts):
        end = t + burst_s
        while t <= end:
            # (four templates: a campaign's breadth, so its own harvest figure bears it out)
            b.observe(1, "sdk", True, True, (TPL_A, TPL_B, *TEMPLATES[:2])[int(t) // 30 % 4],
                      "10.0.0.0/24", t)
            t += gap
        t = end + pause_s
    return b


def test_w2_a_pause_just_over_the_harvest_pause_does_not_reset_a_campaigns_session() -> None:
    """A pause over HARVEST_PAUSE_S (2 h) ends a harvest. With the span of the current harvest
    alone (the first cut), a campaign's account harvesting 2 h 45 min at 2 rpm, pausing 2 h 05
    min, again and again, was never past the session (measured in the pipeline: 20 accounts,
    1,650 requests each in a day, none blocked; core 0.8: ~11 each, all blocked). Fixed: the
    harvest time adds up over a day (`harvest_span`), and an exam, a class, two classes a day
    are under 3 h of it."""
    b = _bursts(3, 165 * 60, HARVEST_PAUSE_S + 300)
    assert b.harvesting_last - b.harvesting_since < SESSION  # each burst is under the session
    assert harvest_span(b) >= SESSION
    st = _content_only(harvested_s=0, behaviour=b)
    assert assess(st, PT0, ON).action == "block"  # 8 h 15 min of harvest in 13 h


# --- trade-offs and edge cases of the design (strict xfails) --------------------------------


def _bootcamp(cfg: DetectorConfig, hours: float) -> World:
    """30 students sending exercises with reasoning every ~4 minutes for `hours`."""
    w = _world(cfg)
    rng = random.Random(3)
    for i in range(30):
        _sender(w, f"stud-{i:02d}", "student", start=T0 + 3600 + rng.uniform(0, 600),
                gap=rng.uniform(200, 280), requests=int(hours * 3600) // 240)
    w.run(T0 + (hours + 1.2) * 3600)
    return w


@pytest.mark.xfail(strict=True, reason="trade-off of a 3-hour session: a course longer than "
                   "the session (a day-long bootcamp sending exercises with reasoning) harvests "
                   "like a campaign by every figure this rule sees (measured: 60 of 60 blocked "
                   "past 3 h); the default since core 0.10 is a day (next test)")
def test_a_day_long_bootcamp_is_not_blocked() -> None:
    assert _counts(_bootcamp(ON, 6.0))[2] == 0


# --- the default since core 0.10: content alone blocks only a harvest that lasts a day ---------


def test_by_default_a_bootcamps_working_day_is_throttled_never_blocked() -> None:
    # the held-out bootcamp family at core 0.9: 85% of its cohort blocked past 3 h
    n, acted, blocked = _counts(_bootcamp(DEFAULT, 11.0))
    assert blocked == 0 and acted == n  # throttled: it harvests like a campaign by its requests


def test_by_default_a_content_only_campaign_at_a_persons_pace_is_throttled_from_the_start() -> None:
    # The price of the day: a campaign that shares nothing with its crowd but prompts, at a
    # person's pace, is held at the throttle (as an exam's candidate is), not blocked, within
    # its first day; it is acted on as soon as under the 3-hour session, and a machine's pace
    # still blocks it at once (the next test of the same world at ON: within half an hour).
    default, session = _content_campaign(DEFAULT, gap=240.0), _content_campaign(ON, gap=240.0)
    assert all(a.acted_at is not None for a in default)
    assert [a.acted_at for a in default] == [a.acted_at for a in session]
    assert all(a.blocked_at is None for a in default)
    assert all(a.blocked_at is not None for a in _content_campaign(DEFAULT, gap=30.0))


def test_by_default_a_content_harvest_without_a_pause_for_a_day_is_blocked() -> None:
    # what no exam, class or bootcamp does: known templates with reasoning, no two-hour pause,
    # for a whole day (a campaign that goes on); a tell beside it still blocks at once
    st = _content_only(harvested_s=DEFAULT.harvest_session_s - 60)
    assert assess(st, PT0, DEFAULT).action == "throttle"
    assert assess(_content_only(harvested_s=DEFAULT.harvest_session_s), PT0,
                  DEFAULT).action == "block"
    st.strikes = 1
    assert assess(st, PT0, DEFAULT).action == "block"


class _Churn(World):
    """A content-only campaign: each account of its own address, network and client, no card,
    retired after `life` requests (or at its block) and replaced a minute later."""

    life = 320  # 160 minutes
    gap = 30.0  # 2 rpm: the throttle never bites

    def member(self, kind: str, start: float, templates: tuple[int, ...] = ()) -> Actor:
        k = self.spawned
        self.spawned += 1
        return self.add(Actor(f"{kind}-{k:04d}", kind, start - DAY, f"10.{k // 250}.{k % 250}.9",
                              65000 + k, f"sdk/{k}", None, start, gap=self.gap,
                              requests=self.life, category="math", reasoning=True,
                              templates=templates))


def _churn(cfg: DetectorConfig) -> tuple[int, int]:
    w = _Churn(respawn_delay=60.0)
    w.p = Pipeline(cfg, partitions=PARTITIONS)
    for i in range(6):
        w.member("campaign", T0 + 60 + i * 7, TEMPLATES)
    w.run(T0 + 5 * 3600)
    used = [a for a in w.of("campaign") + w.of("replacement") if a.sent]
    return len(used), sum(a.sent for a in used)


def test_a_churning_content_campaign_at_a_machines_pace_is_blocked_within_its_first_twenty() -> None:
    # Each throwaway account of a campaign sharing only content, retired before the session,
    # got a throttled session with the first cut of core 0.9 (2 rpm x 3 h: 318 requests per
    # account against 5.2). At a machine's pace it is blocked by that pace, within its first
    # `machine_pace_requests`: measured 19.9 per account (172 accounts, 3,415 requests in 5 h;
    # 5.4 with the session rule off). Until core 0.15 its fresh accounts were blocked sooner,
    # as newcomers to a crowd proven to harvest for long; since then only when that crowd
    # rotates (models/policy.py `CHURN_ROTATING_SHARE`: a MOOC's late joiners were blocked the
    # same way).
    used_on, served_on = _churn(ON)
    used_off, served_off = _churn(OFF)
    assert served_on / used_on <= ON.machine_pace_requests
    assert served_off / used_off < served_on / used_on


@pytest.mark.xfail(strict=True, reason="edge case: a request later than the latest by more than "
                   "HARVEST_PAUSE_S starts a harvest even when it is one record of a skewed "
                   "clock; the real requests after it, older, never move the start back (event "
                   "times come from the gateway, not the client)")
def test_one_record_from_a_skewed_clock_does_not_freeze_the_harvest() -> None:
    b = Behaviour()
    b.observe(1, "c", True, True, TPL_A, None, T0)
    b.observe(1, "c", True, True, TPL_A, None, T0 + 3 * DAY)  # a skewed gateway's record
    t = T0
    while t < T0 + 4 * 3600:
        t += 60
        b.observe(1, "c", True, True, TPL_A, None, t)
    assert harvest_span(b) >= SESSION  # measured: 0


@pytest.mark.xfail(strict=True, reason="edge case: event time 0 is the 'none yet' sentinel of "
                   "harvesting_last (events of ts 0 pass validation; none happen)")
def test_a_harvest_starting_at_event_time_zero_is_counted() -> None:
    b = Behaviour()
    for t in range(0, SESSION + 60, 60):
        b.observe(1, "c", True, True, TPL_A, None, float(t))
    assert harvest_span(b) >= SESSION
