"""`models.behaviour`: what an account's own requests say about it.

These figures decide whether a crowd's verdict weighs on an account (models/policy.py) and
whether a crowd is a campaign (models/scoring.py), so each is pinned to the population it must
tell apart: an honest user against a residential-proxy account, a tutorial's new user against a
campaign's harvester.
"""

from __future__ import annotations

import random

from distillguard.models.behaviour import (
    CONFIDENT_REQUESTS,
    HARVEST_ACTIVE_GAP_S,
    HARVEST_CARRY_MIN_S,
    HARVEST_DAY_S,
    HARVEST_PAUSE_S,
    HARVESTING,
    JUDGED,
    MACHINE_PACE_REQUESTS,
    MAX_REMEMBERED,
    NEW,
    ROTATING,
    SUSTAINED,
    SUSTAINED_TEMPLATED_REQUESTS,
    Behaviour,
    breadth,
    harvest,
    harvest_span,
    history,
    hopping,
    machine_paced,
    rotation,
)

TEMPLATES = [0x0123_4567_89AB_CDEF, 0xFEDC_BA98_7654_3210, 0x5A5A_A5A5_3C3C_C3C3,
             0x1111_2222_3333_4444, 0x7777_8888_9999_AAAA]


def sent(requests: list[tuple[int | None, str | None, bool, bool, int]]) -> Behaviour:
    """A behaviour after these requests: (asn, client, high-value, reasoning, template)."""
    b = Behaviour()
    for i, (asn, client, high_value, reasoning, template) in enumerate(requests):
        b.observe(asn, client, high_value, reasoning, template, None, ts=60.0 * i)
    return b


def test_a_home_a_phone_and_an_office_are_no_rotation() -> None:
    rng = random.Random(1)
    networks = [(7922, "home-sdk"), (21928, "phone-app"), (701, "home-sdk")]
    b = sent([(*rng.choice(networks), False, False, 0) for _ in range(200)])
    assert rotation(b, 200) == 0.0
    # nor a second client after an SDK update
    b = sent([(7922, "sdk/1.0", False, False, 0)] * 10 + [(7922, "sdk/1.1", False, False, 0)] * 10)
    assert rotation(b, 20) == 0.0


def test_a_new_network_or_client_on_most_requests_is_rotation() -> None:
    # a residential-proxy pool: a fresh exit on most requests, often on an ISP seen before
    rng = random.Random(2)
    isps = list(range(64500, 64530))
    requests = [(rng.choice(isps), "sdk", True, True, 0) for _ in range(12)]
    assert rotation(sent(requests), 12) >= ROTATING
    # a new client on every request does the same
    clients = [(7922, f"ua-{i}", True, True, 0) for i in range(6)]
    assert rotation(sent(clients), 6) == 1.0
    # and a rotating account's history counts from its first requests: nothing to wait for
    assert history(sent(clients[:4]), 4) == JUDGED


def test_rotation_counts_only_what_is_new_to_the_remembered_networks() -> None:
    # more distinct networks than are remembered: an old one coming back counts again, as it
    # would for a proxy pool that large
    b = sent([(64500 + i % (MAX_REMEMBERED + 1), "sdk", False, False, 0) for i in range(40)])
    assert len(b.asns) == MAX_REMEMBERED and b.asn_switches == 39


def test_one_template_keeps_its_focus_on_a_relay_and_loses_it_on_a_proxy_pool() -> None:
    # One known template with reasoning on every request: a tutorial's or homework's figure,
    # damped (FOCUS), unless the account hops networks as a residential proxy pool's exits do
    # (core 0.17). New /24s of three networks (a privacy relay, a company's cloud proxy) are
    # rotation, but no hop: the focus stays.
    def on(networks: list[tuple[int, str]]) -> Behaviour:
        b = Behaviour()
        for i, (asn, prefix) in enumerate(networks):
            b.observe(asn, "sdk", True, True, TEMPLATES[0], prefix, ts=60.0 * i)
        return b

    relay = on([(13335 + i % 3, f"172.20.{i}") for i in range(12)])
    assert rotation(relay, 12) >= ROTATING and hopping(relay, 12) == 0.0
    assert harvest(relay, 12) < HARVESTING
    pool = on([(64500 + i, f"81.2.{i}") for i in range(12)])
    assert hopping(pool, 12) >= ROTATING and harvest(pool, 12) >= HARVESTING
    home = on([(7922, "24.1.1")] * 12)
    assert harvest(home, 12) < HARVESTING


def test_high_value_alone_is_no_harvest() -> None:
    # coding is what most users ask; with no other tell an account does not harvest
    b = sent([(1, "c", True, False, 0)] * 20)
    assert harvest(b, 20) == 0.0


def test_a_student_asking_for_reasoning_on_a_third_of_requests_barely_harvests() -> None:
    asks = [(1, "c", True, i % 3 == 0, 0) for i in range(24)]
    assert harvest(sent(asks), 24) < HARVESTING / 2


