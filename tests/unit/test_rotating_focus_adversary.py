"""Core 0.17 under attack: an account's focus on one or two known templates (FOCUS, the damping of
a tutorial's or homework's harvest figure) is lifted by its own rotation (models/behaviour.py
`harvest`).

An adversarial review (2026-12-07, branch adversary17) of the first cut of core 0.17 (ca17fc5:
focus = max(FOCUS[known], rotation), new /24s beside three ASNs included). "Before" is core 0.16
(97a6155), "after" that first cut, both interpreted. Core 0.17 as kept is the measured
alternative at the end of this docstring (focus = max(FOCUS[known], hopping): new networks and
clients lift it, new prefixes of a few networks do not): the first cut's two strict xfails on
the benign side (a course behind a corporate cloud proxy blocked, one mostly on a privacy relay
throttled) are plain tests, and every benign world below is 0 acted on again.

What the first cut changed: only accounts with rotation >= HARVESTING (0.5) can cross HARVESTING
by the lift (harvest <= max(FOCUS[known], rotation) times shares <= 1), i.e. accounts switching to
a new network, client or (beside 3+ ASNs) /24 on >= 1/8 of their requests, after 3 switches (as
kept, a new network or client: `hopping`). Accounts
on two templates already had FOCUS[2] = 0.6 >= HARVESTING: no change measured there (a 2-template
rotating hydra: 1,540 of 1,550 accounts blocked at their ~4th, 3.3 requests each, either core).

The benign side (a course of 30 young students on ONE template with reasoning, an exercise every
~4 min for 8 h, 16 late joiners with 20 exercises; `n` of the 30 on a rotating network;
before / after, as (accounts, acted on, blocked)):
- a privacy relay (3 ASNs, new egress /24 on ~30% of requests): 8, 12, 15 of 30: nothing either
  core; 20 of 30: 0 / 20 relay learners throttled, 0 / 10 of their classmates at home, 0 / 11 of
  16 late joiners; 30 of 30: 0 / 30 and 0 / 16 late joiners. Never a block (one template is one
  corroborating kind).
- a corporate cloud proxy (egress over 3 ASNs, a new /24 per request): 15 of 30: 0 / 5 + 6 home;
  20: 0 / 20 + 10 + 16 late; 30: 0 / 30 + 16 late. WITH the course notebook's system prompt (a
  second kind): 30 of 30 BLOCKED at their 8th-13th request (9.1 served each), and 4 of 16 late
  joiners blocked at their 1st request (the crowd convicted, proven and rotating: churned)
  / 0 and 0 before.
- a commercial VPN (6 hosting ASNs, a new server on ~20% of requests): 20 of 30: 0 / 20 + 10 +
  10 late; 30: 0 / 30 + 16. A phone on home wifi, carrier CGNAT and office wifi (a move on ~30%):
  30 of 30: 0 / 30 + 7 late. At 8 of 30 (any of these) or at 20 (phones): nothing either core.
- prefix-only rotation on one ASN (a corporate proxy of one provider): nothing either core.

The lab (test_rotating_harvesters_adversary's hydra: 10 slots, 3 h lives at 0.9/min, 12 h, one
template with reasoning; before / after):
- a new ASN and /24 on every request: 50 accounts, 0 / 50 acted on (from their 1st-7th request),
  0 / 0 blocked; 129.3 requests served per account either core. 0.17 throttles, never blocks: a
  single template is a single corroborating kind, and no network crowd forms on a proxy pool.
- the cheapest ways around it (nothing acted on, 6,466 high-value requests in 12 h, as before):
  no rotation (sticky: 0 / 0); rotating on 10% of requests (rotation 0.4 < HARVESTING: 0 / 0;
  12%: 0 / 10; 15%: 0 / 49); a new /24 on every request on ONE ASN (0 / 0); mixing chat, H C C
  (high-value share 3/8 caps harvest at 0.375: 0 / 10, at 43.5 high-value requests each).

A measured alternative (not in this file's assertions: a patch of `harvest`, run on these worlds):
lift the focus by rotation over networks (ASNs) and clients only, not by new prefixes beside a
few ASNs (a relay's, a corporate proxy's, a carrier's egress), i.e. focus = max(FOCUS[known],
rotation without prefix switches). The proxy-pool hydra: 50 of 50 acted on, as 0.17; the
2-template hydra: 1,540 of 1,550 blocked, as 0.17; a hydra on 15% rotation: 49 of 49 acted on, as
0.17. Every benign world above: 0 acted on (corporate proxy + system prompt 30 of 30: 0 blocked,
0 late joiners). What it gives back: a lab rotating /24s over 3 ASNs is not acted on (0 of 50) —
as under 0.16, and no cheaper than rotating on 10% of requests, which 0.17 does not catch either.

Tests: guarantees are plain; weaknesses are strict xfails asserting what should hold, their
reasons the measured figures.
"""

from __future__ import annotations

from functools import cache

import pytest

