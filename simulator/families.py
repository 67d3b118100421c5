"""Scenario families: many scenarios of one kind, each population's parameters drawn by seed.

A `Family` names who is in it (ordinary users always, as background) and draws every
population's knobs (counts, rates, account ages, how many share a card, address or template,
template noise, timing, launch shapes, camouflage share, ...) from ranges, with an rng derived
from (family name, seed) by BLAKE2b (`seeding.rng_for`), never from `hash()`. The run itself
gets a seed derived the same way, so two families never share their ordinary users.

>>> sc = FAMILIES["launch"].scenario(3)
>>> sc == FAMILIES["launch"].scenario(3), sc == FAMILIES["launch"].scenario(4)
(True, False)
>>> FAMILIES["slow"].scenario(3).duration_h >= 12.0
True

Each family at `scale=1.0` makes roughly 40,000-150,000 events in a few seconds; `scale`
multiplies every population's account count (tests use ~0.05). See docs/simulator.md,
"Scenario families", for the table of families and ranges.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .network import OSS_TOOLS
from .roster import GROUPS, LABELS
from .scenario import (
    AgentFleet,
    AppBackend,
    CampaignAged,
    CampaignAppKeys,
    CampaignBurst,
    CampaignCot,
    CampaignDecoy,
    CampaignEvalMimic,
    CampaignExam,
    CampaignFraming,
    CampaignHydra,
    CampaignMimic,
    CampaignReturning,
    CampaignSeats,
    CampaignSleeper,
    CampaignSlow,
    CampaignStealth,
    CampaignViral,
    CampusLab,
    CertificationExam,
    Cgnat,
    Classroom,
    EnterpriseOrgs,
    EvalRuns,
    Hackathon,
    LaunchWave,
    MoocDeadline,
    NatCampus,
    OrdinaryUsers,
    OssTool,
    Researchers,
    Reseller,
    Scenario,
    SupportDesk,
    TeamCard,
    ViralPrompt,
)
from .seeding import derive_seed, rng_for

T = TypeVar("T")

DAY_S = 86400
EPOCH = 1_767_225_600  # 2026-01-01T00:00Z: runs start within the following 90 days


class Draw:
    """The parameter draws of one (family, seed): every range a family uses, one rng."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def real(self, lo: float, hi: float, digits: int = 2) -> float:
        return round(self.rng.uniform(lo, hi), digits)

    def log(self, lo: float, hi: float) -> float:
        """Log-uniform, three significant digits: for rates and spans over decades."""
        x = math.exp(self.rng.uniform(math.log(lo), math.log(hi)))
        return float(f"{x:.3g}")

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def count(self, lo: int, hi: int) -> int:
        """An account (or org) count in [lo, hi], log-uniform."""
        return min(hi, int(math.exp(self.rng.uniform(math.log(lo), math.log(hi + 1)))))

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def choice(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]


Range = tuple[int, int]


# --- the run and the background -------------------------------------------------------------


def _run(d: Draw, hours: float) -> dict[str, Any]:
    """Start (day and hour: which part of the world is awake) and the model release."""
    release = None if d.chance(0.4) else d.real(0.25, 0.8) * hours
    return {"start_ts": float(EPOCH + d.integer(0, 89) * DAY_S + d.integer(0, 23) * 3600),
            "duration_h": hours, "model_release_h": release}


def _ordinary(d: Draw, accounts: Range) -> OrdinaryUsers:
    return OrdinaryUsers(
        accounts=d.count(*accounts), mean_requests_per_6h=d.real(35.0, 70.0),
        volume_sigma=d.real(1.1, 1.5), mean_session_requests=d.real(4.0, 9.0),
        median_gap_s=d.real(25.0, 60.0), repeat_share=d.real(0.02, 0.08),
        reasoning_share=d.real(0.06, 0.15), ipv6_share=d.real(0.08, 0.25),
        null_payment_share=d.real(0.08, 0.25), common_system_prompt_share=d.real(0.05, 0.2))


# The original nine are present in `Scenario()`; a family holds only the ones it names.
_NONE_OF_THE_NINE: dict[str, Any] = {
    "enterprise": EnterpriseOrgs(orgs=0), "nat": NatCampus(users=0),
    "launch_wave": LaunchWave(accounts=0), "researchers": Researchers(accounts=0),
    "campaign_burst": CampaignBurst(accounts=0), "campaign_hydra": CampaignHydra(
        concurrent_accounts=0), "campaign_cot": CampaignCot(accounts=0),
    "campaign_stealth": CampaignStealth(accounts=0),
}


# --- benign populations ---------------------------------------------------------------------


def enterprise(d: Draw, orgs: Range) -> EnterpriseOrgs:
    lo = d.integer(2, 6)
    return EnterpriseOrgs(orgs=d.integer(*orgs), min_accounts_per_org=lo,
                          max_accounts_per_org=lo + d.integer(0, 6),
                          requests_per_min=d.real(1.0, 4.0), templates_per_org=d.integer(3, 10),
                          max_bit_flips=d.integer(1, 4))


def nat(d: Draw, users: Range) -> NatCampus:
    return NatCampus(users=d.count(*users), mean_requests_per_6h=d.real(8.0, 20.0),
                     volume_sigma=d.real(0.9, 1.3), new_account_share=d.real(0.2, 0.6),
                     homework_share=d.real(0.05, 0.3))


_TUTORIAL_CATEGORIES: tuple[tuple[str, ...], ...] = (
    ("writing", "chat"), ("chat",), ("coding",), ("coding", "chat"), ("reasoning", "math"),
    ("tool_use", "coding"),
)


def launch_wave(d: Draw, accounts: Range, hours: float) -> LaunchWave:
    lo_tut, lo_later = d.integer(1, 3), d.integer(0, 2)
    return LaunchWave(
        accounts=d.count(*accounts), launch_h=d.real(0.2, 0.4 * hours),
        mean_signup_delay_min=d.log(8.0, 120.0), min_tutorial_requests=lo_tut,
        max_tutorial_requests=min(8, lo_tut + d.integer(0, 5)), min_later_requests=lo_later,
        max_later_requests=lo_later + d.integer(3, 14), max_bit_flips=d.integer(1, 5),
        tutorial_templates=d.integer(1, 6), tutorial_categories=d.choice(_TUTORIAL_CATEGORIES),
        tutorial_reasoning_share=d.real(0.0, 0.5) if d.chance(0.4) else 0.0,
        tutorial_system_prompt_share=d.real(0.2, 0.9), latest_sdk_share=d.real(0.3, 0.9),
        launches=d.integer(1, 2), launch_spacing_h=d.real(1.0, 3.0))