def test_written_out_reasoning_on_most_requests_is_harvest() -> None:
    b = sent([(1, "c", True, True, 0)] * 8)
    assert harvest(b, 8) == 1.0


def test_a_tutorials_pages_are_no_harvest_but_many_templates_are() -> None:
    # a tutorial's new user sends its one or two pages; a campaign account many templates
    one_page = sent([(1, "c", True, False, TEMPLATES[0])] * 6)
    two_pages = sent([(1, "c", True, False, TEMPLATES[i % 2]) for i in range(6)])
    five = sent([(1, "c", True, False, TEMPLATES[i % 5]) for i in range(6)])
    assert harvest(one_page, 6) == 0.0 and harvest(two_pages, 6) < HARVESTING
    assert harvest(five, 6) >= HARVESTING
    # even asking for reasoning, one page is damped (a tutorial on extended thinking)
    reasoning_page = sent([(1, "c", True, True, TEMPLATES[0])] * 6)
    assert harvest(reasoning_page, 6) < HARVESTING


def test_the_figures_are_of_what_the_account_asks_now() -> None:
    # a tutorial's pages, then ordinary use: the pages stop counting
    b = sent([(1, "c", True, True, TEMPLATES[i]) for i in range(4)])
    assert harvest(b, 4) >= HARVESTING * 0.8 * 4 / CONFIDENT_REQUESTS
    for _ in range(MAX_REMEMBERED):
        b.observe(1, "c", False, False, 0, None, ts=0.0)
    assert breadth(b) == 0 and harvest(b, 4 + MAX_REMEMBERED) == 0.0


def test_a_few_requests_say_little() -> None:
    one = sent([(1, "c", True, True, 0)])
    assert 0 < harvest(one, 1) < HARVESTING
    assert history(one, 1) == NEW
    enough = sent([(1, "c", True, True, 0)] * CONFIDENT_REQUESTS)
    assert harvest(enough, CONFIDENT_REQUESTS) == 1.0
    assert history(enough, CONFIDENT_REQUESTS) == JUDGED


def test_sustained_templated_harvest_is_a_history_level() -> None:
    b = sent([(1, "c", True, False, TEMPLATES[i % 5])
              for i in range(SUSTAINED_TEMPLATED_REQUESTS)])
    assert history(b, SUSTAINED_TEMPLATED_REQUESTS) == SUSTAINED
    b = sent([(1, "c", False, False, TEMPLATES[i % 5])
              for i in range(2 * SUSTAINED_TEMPLATED_REQUESTS)])
    assert history(b, 2 * SUSTAINED_TEMPLATED_REQUESTS) == JUDGED  # templated, not high-value


def test_the_state_is_bounded_whatever_the_account_sends() -> None:
    rng = random.Random(3)
    b = Behaviour()
    for _ in range(10_000):
        b.observe(rng.getrandbits(32), f"ua-{rng.getrandbits(64)}", True, True,
                  rng.getrandbits(64), None, ts=0.0)
    assert len(b.asns) == len(b.clients) == MAX_REMEMBERED
    assert len(b.recent_asks) == len(b.recent_templates) == MAX_REMEMBERED


def test_wire_round_trip() -> None:
    b = sent([(1, "a", True, True, TEMPLATES[0]), (2, None, False, True, 0),
              (None, "b", True, False, TEMPLATES[1])])
    assert Behaviour.from_wire(b.to_wire()) == b


def test_new_prefixes_count_as_rotation_only_beside_several_networks() -> None:
    # a phone on its carrier's address pool: a new prefix often, one network
    phone = Behaviour()
    for i in range(20):
        phone.observe(21928, "app", False, False, 0, f"172.{32 + i}.1.0/24", 60.0 * i)
    assert rotation(phone, 20) == 0.0
    # a proxy's fresh exits: new prefixes, on a few ISPs seen again and again
    proxy = Behaviour()
    isps = (7922, 7018, 701)
    for i in range(8):
        proxy.observe(isps[i % 3], "sdk", True, True, 0, f"73.{i}.1.0/24", 60.0 * i)
    assert rotation(proxy, 8) == 1.0


