"""Scenario families: contract, determinism by seed, drawn parameters, and the traits each
family exists for (framing accounts share the copied key, aged accounts are old and rotate
networks, the returning campaign pauses longer than a block, hackathon teams share the venue's
NAT, mimic prompts are all unique, sleepers switch from ordinary use to harvesting, exam
candidates sit the same questions together and the lab sitting with them stays on after, a
viral prompt's senders arrive in a decaying spike and the lab riding the wave harvests after,
a MOOC's learners rush to its deadline, a lab's seats in a shell org work at a person's pace,
evaluators send public benchmarks' items at a machine's pace and a lab dressed as them runs
for hours, apps built on the API send their users' requests all day and a lab harvests on
their stolen keys).

Every family runs at scale 0.05 (a few thousand events); sizes at scale 1 are checked from the
request schedules alone (no payloads), so the file runs in seconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from distillguard.simulator import LABELS, account_labels, generate_events, scenario_groups
from distillguard.simulator.families import FAMILIES, Family, family_scenario
from distillguard.simulator.roster import build_accounts
from tests.conftest import contract_validator

REPO = Path(__file__).resolve().parents[2]
SCALE = 0.05
SEED = 1
DAY = 86400.0
BLOCK_TTL_S = 6 * 3600.0

Events = list[dict[str, Any]]


@pytest.fixture(scope="module")
def runs() -> dict[str, tuple[Events, list[dict[str, Any]]]]:
    """Every family's events and labels at (SEED, SCALE), generated once."""
    out = {}
    for name, family in FAMILIES.items():
        sc = family.scenario(SEED, SCALE)
        out[name] = (list(generate_events(sc)), account_labels(sc))
    return out


def _digest(events: Events) -> str:
    return hashlib.sha256(json.dumps(events, sort_keys=True).encode()).hexdigest()


def _by_group(events: Events, labels: list[dict[str, Any]]) -> dict[str, Events]:
    group_of = {row["account_id"]: row["group"] for row in labels}
    out: dict[str, Events] = defaultdict(list)
    for e in events:
        out[group_of[e["account_id"]]].append(e)
    return out


# --- the catalogue --------------------------------------------------------------------------


def test_the_families_and_what_they_hold() -> None:
    expected = {"mixed", "launch", "campus", "classroom", "teams", "oss", "egress", "aged",
                "slow", "decoy", "frame_tutorial", "frame_tool", "frame_egress", "frame_card",
                "hackathon", "support", "sleeper", "frame_class", "frame_fleet", "exam_day",
                "viral_prompt", "bootcamp", "mooc_deadline", "seat_farm", "eval_harness",
                "app_backend"}
    assert expected <= set(FAMILIES)
    for name, family in FAMILIES.items():
        assert isinstance(family, Family) and family.name == name
        assert "ordinary" in family.populations, name
        assert {LABELS[g] for g in family.populations} == {"attack", "benign"}, name
        assert " h" in family.description and "\n" not in family.description, name
    covered = {g for f in FAMILIES.values() for g in f.populations}
    assert covered == set(LABELS), f"populations in no family: {set(LABELS) - covered}"


def test_a_family_holds_exactly_its_populations_for_every_seed() -> None:
    for family in FAMILIES.values():
        for seed in (1, 2, 3):
            assert set(scenario_groups(family.scenario(seed))) == set(family.populations)


def test_unknown_family_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown family 'nope'.*mixed"):
        family_scenario("nope", 1)


# --- per family: contract and stream invariants ---------------------------------------------


@pytest.mark.parametrize("name", list(FAMILIES))
def test_events_and_labels_validate_against_the_contract(
    name: str, runs: dict[str, tuple[Events, list[dict[str, Any]]]]
) -> None:
    events, labels = runs[name]
    ev_validator = contract_validator("request-event")
    errors = [(e["event_id"], err.message) for e in events for err in ev_validator.iter_errors(e)]
    assert not errors, f"{len(errors)} schema errors, first: {errors[:3]}"
    label_validator = contract_validator("account-label")
    assert not [row for row in labels if not label_validator.is_valid(row)]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_stream_invariants(name: str,
                           runs: dict[str, tuple[Events, list[dict[str, Any]]]]) -> None:
    events, labels = runs[name]
    sc = FAMILIES[name].scenario(SEED, SCALE)
    ts = [e["ts"] for e in events]
    assert all(a <= b for a, b in itertools.pairwise(ts))
    assert sc.start_ts <= ts[0] and ts[-1] < sc.end_ts
    assert all(e["account_created_ts"] is None or e["account_created_ts"] <= e["ts"]
               for e in events)
    assert len({e["event_id"] for e in events}) == len(events)
    assert {row["account_id"] for row in labels} == {e["account_id"] for e in events}
    assert {row["group"] for row in labels} == set(FAMILIES[name].populations)
    assert all(row["label"] == LABELS[row["group"]] for row in labels)


# --- determinism and drawn parameters -------------------------------------------------------


@pytest.mark.parametrize("name", list(FAMILIES))
def test_same_seed_same_bytes_other_seed_other_traffic(
    name: str, runs: dict[str, tuple[Events, list[dict[str, Any]]]]
) -> None:
    events, labels = runs[name]
    family = FAMILIES[name]
    assert _digest(list(generate_events(family.scenario(SEED, SCALE)))) == _digest(events)
    assert account_labels(family.scenario(SEED, SCALE)) == labels
    other = list(generate_events(family.scenario(SEED + 1, SCALE)))
    assert _digest(other) != _digest(events)
    assert {e["account_id"] for e in other}.isdisjoint({e["account_id"] for e in events})


def test_output_is_the_same_in_another_process() -> None:
    code = ("import hashlib, json\n"
            "from simulator import generate_events\n"
            "from simulator.families import FAMILIES\n"
            f"ev = list(generate_events(FAMILIES['frame_tool'].scenario(5, {SCALE})))\n"
            "print(hashlib.sha256(json.dumps(ev, sort_keys=True).encode()).hexdigest())\n")
    env = {"PYTHONHASHSEED": "4321", "PYTHONPATH": str(REPO), "PATH": ""}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, check=True,
                         capture_output=True, text=True).stdout.strip()
    assert out == _digest(list(generate_events(FAMILIES["frame_tool"].scenario(5, SCALE))))


def test_every_population_draws_its_parameters_by_seed() -> None:
    """Across seeds, every population's knobs and the run (start, length) change."""
    for family in FAMILIES.values():
        scenarios = [family.scenario(seed) for seed in range(1, 6)]
        assert len({(s.start_ts, s.duration_h) for s in scenarios}) > 1, family.name
        for group in family.populations:
            knobs = {getattr(s, group) for s in scenarios}
            assert len(knobs) == 5, f"{family.name}.{group}: knobs repeat across seeds"


def test_scale_multiplies_accounts_only() -> None:
    family = FAMILIES["teams"]
    full, small = family.scenario(4), family.scenario(4, scale=0.1)
    assert dataclasses.replace(small, scale=1.0) == full


def test_family_sizes_at_scale_one() -> None:
    """Roughly 40,000-150,000 events per family at scale 1 (counted from the schedules)."""
    for family in FAMILIES.values():
        events = sum(len(a.times) for a in build_accounts(family.scenario(SEED)))
        assert 30_000 <= events <= 180_000, (family.name, events)


# --- what the families are for --------------------------------------------------------------


def _framing(runs: dict[str, tuple[Events, list[dict[str, Any]]]], family: str, crowd: str
             ) -> tuple[Events, Events]:
    groups = _by_group(*runs[family])
    assert groups["campaign_framing"] and groups[crowd]
    return groups["campaign_framing"], groups[crowd]