def researchers(d: Draw, accounts: Range) -> Researchers:
    lo_runs, lo_req, lo_rate = d.integer(1, 2), d.integer(40, 120), d.real(3.0, 8.0)
    return Researchers(
        accounts=d.integer(*accounts), labs=d.integer(1, 4), benchmarks=d.integer(2, 6), min_runs=lo_runs,
        max_runs=lo_runs + d.integer(0, 2), min_run_requests=lo_req,
        max_run_requests=lo_req + d.integer(20, 150), min_run_requests_per_min=lo_rate,
        max_run_requests_per_min=lo_rate + d.real(1.0, 6.0), reasoning_share=d.real(0.6, 0.95))


def classroom(d: Draw, accounts: Range, hours: float) -> Classroom:
    lo_min, lo_ex = d.real(30.0, 60.0), d.integer(1, 4)
    cats = d.choice((("coding",), ("math", "reasoning"), ("coding", "math", "reasoning"),
                     ("coding", "tool_use"), ("reasoning",)))
    return Classroom(
        accounts=d.count(*accounts), classes=d.integer(1, 3), sessions=d.integer(1, 2),
        first_session_h=d.real(0.3, 0.4 * hours), session_gap_h=d.real(1.5, 0.45 * hours),
        min_session_min=lo_min, max_session_min=min(90.0, lo_min + d.real(0.0, 40.0)),
        attendance=d.real(0.6, 0.95), max_join_delay_min=d.real(2.0, 15.0),
        new_account_share=d.real(0.15, 0.7), exercises=d.integer(2, 6), exercise_categories=cats,
        min_exercise_requests=lo_ex, max_exercise_requests=lo_ex + d.integer(1, 6),
        exercise_reasoning_share=d.real(0.05, 0.6), course_system_prompt_share=d.real(0.0, 0.9),
        max_bit_flips=d.integer(1, 6), mean_other_requests_per_6h=d.real(3.0, 15.0))


def bootcamp(d: Draw, accounts: Range, hours: float) -> Classroom:
    """A bootcamp's day: three or four sessions of an hour or more, from morning to evening,
    most of the cohort on accounts opened for it, reasoning asked for on many exercises."""
    lo_min, lo_ex = d.real(55.0, 80.0), d.integer(3, 6)
    sessions = d.integer(3, 4)
    first_h = d.real(0.2, 0.8)
    return Classroom(
        accounts=d.count(*accounts), classes=d.integer(1, 2), sessions=sessions,
        first_session_h=first_h,
        session_gap_h=d.real(1.5, max(1.5, (hours - first_h - 1.6) / (sessions - 1))),
        min_session_min=lo_min, max_session_min=lo_min + d.real(10.0, 40.0),
        attendance=d.real(0.75, 0.97), max_join_delay_min=d.real(2.0, 10.0),
        new_account_share=d.real(0.5, 0.9), exercises=d.integer(3, 8),
        exercise_categories=d.choice((("coding",), ("coding", "tool_use"),
                                      ("coding", "math", "reasoning"))),
        min_exercise_requests=lo_ex, max_exercise_requests=lo_ex + d.integer(2, 8),
        exercise_reasoning_share=d.real(0.3, 0.8), course_system_prompt_share=d.real(0.3, 0.95),
        max_bit_flips=d.integer(1, 6), mean_other_requests_per_6h=d.real(3.0, 12.0))


def campus_lab(d: Draw, students: Range, hours: float) -> CampusLab:
    lo_lab = d.integer(3, 10)
    return CampusLab(
        students=d.count(*students), campuses=d.integer(1, 3), nat_ips=d.integer(1, 6),
        new_account_share=d.real(0.2, 0.5), null_payment_share=d.real(0.15, 0.45),
        lab_h=d.real(0.3, 0.45 * hours), lab_min=d.real(50.0, 120.0),
        lab_share=d.real(0.4, 0.9), course_templates=d.integer(2, 8),
        lab_template_share=d.real(0.3, 0.7), min_lab_requests=lo_lab,
        max_lab_requests=lo_lab + d.integer(3, 16), lab_reasoning_share=d.real(0.3, 0.8),
        max_bit_flips=d.integer(1, 6), mean_requests_per_6h=d.real(8.0, 22.0),
        volume_sigma=d.real(0.9, 1.3))


def team_card(d: Draw, orgs: Range) -> TeamCard:
    lo = d.integer(2, 5)
    return TeamCard(
        orgs=d.integer(*orgs), min_accounts_per_org=lo, max_accounts_per_org=d.integer(12, 30),
        recent_share=d.real(0.05, 0.4), office_share=d.real(0.2, 0.8),
        internal_tool_share=d.real(0.1, 0.5), mean_requests_per_6h=d.real(25.0, 60.0),
        volume_sigma=d.real(1.0, 1.4))


def reseller(d: Draw, accounts: Range) -> Reseller:
    return Reseller(
        accounts=d.count(*accounts), resellers=d.integer(1, 3), countries=d.integer(1, 5),
        young_share=d.real(0.4, 0.9), mean_requests_per_6h=d.real(15.0, 40.0),
        volume_sigma=d.real(1.0, 1.4))


def agent_fleet(d: Draw, accounts: Range) -> AgentFleet:
    lo_job = d.integer(2, 5)
    return AgentFleet(
        accounts=d.count(*accounts), orgs=d.integer(1, 3), templates=d.integer(2, 8),
        max_bit_flips=d.integer(1, 4), requests_per_min=d.log(0.3, 1.5),
        rate_spread=d.real(0.1, 0.5), min_job_requests=lo_job,
        max_job_requests=lo_job + d.integer(2, 12), working_hours_amp=d.real(0.0, 0.6),
        min_account_age_days=d.real(30.0, 200.0), max_account_age_days=d.real(400.0, 1500.0))


def oss_tool(d: Draw, accounts: Range) -> OssTool:
    return OssTool(
        accounts=d.count(*accounts), tool=d.choice(sorted(OSS_TOOLS)), versions=d.integer(1, 4),
        new_account_share=d.real(0.1, 0.45), default_system_prompt_share=d.real(0.75, 0.98),
        scaffold_templates=d.integer(2, 8), scaffold_share=d.real(0.05, 0.3),
        max_bit_flips=d.integer(1, 5), mean_requests_per_6h=d.real(35.0, 90.0),
        volume_sigma=d.real(0.9, 1.3), mean_session_requests=d.real(6.0, 18.0),
        median_gap_s=d.real(12.0, 45.0))