from distillguard.models.behaviour import FOCUS, HARVESTING, Behaviour, harvest, rotation
from tests.unit.test_churn_rotation_adversary import _Net, add_bootcamp_cohort
from tests.unit.test_content_session_adversary import TEMPLATES
from tests.unit.test_core10_adversary import PERSON_GAP, _served
from tests.unit.test_withdrawal_adversary import T0, Actor

STICKY, PROXY, RELAY = "sticky", "proxy", "relay"
PHONE, VPN, CLOUD_PROXY, ONE_ASN_PROXY, SOME = "phone", "vpn", "cloud-proxy", "one-asn", "some"
NOTEBOOK = "course-notebook"  # the system prompt of the course's notebook


# --- unit: who the lift can make a harvester --------------------------------------------------


def _one_template_account(requests: int, every: int) -> Behaviour:
    """Templated high-value requests with reasoning of one template, a new ASN every `every`."""
    b = Behaviour()
    for i in range(requests):
        b.observe(asn=1000 + i // every, client="c", high_value=True, reasoning=True,
                  template=TEMPLATES[0], prefix=None, ts=T0 + i * 240.0)
    return b


@pytest.mark.parametrize("every", [1, 2, 4, 8, 9, 10, 12, 20, 40])
def test_the_lift_makes_a_harvester_only_of_an_account_rotating_from_harvesting(
        every: int) -> None:
    # (so no account under rotation 0.5 is touched: a phone and an office, a VPN switched a few
    # times a day, a relay that has not yet shown 3 ASNs)
    b = _one_template_account(120, every)
    r, h = rotation(b, 120), harvest(b, 120)
    assert h <= round(max(FOCUS[1], r), 4)
    assert (h >= HARVESTING) == (r >= HARVESTING)


# --- the worlds -------------------------------------------------------------------------------


class _Moving(_Net):
    """_Net with more network modes (PHONE, VPN, CLOUD_PROXY, ONE_ASN_PROXY, SOME: a lab's new
    ASN and /24 on a share `switch` of requests) and a system prompt for the course's accounts."""

    def __init__(self, system_prompt: str | None = None, switch: float = 0.1) -> None:
        super().__init__()
        self.system_prompt, self.switch = system_prompt, switch

    def _move(self, a: Actor, mode: str) -> None:
        r = a.rng
        if mode == PHONE and (a.sent == 0 or r.random() < 0.3):
            # home wifi, the carrier (CGNAT: a new /24 each time it is joined), office wifi
            a.asn, a.ip = r.choice(((7922, "73.1.2.3"), (3356, "4.5.6.7"), (21928, None)))
            if a.ip is None:
                a.ip = f"172.{r.randrange(32, 64)}.{r.randrange(256)}.9"
        elif mode == VPN and (a.sent == 0 or r.random() < 0.2):
            a.asn = r.choice((9009, 60068, 212238, 16276, 24940, 20473))
            a.ip = f"{r.randrange(80, 200)}.{r.randrange(256)}.{r.randrange(256)}.4"
        elif mode in (CLOUD_PROXY, ONE_ASN_PROXY):
            a.asn = r.choice((22616, 53813, 396982)) if mode == CLOUD_PROXY else 22616
            a.ip = f"165.{r.randrange(225)}.{r.randrange(256)}.{r.randrange(2, 250)}"
        elif mode == SOME and (a.sent == 0 or r.random() < self.switch):
            a.asn = 30000 + r.randrange(5000)
            a.ip = f"{r.randrange(60, 90)}.{r.randrange(256)}.{r.randrange(256)}.3"
        else:
            super()._move(a, mode)  # a proxy pool, a privacy relay, or sticky

    def system_prompt_of(self, a: Actor) -> str | None:
        return self.system_prompt if a.kind != "hydra" else None

    def spawn(self, slot: int, start: float) -> Actor:
        a = super().spawn(slot, start)
        self.mode[a.account] = self.lab_mode
        a.templates = self.lab_templates
        return a


@cache
def _course(mode: str, moving: int, system_prompt: str | None = None) -> _Moving:
    """30 young students on ONE template with reasoning, an exercise every ~4 min for 8 h (the
    first `moving` of them on `mode`, kind "mover"); 16 late joiners, two at each of 1-7 h in,
    20 exercises (test_churn_rotation_adversary's bootcamp, on one template)."""
    w = _Moving(system_prompt)
    for a in add_bootcamp_cohort(w, TEMPLATES[:1])[:moving]:
        w.mode[a.account] = mode
        a.kind = "mover"
    w.run(T0 + 3600 + 8 * 3600 + 1.2 * 3600)
    return w


@cache
def _hydra(mode: str, templates: int = 1, switch: float = 0.1) -> tuple[Actor, ...]:
    """10 slots, 3 h lives at 0.9/min, 12 h, of `templates` of the course's templates with
    reasoning, on `mode`."""
    w = _Moving(switch=switch)
    w.lab_mode, w.lab_templates = mode, TEMPLATES[:templates]
    w.gap, w.life = PERSON_GAP, int(3 * 3600 / PERSON_GAP)
    for i in range(10):
        w.spawn(i, T0 + 60 + i * 7)
    w.run(T0 + 12 * 3600)
    return tuple(a for a in w.of("hydra") if a.sent)