def test_framing_accounts_replay_the_launch_tutorial(
    runs: dict[str, tuple[Events, list[dict[str, Any]]]]
) -> None:
    framers, wave = _framing(runs, "frame_tutorial", "launch_wave")
    flips = FAMILIES["frame_tutorial"].scenario(SEED, SCALE).launch_wave.max_bit_flips
    crowd = {int(e["prompt_simhash"], 16) for e in wave}
    near = [e for e in framers
            if any((int(e["prompt_simhash"], 16) ^ h).bit_count() <= 2 * flips for h in crowd)]
    assert {e["account_id"] for e in near} == {e["account_id"] for e in framers}
    # the SDK release that came with the launch, as most sign-ups run it
    assert {e["user_agent"] for e in framers} & {e["user_agent"] for e in wave}


def test_framing_accounts_send_the_tools_system_prompt_and_user_agent(
    runs: dict[str, tuple[Events, list[dict[str, Any]]]]
) -> None:
    framers, users = _framing(runs, "frame_tool", "oss_tool")
    crowd = {(e["system_prompt_hash"], e["user_agent"]) for e in users}
    assert {(e["system_prompt_hash"], e["user_agent"]) for e in framers} <= crowd
    assert all(e["system_prompt_hash"] is not None for e in framers)


def test_framing_accounts_share_the_egress_24s(
    runs: dict[str, tuple[Events, list[dict[str, Any]]]]
) -> None:
    framers, users = _framing(runs, "frame_egress", "cgnat")
    crowd = {(e["ip"].rsplit(".", 1)[0], e["asn"]) for e in users}
    assert {(e["ip"].rsplit(".", 1)[0], e["asn"]) for e in framers} <= crowd


def test_framing_accounts_sit_behind_the_campus_nat(
    runs: dict[str, tuple[Events, list[dict[str, Any]]]]
) -> None:
    framers, students = _framing(runs, "frame_campus", "campus_lab")
    assert {e["ip"] for e in framers} <= {e["ip"] for e in students}


def test_framing_accounts_pay_with_the_resellers_card(
    runs: dict[str, tuple[Events, list[dict[str, Any]]]]
) -> None:
    framers, customers = _framing(runs, "frame_card", "reseller")
    cards = {e["payment_fingerprint"] for e in framers}
    assert len(cards) == 1 and cards <= {e["payment_fingerprint"] for e in customers}
    orgs = {e["org_id"] for e in customers}
    assert len(orgs) == len({e["account_id"] for e in customers}), "every customer its own org"


def test_aged_accounts_are_old_and_rotate_networks() -> None:
    sc = FAMILIES["aged"].scenario(SEED, 0.2)
    events, labels = list(generate_events(sc)), account_labels(sc)
    aged = _by_group(events, labels)["campaign_aged"]
    assert all(e["account_created_ts"] < sc.start_ts - 60 * DAY for e in aged)
    asns: dict[str, set[int]] = defaultdict(set)
    sent: dict[str, int] = defaultdict(int)
    for e in aged:
        asns[e["account_id"]].add(e["asn"])
        sent[e["account_id"]] += 1
    busy = [a for a, n in sent.items() if n >= 5]
    assert busy and sum(len(asns[a]) >= 2 for a in busy) >= 0.8 * len(busy)
    assert len({e["ip"] for e in aged}) > 0.4 * len(aged), "a fresh exit on most requests"
    assert sum(e["reasoning_requested"] for e in aged) / len(aged) > 0.5


def test_the_returning_campaign_pauses_longer_than_a_block(
    runs: dict[str, tuple[Events, list[dict[str, Any]]]]
) -> None:
    returning = _by_group(*runs["slow"])["campaign_returning"]
    per_account: dict[str, list[float]] = defaultdict(list)
    for e in returning:
        per_account[e["account_id"]].append(e["ts"])
    for ts in per_account.values():
        gaps = [b - a for a, b in itertools.pairwise(ts)]
        assert max(gaps) > BLOCK_TTL_S, "the same account comes back after the pause"
    assert FAMILIES["slow"].scenario(SEED).duration_h >= 10.0


def test_the_slow_campaign_runs_the_whole_run_at_a_few_requests_an_hour(
    runs: dict[str, tuple[Events, list[dict[str, Any]]]]
) -> None:
    sc = FAMILIES["slow"].scenario(SEED, SCALE)
    slow = _by_group(*runs["slow"])["campaign_slow"]
    ts = [e["ts"] for e in slow]
    assert min(ts) < sc.start_ts + 3 * 3600 and max(ts) > sc.end_ts - 3 * 3600
    accounts = {e["account_id"] for e in slow}
    assert len(slow) / len(accounts) / sc.duration_h < 8.0


def _top_share(values: list[Any], top: int) -> float:
    """Share of `values` taken by its `top` most common values."""
    counts = sorted(Counter(values).values(), reverse=True)
    return sum(counts[:top]) / len(values)


def test_benign_crowds_share_their_key(
    runs: dict[str, tuple[Events, list[dict[str, Any]]]]
) -> None:
    sc = FAMILIES["frame_campus"].scenario(SEED, SCALE)
    campus = _by_group(*runs["frame_campus"])["campus_lab"]
    pool = sc.campus_lab.campuses * sc.campus_lab.nat_ips
    assert _top_share([e["ip"] for e in campus], pool) > 0.6, "most requests leave by the NAT"
    teams = _by_group(*runs["teams"])["team_card"]
    members: dict[str, set[str]] = defaultdict(set)
    for e in teams:
        members[e["payment_fingerprint"]].add(e["account_id"])
    assert max(len(a) for a in members.values()) >= 2
    for card in members:
        assert len({e["org_id"] for e in teams if e["payment_fingerprint"] == card}) == 1
    fleet = _by_group(*runs["teams"])["agent_fleet"]
    assert len({e["system_prompt_hash"] for e in fleet}) <= 3
    assert {e["asn"] for e in fleet} <= {16509, 15169, 8075, 24940, 16276, 14061}
    tool = _by_group(*runs["oss"])["oss_tool"]
    assert len({e["user_agent"] for e in tool}) <= 4
    sc = FAMILIES["egress"].scenario(SEED, SCALE)
    cgnat = _by_group(*runs["egress"])["cgnat"]
    assert _top_share([e["ip"].rsplit(".", 1)[0] for e in cgnat], sc.cgnat.prefixes) > 0.6