def cgnat(d: Draw, accounts: Range) -> Cgnat:
    return Cgnat(
        accounts=d.count(*accounts), egress="notebook" if d.chance(0.35) else "mobile",
        prefixes=d.integer(1, 4), new_account_share=d.real(0.15, 0.5),
        address_change_share=d.real(0.1, 0.6), mean_requests_per_6h=d.real(12.0, 35.0),
        volume_sigma=d.real(1.0, 1.4))


def hackathon(d: Draw, accounts: Range, hours: float) -> Hackathon:
    kickoff = d.real(0.3, 2.0)
    lo_team, lo_start, lo_burst = d.integer(1, 3), d.integer(1, 3), d.real(8.0, 25.0)
    return Hackathon(
        accounts=d.count(*accounts), venue="campus" if d.chance(0.4) else "conference",
        venue_ips=d.integer(1, 6), kickoff_h=kickoff,
        venue_h=d.real(5.0, max(5.1, min(10.0, hours - kickoff - 1.5))),
        new_account_share=d.real(0.6, 0.95), min_team_size=lo_team,
        max_team_size=lo_team + d.integer(1, 3), team_card_share=d.real(0.1, 0.5),
        null_payment_share=d.real(0.2, 0.7), starter_templates=d.integer(2, 6),
        starter_h=d.real(1.0, 3.0), min_starter_requests=lo_start,
        max_starter_requests=lo_start + d.integer(1, 4), kit_system_prompt_share=d.real(0.2, 0.8),
        kit_sdk_share=d.real(0.3, 0.8), max_bit_flips=d.integer(1, 5),
        bursts_per_h=d.real(0.3, 1.2), min_burst_min=lo_burst,
        max_burst_min=round(lo_burst + d.real(10.0, 35.0), 2), burst_gap_s=d.log(45.0, 200.0),
        app_template_share=d.real(0.0, 0.2), mean_home_requests_per_6h=d.real(10.0, 35.0))


def support_desk(d: Draw, accounts: Range) -> SupportDesk:
    return SupportDesk(
        accounts=d.count(*accounts), offices=d.integer(1, 3), egress_ips=d.integer(1, 6),
        shifts=d.integer(1, 3), templates=d.integer(3, 12), template_share=d.real(0.3, 0.8),
        max_bit_flips=d.integer(2, 6), requests_per_h=d.log(6.0, 30.0),
        system_prompt_share=d.real(0.5, 1.0), recent_share=d.real(0.05, 0.3),
        large_share=d.real(0.2, 0.6))


_EXAM_CATEGORIES: tuple[tuple[str, ...], ...] = (
    ("coding", "reasoning"), ("coding",), ("coding", "math", "reasoning"), ("reasoning", "math"),
    ("coding", "tool_use", "reasoning"),
)


def certification_exam(d: Draw, accounts: Range, hours: float) -> CertificationExam:
    exam_min, lo_q = d.real(60.0, 150.0), d.integer(1, 2)
    return CertificationExam(
        accounts=d.count(*accounts),
        # the exam ends at least two hours before the run does (1.6 h in the shortest runs)
        exam_h=d.real(0.3, max(0.4, min(1.5, hours - exam_min / 60.0 - 2.0))),
        exam_min=exam_min, max_start_delay_min=d.real(1.0, 6.0),
        new_account_share=d.real(0.3, 0.8), null_payment_share=d.real(0.1, 0.5),
        questions=d.integer(5, 15), question_categories=d.choice(_EXAM_CATEGORIES),
        min_question_requests=lo_q, max_question_requests=lo_q + d.integer(1, 3),
        reasoning_share=d.real(0.3, 0.8), vendor_sdk_share=d.real(0.3, 0.9),
        vendor_system_prompt_share=d.real(0.1, 0.6), max_bit_flips=d.integer(1, 5),
        mean_other_requests_per_6h=d.real(3.0, 12.0))


# What the viral prompt is classified as ("explain step by step how ..."): mostly reasoning.
_VIRAL_CATEGORIES = ("reasoning", "reasoning", "math", "coding")


def viral_prompt(d: Draw, accounts: Range, hours: float) -> ViralPrompt:
    half_life, rise = d.log(10.0, 90.0), d.real(2.0, 20.0)
    return ViralPrompt(
        accounts=d.count(*accounts),
        # 3.5 half-lives of the decay inside the run at least (about 90% of the arrivals)
        spike_h=d.real(0.3, max(0.4, min(2.0, hours - (rise + 3.5 * half_life) / 60.0))),
        rise_min=rise, half_life_min=half_life, new_account_share=d.real(0.3, 0.8),
        null_payment_share=d.real(0.2, 0.6), mobile_share=d.real(0.3, 0.6),
        cgnat_prefixes=d.integer(1, 4), app_share=d.real(0.2, 0.7), variants=d.integer(1, 4),
        category=d.choice(_VIRAL_CATEGORIES), max_bit_flips=d.integer(2, 6),
        max_viral_requests=d.integer(2, 4), reasoning_share=d.real(0.5, 0.9),
        followup_share=d.real(0.1, 0.5), stay_share=d.real(0.2, 0.6),
        mean_other_requests_per_6h=d.real(10.0, 35.0))


_MOOC_CATEGORIES: tuple[tuple[str, ...], ...] = (
    ("coding",), ("coding", "math"), ("math", "reasoning"), ("coding", "math", "reasoning"),
    ("reasoning", "writing"),
)


def mooc(d: Draw, accounts: Range, hours: float) -> MoocDeadline:
    courses, lo_p = d.integer(1, 2), d.integer(1, 2)
    return MoocDeadline(
        accounts=d.count(*accounts), courses=courses,
        # the last deadline an hour or more before the run ends, the first after 40% of it
        deadline_h=d.real(0.4 * hours, max(0.41 * hours, hours - 1.0 - (courses - 1) * 1.5)),
        deadline_spacing_h=d.real(0.25, 1.5), rush_h=d.log(1.0, 8.0),
        mean_work_min=d.real(30.0, 120.0), late_share=d.real(0.02, 0.2),
        grace_min=d.real(10.0, 60.0), new_account_share=d.real(0.3, 0.8),
        null_payment_share=d.real(0.3, 0.9), mobile_share=d.real(0.05, 0.4),
        cgnat_prefixes=d.integer(1, 4), notebook_share=d.real(0.0, 0.5),
        problems=d.integer(3, 10), problem_categories=d.choice(_MOOC_CATEGORIES),
        min_problem_requests=lo_p, max_problem_requests=lo_p + d.integer(1, 5),
        reasoning_share=d.real(0.3, 0.85), max_bit_flips=d.integer(3, 7),
        stay_share=d.real(0.2, 0.6), mean_other_requests_per_6h=d.real(5.0, 25.0))