def _tally(w: _Moving, kind: str) -> tuple[int, int, int]:
    """(accounts, acted on, blocked)"""
    xs = w.of(kind)
    return (len(xs), sum(a.acted_at is not None for a in xs),
            sum(a.blocked_at is not None for a in xs))


def _acted(xs: tuple[Actor, ...]) -> int:
    return sum(a.acted_at is not None for a in xs)


# --- the benign side: guarantees --------------------------------------------------------------


@pytest.mark.parametrize("mode", [RELAY, PHONE, VPN, CLOUD_PROXY])
def test_a_few_rotating_learners_do_not_tip_a_one_template_course(mode: str) -> None:
    # 8 of 30 on a relay, a phone, a VPN or a corporate cloud proxy: nothing acted on, either
    # core (their harvest is lifted to 1.0 by 0.17, and they count as the crowd's rotating
    # harvesters, 6 of 27 in a template bucket, but its score stays ~0.35, under conviction)
    w = _course(mode, 8)
    assert (_tally(w, "mover"), _tally(w, "student"), _tally(w, "late")) == (
        (8, 0, 0), (22, 0, 0), (16, 0, 0))


def test_new_prefixes_on_one_network_are_no_rotation() -> None:
    # a whole course behind one provider's proxy, a new /24 per request, with the notebook's
    # system prompt: nothing acted on, either core (prefixes count beside 3 ASNs only)
    w = _course(ONE_ASN_PROXY, 30, NOTEBOOK)
    assert (_tally(w, "mover"), _tally(w, "late")) == ((30, 0, 0), (16, 0, 0))


# --- the benign side: weaknesses --------------------------------------------------------------


def test_a_course_behind_a_corporate_cloud_proxy_is_not_blocked() -> None:
    # (the first cut of 0.17, focus lifted by any rotation, new prefixes included: 30 of 30
    # blocked at their 8th-13th request, 9.1 served each, and 4 of 16 late joiners at their
    # 1st, the crowd convicted, proven and rotating; kept: lifted by new networks and clients)
    w = _course(CLOUD_PROXY, 30, NOTEBOOK)
    assert _tally(w, "mover")[2] == 0 and _tally(w, "late")[2] == 0


def test_a_one_template_course_mostly_on_a_privacy_relay_is_not_throttled() -> None:
    # (the first cut of 0.17: 20 of 20 relay learners, 10 of 10 classmates at home and 11 of
    # 16 late joiners throttled; 30 of 30 on the relay: 30 and 16 of 16; a VPN: 20 + 10 + 10;
    # phones, 30 of 30: 30 + 7)
    w = _course(RELAY, 20)
    assert _tally(w, "mover")[1] + _tally(w, "student")[1] + _tally(w, "late")[1] == 0


# --- the lab: guarantees ----------------------------------------------------------------------


def test_a_one_template_hydra_on_a_proxy_pool_is_throttled_from_its_first_requests() -> None:
    # what 0.17 is for: 50 accounts, 50 acted on by their 7th request (0.16: 0 of 50)
    xs = _hydra(PROXY)
    assert len(xs) >= 45 and _acted(xs) == len(xs)
    assert all(a.acted_at is not None and a.acted_at <= 8 for a in xs)


# --- the lab: weaknesses ----------------------------------------------------------------------


@pytest.mark.xfail(strict=True, reason="0.17 throttles the one-template hydra on a proxy pool "
                   "but never blocks it: one template is one corroborating kind and a proxy "
                   "pool forms no network crowd: 50 accounts, 0 blocked, 129.3 requests served "
                   "each, 6,465 high-value in 12 h (0.16: the same, and not throttled). Two "
                   "templates: 1,540 of 1,550 blocked at ~their 4th, 3.3 each, either core")
def test_a_one_template_hydra_on_a_proxy_pool_is_blocked() -> None:
    xs = _hydra(PROXY)
    assert sum(map(_served, xs)) / len(xs) < 10


@pytest.mark.xfail(strict=True, reason="the cheapest way around 0.17: a new ASN and /24 on 10% "
                   "of requests (rotation 0.4 < HARVESTING; the lift is max(0.4, hopping)): 49 "
                   "accounts, 0 acted on, 132 requests each, 6,466 high-value in 12 h (either "
                   "core; 12%: 10 acted on, 15%: 49). Not rotating at all, or new /24s on one "
                   "ASN, is as free: 0 acted on, either core")
def test_a_one_template_hydra_rotating_on_a_tenth_of_its_requests_is_acted_on() -> None:
    xs = _hydra(SOME, switch=0.10)
    assert _acted(xs) >= 0.5 * len(xs)