def test_classroom_sessions_are_synchronised() -> None:
    sc = FAMILIES["classroom"].scenario(SEED, 0.3)
    rows = _by_group(list(generate_events(sc)), account_labels(sc))["classroom"]
    hours = defaultdict(set)
    for e in rows:
        hours[int((e["ts"] - sc.start_ts) // 1800)].add(e["account_id"])
    busiest = max(len(a) for a in hours.values())
    assert busiest >= 0.3 * len({e["account_id"] for e in rows}), "a class meets together"


def test_list_families_on_the_command_line() -> None:
    out = subprocess.run([sys.executable, "-m", "simulator", "--list-families"], cwd=REPO,
                         check=True, capture_output=True, text=True).stdout
    for name, family in FAMILIES.items():
        assert name in out and family.description in out


def test_distillguard_simulate_family(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from distillguard.streams.cli.main import main

    assert main(["simulate", "--family", "frame_card", "--seed", "3", "--scale", str(SCALE),
                 "--out", str(tmp_path / "run")]) == 0
    written = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").open()]
    expected = list(generate_events(FAMILIES["frame_card"].scenario(3, SCALE)))
    assert written == expected
    assert "family frame_card, seed 3" in capsys.readouterr().out
    for conflicting in (["--small"], ["--hours", "3"], ["--account-multiplier", "10"],
                        ["--jitter", "0.5"], ["--rotate-ip"]):
        assert main(["simulate", "--family", "frame_card", "--out", str(tmp_path / "x"),
                     *conflicting]) == 2
        err = capsys.readouterr().err
        assert conflicting[0] in err and "cannot be combined" in err
    assert main(["simulate", "--family", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "unknown family 'nope'" in capsys.readouterr().err
    assert main(["simulate", "--list-families"]) == 0
    listing = capsys.readouterr().out
    assert all(f.description in listing for f in FAMILIES.values())
    assert main(["simulate", "--seed", "3"]) == 2  # neither --out nor --topic
    assert not (tmp_path / "x").exists()


# --- the families added for the held-out set ------------------------------------------------


NEW_FAMILIES = {
    "hackathon": {"ordinary", "hackathon", "campaign_hydra"},
    "support": {"ordinary", "support_desk", "enterprise", "campaign_mimic"},
    "sleeper": {"ordinary", "launch_wave", "researchers", "campaign_sleeper"},
    "frame_class": {"ordinary", "classroom", "campaign_framing"},
    "frame_fleet": {"ordinary", "agent_fleet", "campaign_framing"},
    "exam_day": {"ordinary", "certification_exam", "campaign_exam"},
    "viral_prompt": {"ordinary", "viral_prompt", "campaign_viral"},
    "mooc_deadline": {"ordinary", "mooc", "campaign_hydra"},
    "seat_farm": {"ordinary", "team_card", "support_desk", "reseller", "campaign_seats"},
    "eval_harness": {"ordinary", "eval_runs", "campaign_evalmimic"},
    "app_backend": {"ordinary", "app_backend", "campaign_appkeys"},
}


def _groups_at(name: str, seed: int, scale: float) -> dict[str, Events]:
    sc = FAMILIES[name].scenario(seed, scale)
    return _by_group(list(generate_events(sc)), account_labels(sc))


def _alone(name: str, seed: int, group: str, scale: float = 1.0) -> tuple[Any, Events]:
    """The family's scenario with every other population emptied, and that group's events:
    the group's own traffic, as in the family, without generating the background."""
    sc = FAMILIES[name].scenario(seed, scale)
    empty = {}
    for other in FAMILIES[name].populations:
        knobs = getattr(sc, other)
        count = next(f.name for f in dataclasses.fields(knobs) if f.name in (
            "accounts", "orgs", "users", "students", "concurrent_accounts"))
        if other != group:
            empty[other] = dataclasses.replace(knobs, **{count: 0})
    sc = dataclasses.replace(sc, **empty)
    assert scenario_groups(sc) == (group,)
    return sc, list(generate_events(sc))


def _far_apart(hashes: list[int], bits: int = 7) -> bool:
    """No two values within `bits` bits of each other (two values that close agree on one of
    bits + 1 chunks of the 64 bits, so comparing within chunk buckets finds every such pair)."""
    chunks = bits + 1
    width = -(-64 // chunks)
    buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
    for h in hashes:
        for c in range(chunks):
            buckets[(c, (h >> (c * width)) & ((1 << width) - 1))].append(h)
    return all((a ^ b).bit_count() > bits
               for bucket in buckets.values() for a, b in itertools.combinations(bucket, 2))


def test_the_new_families_hold_their_populations() -> None:
    for name, groups in NEW_FAMILIES.items():
        assert set(FAMILIES[name].populations) == groups, name
        for seed in (1, 2, 3, 4, 5):
            assert set(scenario_groups(FAMILIES[name].scenario(seed))) == groups, (name, seed)
    assert FAMILIES["frame_class"].scenario(SEED).campaign_framing.copies == "classroom"
    assert FAMILIES["frame_fleet"].scenario(SEED).campaign_framing.copies == "fleet"


def test_framing_accounts_replay_the_first_courses_exercises(
    runs: dict[str, tuple[Events, list[dict[str, Any]]]]
) -> None:
    from distillguard.simulator.crowds import ClassroomAttendees
    from distillguard.simulator.seeding import IdMint

    sc = FAMILIES["frame_class"].scenario(SEED, SCALE)
    framers, attendees = _framing(runs, "frame_class", "classroom")
    course = ClassroomAttendees(sc, IdMint()).courses[0]
    exercises = {t for session in course.sessions for t, _ in session.exercises}
    flips = max(sc.classroom.max_bit_flips, sc.campaign_framing.max_bit_flips)

    def hit(events: Events) -> dict[str, set[int]]:
        out: dict[str, set[int]] = defaultdict(set)
        for e in events:
            h = int(e["prompt_simhash"], 16)
            out[e["account_id"]] |= {t for t in exercises if (h ^ t).bit_count() <= flips}
        return out

    by_framer = hit(framers)
    assert all(by_framer[a] for a in {e["account_id"] for e in framers}), \
        "every framing account replays the course's exercises"
    replayed = set().union(*by_framer.values())
    assert replayed & set().union(*hit(attendees).values()), "the same exercises as the class"


def test_framing_accounts_send_the_fleets_system_prompt_and_user_agent(
    runs: dict[str, tuple[Events, list[dict[str, Any]]]]
) -> None:
    framers, fleet = _framing(runs, "frame_fleet", "agent_fleet")
    crowd = {(e["system_prompt_hash"], e["user_agent"], e["tools_count"]) for e in fleet}
    copied = {(e["system_prompt_hash"], e["user_agent"], e["tools_count"]) for e in framers}
    assert len(copied) == 1 and copied <= crowd
    assert {e["org_id"] for e in framers}.isdisjoint({e["org_id"] for e in fleet})


def test_hackathon_teams_share_the_venue_nat_for_the_day() -> None:
    from distillguard.simulator.crowds import HackathonTeams
    from distillguard.simulator.seeding import IdMint

    team_cards = 0
    for seed in (1, 2):
        sc = FAMILIES["hackathon"].scenario(seed, 0.2)
        venue = HackathonTeams(sc, IdMint()).venue
        rows = _groups_at("hackathon", seed, 0.2)["hackathon"]
        during = [e for e in rows if venue.kickoff <= e["ts"] < venue.leave]
        after = [e for e in rows if e["ts"] >= venue.leave]
        nat = set(venue.nat_ips)
        assert len(nat) <= sc.hackathon.venue_ips
        at_venue = [e for e in during if e["ip"] in nat]
        assert len(at_venue) >= 0.85 * len(during), "the day's requests leave by the venue NAT"
        assert {e["asn"] for e in at_venue} == {venue.network.asn}
        assert len({e["ip"].rsplit(".", 1)[0] for e in at_venue}) == 1, "one /24"
        people = {e["account_id"] for e in rows}
        assert len({e["account_id"] for e in at_venue}) >= 0.8 * len(people)
        assert not any(e["ip"] in nat for e in after), "then from home"
        created: dict[str, float] = {e["account_id"]: e["account_created_ts"] for e in rows}
        same_day = [a for a, c in created.items() if c > venue.kickoff - DAY]
        assert len(same_day) >= 0.5 * len(created), "mostly brand-new accounts"
        # the starter kit: near-duplicates of its prompts from several participants, with the
        # organisers' system prompt
        flips = sc.hackathon.max_bit_flips
        starters = {t for t, _ in venue.starters}
        kit = [e for e in at_venue
               if any((int(e["prompt_simhash"], 16) ^ t).bit_count() <= flips for t in starters)]
        assert len({e["account_id"] for e in kit}) >= 0.5 * len(people)
        assert venue.kit_system_prompt in {e["system_prompt_hash"] for e in kit}
        assert all(e["ts"] < venue.kickoff + max(sc.hackathon.starter_h * 3600, 600) + 1200
                   for e in kit), "in the first hours"
        # some teams on one card and org; otherwise sponsor credits or own cards
        cards: dict[str, set[tuple[str, str]]] = defaultdict(set)
        for e in rows:
            if e["payment_fingerprint"] is not None:
                cards[e["payment_fingerprint"]].add((e["account_id"], e["org_id"]))
        for members in cards.values():
            assert len({org for _, org in members}) == 1, "a team's card is the team's org"
            team_cards += len(members) >= 2
    assert team_cards, "some teams share one card"


def test_support_agents_paste_canned_replies_from_the_office() -> None:
    for seed in (1, 2):
        sc, rows = _alone("support", seed, "support_desk")
        assert len({e["org_id"] for e in rows}) == 1
        assert len({e["payment_fingerprint"] for e in rows}) == 1
        assert len({e["user_agent"] for e in rows}) <= 2
        prefixes = {(e["ip"].rsplit(".", 1)[0], e["asn"]) for e in rows}
        assert len(prefixes) <= sc.support_desk.offices
        assert all(e["account_created_ts"] < e["ts"] - DAY for e in rows), "established"
        hashes = [int(e["prompt_simhash"], 16) for e in rows]
        shared = sum(any(0 < (h ^ g).bit_count() <= 2 * sc.support_desk.max_bit_flips
                         for g in hashes[max(0, i - 200):i]) for i, h in enumerate(hashes))
        assert shared >= 0.5 * sc.support_desk.template_share * len(rows), "canned replies"
        assert Counter(e["task_category"] for e in rows).most_common(2)[0][0] in ("chat",
                                                                                   "writing")


def test_mimic_prompts_never_repeat_a_template() -> None:
    for seed in (1, 2, 3):
        sc, rows = _alone("support", seed, "campaign_mimic", 0.5)
        assert len(rows) >= 200
        assert _far_apart([int(e["prompt_simhash"], 16) for e in rows]), "no near-duplicates"
        accounts = {e["account_id"] for e in rows}
        cards = {e["account_id"]: e["payment_fingerprint"] for e in rows}
        assert None not in cards.values() and len(set(cards.values())) == len(accounts)
        assert len({e["org_id"] for e in rows}) == len(accounts)
        assert len({e["user_agent"] for e in rows}) == 1, "one client"
        assert len({e["asn"] for e in rows}) == 1 and rows[0]["asn"] in (16509, 15169, 8075)
        assert len({e["ip"].rsplit(".", 1)[0] for e in rows}) <= sc.campaign_mimic.egress_prefixes
        assert sum(e["reasoning_requested"] for e in rows) / len(rows) > 0.5
        ages = [e["ts"] - e["account_created_ts"] for e in rows]
        assert min(ages) > sc.campaign_mimic.min_account_age_days * DAY - DAY


def test_sleeper_accounts_switch_from_ordinary_use_to_harvesting() -> None:
    for seed in (1, 2):
        sc = FAMILIES["sleeper"].scenario(seed, 0.3)
        accounts = [a for a in build_accounts(sc) if a.group == "campaign_sleeper"]
        pop = accounts[0].pop
        switch = {a.account_id: a.state.extra[0] for a in accounts}
        lo, hi = pop.switch_window()
        assert all(lo <= t <= hi for t in switch.values())
        assert len(set(switch.values())) == len(switch), "each account at its own time"
        templates = [t for t, _ in pop.templates]
        assert len(templates) == sc.campaign_sleeper.templates
        flips = sc.campaign_sleeper.max_bit_flips
        rows = _groups_at("sleeper", seed, 0.3)["campaign_sleeper"]
        assert {e["account_id"] for e in rows} == set(switch)

        def templated(e: dict[str, Any], templates: list[int] = templates,
                      flips: int = flips) -> bool:
            h = int(e["prompt_simhash"], 16)
            return any((h ^ t).bit_count() <= flips for t in templates)

        before = [e for e in rows if e["ts"] < switch[e["account_id"]]]
        after = [e for e in rows if e["ts"] >= switch[e["account_id"]]]
        assert before and after
        assert not any(templated(e) for e in before), "asleep: unique prompts"
        assert all(templated(e) for e in after), "awake: the handful of templates"
        assert len({e["account_id"] for e in before}) >= 0.5 * len(switch)
        assert len({e["task_category"] for e in before}) >= 4, "mixed categories"
        reasoning = [sum(e["reasoning_requested"] for e in p) / len(p) for p in (before, after)]
        assert reasoning[1] > 0.5 > reasoning[0]
        assert all(e["account_created_ts"] < sc.start_ts - 7 * DAY for e in rows), "weeks old"


def test_exam_candidates_sit_the_same_questions_together() -> None:
    from distillguard.simulator.crowds import ExamCandidates
    from distillguard.simulator.seeding import IdMint

    for seed in (1, 2):
        sc = FAMILIES["exam_day"].scenario(seed, 0.2)
        k = sc.certification_exam
        exam = ExamCandidates(sc, IdMint()).exam
        questions = [t for t, _ in exam.questions]
        assert len(questions) == k.questions
        rows = _groups_at("exam_day", seed, 0.2)["certification_exam"]
        people = {e["account_id"] for e in rows}

        def question(e: dict[str, Any], questions: list[int] = questions,
                     flips: int = k.max_bit_flips) -> int | None:
            h = int(e["prompt_simhash"], 16)
            return next((q for q, t in enumerate(questions) if (h ^ t).bit_count() <= flips),
                        None)

        sitting: dict[str, list[tuple[float, int]]] = defaultdict(list)
        for e in rows:
            q = question(e)
            if q is not None:
                sitting[e["account_id"]].append((e["ts"], q))
                assert exam.start <= e["ts"] < exam.end, "the questions only while it runs"
        assert set(sitting) == people, "every candidate sits the exam"
        opening = exam.start + k.max_start_delay_min * 60 + 0.5 * (exam.end - exam.start)
        assert all(min(sitting[a])[0] < opening for a in people), "everyone starts at the opening"
        for answers in sitting.values():  # the questions in order, retries on the same one
            order = [q for _, q in sorted(answers)]
            assert order == sorted(order)
        assert sum(len(v) for v in sitting.values()) > 2 * len(people) and any(
            len(v) > len({q for _, q in v}) for v in sitting.values()), "retries"
        answers = [e for e in rows if question(e) is not None]
        assert len({e["ip"] for e in answers}) >= 0.9 * len(people), "each from their own home"
        assert sum(e["reasoning_requested"] for e in answers) / len(answers) > 0.2
        assert exam.user_agent in {e["user_agent"] for e in answers}
        assert exam.system_prompt in {e["system_prompt_hash"] for e in answers}
        created = {e["account_id"]: e["account_created_ts"] for e in rows}
        young = [a for a, c in created.items() if exam.start - 10 * DAY < c < exam.start]
        assert len(young) >= 0.6 * k.new_account_share * len(people), "opened for the exam"
        assert any(question(e) is None for e in rows), "ordinary use besides"


def test_the_lab_sits_the_exam_and_harvests_its_questions_after() -> None:
    from distillguard.simulator.crowds import ExamCandidates
    from distillguard.simulator.seeding import IdMint

    for seed in (1, 2):
        sc, rows = _alone("exam_day", seed, "campaign_exam")
        k = sc.campaign_exam
        exam = ExamCandidates(sc, IdMint()).exam
        questions = [t for t, _ in exam.questions]
        accounts = {e["account_id"] for e in rows}
        assert 10 <= len(accounts) <= 40

        def on_questions(e: dict[str, Any], questions: list[int] = questions,
                         flips: int = k.max_bit_flips) -> bool:
            h = int(e["prompt_simhash"], 16)
            return any((h ^ t).bit_count() <= flips for t in questions)

        during = [e for e in rows if e["ts"] < exam.end]
        after = [e for e in rows if e["ts"] >= exam.end]
        assert all(e["ts"] >= exam.start for e in rows), "from the opening"
        assert all(on_questions(e) for e in during), "sitting the exam"
        assert {e["account_id"] for e in during} == accounts
        assert {e["account_id"] for e in after if on_questions(e)} == accounts, "and after it"
        assert max(e["ts"] for e in rows) > exam.end + 1.5 * 3600, "for hours"
        assert all(exam.start - 8 * DAY < e["account_created_ts"] < exam.start for e in rows)
        assert sum(e["reasoning_requested"] for e in rows) / len(rows) > 0.6
        ips: dict[str, set[str]] = defaultdict(set)
        for e in rows:
            ips[e["account_id"]].add(e["ip"])
        assert any(len(v) == 1 for v in ips.values()), "some on one home exit"
        assert any(len(v) >= 3 for v in ips.values()), "some on rotating proxies"


def test_a_viral_prompt_goes_round_in_a_decaying_spike() -> None:
    from distillguard.simulator import network as net
    from distillguard.simulator.crowds import ViralPromptSenders
    from distillguard.simulator.seeding import IdMint

    mobile_asns = {n.asn for n in net.MOBILE}
    for seed in (1, 2):
        sc = FAMILIES["viral_prompt"].scenario(seed, 0.3)
        k = sc.viral_prompt
        wave = ViralPromptSenders(sc, IdMint()).wave
        assert len(wave.variants) == k.variants
        rows = _groups_at("viral_prompt", seed, 0.3)["viral_prompt"]
        people = {e["account_id"] for e in rows}

        def viral(e: dict[str, Any], variants: list[int] = wave.variants,
                  flips: int = k.max_bit_flips) -> bool:
            h = int(e["prompt_simhash"], 16)
            return any((h ^ t).bit_count() <= flips for t in variants)

        sends: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for e in rows:
            if viral(e):
                sends[e["account_id"]].append(e)
        assert len(sends) >= 0.85 * len(people), "nearly everyone sends it (late ones: later)"
        assert all(1 <= len(v) <= k.max_viral_requests for v in sends.values()), "1..n times"
        assert any(len(v) > 1 for v in sends.values())
        assert len({e["prompt_simhash"] for v in sends.values() for e in v}) > 0.5 * len(sends), \
            "each with edits of its own"
        first = sorted(min(e["ts"] for e in v) for v in sends.values())
        assert first[0] >= wave.start
        # a spike that decays: the first half-life after the rise holds more arrivals than the
        # next, and most arrive within three half-lives
        half = k.half_life_min * 60.0
        peak = wave.start + k.rise_min * 60.0

        def arrived(lo: float, hi: float, first: list[float] = first) -> int:
            return sum(lo <= t < hi for t in first)

        assert arrived(peak, peak + half) > 1.3 * arrived(peak + half, peak + 2 * half)
        assert arrived(wave.start, peak + 3 * half) >= 0.75 * len(first)
        created = {e["account_id"]: e["account_created_ts"] for e in rows}
        same_day = [a for a, v in sends.items() if min(e["ts"] for e in v) - created[a] < DAY]
        assert abs(len(same_day) / len(sends) - k.new_account_share) < 0.15, "opened that day"
        on_mobile = [a for a, v in sends.items() if v[0]["asn"] in mobile_asns]
        assert len(on_mobile) >= 0.8 * k.mobile_share * len(sends), "many from mobile carriers"
        fresh = [e for a in same_day for e in sends[a]]
        assert all(e["user_agent"].startswith(("Mozilla/5.0", "PromptPad", "ChatDeck", "AskBox",
                                               "PocketPrompt", "QuillAI")) for e in fresh), \
            "browsers and apps"
        assert sum(e["reasoning_requested"] for v in sends.values() for e in v) > 0.3 * sum(
            len(v) for v in sends.values())
        cards: dict[str, set[str]] = defaultdict(set)
        for e in rows:
            if e["payment_fingerprint"] is not None:
                cards[e["payment_fingerprint"]].add(e["account_id"])
        assert all(len(a) == 1 for a in cards.values()), "no card shared"
        after = Counter(e["account_id"] for e in rows if not viral(e))
        assert any(a not in after for a in same_day), "some send nothing else"
        assert any(a in after for a in same_day), "some go on with ordinary requests"
        established = [a for a in people if a not in same_day and a in sends]
        assert sum(after[a] for a in established) > 2 * len(established), "their ordinary use"


def test_the_lab_rides_the_wave_then_harvests_reasoning() -> None:
    from distillguard.simulator.adversaries import ViralCampaign
    from distillguard.simulator.seeding import IdMint

    for seed in (1, 2):
        sc, rows = _alone("viral_prompt", seed, "campaign_viral")
        k = sc.campaign_viral
        lab = ViralCampaign(sc, IdMint())
        lab.build()
        wave = lab.wave
        accounts = {e["account_id"] for e in rows}
        assert 15 <= len(accounts) <= 60

        def near(e: dict[str, Any], bases: list[int], flips: int) -> bool:
            h = int(e["prompt_simhash"], 16)
            return any((h ^ t).bit_count() <= flips for t in bases)

        viral = [e for e in rows if near(e, wave.variants, sc.viral_prompt.max_bit_flips)]
        variants = [v for f in lab.families for v in f.variants]
        harvest = [e for e in rows if e not in viral]
        assert all(near(e, variants, k.max_bit_flips) for e in harvest), "its own templates"
        families = {next(i for i, f in enumerate(lab.families)
                         if near(e, f.variants, k.max_bit_flips)) for e in harvest}
        assert len(families) >= min(10, k.template_families)
        by_account: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for e in rows:
            by_account[e["account_id"]].append(e)
        for events in by_account.values():
            assert events[0] in viral, "the viral prompt first, to blend in"
            assert events[0]["ts"] >= wave.start, "with the wave"
        spans = [v[-1]["ts"] - v[0]["ts"] for v in by_account.values()]
        assert sum(s > 1.5 * 3600 for s in spans) >= 0.8 * len(spans), "harvesting for hours"
        rate = max(len(v) / max(1.0, (v[-1]["ts"] - v[0]["ts"]) / 3600)
                   for v in by_account.values())
        assert rate < 60, "under any per-account rate limit"
        assert sum(e["reasoning_requested"] for e in harvest) / len(harvest) > 0.6
        assert {e["task_category"] for e in harvest} <= {"reasoning", "math", "coding"}
        age = [v[0]["ts"] - v[0]["account_created_ts"] for v in by_account.values()]
        if k.bought_aged:
            assert min(age) > 50 * DAY, "bought aged accounts"
        else:
            assert max(age) < 6 * DAY, "young accounts"
        ips: dict[str, set[str]] = defaultdict(set)
        for e in rows:
            ips[e["account_id"]].add(e["ip"])
        assert any(len(v) == 1 for v in ips.values()), "some on one home exit"
        assert any(len(v) >= 3 for v in ips.values()), "some on rotating proxies"
    assert {FAMILIES["viral_prompt"].scenario(s).campaign_viral.bought_aged
            for s in range(1, 6)} == {True, False}, "young or bought aged, by seed"


def test_new_campaigns_honour_the_robustness_knobs() -> None:
    def split(sc: Any) -> tuple[Events, dict[str, Events]]:
        group_of = {r["account_id"]: r["group"] for r in account_labels(sc)}
        benign: Events = []
        attack: dict[str, Events] = defaultdict(list)
        for e in generate_events(sc):
            g = group_of[e["account_id"]]
            if LABELS[g] == "benign":
                benign.append({k: v for k, v in e.items() if k != "event_id"})
            else:
                attack[g].append(e)
        return benign, attack

    for name, group in (("support", "campaign_mimic"), ("sleeper", "campaign_sleeper"),
                        ("exam_day", "campaign_exam"), ("viral_prompt", "campaign_viral"),
                        ("seat_farm", "campaign_seats"), ("eval_harness", "campaign_evalmimic")):
        base = FAMILIES[name].scenario(SEED, 0.2)
        benign, attack = split(base)
        for changes in ({"rotate_ip_per_request": True}, {"timing_jitter": 0.5},
                        {"campaign_account_multiplier": 5.0}):
            varied_benign, varied = split(dataclasses.replace(base, **changes))
            assert varied_benign == benign, (name, changes)
            rows = varied[group]
            if "rotate_ip_per_request" in changes:
                assert len({e["ip"] for e in rows}) >= 0.95 * len(rows), group
            if "campaign_account_multiplier" in changes:
                n = len({e["account_id"] for e in rows})
                assert 3.5 <= n / len({e["account_id"] for e in attack[group]}) <= 6.5, group
                assert 0.6 <= len(rows) / len(attack[group]) <= 1.6, group


def _nearest(e: dict[str, Any], templates: list[int], flips: int) -> int | None:
    """The index of the template `e`'s prompt is a near-duplicate of, or None."""
    h = int(e["prompt_simhash"], 16)
    return next((i for i, t in enumerate(templates) if (h ^ t).bit_count() <= flips), None)


def test_mooc_learners_rush_to_the_deadline() -> None:
    from distillguard.simulator import network as net
    from distillguard.simulator.crowds import MoocLearners
    from distillguard.simulator.seeding import IdMint

    mobile_asns = {n.asn for n in net.MOBILE}
    notebook_asns = {n.asn for n in net.NOTEBOOK_EGRESS}
    for seed in (1, 2, 3):
        sc, rows = _alone("mooc_deadline", seed, "mooc")
        k = sc.mooc
        assignments = MoocLearners(sc, IdMint()).assignments
        assert len(assignments) == k.courses
        assert all(sc.start_ts + 1800 <= asg.deadline <= sc.end_ts - 3600 for asg in assignments)
        learners = {e["account_id"] for e in rows}
        assert len(learners) >= 500, "hundreds to thousands of learners"
        work: dict[str, list[tuple[dict[str, Any], int, int]]] = defaultdict(list)
        for e in rows:
            for c, asg in enumerate(assignments):
                p = _nearest(e, [t for t, _ in asg.problems], k.max_bit_flips)
                if p is not None:
                    work[e["account_id"]].append((e, c, p))
                    break
        # the others did it before the run began (a long lead) and only use the API otherwise
        assert len(work) >= 0.6 * len(learners), "most learners work on it in the run"
        for sends in work.values():
            assert len({c for _, c, _ in sends}) == 1, "one course each"
            problems = [p for _, _, p in sends]
            assert problems == sorted(problems), "the problems in order"
            c = sends[0][1]
            assert sends[-1][0]["ts"] <= assignments[c].deadline + k.grace_min * 60 + 1
        late = [a for a, v in work.items() if v[-1][0]["ts"] > assignments[v[0][1]].deadline]
        assert len(late) <= (k.late_share + 0.05) * len(work), "a few run into the grace"
        # the rush: arrivals (a learner's first problem request) rise towards the deadline
        lead = [assignments[v[0][1]].deadline - v[0][0]["ts"] for v in work.values()]
        last2 = sum(0 <= x < 2 * 3600 for x in lead)
        before = sum(2 * 3600 <= x < 4 * 3600 for x in lead)
        assert last2 > 1.15 * before, (seed, last2, before)
        first = {a: v[0][0] for a, v in work.items()}
        week = [a for a, e in first.items() if e["ts"] - e["account_created_ts"] < 7 * DAY + 60]
        assert abs(len(week) / len(first) - k.new_account_share) < 0.12, "opened that week"
        homes = [e for v in work.values() for e, _, _ in v if e["asn"] not in notebook_asns]
        on_mobile = {e["account_id"] for e in homes if e["asn"] in mobile_asns}
        assert len(on_mobile) >= 0.5 * k.mobile_share * len(work), "on mobile carriers"
        in_notebook = [e for v in work.values() for e, _, _ in v if e["asn"] in notebook_asns]
        if k.notebook_share > 0.05:
            assert in_notebook, "some from the course's notebook"
        for e in in_notebook:
            c = next(c for c, asg in enumerate(assignments) if e["system_prompt_hash"] ==
                     asg.notebook_system_prompt)
            assert e["user_agent"] == assignments[c].notebook_user_agent
        asked = [e["reasoning_requested"] for v in work.values() for e, _, _ in v]
        assert abs(sum(asked) / len(asked) - k.reasoning_share) < 0.1
        cards: dict[str, set[str]] = defaultdict(set)
        for e in rows:
            if e["payment_fingerprint"] is not None:
                cards[e["payment_fingerprint"]].add(e["account_id"])
        assert all(len(a) == 1 for a in cards.values()), "no card shared"
        every_problem = [t for asg in assignments for t, _ in asg.problems]
        other = Counter(e["account_id"] for e in rows
                        if _nearest(e, every_problem, k.max_bit_flips) is None)
        assert sum(other[a] for a in work if a not in week) > len(work) - len(week), \
            "established learners keep their ordinary use"


def test_a_labs_seats_in_a_shell_org_work_at_a_persons_pace() -> None:
    from distillguard.simulator.adversaries import SeatCampaign
    from distillguard.simulator.seeding import IdMint

    for seed in (1, 2, 3):
        sc, rows = _alone("seat_farm", seed, "campaign_seats")
        k = sc.campaign_seats
        assert all(row["label"] == "attack" and row["group"] == "campaign_seats"
                   for row in account_labels(sc)), "every seat labelled a campaign account"
        seats = {e["account_id"] for e in rows}
        assert 20 <= len(seats) <= 150
        orgs: dict[str, set[str]] = defaultdict(set)
        cards: dict[str, set[str]] = defaultdict(set)
        for e in rows:
            orgs[e["org_id"]].add(e["account_id"])
            cards[e["org_id"]].add(e["payment_fingerprint"])
        assert len(orgs) == min(k.orgs, len(seats)), "the shell orgs"
        assert all(len(c) == 1 and None not in c for c in cards.values()), "one card per org"
        assert len({c for v in cards.values() for c in v}) == len(orgs)
        assert min(len(v) for v in orgs.values()) >= 5, "many seats on one org"
        by_seat: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for e in rows:
            by_seat[e["account_id"]].append(e)
        ages = [v[0]["ts"] - v[0]["account_created_ts"] for v in by_seat.values()]
        assert max(ages) <= k.max_seat_age_days * DAY + 12 * 3600, "young seats"
        gaps = sorted(b["ts"] - a["ts"] for v in by_seat.values()
                      for a, b in itertools.pairwise(v))
        assert gaps[len(gaps) // 2] >= 20.0, "a person's think time"
        for v in by_seat.values():
            per_hour = Counter(int((e["ts"] - sc.start_ts) // 3600) for e in v)
            assert max(per_hour.values()) <= 90, "no faster than a person"
        lab = SeatCampaign(sc, IdMint())
        lab.build()
        variants = [x for f in lab.families for x in f.variants]
        templated = [e for e in rows if _nearest(e, variants, k.max_bit_flips) is not None]
        assert abs(len(templated) / len(rows) - k.template_share) < 0.1, "template families"
        assert len({e["prompt_simhash"] for e in templated}) > 0.8 * len(templated), \
            "heavy noise: hardly two prompts alike"
        assert abs(sum(e["reasoning_requested"] for e in rows) / len(rows)
                   - k.reasoning_share) < 0.08
        start = sc.start_ts + sc.campaign_start_h(k.shift_start_h) * 3600
        assert min(e["ts"] for e in rows) >= start, "the operators' shift"
        assert max(e["ts"] for e in rows) <= start + 1800 + k.shift_h * 3600


def test_departments_roll_out_an_assistant_on_one_card() -> None:
    for seed in (1, 2):
        sc, rows = _alone("seat_farm", seed, "team_card")
        by_card: dict[str, set[str]] = defaultdict(set)
        created: dict[str, float] = {}
        for e in rows:
            by_card[e["payment_fingerprint"]].add(e["account_id"])
            created[e["account_id"]] = e["account_created_ts"]
        assert max(len(v) for v in by_card.values()) >= 15, "dozens of seats on one card"
        young = sum(sc.start_ts - c < 31 * DAY for c in created.values())
        assert young >= 0.4 * len(created), "most seats added in the last month"


def _item_lookup(lists: list[list[int]], flips: int) -> Any:
    """A function from an event to the (list, index) of the value within `flips` bits of its
    prompt, or None. Two values that close agree on one of flips + 1 chunks of the 64 bits, so
    only the values sharing a chunk with the prompt are compared."""
    chunks = flips + 1
    width = -(-64 // chunks)
    mask = (1 << width) - 1
    buckets: dict[tuple[int, int], list[tuple[int, int, int]]] = defaultdict(list)
    for b, values in enumerate(lists):
        for i, v in enumerate(values):
            for c in range(chunks):
                buckets[(c, (v >> (c * width)) & mask)].append((b, i, v))

    def find(e: dict[str, Any]) -> tuple[int, int] | None:
        h = int(e["prompt_simhash"], 16)
        for c in range(chunks):
            for b, i, v in buckets.get((c, (h >> (c * width)) & mask), ()):
                if (h ^ v).bit_count() <= flips:
                    return b, i
        return None

    return find


def _spans(times: list[float], pause_s: float) -> list[list[float]]:
    """`times` (sorted) cut wherever nothing was sent for `pause_s`."""
    out: list[list[float]] = []
    for t in times:
        if out and t - out[-1][-1] <= pause_s:
            out[-1].append(t)
        else:
            out.append([t])
    return out


def test_evaluators_send_public_benchmarks_at_a_machines_pace() -> None:
    from distillguard.simulator import network as net
    from distillguard.simulator.crowds import EvalRunners
    from distillguard.simulator.seeding import IdMint

    clouds = {n.asn for n in net.CLOUD}
    aged = project = 0
    for seed in (1, 2, 3):
        sc, rows = _alone("eval_harness", seed, "eval_runs")
        k = sc.eval_runs
        assert {(r["label"], r["group"]) for r in account_labels(sc)} == {("benign", "eval_runs")}
        crowd = EvalRunners(sc, IdMint())
        assert 4 <= len(crowd.benchmarks) == k.benchmarks <= 8
        by_org: dict[str, set[str]] = defaultdict(set)
        cards: dict[str, set[str | None]] = defaultdict(set)
        for e in rows:
            by_org[e["org_id"]].add(e["account_id"])
            cards[e["org_id"]].add(e["payment_fingerprint"])
        assert all(len(c) == 1 and None not in c for c in cards.values()), "one card per org"
        assert len({c for v in cards.values() for c in v}) == len(cards)
        assert max(len(v) for v in by_org.values()) >= 3, "several accounts per org"
        # which public item a request is (the harness's formatting: a few bits)
        find = _item_lookup(crowd.items, k.max_bit_flips)
        sent: dict[tuple[int, int], set[str]] = defaultdict(set)
        bench: Events = []
        for e in rows:
            found = find(e)
            if found is not None:
                sent[found].add(e["org_id"])
                bench.append(e)
        assert len(bench) >= 0.3 * len(rows), "mostly benchmark items"
        assert sum(len(orgs) >= 2 for orgs in sent.values()) >= 20, \
            "the same public items from several customers"
        assert {e["asn"] for e in bench} <= clouds, "from cloud egress"
        assert all(e["user_agent"].startswith("anthropic-python/") for e in bench), "an SDK"
        defaults = Counter(e["org_id"] for e in bench
                           if e["system_prompt_hash"] in crowd.harness_prompts)
        assert len(defaults) >= 2, "a harness's default prompt across customers"
        assert sum(e["reasoning_requested"] for e in bench) / len(bench) > 0.15, \
            "reasoning often asked for"
        per_account: dict[str, list[float]] = defaultdict(list)
        for e in bench:
            per_account[e["account_id"]].append(e["ts"])
        runs = [s for ts in per_account.values() for s in _spans(ts, 600.0) if len(s) >= 100]
        assert runs, "runs of hundreds of items"
        for s in runs:
            minutes = (s[-1] - s[0]) / 60.0
            rate = len(s) / max(minutes, 1.0)
            assert rate <= 2.0 * k.max_requests_per_min + k.max_concurrency, "a bounded pool"
            assert minutes <= 12 * 60
        rates = sorted(len(s) / max((s[-1] - s[0]) / 60.0, 1.0) for s in runs)
        median = rates[len(rates) // 2]
        assert 0.5 * k.min_requests_per_min <= median <= 1.5 * k.max_requests_per_min
        # members also use the API as people do, from home
        own = [e for e in rows if e["asn"] not in clouds]
        assert own and all(e["system_prompt_hash"] not in crowd.harness_prompts for e in own)
        first = {e["account_id"]: e for e in reversed(rows)}
        aged += sum(e["ts"] - e["account_created_ts"] > 30 * DAY for e in first.values())
        project += sum(e["ts"] - e["account_created_ts"] <= 30 * DAY for e in first.values())
    assert aged > 2 * project > 0, "mostly aged accounts, some opened for the project"


def test_a_lab_dresses_its_harvest_as_eval_runs() -> None:
    from distillguard.simulator import network as net
    from distillguard.simulator.adversaries import EvalMimicCampaign
    from distillguard.simulator.seeding import IdMint

    clouds = {n.asn for n in net.CLOUD}
    for seed in (1, 2, 3):
        sc, rows = _alone("eval_harness", seed, "campaign_evalmimic")
        k = sc.campaign_evalmimic
        assert {(r["label"], r["group"]) for r in account_labels(sc)} == {
            ("attack", "campaign_evalmimic")}
        lab = EvalMimicCampaign(sc, IdMint())
        lab.build()
        crowd = lab.crowd
        assert {e["asn"] for e in rows} <= clouds, "cloud egress"
        assert all(e["user_agent"].startswith("anthropic-python/") for e in rows)
        assert {e["system_prompt_hash"] for e in rows} <= {crowd.harness_prompts[0], None}
        accounts = {e["account_id"] for e in rows}
        by_org: dict[str, set[str]] = defaultdict(set)
        cards: dict[str, set[str | None]] = defaultdict(set)
        for e in rows:
            by_org[e["org_id"]].add(e["account_id"])
            cards[e["org_id"]].add(e["payment_fingerprint"])
        shells = [o for o, a in by_org.items() if len(a) >= 2]
        assert len(shells) <= k.orgs and all(len(cards[o]) == 1 for o in shells)
        find = _item_lookup(crowd.items, sc.eval_runs.max_bit_flips)
        public = [e for e in rows if find(e) is not None]
        assert abs(len(public) / len(rows) - k.public_share) < 0.1, "public items mixed in"
        assert abs(sum(e["reasoning_requested"] for e in rows) / len(rows)
                   - k.reasoning_share) < 0.08
        per_account: dict[str, list[float]] = defaultdict(list)
        for e in rows:
            per_account[e["account_id"]].append(e["ts"])
        start = sc.start_ts + sc.campaign_start_h(k.start_h) * 3600
        for ts in per_account.values():
            hours = (ts[-1] - ts[0]) / 3600.0
            assert hours >= 0.85 * min(0.9 * k.harvest_h, (sc.end_ts - start) / 3600.0 - 0.5), \
                "run after run, for hours"
            busiest = max(Counter(int(t // 60) for t in ts).values())
            assert busiest <= 3 * k.requests_per_min + k.max_concurrency, "an eval's pace"
        assert len(accounts) >= 4


# --- apps built on the API, and a lab on their stolen keys ----------------------------------


def _apps_and_lab(seed: int, **changes: Any) -> tuple[Any, list[tuple[Any, dict[str, Any]]]]:
    """The app_backend family's scenario without its ordinary background (and with `changes`),
    and every event with the account object that sent it (a stolen key's requests are sent by
    the lab's borrowed account, on the app's account_id)."""
    from distillguard.simulator.generate import merge_sources

    sc = FAMILIES["app_backend"].scenario(seed)
    sc = dataclasses.replace(sc, ordinary=dataclasses.replace(sc.ordinary, accounts=0),
                             **changes)
    return sc, list(merge_sources(build_accounts(sc), sc.seed))


def test_apps_send_their_users_requests_all_day() -> None:
    from distillguard.simulator import network as net
    from distillguard.simulator.crowds import AppBackendUsers
    from distillguard.simulator.seeding import IdMint

    clouds = {n.asn for n in net.CLOUD}
    residential = {n.asn for n in net.RESIDENTIAL}
    popular = curved = 0
    for seed in (1, 2, 3):
        sc, sent = _apps_and_lab(seed)
        k = sc.app_backend
        apps = AppBackendUsers(sc, IdMint()).apps
        assert 3 <= len(apps) == k.orgs <= 15
        rows = [e for a, e in sent if a.group == "app_backend"]
        by_org: dict[str, Events] = defaultdict(list)
        for e in rows:
            by_org[e["org_id"]].append(e)
        assert set(by_org) == {app.org_id for app in apps}
        for app in apps:
            org = by_org[app.org_id]
            service_ids = {a.account_id for a in app.service}
            service = [e for e in org if e["account_id"] in service_ids]
            people = [e for e in org if e["account_id"] not in service_ids]
            assert {e["payment_fingerprint"] for e in org} == {app.card}, "one org card"
            assert 1 <= len(service_ids) <= 5, "a few backend service accounts"
            assert all(e["ts"] - e["account_created_ts"] > 30 * DAY for e in service), \
                "established accounts"
            # the app's backend: its cloud's ASN, a few /24s, a server SDK
            assert {e["asn"] for e in service} == {app.cloud.asn} <= clouds
            assert len({e["ip"].rsplit(".", 1)[0] for e in service}) <= 4
            assert all(e["user_agent"].startswith(("anthropic-python/", "anthropic-typescript/"))
                       for e in service)
            assert len({e["system_prompt_hash"] for e in service}) <= 8, "its own few prompts"
            # heavy near-duplicate use of its templates (user input: a few bits)
            find = _item_lookup([[t for t, *_ in app.templates]], app.template_bits[1])
            templated = sum(find(e) is not None for e in service)
            assert templated >= 0.8 * k.template_share * len(service)
            if len(service) >= 500:  # reasoning as the app's features ask for it
                share = sum(e["reasoning_requested"] for e in service) / len(service)
                assert abs(share - app.reasoning) < 0.3
                if app.kind.name == "tutoring":
                    assert share > 0.15
            # all day, on its users' curve
            ts = sorted(e["ts"] for e in service)
            per_min = Counter(int((t - sc.start_ts) // 60) for t in ts)
            if app.peak_rpm >= 30.0:
                popular += 1
                assert max(b - a for a, b in itertools.pairwise(
                    [sc.start_ts, *ts, sc.end_ts])) < 2 * 3600, "never a 2-hour pause"
                assert max(per_min.values()) >= 10, "tens of requests a minute at peak"
            hours = Counter(int((t - sc.start_ts) // 3600) for t in ts)
            full = int(sc.duration_h)
            if len(ts) >= 2000 and full >= 4:
                counts = [hours[h] for h in range(full)]
                shape = [sum(app.rate_shape(sc.start_ts + h * 3600 + m * 60.0)
                             for m in range(60)) for h in range(full)]
                if max(shape) >= 2 * min(shape):  # the window spans its users' day enough
                    curved += 1
                    assert _correlation(counts, shape) > 0.8, "the users' diurnal curve"
            # the developers: people on the org's card, from home, now and then the app's prompts
            assert all(e["asn"] in residential for e in people)
        assert sum(1 for e in rows if e["account_id"] in {
            a.account_id for app in apps for a in app.service}) > 0.9 * len(rows)
    assert popular >= 2 and curved >= 2


def _correlation(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    cov = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    vx = sum((x - mx) ** 2 for x in xs) ** 0.5
    vy = sum((y - my) ** 2 for y in ys) ** 0.5
    return cov / (vx * vy) if vx and vy else 1.0


def test_a_lab_harvests_through_apps_stolen_keys() -> None:
    from distillguard.simulator.crowds import AppBackendUsers
    from distillguard.simulator.generate import labels_of
    from distillguard.simulator.seeding import IdMint

    stolen_seen = 0
    for seed in (1, 2, 3, 4):
        sc, sent = _apps_and_lab(seed)
        k = sc.campaign_appkeys
        labels = {r["account_id"]: r for r in labels_of(build_accounts(sc))}
        apps = AppBackendUsers(sc, IdMint()).apps
        app_of = {a.account_id: app for app in apps for a in app.service}
        lab = [(a, e) for a, e in sent if a.group == "campaign_appkeys"]
        stolen = [(a, e) for a, e in lab if a.borrowed]
        own = [(a, e) for a, e in lab if not a.borrowed]
        # labels: the lab's own accounts attack; an app's account the lab also sent on stays
        # the app's, benign, and says how many of its requests were the lab's
        assert own and all(labels[e["account_id"]]["label"] == "attack" for _, e in own)
        assert all(labels[e["account_id"]]["group"] == "campaign_appkeys" for _, e in own)
        on_stolen = Counter(e["account_id"] for _, e in stolen)
        assert 1 <= len(on_stolen) <= min(k.stolen_keys, len(apps))
        for account_id, n in on_stolen.items():
            row = labels[account_id]
            assert (row["label"], row["group"]) == ("benign", "app_backend")
            assert row["also_sent_by"] == {"campaign_appkeys": n}
        assert not any("also_sent_by" in r for r in labels.values()
                       if r["account_id"] not in on_stolen)
        stolen_seen += len(on_stolen)
        for _, e in stolen:
            app = app_of[e["account_id"]]
            owner = app.service[[a.account_id for a in app.service].index(e["account_id"])]
            # the gateway reports the account's org, card and age; the key is one of its own
            assert (e["org_id"], e["payment_fingerprint"], e["account_created_ts"]) == (
                app.org_id, app.card, owner.created_ts)
            assert e["api_key_id"] in owner.keys
            # but it comes from the lab's egress, with the lab's client and prompts
            assert e["asn"] != app.cloud.asn
            assert e["system_prompt_hash"] not in {sp for v in app.system_prompts for sp in v}
        # interleaved: the app's own requests go on while the lab harvests on its key
        for account_id in on_stolen:
            lab_ts = [e["ts"] for a, e in stolen if e["account_id"] == account_id]
            honest = [e["ts"] for a, e in sent
                      if e["account_id"] == account_id and not a.borrowed]
            assert sum(lab_ts[0] <= t <= lab_ts[-1] for t in honest) >= 1
        rows = [e for _, e in lab]
        assert abs(sum(e["reasoning_requested"] for e in rows) / len(rows)
                   - k.reasoning_share) < 0.08
        assert {e["user_agent"] for e in rows} == {rows[0]["user_agent"]}, "the lab's client"
        # hours long, on every key and account
        per_sender: dict[tuple[str, bool], list[float]] = defaultdict(list)
        for a, e in lab:
            per_sender[(a.account_id, a.borrowed)].append(e["ts"])
        start = sc.start_ts + sc.campaign_start_h(k.start_h) * 3600
        for ts in per_sender.values():
            if len(ts) >= 20:
                assert ts[-1] - ts[0] >= 0.7 * min(0.85 * k.harvest_h * 3600,
                                                   sc.end_ts - start - 1800)
        # established accounts of its own, each its own org
        first = {e["account_id"]: e for _, e in reversed(own)}
        assert all(e["ts"] - e["account_created_ts"] >= 0.9 * k.min_account_age_days * DAY
                   for e in first.values())
        assert len({e["org_id"] for e in first.values()}) == len(first)
    assert stolen_seen >= 4


def test_the_stolen_key_lab_honours_the_robustness_knobs() -> None:
    def split(sent: list[tuple[Any, dict[str, Any]]]) -> tuple[Events, Events, Events]:
        apps = [{k: v for k, v in e.items() if k != "event_id"}
                for a, e in sent if a.group != "campaign_appkeys"]
        return (apps, [e for a, e in sent if a.group == "campaign_appkeys" and a.borrowed],
                [e for a, e in sent if a.group == "campaign_appkeys" and not a.borrowed])

    _, base = _apps_and_lab(SEED)
    apps, stolen, own = split(base)
    assert stolen and own
    for changes in ({"rotate_ip_per_request": True}, {"timing_jitter": 0.5},
                    {"campaign_account_multiplier": 5.0}):
        _, varied = _apps_and_lab(SEED, **changes)
        v_apps, v_stolen, v_own = split(varied)
        assert v_apps == apps, changes  # the apps' own traffic does not move
        if "rotate_ip_per_request" in changes:
            rows = v_stolen + v_own
            assert len({e["ip"] for e in rows}) >= 0.95 * len(rows)
        if "campaign_account_multiplier" in changes:
            n_own = len({e["account_id"] for e in own})
            assert 3.5 <= len({e["account_id"] for e in v_own}) / n_own <= 6.5
            assert 0.6 <= len(v_own) / len(own) <= 1.6
            # the stolen keys are what the lab got: the same keys, the same pace
            assert {e["api_key_id"] for e in v_stolen} == {e["api_key_id"] for e in stolen}
            assert 0.8 <= len(v_stolen) / len(stolen) <= 1.25