def department_rollout(d: Draw, orgs: Range) -> TeamCard:
    """Team cards drawn as a company rolling an internal assistant out to departments: dozens
    to hundreds of seats per org, most added in the last month, one internal tool's system
    prompt, mostly from the office."""
    lo = d.integer(15, 40)
    return TeamCard(
        orgs=d.integer(*orgs), min_accounts_per_org=lo, max_accounts_per_org=lo + d.integer(40, 200),
        recent_share=d.real(0.5, 0.95), office_share=d.real(0.4, 0.9),
        internal_tool_share=d.real(0.7, 1.0), mean_requests_per_6h=d.real(10.0, 40.0),
        volume_sigma=d.real(0.9, 1.3))


def eval_runs(d: Draw, orgs: Range) -> EvalRuns:
    """Companies and research groups evaluating models through the API: a few hundred to
    thousands of public benchmark items a run, 5-60 requests a minute, some nightly."""
    lo_acc, lo_items = d.integer(2, 3), d.integer(100, 400)
    return EvalRuns(
        orgs=d.count(*orgs), min_accounts_per_org=lo_acc,
        max_accounts_per_org=lo_acc + d.integer(2, 6), service_share=d.real(0.3, 0.7),
        project_account_share=d.real(0.05, 0.4), harnesses=d.integer(1, 4),
        default_system_prompt_share=d.real(0.6, 0.95), benchmarks=d.integer(4, 8),
        max_suite=d.integer(1, 4), min_run_items=lo_items,
        max_run_items=lo_items + d.integer(800, 4000), min_requests_per_min=d.log(5.0, 12.0),
        max_requests_per_min=d.log(25.0, 60.0), max_concurrency=d.integer(4, 32),
        nightly_share=d.real(0.2, 0.7), ci_runs_per_day=d.real(0.5, 3.0),
        notebook_runs_per_day=d.real(0.3, 2.0), hosted_ci_share=d.real(0.1, 0.6),
        thinking_share=d.real(0.2, 0.7), samples_share=d.real(0.0, 0.2),
        batch_share=d.real(0.05, 0.4), retry_share=d.real(0.005, 0.05, 3),
        max_bit_flips=d.integer(1, 3), release_run_share=d.real(0.2, 0.8),
        mean_other_requests_per_6h=d.real(10.0, 40.0))


def app_backend(d: Draw, apps: Range) -> AppBackend:
    """Apps built on the API (a tutoring app, a coding assistant, a writing tool, a support
    bot) sending their end users' requests all day: 3-15 apps, tens to hundreds of requests a
    minute at the most popular one's peak."""
    lo_svc, lo_dev, lo_bits = d.integer(1, 2), d.integer(1, 3), d.integer(1, 4)
    lo_trough, lo_session = d.real(0.03, 0.15), d.real(1.2, 2.5)
    return AppBackend(
        orgs=d.count(*apps), min_service_accounts=lo_svc,
        max_service_accounts=lo_svc + d.integer(1, 3), min_developers=lo_dev,
        max_developers=lo_dev + d.integer(2, 10), total_peak_rpm=d.log(60.0, 280.0),
        popularity_exponent=d.real(0.6, 1.6), min_trough_share=lo_trough,
        max_trough_share=lo_trough + d.real(0.05, 0.3), global_share=d.real(0.0, 0.4),
        min_session_requests=lo_session, max_session_requests=lo_session + d.real(1.0, 6.0),
        median_think_s=d.log(15.0, 120.0), template_share=d.real(0.6, 0.95),
        min_template_bits=lo_bits, max_template_bits=lo_bits + d.integer(2, 8),
        min_account_age_days=d.real(60.0, 200.0), max_account_age_days=d.real(400.0, 2000.0),
        deploy_share=d.real(0.1, 0.5), dev_test_share=d.real(0.1, 0.5),
        mean_other_requests_per_6h=d.real(10.0, 40.0))


# --- campaigns ------------------------------------------------------------------------------


def burst(d: Draw, accounts: Range, cards: Range = (1, 10)) -> CampaignBurst:
    lo_asn = d.integer(1, 4)
    return CampaignBurst(
        accounts=d.count(*accounts), start_h=d.real(0.0, 2.0),
        requests_per_min=d.real(0.8, 3.0), proxy_asns=lo_asn,
        proxy_prefixes=lo_asn + d.integer(1, 5), payment_fingerprints=d.integer(*cards),
        creation_waves=d.integer(1, 4), templates=d.integer(15, 60), max_bit_flips=d.integer(2, 6),
        pivot_share=d.real(0.2, 0.7), pivot_ramp_h=d.real(0.5, 2.0),
        user_agents=d.integer(1, 4), system_prompts=d.integer(1, 5))


def hydra(d: Draw, slots: Range) -> CampaignHydra:
    lo_life, lo_req, lo_ip = d.real(20.0, 60.0), d.integer(5, 15), d.integer(2, 5)
    return CampaignHydra(
        concurrent_accounts=d.count(*slots), start_h=d.real(0.0, 1.0),
        min_lifetime_min=lo_life, max_lifetime_min=lo_life + d.real(20.0, 120.0),
        min_requests_per_account=lo_req, max_requests_per_account=lo_req + d.integer(5, 25),
        on_min=d.real(10.0, 30.0), off_min=d.real(3.0, 20.0), templates=d.integer(15, 50),
        max_bit_flips=d.integer(2, 6), user_agents=d.integer(1, 6),
        null_payment_share=d.real(0.3, 0.7), shared_payment_share=d.real(0.05, 0.3),
        shared_payment_fingerprints=d.integer(2, 8), min_requests_per_ip=lo_ip,
        max_requests_per_ip=lo_ip + d.integer(1, 6),
        ua_rotation_share=d.real(0.2, 0.8) if d.chance(0.5) else 0.0,
        min_account_age_min=d.real(1.0, 30.0), max_account_age_min=d.log(60.0, 2880.0))