def test_harvest_time_adds_up_over_a_day_between_long_pauses() -> None:
    # An exam or a class is one harvest of an hour or two; a question of it hours later starts
    # another, and the day's harvests add up (what a block waits for, models/policy.py).
    b = Behaviour()
    tpl = TEMPLATES[0]
    b.observe(1, "c", False, False, tpl, None, ts=100.0)  # not high-value: no harvest
    assert harvest_span(b) == 0.0 and not b.harvesting_since
    for minute in range(0, 91, 10):
        b.observe(1, "c", True, True, tpl, None, ts=1000.0 + 60 * minute)
    assert (b.harvesting_since, harvest_span(b)) == (1000.0, 90 * 60)
    b.observe(1, "c", True, True, tpl, None, ts=1000.0 + 60 * 85)  # late: changes nothing
    assert (b.harvesting_since, harvest_span(b)) == (1000.0, 90 * 60)
    b.observe(1, "c", True, False, 0, None, ts=1000.0 + 60 * 200)  # its own prompt: no harvest
    assert harvest_span(b) == 90 * 60
    last = b.harvesting_last
    # after the pause, another harvest: the time between does not count, the earlier one does
    b.observe(1, "c", True, True, tpl, None, ts=last + HARVEST_PAUSE_S + 1)
    assert (b.harvesting_since, harvest_span(b)) == (last + HARVEST_PAUSE_S + 1, 90 * 60)
    b.observe(1, "c", True, True, tpl, None, ts=last + 2 * HARVEST_PAUSE_S)  # within one
    # (a gap within a harvest counts as active time up to HARVEST_ACTIVE_GAP_S: a job sending a
    # templated prompt an hour does not harvest for its whole span)
    assert harvest_span(b) == 90 * 60 + HARVEST_ACTIVE_GAP_S
    # the next day starts another day; the day before, two hours of harvest, is not carried: a
    # day carries only with half a day's harvest or more (a campaign pausing once a day goes on
    # adding up, tests/unit/test_core10_adversary.py W1; a person's routine does not)
    day_after = b.harvest_day_start + HARVEST_DAY_S + 1
    b.observe(1, "c", True, True, tpl, None, ts=day_after)
    assert (b.harvesting_since, harvest_span(b)) == (day_after, 0.0)
    b.observe(1, "c", True, True, tpl, None, ts=day_after + 600)
    assert harvest_span(b) == 600
    # a day of over half a day's harvest is carried into the next
    for minute in range(10, 13 * 60, 10):
        b.observe(1, "c", True, True, tpl, None, ts=day_after + 60 * minute)
    yesterday = harvest_span(b)
    assert yesterday >= HARVEST_CARRY_MIN_S
    next_day = b.harvest_day_start + HARVEST_DAY_S + 1
    b.observe(1, "c", True, True, tpl, None, ts=next_day)
    assert (b.harvesting_since, harvest_span(b)) == (next_day, yesterday)
    # a whole day with no harvest clears it
    fresh = b.harvest_day_start + 2 * HARVEST_DAY_S + 1
    b.observe(1, "c", True, True, tpl, None, ts=fresh)
    assert (b.harvesting_since, harvest_span(b)) == (fresh, 0.0)
    # a state from core 0.8 (11 fields) has no harvest yet; one from core 0.10 (16) no days
    # before; the fields round-trip
    assert Behaviour.from_wire(b.to_wire()) == b
    old = Behaviour.from_wire(b.to_wire()[:11])
    assert harvest_span(old) == 0.0 and not old.harvesting_since
    for minute in range(10, 13 * 60, 10):
        b.observe(1, "c", True, True, tpl, None, ts=fresh + 60 * minute)
    b.observe(1, "c", True, True, tpl, None, ts=fresh + HARVEST_DAY_S + 1)
    assert b.harvested_before_s and not Behaviour.from_wire(b.to_wire()[:16]).harvested_before_s
    # one from core 0.10 (17 fields) counts its current harvest as active throughout
    b.observe(1, "c", True, True, tpl, None, ts=b.harvesting_last + HARVEST_PAUSE_S - 1)
    assert b.harvest_idle_s and not Behaviour.from_wire(b.to_wire()[:17]).harvest_idle_s


def test_a_harvest_at_a_machines_pace_is_told_from_a_persons() -> None:
    tpl = TEMPLATES[0]
    person, script = Behaviour(), Behaviour()
    for i in range(40):  # an exam's candidate: a question every four minutes
        person.observe(1, "c", True, True, tpl, None, ts=1000.0 + 240 * i)
    for i in range(MACHINE_PACE_REQUESTS):  # a script: one every 40 s
        script.observe(1, "c", True, True, tpl, None, ts=1000.0 + 40 * i)
        assert machine_paced(script) == (i + 1 >= MACHINE_PACE_REQUESTS)
    assert not machine_paced(person)
    # a pause ends the harvest and its count: pace is of one harvest
    script.observe(1, "c", True, True, tpl, None, ts=script.harvesting_last + HARVEST_PAUSE_S + 1)
    assert script.harvest_requests == 1 and not machine_paced(script)


def test_the_machine_pace_is_a_setting() -> None:
    tpl = TEMPLATES[0]
    b = Behaviour()
    for i in range(30):  # 30 templated requests, one every 40 s (1.5 a minute)
        b.observe(1, "c", True, True, tpl, None, ts=1000.0 + 40 * i)
    assert not machine_paced(b), "under the default's 60"
    assert machine_paced(b, requests=20)
    assert machine_paced(b, requests=30, per_min=1.4)
    assert not machine_paced(b, requests=31), "fewer requests than the setting asks"
    assert not machine_paced(b, requests=20, per_min=2.0), "slower than the setting's pace"
    assert not machine_paced(b, requests=0), "0 turns the pace off"
