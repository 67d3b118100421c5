"""The traffic simulator: contract conformance, determinism, populations, robustness knobs.

Everything runs on `Scenario.small()` (about 5,000 events) except the `slow` tests that check
the size and the exact bytes of the default scenario. The scenario families' populations, absent
from the default scenario, are exercised here on a small scenario holding all of them
(`everyone`) and per family in tests/unit/test_families.py.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import itertools
import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from distillguard.simulator import (
    GROUPS,
    LABELS,
    Scenario,
    account_labels,
    generate_events,
    scenario_groups,
    write_files,
)
from distillguard.simulator import scenario as knobs
from distillguard.simulator.simhash import hamming, perturb, random_simhash, to_hex
from tests.conftest import contract_validator

REPO = Path(__file__).resolve().parents[2]
# The default and small scenarios hold the original nine populations.
DEFAULT_GROUPS = ("ordinary", "enterprise", "nat", "launch_wave", "researchers",
                  "campaign_burst", "campaign_hydra", "campaign_cot", "campaign_stealth")
CAMPAIGNS = tuple(g for g in DEFAULT_GROUPS if LABELS[g] == "attack")
BENIGN = tuple(g for g in DEFAULT_GROUPS if LABELS[g] == "benign")


def _validator(name: str) -> Any:
    return contract_validator(name.removesuffix(".schema.json"))


@pytest.fixture(scope="module")
def small() -> Scenario:
    return Scenario.small()


@pytest.fixture(scope="module")
def events(small: Scenario) -> list[dict[str, Any]]:
    return list(generate_events(small))


@pytest.fixture(scope="module")
def labels(small: Scenario) -> list[dict[str, Any]]:
    return account_labels(small)


@pytest.fixture(scope="module")
def group_of(labels: list[dict[str, Any]]) -> dict[str, str]:
    return {row["account_id"]: row["group"] for row in labels}


def _by_group(events: list[dict[str, Any]], group_of: dict[str, str]
              ) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        out[group_of[e["account_id"]]].append(e)
    return out


def _without_id(e: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in e.items() if k != "event_id"}


# --- contract -------------------------------------------------------------------------------


def test_every_event_validates_against_the_contract(events: list[dict[str, Any]]) -> None:
    validator = _validator("request-event.schema.json")
    errors = [(e["event_id"], err.message) for e in events for err in validator.iter_errors(e)]
    assert not errors, f"{len(errors)} schema errors, first: {errors[:5]}"


def test_every_label_validates_against_the_contract(labels: list[dict[str, Any]]) -> None:
    validator = _validator("account-label.schema.json")
    errors = [(row, err.message) for row in labels for err in validator.iter_errors(row)]
    assert not errors, f"{len(errors)} schema errors, first: {errors[:5]}"


def test_events_carry_every_field_with_plausible_values(events: list[dict[str, Any]]) -> None:
    fields = ["event_id", "ts", "account_id", "org_id", "api_key_id", "ip", "asn", "country",
              "user_agent", "payment_fingerprint", "account_created_ts", "model", "endpoint",
              "prompt_tokens", "completion_tokens", "latency_ms", "status", "prompt_simhash",
              "system_prompt_hash", "reasoning_requested", "tools_count", "task_category"]
    assert all(list(e) == fields for e in events)
    statuses = Counter(e["status"] for e in events)
    assert statuses[200] / len(events) > 0.9
    assert {429, 400} <= set(statuses)
    assert any(":" in e["ip"] for e in events), "some IPv6 clients"
    assert sum(":" in e["ip"] for e in events) / len(events) < 0.3, "mostly IPv4"
    assert {16509, 15169, 8075} & {e["asn"] for e in events}, "a big cloud ASN"
    assert all(e["account_created_ts"] <= e["ts"] for e in events)
    assert all(e["completion_tokens"] == 0 for e in events if e["status"] != 200)


# --- determinism ----------------------------------------------------------------------------


def test_same_seed_gives_identical_events_and_labels(
    small: Scenario, events: list[dict[str, Any]], labels: list[dict[str, Any]]
) -> None:
    assert list(generate_events(Scenario.small())) == events
    assert account_labels(Scenario.small()) == labels


def test_different_seed_gives_different_events(events: list[dict[str, Any]]) -> None:
    other = list(generate_events(Scenario.small(seed=8)))
    assert {e["account_id"] for e in other}.isdisjoint({e["account_id"] for e in events})
    assert [e["prompt_simhash"] for e in other[:100]] != [e["prompt_simhash"] for e in events[:100]]


def _digest(events: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(events, sort_keys=True).encode()).hexdigest()


def test_output_is_the_same_in_another_process(events: list[dict[str, Any]]) -> None:
    code = (
        "import hashlib, json\n"
        "from simulator import Scenario, generate_events\n"
        "ev = list(generate_events(Scenario.small()))\n"
        "print(hashlib.sha256(json.dumps(ev, sort_keys=True).encode()).hexdigest())\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, check=True,
                         capture_output=True, text=True).stdout.strip()
    assert out == _digest(events)


# --- stream invariants ----------------------------------------------------------------------


def test_timestamps_are_ordered_and_inside_the_run(small: Scenario,
                                                   events: list[dict[str, Any]]) -> None:
    ts = [e["ts"] for e in events]
    assert all(a <= b for a, b in itertools.pairwise(ts))
    assert small.start_ts <= ts[0] and ts[-1] < small.end_ts


def test_event_ids_are_unique_and_seeded(events: list[dict[str, Any]]) -> None:
    ids = [e["event_id"] for e in events]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("ev-7-") for i in ids)


def test_every_account_has_exactly_one_label_and_vice_versa(
    events: list[dict[str, Any]], labels: list[dict[str, Any]]
) -> None:
    labelled = [row["account_id"] for row in labels]
    assert len(labelled) == len(set(labelled))
    assert set(labelled) == {e["account_id"] for e in events}


def test_every_population_is_present_with_its_label(
    labels: list[dict[str, Any]], events: list[dict[str, Any]], group_of: dict[str, str]
) -> None:
    assert scenario_groups(Scenario.small()) == scenario_groups(Scenario.default()) == DEFAULT_GROUPS
    assert {row["group"] for row in labels} == set(DEFAULT_GROUPS)
    assert {group_of[e["account_id"]] for e in events} == set(DEFAULT_GROUPS)
    assert all(row["label"] == LABELS[row["group"]] for row in labels)
    assert set(LABELS.values()) == {"attack", "benign"}


def test_ids_do_not_reveal_the_group(labels: list[dict[str, Any]],
                                     events: list[dict[str, Any]]) -> None:
    for row in labels:
        assert row["account_id"].startswith("acct-") and len(row["account_id"]) == 15
    for e in events:
        for field in ("account_id", "org_id", "api_key_id", "payment_fingerprint"):
            value = e[field]
            assert value is None or not any(word in value for word in
                                            ("attack", "benign", "campaign", "hydra", "burst"))


def test_small_scenario_is_small_but_complete(events: list[dict[str, Any]],
                                             labels: list[dict[str, Any]]) -> None:
    assert 100 <= len(labels) <= 1000
    assert len(events) < 20_000


# --- population shapes ----------------------------------------------------------------------


def test_populations_have_their_defining_traits(events: list[dict[str, Any]],
                                                group_of: dict[str, str]) -> None:
    g = _by_group(events, group_of)
    nat = g["nat"]
    assert len({e["ip"] for e in nat}) == 1 and len({e["account_id"] for e in nat}) > 10
    ent = g["enterprise"]
    assert len({e["payment_fingerprint"] for e in ent}) == 1
    assert len({e["system_prompt_hash"] for e in ent}) == 1
    assert len({e["ip"].rsplit(".", 1)[0] for e in ent}) == 1  # one /24 per org
    launch = g["launch_wave"]
    assert all(e["account_created_ts"] >= Scenario.small().start_ts for e in launch)
    cot = g["campaign_cot"]
    assert sum(e["reasoning_requested"] for e in cot) / len(cot) > 0.8
    assert len({e["payment_fingerprint"] for e in cot}) <= 5
    burst = g["campaign_burst"]
    assert sum((e["tools_count"] or 0) > 0 for e in burst) / len(burst) > 0.6
    per_min = Counter((e["account_id"], int(e["ts"] // 60)) for e in burst)
    assert max(per_min.values()) < 30, "each burst account stays under a 30/min rate limit"
    ordinary = g["ordinary"]
    assert 0.03 < sum(e["reasoning_requested"] for e in ordinary) / len(ordinary) < 0.2


def test_cot_accounts_replay_the_same_prompt_sequence_in_lockstep(
    events: list[dict[str, Any]], group_of: dict[str, str]
) -> None:
    cot = _by_group(events, group_of)["campaign_cot"]
    seqs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in cot:
        seqs[e["account_id"]].append(e)
    a, b = sorted(seqs.values(), key=len)[-2:]
    # the k-th prompts of two accounts are near-duplicates, sent within seconds of each other
    pairs = list(zip(a, b))[:20]
    close = [hamming(int(x["prompt_simhash"], 16), int(y["prompt_simhash"], 16)) <= 6
             for x, y in pairs]
    assert sum(close) >= 0.8 * len(pairs)
    assert all(abs(x["ts"] - y["ts"]) < 30 for x, y in pairs)


def _near_neighbour_share(rows: list[dict[str, Any]], max_bits: int) -> float:
    """Share of events whose prompt is within max_bits of a prompt from another account."""
    hashes = [(int(e["prompt_simhash"], 16), e["account_id"]) for e in rows]
    hits = 0
    for h, acct in hashes:
        if any(other != acct and (h ^ g).bit_count() <= max_bits for g, other in hashes):
            hits += 1
    return hits / len(hashes)


def test_campaign_prompts_are_near_duplicate_templates_ordinary_ones_are_not(
    events: list[dict[str, Any]], group_of: dict[str, str]
) -> None:
    g = _by_group(events, group_of)
    for group in ("campaign_burst", "campaign_hydra", "campaign_cot"):
        assert _near_neighbour_share(g[group][:400], 8) > 0.9, group
    assert _near_neighbour_share(g["campaign_stealth"], 8) > 0.3
    assert _near_neighbour_share(g["ordinary"][:600], 8) < 0.02


# --- robustness knobs -----------------------------------------------------------------------


def _variant(**changes: Any) -> tuple[list[dict[str, Any]], dict[str, str]]:
    sc = dataclasses.replace(Scenario.small(), **changes)
    return list(generate_events(sc)), {r["account_id"]: r["group"] for r in account_labels(sc)}


def _counts(events: list[dict[str, Any]], group_of: dict[str, str]
            ) -> tuple[Counter[str], Counter[str]]:
    accounts = Counter(group_of.values())
    return accounts, Counter(group_of[e["account_id"]] for e in events)


def _benign_events(events: list[dict[str, Any]], group_of: dict[str, str]
                   ) -> list[dict[str, Any]]:
    return [_without_id(e) for e in events if LABELS[group_of[e["account_id"]]] == "benign"]


def test_account_multiplier_spreads_the_same_volume_over_more_accounts(
    events: list[dict[str, Any]], group_of: dict[str, str]
) -> None:
    base_accounts, base_events = _counts(events, group_of)
    ev10, go10 = _variant(campaign_account_multiplier=10)
    accounts, volume = _counts(ev10, go10)
    for group in CAMPAIGNS:
        assert 8 <= accounts[group] / base_accounts[group] <= 12, group
        # every account sends at least once, so a group with fewer than ~10 requests per
        # account at multiplier 1 necessarily grows a little
        high = 1.33 if base_events[group] >= 10 * accounts[group] else 2.0
        assert 0.75 <= volume[group] / base_events[group] <= high, group
    total = sum(volume[g] for g in CAMPAIGNS) / sum(base_events[g] for g in CAMPAIGNS)
    assert 0.9 <= total <= 1.1
    assert _benign_events(ev10, go10) == _benign_events(events, group_of)


def test_rotate_ip_gives_campaign_requests_fresh_addresses(
    events: list[dict[str, Any]], group_of: dict[str, str]
) -> None:
    rotated, go = _variant(rotate_ip_per_request=True)
    for group in CAMPAIGNS:
        rows = [e for e in rotated if go[e["account_id"]] == group]
        assert len({e["ip"] for e in rows}) >= 0.95 * len(rows), group
        before = [e for e in events if group_of[e["account_id"]] == group]
        assert len({e["ip"] for e in before}) < 0.95 * len(before) or group == "campaign_stealth"
    assert _benign_events(rotated, go) == _benign_events(events, group_of)


def test_timing_jitter_moves_campaign_timestamps_but_keeps_counts(
    events: list[dict[str, Any]], group_of: dict[str, str]
) -> None:
    jittered, go = _variant(timing_jitter=0.5)
    base_accounts, base_events = _counts(events, group_of)
    accounts, volume = _counts(jittered, go)
    for group in CAMPAIGNS:
        assert accounts[group] == base_accounts[group]
        assert abs(volume[group] - base_events[group]) <= max(3, 0.1 * base_events[group]), group
        before = [e["ts"] for e in events if group_of[e["account_id"]] == group]
        after = [e["ts"] for e in jittered if go[e["account_id"]] == group]
        assert before != after, group
    assert _benign_events(jittered, go) == _benign_events(events, group_of)


# --- populations of the scenario families -------------------------------------------------

# Every population the default scenario leaves out, with a few accounts each, over a run long
# enough for the returning campaign to come back; ordinary users as background.
EVERYONE = Scenario(
    seed=11, duration_h=11.0, scale=0.05, model_release_h=4.0,
    ordinary=knobs.OrdinaryUsers(accounts=600),
    enterprise=knobs.EnterpriseOrgs(orgs=0), nat=knobs.NatCampus(users=0),
    launch_wave=knobs.LaunchWave(accounts=0), researchers=knobs.Researchers(accounts=0),
    campaign_burst=knobs.CampaignBurst(accounts=0),
    campaign_hydra=knobs.CampaignHydra(concurrent_accounts=0),
    campaign_cot=knobs.CampaignCot(accounts=0), campaign_stealth=knobs.CampaignStealth(accounts=0),
    classroom=knobs.Classroom(accounts=400, classes=2, sessions=2),
    campus_lab=knobs.CampusLab(students=400, campuses=2), team_card=knobs.TeamCard(orgs=40),
    reseller=knobs.Reseller(accounts=300), agent_fleet=knobs.AgentFleet(accounts=40, orgs=2),
    oss_tool=knobs.OssTool(accounts=300, tool="cline"), cgnat=knobs.Cgnat(accounts=400),
    campaign_aged=knobs.CampaignAged(accounts=60), campaign_slow=knobs.CampaignSlow(accounts=60),
    campaign_returning=knobs.CampaignReturning(accounts=40),
    campaign_framing=knobs.CampaignFraming(accounts=60, copies="card"),
    campaign_decoy=knobs.CampaignDecoy(accounts=60),
    hackathon=knobs.Hackathon(accounts=300), support_desk=knobs.SupportDesk(accounts=80),
    campaign_mimic=knobs.CampaignMimic(accounts=60),
    campaign_sleeper=knobs.CampaignSleeper(accounts=60),
    certification_exam=knobs.CertificationExam(accounts=300),
    campaign_exam=knobs.CampaignExam(accounts=60),
    viral_prompt=knobs.ViralPrompt(accounts=300), campaign_viral=knobs.CampaignViral(accounts=60),
    bootcamp=knobs.Classroom(accounts=300, sessions=3, session_gap_h=2.0, new_account_share=0.7),
    mooc=knobs.MoocDeadline(accounts=400, courses=2), campaign_seats=knobs.CampaignSeats(accounts=60),
    eval_runs=knobs.EvalRuns(orgs=200), campaign_evalmimic=knobs.CampaignEvalMimic(accounts=60),
    # no stolen keys here: their requests are sent on the apps' (benign) accounts, so a label
    # split cannot hold the benign traffic still; test_families splits by sender for them
    app_backend=knobs.AppBackend(orgs=10, total_peak_rpm=20.0),
    campaign_appkeys=knobs.CampaignAppKeys(accounts=60, stolen_keys=0),
)
NEW_GROUPS = tuple(g for g in GROUPS if g not in DEFAULT_GROUPS)
NEW_CAMPAIGNS = tuple(g for g in NEW_GROUPS if LABELS[g] == "attack")


@pytest.fixture(scope="module")
def everyone() -> tuple[list[dict[str, Any]], dict[str, str]]:
    return list(generate_events(EVERYONE)), {r["account_id"]: r["group"]
                                              for r in account_labels(EVERYONE)}


def test_new_populations_are_absent_from_the_default_scenario() -> None:
    assert len(NEW_GROUPS) == 27
    for group in NEW_GROUPS:
        assert getattr(Scenario(), group).size == 0, group
        assert getattr(Scenario.small(), group).size == 0, group


def test_every_new_population_makes_valid_ordered_traffic(
    everyone: tuple[list[dict[str, Any]], dict[str, str]]
) -> None:
    events, group_of = everyone
    assert set(group_of.values()) == {"ordinary", *NEW_GROUPS} == set(scenario_groups(EVERYONE))
    validator = _validator("request-event.schema.json")
    errors = [(e["event_id"], err.message) for e in events for err in validator.iter_errors(e)]
    assert not errors, f"{len(errors)} schema errors, first: {errors[:5]}"
    assert all(a["ts"] <= b["ts"] for a, b in itertools.pairwise(events))
    assert EVERYONE.start_ts <= events[0]["ts"] and events[-1]["ts"] < EVERYONE.end_ts
    assert all(e["account_created_ts"] <= e["ts"] for e in events)
    assert {e["account_id"] for e in events} == set(group_of)


def test_new_campaigns_honour_the_robustness_knobs(
    everyone: tuple[list[dict[str, Any]], dict[str, str]]
) -> None:
    events, group_of = everyone
    base_accounts, base_events = _counts(events, group_of)
    for changes in ({"rotate_ip_per_request": True}, {"timing_jitter": 0.5},
                    {"campaign_account_multiplier": 5.0}):
        sc = dataclasses.replace(EVERYONE, **changes)
        varied = list(generate_events(sc))
        go = {r["account_id"]: r["group"] for r in account_labels(sc)}
        assert _benign_events(varied, go) == _benign_events(events, group_of), changes
        accounts, volume = _counts(varied, go)
        for group in NEW_CAMPAIGNS:
            rows = [e for e in varied if go[e["account_id"]] == group]
            if "rotate_ip_per_request" in changes:
                assert len({e["ip"] for e in rows}) >= 0.95 * len(rows), group
            if "campaign_account_multiplier" in changes:
                assert 3.5 <= accounts[group] / base_accounts[group] <= 6.5, group
                assert 0.6 <= volume[group] / base_events[group] <= 1.6, group


def test_launch_wave_knobs_shape_the_tutorial() -> None:
    wave = dataclasses.replace(
        Scenario.small().launch_wave, tutorial_templates=5, tutorial_categories=("coding",),
        tutorial_reasoning_share=0.5, min_tutorial_requests=6, max_tutorial_requests=8,
        launches=2, launch_spacing_h=0.3, latest_sdk_share=1.0)
    sc = dataclasses.replace(Scenario.small(), launch_wave=wave)
    group_of = {r["account_id"]: r["group"] for r in account_labels(sc)}
    rows = [e for e in generate_events(sc) if group_of[e["account_id"]] == "launch_wave"]
    tutorial = [e for e in rows if e["model"] == "claude-x-large" and e["tools_count"] == 0
                and e["task_category"] == "coding" and e["endpoint"] == "/v1/messages"]
    per_account = sorted(Counter(e["account_id"] for e in tutorial).values())
    assert per_account[len(per_account) // 2] >= 6  # late sign-ups are cut by the run's end
    assert 0.3 < sum(e["reasoning_requested"] for e in tutorial) / len(tutorial) < 0.8
    # five pages: the tutorial prompts fall into five (or more) near-duplicate clusters
    hashes = [int(e["prompt_simhash"], 16) for e in tutorial]
    centres: list[int] = []
    for h in hashes:
        if not any(hamming(h, c) <= 2 * wave.max_bit_flips for c in centres):
            centres.append(h)
    assert len(centres) >= 5
    assert all(e["user_agent"].startswith(("anthropic-python/0.45.0", "anthropic-typescript/0.36"))
               for e in rows)
    created = sorted({e["account_created_ts"] for e in rows})
    assert created[0] >= sc.start_ts


def test_hydra_knobs_rotate_clients_and_age_accounts() -> None:
    hydra = dataclasses.replace(Scenario.small().campaign_hydra, ua_rotation_share=0.6,
                                min_account_age_min=600.0, max_account_age_min=1200.0)
    sc = dataclasses.replace(Scenario.small(), campaign_hydra=hydra)
    group_of = {r["account_id"]: r["group"] for r in account_labels(sc)}
    rows = [e for e in generate_events(sc) if group_of[e["account_id"]] == "campaign_hydra"]
    assert len({e["user_agent"] for e in rows}) > 10 * hydra.user_agents
    first: dict[str, float] = {}
    for e in rows:
        first.setdefault(e["account_id"], e["ts"])
    ages = [first[e["account_id"]] - e["account_created_ts"] for e in rows]
    assert min(ages) >= 590 * 60.0


# --- helpers and files ----------------------------------------------------------------------


def test_simhash_helpers() -> None:
    import random

    rng = random.Random(3)
    base = random_simhash(rng)
    for bits in (0, 1, 4, 64):
        assert hamming(base, perturb(base, bits, rng)) == bits
    assert to_hex(0) == "0" * 16 and to_hex(2**64 - 1) == "f" * 16
    assert to_hex(base) == to_hex(base).lower() and len(to_hex(base)) == 16
    with pytest.raises(ValueError):
        perturb(base, 65, rng)


def test_write_files_writes_events_and_labels(tmp_path: Path, small: Scenario,
                                              events: list[dict[str, Any]],
                                              labels: list[dict[str, Any]]) -> None:
    pytest.importorskip("orjson")
    counts = write_files(small, tmp_path / "out")
    written = [json.loads(line) for line in (tmp_path / "out" / "events.jsonl").open()]
    written_labels = [json.loads(line) for line in (tmp_path / "out" / "labels.jsonl").open()]
    assert written == events
    assert written_labels == labels
    assert set(counts) == set(DEFAULT_GROUPS)
    assert sum(c["events"] for c in counts.values()) == len(events)
    assert sum(c["accounts"] for c in counts.values()) == len(labels)
    assert all(c["label"] == LABELS[g] for g, c in counts.items())


def test_simulator_is_pure_standard_library() -> None:
    """No third-party imports (orjson only inside write_files), no salted hash(), no wall clock,
    no module-level random functions."""
    allowed = set(sys.stdlib_module_names) | {"__future__"}
    for path in sorted((REPO / "simulator").glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [] if node.level else [(node.module or "").split(".")[0]]
            else:
                names = []
            for name in names:
                ok = name in allowed or (name == "orjson" and path.name == "generate.py")
                assert ok, f"{path.name}: imports {name}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id != "hash", f"{path.name}: hash() is salted per process"
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if node.value.id == "random":
                    assert node.attr == "Random", f"{path.name}: global random.{node.attr}"
                if node.value.id in ("time", "datetime") and path.name != "__main__.py":
                    pytest.fail(f"{path.name}: uses the wall clock ({node.value.id}.{node.attr})")


@pytest.mark.slow
def test_default_scenario_size() -> None:
    sc = Scenario.default()
    n_labels = len(account_labels(sc))
    n_events = sum(1 for _ in generate_events(sc))
    assert 6_000 <= n_labels <= 8_000
    assert 300_000 <= n_events <= 600_000


# The event stream and labels of the default and small scenarios before the scenario families
# were added: new populations and knobs must not change one byte of them.
SMALL_DIGESTS = ("b0a8fc8762eb58fa54d33f4803c3717739f4ab616d943b04d9034784e65dbd4d",
                 "199d5c3a8289932c5e162adfbcedfb15414de5abd600983a2212e142237a2b2f")
DEFAULT_DIGESTS = ("50949ae46fe53ce3fcf6f615350e763771f0f5fdbf1aaae38fa55df21238a47d",
                   "3a6d7c1918092d07787c864e963a3a5ac57b5fe32b2e86546fc68f307195cbc2")


def _stream_digests(sc: Scenario) -> tuple[str, str]:
    events = hashlib.sha256()
    for e in generate_events(sc):
        events.update(json.dumps(e, sort_keys=True).encode() + b"\n")
    labels = hashlib.sha256(json.dumps(account_labels(sc), sort_keys=True).encode())
    return events.hexdigest(), labels.hexdigest()


def test_small_scenario_stream_is_unchanged() -> None:
    assert _stream_digests(Scenario.small()) == SMALL_DIGESTS


@pytest.mark.slow
def test_default_scenario_stream_is_unchanged() -> None:
    assert _stream_digests(Scenario.default()) == DEFAULT_DIGESTS