def cot(d: Draw, accounts: Range) -> CampaignCot:
    return CampaignCot(
        accounts=d.count(*accounts), start_h=d.real(0.0, 1.5), round_on_min=d.real(8.0, 20.0),
        round_off_min=d.real(4.0, 15.0), step_s=d.real(30.0, 90.0),
        sequence_length=d.integer(30, 120), reasoning_share=d.real(0.7, 0.95),
        payment_fingerprints=d.integer(2, 8), proxy_prefixes=d.integer(2, 6),
        round_dropout=d.real(0.0, 0.1), max_bit_flips=d.integer(2, 5),
        creation_wave_days=(d.real(10.0, 30.0), d.real(2.0, 9.0)))


def stealth(d: Draw, accounts: Range) -> CampaignStealth:
    return CampaignStealth(
        accounts=d.count(*accounts), mean_requests_per_6h=d.real(30.0, 90.0),
        volume_sigma=d.real(0.3, 0.8), template_share=d.real(0.3, 0.7),
        templates=d.integer(10, 40), max_bit_flips=d.integer(2, 6), reasoning_share=d.real(0.25, 0.6),
        active_tz_offset_h=d.choice((8.0, 5.5, 3.0, 7.0, 9.0)),
        min_account_age_days=d.real(2.0, 10.0), max_account_age_days=d.real(20.0, 90.0))


def campaign_aged(d: Draw, accounts: Range) -> CampaignAged:
    return CampaignAged(
        accounts=d.count(*accounts), start_h=d.real(0.0, 1.5),
        min_account_age_days=d.real(70.0, 200.0), max_account_age_days=d.real(400.0, 2000.0),
        null_payment_share=d.real(0.1, 0.5), ip_rotation_share=d.real(0.5, 0.95),
        ua_rotation_share=d.real(0.2, 0.8), template_families=d.integer(2, 6),
        family_variants=d.integer(10, 80), max_bit_flips=d.integer(2, 5),
        reasoning_share=d.real(0.6, 0.95), requests_per_h=d.log(3.0, 20.0),
        completion_scale=d.real(1.8, 3.5))


def campaign_slow(d: Draw, accounts: Range) -> CampaignSlow:
    return CampaignSlow(
        accounts=d.count(*accounts), requests_per_h=d.log(0.8, 5.0), templates=d.integer(8, 40),
        max_bit_flips=d.integer(2, 6), reasoning_share=d.real(0.3, 0.9),
        min_account_age_days=d.real(2.0, 30.0), max_account_age_days=d.real(60.0, 400.0),
        shared_payment_share=d.real(0.0, 0.6), payment_fingerprints=d.integer(1, 6),
        ip_rotation_share=d.real(0.0, 0.2))


def campaign_returning(d: Draw, accounts: Range, hours: float) -> CampaignReturning:
    start, first = d.real(0.2, 1.5), d.real(1.5, 3.5)
    # the pause outlasts a 6 h block; the return leaves at least an hour of harvest
    pause = d.real(6.5, max(6.6, min(9.0, hours - start - first - 1.0)))
    return CampaignReturning(
        accounts=d.count(*accounts), start_h=start, first_phase_h=first, pause_h=pause,
        second_phase_h=d.real(2.0, 6.0), requests_per_min=d.log(0.3, 2.0),
        templates=d.integer(10, 50), max_bit_flips=d.integer(2, 6), reasoning_share=d.real(0.3, 0.8),
        proxy_asns=d.integer(1, 3), proxy_prefixes=d.integer(2, 6), payment_fingerprints=d.integer(1, 6),
        new_ips_on_return=d.chance(0.7))


def campaign_framing(d: Draw, copies: str, accounts: Range = (3, 15)) -> CampaignFraming:
    return CampaignFraming(
        accounts=d.integer(*accounts), copies=copies, start_h=d.real(0.3, 2.0),
        requests_per_min=d.real(0.8, 3.0), templates=d.integer(5, 25), max_bit_flips=d.integer(2, 5),
        reasoning_share=d.real(0.5, 0.9), copied_template_share=d.real(0.05, 0.4))


def campaign_decoy(d: Draw, accounts: Range) -> CampaignDecoy:
    lo_ip = d.integer(2, 10)
    return CampaignDecoy(
        accounts=d.count(*accounts), start_h=d.real(0.0, 1.5),
        mean_requests_per_6h=d.real(60.0, 200.0), camouflage_share=d.real(0.15, 0.7),
        decoy_templates=d.integer(2, 10), decoy_template_share=d.real(0.03, 0.2),
        templates=d.integer(10, 40), max_bit_flips=d.integer(2, 6), reasoning_share=d.real(0.5, 0.9),
        shared_payment_share=d.real(0.0, 0.6), payment_fingerprints=d.integer(1, 8),
        min_requests_per_ip=lo_ip, max_requests_per_ip=lo_ip + d.integer(3, 25))


def campaign_mimic(d: Draw, accounts: Range) -> CampaignMimic:
    return CampaignMimic(
        accounts=d.count(*accounts), start_h=d.real(0.0, 1.5),
        min_account_age_days=d.real(20.0, 200.0), max_account_age_days=d.real(300.0, 1500.0),
        egress_prefixes=d.integer(1, 2), ips_per_account=d.integer(1, 4),
        requests_per_h=d.log(4.0, 20.0), rate_spread=d.real(0.2, 0.6),
        reasoning_share=d.real(0.6, 0.95), completion_scale=d.real(1.8, 3.2),
        system_prompt_share=d.real(0.0, 0.6))


def campaign_sleeper(d: Draw, accounts: Range, hours: float) -> CampaignSleeper:
    switch = d.real(1.5, 0.45 * hours)
    return CampaignSleeper(
        accounts=d.count(*accounts), min_account_age_days=d.real(10.0, 25.0),
        max_account_age_days=d.real(30.0, 90.0), mean_requests_per_6h=d.real(20.0, 60.0),
        switch_h=switch, switch_window_h=d.real(0.5, max(0.6, min(3.0, hours - switch - 1.5))),
        requests_per_h=d.log(6.0, 40.0), templates=d.integer(3, 10), max_bit_flips=d.integer(2, 5),
        reasoning_share=d.real(0.6, 0.95), harvest_client_share=d.real(0.0, 0.8),
        new_exit_share=d.real(0.0, 0.6))


def campaign_exam(d: Draw, accounts: Range) -> CampaignExam:
    lo_ip = d.integer(1, 4)
    return CampaignExam(
        accounts=d.count(*accounts), min_account_age_min=d.real(5.0, 120.0),
        max_account_age_days=d.real(0.5, 7.0), requests_per_h=d.log(10.0, 40.0),
        after_h=d.real(2.0, 6.0), question_share=d.real(0.6, 1.0), templates=d.integer(3, 15),
        max_bit_flips=d.integer(2, 5), reasoning_share=d.real(0.7, 0.95),
        vendor_sdk_share=d.real(0.2, 0.9), proxy_share=d.real(0.2, 0.7),
        min_requests_per_ip=lo_ip, max_requests_per_ip=lo_ip + d.integer(1, 6),
        shared_payment_share=d.real(0.0, 0.6), payment_fingerprints=d.integer(1, 4))


def campaign_viral(d: Draw, accounts: Range) -> CampaignViral:
    aged, lo_ip = d.chance(0.4), d.integer(1, 4)
    return CampaignViral(
        accounts=d.count(*accounts), bought_aged=aged,
        # bought aged accounts (months to years old), or young ones (minutes to days)
        min_account_age_days=d.real(60.0, 200.0) if aged else d.real(0.005, 0.1, 3),
        max_account_age_days=d.real(300.0, 1500.0) if aged else d.real(0.5, 5.0),
        max_viral_requests=d.integer(1, 4), harvest_h=d.real(2.0, 8.0),
        requests_per_h=d.log(6.0, 30.0), template_families=d.integer(10, 40),
        family_variants=d.integer(5, 40), max_bit_flips=d.integer(2, 5),
        viral_share=d.real(0.0, 0.15), reasoning_share=d.real(0.7, 0.95),
        completion_scale=d.real(1.8, 3.2), browser_share=d.real(0.3, 0.9),
        proxy_share=d.real(0.2, 0.7), min_requests_per_ip=lo_ip,
        max_requests_per_ip=lo_ip + d.integer(1, 6), shared_payment_share=d.real(0.0, 0.4),
        payment_fingerprints=d.integer(1, 4))


def campaign_seats(d: Draw, accounts: Range, hours: float) -> CampaignSeats:
    start = d.real(0.0, 1.5)
    return CampaignSeats(
        accounts=d.count(*accounts), orgs=d.integer(1, 3),
        min_org_age_days=d.real(10.0, 60.0), max_org_age_days=d.real(90.0, 400.0),
        max_seat_age_days=d.real(3.0, 40.0), shift_start_h=start,
        shift_h=d.real(6.0, max(6.1, hours - start)), requests_per_h=d.log(6.0, 30.0),
        median_gap_s=d.log(40.0, 240.0), mean_session_requests=d.real(6.0, 30.0),
        template_families=d.integer(2, 6), family_variants=d.integer(20, 100),
        max_bit_flips=d.integer(4, 8), template_share=d.real(0.5, 0.9),
        reasoning_share=d.real(0.6, 0.95), completion_scale=d.real(1.6, 3.0),
        office_share=d.real(0.0, 0.9), ip_rotation_share=d.real(0.0, 0.3),
        sdk_share=d.real(0.2, 0.9), system_prompt_share=d.real(0.0, 0.9))


def campaign_evalmimic(d: Draw, accounts: Range, hours: float) -> CampaignEvalMimic:
    start, lo_items = d.real(0.0, 1.5), d.integer(200, 600)
    return CampaignEvalMimic(
        accounts=d.count(*accounts), orgs=d.integer(0, 3), org_share=d.real(0.4, 1.0),
        min_account_age_days=d.real(3.0, 30.0), max_account_age_days=d.real(60.0, 700.0),
        start_h=start, harvest_h=d.real(4.0, max(4.1, hours - start)),
        min_run_items=lo_items, max_run_items=lo_items + d.integer(800, 4000),
        requests_per_min=d.log(4.0, 20.0), break_min=d.real(1.0, 15.0),
        max_concurrency=d.integer(4, 32), template_families=d.integer(4, 20),
        family_variants=d.integer(50, 400), max_bit_flips=d.integer(2, 5),
        public_share=d.real(0.1, 0.5), reasoning_share=d.real(0.7, 0.95),
        completion_scale=d.real(1.8, 3.2), harness_prompt_share=d.real(0.6, 1.0),
        hosted_ci_share=d.real(0.0, 0.6))


def campaign_appkeys(d: Draw, accounts: Range, hours: float) -> CampaignAppKeys:
    start, lo_exit = d.real(0.0, 1.5), d.integer(1, 4)
    return CampaignAppKeys(
        accounts=d.count(*accounts), stolen_keys=d.integer(1, 4),
        min_account_age_days=d.real(30.0, 120.0), max_account_age_days=d.real(200.0, 1200.0),
        start_h=start, harvest_h=d.real(2.0, max(2.1, min(8.0, hours - start))),
        requests_per_min=d.log(1.5, 12.0), proxy_share=d.real(0.0, 1.0), min_per_exit=lo_exit,
        max_per_exit=lo_exit + d.integer(1, 8), template_families=d.integer(4, 20),
        family_variants=d.integer(20, 200), max_bit_flips=d.integer(2, 5),
        reasoning_share=d.real(0.7, 0.95), completion_scale=d.real(1.8, 3.2),
        system_prompt_share=d.real(0.0, 1.0))


# --- families -------------------------------------------------------------------------------

Knobs = Callable[[Draw, float], dict[str, Any]]


@dataclass(frozen=True)
class Family:
    """A kind of scenario: who is in it, its run length, and how its knobs are drawn."""

    name: str
    description: str  # one line: who is in it, and for how long
    populations: tuple[str, ...]  # the groups every scenario of the family holds
    duration_h: tuple[float, float]
    ordinary_accounts: Range  # the background
    knobs: Knobs  # (draw, hours) -> {population: knob dataclass}

    def scenario(self, seed: int, scale: float = 1.0) -> Scenario:
        """The family's scenario for `seed`: every parameter drawn from the family's ranges.
        `scale` multiplies every population's account count (and so the events)."""
        d = Draw(rng_for(seed, "family", self.name))
        hours = d.real(*self.duration_h, digits=1)
        run = _run(d, hours)
        ordinary = _ordinary(d, self.ordinary_accounts)
        knobs = self.knobs(d, hours)
        return Scenario(seed=derive_seed(seed, "family-run", self.name) >> 34, scale=scale,
                        **run, **{**_NONE_OF_THE_NINE, "ordinary": ordinary, **knobs})


def _family(name: str, who: str, duration_h: tuple[float, float], ordinary: Range,
            knobs: Knobs) -> Family:
    groups = ("ordinary", *knobs(Draw(random.Random(0)), sum(duration_h) / 2).keys())
    # benign crowds first, then the campaigns, each in roster order
    ordered = tuple(sorted((g for g in GROUPS if g in groups),
                           key=lambda g: (LABELS[g] == "attack", GROUPS.index(g))))
    lo, hi = duration_h
    return Family(name, f"{who}; {lo:g}-{hi:g} h", ordered, duration_h, ordinary, knobs)


def _mixed(d: Draw, h: float) -> dict[str, Any]:
    return {"enterprise": enterprise(d, (2, 4)), "nat": nat(d, (80, 250)),
            "launch_wave": launch_wave(d, (200, 600), h), "researchers": researchers(d, (4, 12)),
            "campaign_burst": burst(d, (15, 45)), "campaign_hydra": hydra(d, (50, 150)),
            "campaign_cot": cot(d, (25, 80)), "campaign_stealth": stealth(d, (25, 80))}


def _launch(d: Draw, h: float) -> dict[str, Any]:
    return {"launch_wave": launch_wave(d, (800, 2500), h), "campaign_hydra": hydra(d, (80, 260))}


def _campus(d: Draw, h: float) -> dict[str, Any]:
    return {"campus_lab": campus_lab(d, (300, 1200), h), "campaign_stealth": stealth(d, (40, 120))}


def _classroom(d: Draw, h: float) -> dict[str, Any]:
    return {"classroom": classroom(d, (200, 900), h), "campaign_cot": cot(d, (30, 120))}


def _teams(d: Draw, h: float) -> dict[str, Any]:
    return {"team_card": team_card(d, (8, 30)), "reseller": reseller(d, (80, 300)),
            "agent_fleet": agent_fleet(d, (8, 40)), "campaign_burst": burst(d, (15, 60), (1, 3))}


def _oss(d: Draw, h: float) -> dict[str, Any]:
    return {"oss_tool": oss_tool(d, (250, 900)), "campaign_hydra": hydra(d, (60, 220))}


def _egress(d: Draw, h: float) -> dict[str, Any]:
    return {"enterprise": enterprise(d, (2, 5)), "cgnat": cgnat(d, (400, 1500)),
            "campaign_burst": burst(d, (20, 70))}


def _aged(d: Draw, h: float) -> dict[str, Any]:
    return {"enterprise": enterprise(d, (2, 4)), "researchers": researchers(d, (6, 20)),
            "campaign_aged": campaign_aged(d, (40, 200))}


def _slow(d: Draw, h: float) -> dict[str, Any]:
    return {"campaign_slow": campaign_slow(d, (30, 150)),
            "campaign_returning": campaign_returning(d, (10, 50), h)}


def _decoy(d: Draw, h: float) -> dict[str, Any]:
    return {"launch_wave": launch_wave(d, (500, 1500), h),
            "campaign_decoy": campaign_decoy(d, (40, 150))}


def _frame_tutorial(d: Draw, h: float) -> dict[str, Any]:
    return {"launch_wave": launch_wave(d, (800, 2500), h),
            "campaign_framing": campaign_framing(d, "tutorial")}


def _frame_tool(d: Draw, h: float) -> dict[str, Any]:
    return {"oss_tool": oss_tool(d, (250, 900)), "campaign_framing": campaign_framing(d, "tool")}


def _frame_egress(d: Draw, h: float) -> dict[str, Any]:
    return {"cgnat": cgnat(d, (400, 1500)), "campaign_framing": campaign_framing(d, "egress")}


def _frame_campus(d: Draw, h: float) -> dict[str, Any]:
    return {"campus_lab": campus_lab(d, (300, 1200), h),
            "campaign_framing": campaign_framing(d, "campus")}


def _frame_card(d: Draw, h: float) -> dict[str, Any]:
    return {"reseller": reseller(d, (150, 600)), "campaign_framing": campaign_framing(d, "card")}


def _hackathon(d: Draw, h: float) -> dict[str, Any]:
    return {"hackathon": hackathon(d, (100, 600), h), "campaign_hydra": hydra(d, (50, 200))}


def _support(d: Draw, h: float) -> dict[str, Any]:
    return {"enterprise": enterprise(d, (2, 4)), "support_desk": support_desk(d, (20, 80)),
            "campaign_mimic": campaign_mimic(d, (20, 120))}


def _sleeper(d: Draw, h: float) -> dict[str, Any]:
    return {"launch_wave": launch_wave(d, (300, 1200), h), "researchers": researchers(d, (4, 16)),
            "campaign_sleeper": campaign_sleeper(d, (20, 100), h)}


def _frame_class(d: Draw, h: float) -> dict[str, Any]:
    return {"classroom": classroom(d, (200, 900), h),
            "campaign_framing": campaign_framing(d, "classroom")}


def _frame_fleet(d: Draw, h: float) -> dict[str, Any]:
    return {"agent_fleet": agent_fleet(d, (10, 60)),
            "campaign_framing": campaign_framing(d, "fleet")}


def _exam_day(d: Draw, h: float) -> dict[str, Any]:
    return {"certification_exam": certification_exam(d, (300, 1500), h),
            "campaign_exam": campaign_exam(d, (10, 40))}


def _viral(d: Draw, h: float) -> dict[str, Any]:
    return {"viral_prompt": viral_prompt(d, (500, 3000), h),
            "campaign_viral": campaign_viral(d, (15, 60))}


def _bootcamp(d: Draw, h: float) -> dict[str, Any]:
    return {"bootcamp": bootcamp(d, (150, 700), h), "campaign_stealth": stealth(d, (30, 100))}


def _mooc_deadline(d: Draw, h: float) -> dict[str, Any]:
    return {"mooc": mooc(d, (1000, 4000), h), "campaign_hydra": hydra(d, (50, 180))}


def _seat_farm(d: Draw, h: float) -> dict[str, Any]:
    return {"team_card": department_rollout(d, (2, 5)), "support_desk": support_desk(d, (20, 80)),
            "reseller": reseller(d, (60, 250)), "campaign_seats": campaign_seats(d, (20, 150), h)}


def _app_backend(d: Draw, h: float) -> dict[str, Any]:
    return {"app_backend": app_backend(d, (3, 15)),
            "campaign_appkeys": campaign_appkeys(d, (2, 8), h)}


def _eval_harness(d: Draw, h: float) -> dict[str, Any]:
    return {"eval_runs": eval_runs(d, (10, 36)),
            "campaign_evalmimic": campaign_evalmimic(d, (4, 14), h)}


FAMILIES: dict[str, Family] = {f.name: f for f in (
    _family("mixed", "the default scenario's nine populations (ordinary, enterprise, nat, "
            "launch wave, researchers; burst, hydra, cot, stealth), every knob drawn",
            (5.0, 7.0), (1200, 2200), _mixed),
    _family("launch", "one or two launch waves of new sign-ups on a shared tutorial; hydra "
            "rotating through the same residential ISPs", (4.0, 8.0), (1200, 2500), _launch),
    _family("campus", "students behind campus NAT pools with synchronised lab sessions; a "
            "stealth campaign imitating ordinary users", (5.0, 8.0), (1200, 2500), _campus),
    _family("classroom", "online courses and workshops sending the same exercises together; "
            "a chain-of-thought campaign in lockstep", (4.5, 7.0), (1500, 2500), _classroom),
    _family("teams", "company teams on one card, a reseller's customers on its card, CI and "
            "agent fleets; a burst campaign on 1-3 shared cards", (5.0, 8.0), (1000, 2000),
            _teams),
    _family("oss", "users of an open-source coding tool (its system prompt, user agent and "
            "scaffold prompts); hydra on residential proxies", (5.0, 8.0), (1000, 2000), _oss),
    _family("egress", "users behind a carrier CGNAT or notebook egress, enterprise orgs; a "
            "burst campaign on datacenter proxies", (5.0, 8.0), (1000, 2000), _egress),
    _family("aged", "bought aged accounts rotating residential exits and clients; university "
            "labs running benchmarks, enterprise orgs", (5.0, 8.0), (1200, 2500), _aged),
    _family("slow", "a low-and-slow campaign over the whole run and one that pauses longer "
            "than a block and returns, at a smaller scale", (12.0, 14.0), (700, 1200), _slow),
    _family("decoy", "a campaign camouflaged with benign-looking requests and decoy templates; "
            "a launch wave", (5.0, 8.0), (1200, 2500), _decoy),
    _family("frame_tutorial", "a launch wave; 3-15 harvesting sign-ups replaying its tutorial",
            (4.0, 8.0), (1500, 2500), _frame_tutorial),
    _family("frame_tool", "an open-source tool's users; 3-15 harvesting accounts sending its "
            "system prompt and user agent", (5.0, 8.0), (1200, 2500), _frame_tool),
    _family("frame_egress", "users behind a CGNAT or notebook egress; 3-15 harvesting accounts "
            "on its /24s", (5.0, 8.0), (1400, 2200), _frame_egress),
    _family("frame_campus", "students behind campus NATs; 3-15 harvesting accounts behind the "
            "first campus's NAT pool", (5.0, 8.0), (1200, 2500), _frame_campus),
    _family("frame_card", "a reseller's customers; 3-15 harvesting accounts on its card",
            (5.0, 8.0), (1500, 2500), _frame_card),
    _family("hackathon", "a hackathon: teams of same-day accounts behind the venue's NAT for "
            "the day, then from home, starter prompts first; hydra on residential proxies",
            (9.0, 14.0), (600, 1100), _hackathon),
    _family("support", "a support desk pasting canned replies, enterprise orgs; harvesters with "
            "unique prompts sharing a cloud range and a client", (5.0, 8.0), (1500, 2600),
            _support),
    _family("sleeper", "accounts that use the API like people for hours, then harvest; a "
            "launch wave, university labs", (6.0, 10.0), (1100, 1900), _sleeper),
    _family("frame_class", "online courses; 3-15 harvesting accounts replaying the first "
            "course's exercises", (4.5, 7.0), (1800, 3000), _frame_class),
    _family("frame_fleet", "CI and agent fleets; 3-15 harvesting accounts sending the first "
            "fleet's system prompt and user agent", (5.0, 8.0), (1500, 2500), _frame_fleet),
    _family("exam_day", "a proctored online certification exam: candidates worldwide, many on "
            "new accounts, the same questions at the same time; a lab's young accounts sitting "
            "it and harvesting its questions for hours after", (4.5, 7.0), (1500, 3000),
            _exam_day),
    _family("viral_prompt", "a prompt gone viral on social media: hundreds to thousands of "
            "accounts, many opened that day, on phones and home ISPs, send it within hours; a "
            "lab's accounts riding the wave, then harvesting reasoning for hours", (6.0, 9.0),
            (1000, 2000), _viral),
    _family("bootcamp", "a coding bootcamp's day: a cohort mostly on accounts opened for it "
            "works through exercises with reasoning, session after session from morning to "
            "evening; a stealth campaign on prompt templates", (9.0, 10.5), (1000, 2000),
            _bootcamp),
    _family("mooc_deadline", "a MOOC's homework deadline: thousands of learners worldwide, "
            "many on accounts opened that week, send the same assignment's problems with "
            "reasoning from home ISPs, mobile carriers and the course notebook, rising to the "
            "deadline; hydra on residential proxies", (6.0, 9.0), (700, 1400), _mooc_deadline),
    _family("seat_farm", "a lab's seats bought in shell orgs (one org and card each, young "
            "seats at a person's pace, template families with heavy noise, reasoning); "
            "departments rolling out an internal assistant, a support desk, a reseller's "
            "customers", (7.0, 10.0), (800, 1600), _seat_farm),
    _family("eval_harness", "companies and research groups evaluating models: public "
            "benchmarks' items at a machine's pace from CI jobs and notebooks in the cloud, "
            "one open-source harness's system prompt, several accounts per org on one card; a "
            "lab's harvest dressed as eval runs, run after run for hours", (6.0, 9.0),
            (700, 1400), _eval_harness),
    _family("app_backend", "honest API resellers: apps built on the API sending their end "
            "users' requests through a few established service accounts of one org and card, "
            "the app's system prompts and templates, from its cloud with a server SDK, all "
            "day on its users' curve; a lab harvesting through a few apps' stolen keys from its "
            "own egress, beside a few aged accounts of its own, for hours", (7.0, 10.0),
            (600, 1200), _app_backend),
)}


def family_scenario(name: str, seed: int, scale: float = 1.0) -> Scenario:
    """`FAMILIES[name].scenario(seed, scale)`, with a clear error for an unknown name."""
    if name not in FAMILIES:
        raise ValueError(f"unknown family {name!r}; families: {', '.join(FAMILIES)}")
    return FAMILIES[name].scenario(seed, scale)


def describe(family: Family) -> str:
    """One line for a listing: name, description, populations."""
    return f"{family.name:<15} {family.description}\n{'':<15} populations: " + \
        ", ".join(family.populations)
