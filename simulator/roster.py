"""Every population the simulator knows, in build order, and which of them a scenario holds.

A population is in a scenario when its knob dataclass (the `Scenario` field named like its
group) has a non-zero `size`. The default and small scenarios hold the original nine; the
others appear in the scenario families (`families.py`).

>>> scenario_groups(Scenario.small()) == GROUPS[:9]
True
"""

from __future__ import annotations

from .adversaries import (
    AgedAccounts,
    AppKeyCampaign,
    DecoyCampaign,
    EvalMimicCampaign,
    ExamCampaign,
    FramingCampaign,
    MimicCampaign,
    ReturningCampaign,
    SeatCampaign,
    SleeperCampaign,
    SlowCampaign,
    ViralCampaign,
)
from .crowds import (
    AgentFleetRunners,
    AppBackendUsers,
    BootcampCohort,
    CampusLabStudents,
    CgnatUsers,
    ClassroomAttendees,
    EvalRunners,
    ExamCandidates,
    HackathonTeams,
    MoocLearners,
    OssToolUsers,
    ResellerCustomers,
    SupportAgents,
    TeamMembers,
    ViralPromptSenders,
)
from .populations import (
    Account,
    Burst,
    Cot,
    Enterprise,
    Hydra,
    LaunchWaveUsers,
    Nat,
    Ordinary,
    Population,
    ResearchLabs,
    Stealth,
)
from .scenario import Scenario
from .seeding import IdMint

# Build order: new populations come after the original nine, so adding them cannot change the
# ids (drawn through one shared IdMint) of the default scenario.
POPULATIONS: tuple[type[Population], ...] = (
    Ordinary, Enterprise, Nat, LaunchWaveUsers, ResearchLabs, Burst, Hydra, Cot, Stealth,
    ClassroomAttendees, CampusLabStudents, TeamMembers, ResellerCustomers, AgentFleetRunners,
    OssToolUsers, CgnatUsers,
    AgedAccounts, SlowCampaign, ReturningCampaign, FramingCampaign, DecoyCampaign,
    # the held-out families' populations (appended: the ids of the ones above stay)
    HackathonTeams, SupportAgents, MimicCampaign, SleeperCampaign,
    ExamCandidates, ExamCampaign, ViralPromptSenders, ViralCampaign,
    BootcampCohort,
    # the families that replaced bootcamp and frame_fleet in the held-out set (2026-12-06)
    MoocLearners, SeatCampaign,
    # the family that replaced mooc_deadline in the held-out set
    EvalRunners, EvalMimicCampaign,
    # the family that replaced eval_harness in the held-out set
    AppBackendUsers, AppKeyCampaign,
)
GROUPS: tuple[str, ...] = tuple(p.group for p in POPULATIONS)
LABELS: dict[str, str] = {p.group: p.label for p in POPULATIONS}


def scenario_groups(sc: Scenario) -> tuple[str, ...]:
    """The groups a scenario holds (non-zero size), in `GROUPS` order."""
    return tuple(g for g in GROUPS if getattr(sc, g).size > 0)


def build_accounts(sc: Scenario) -> list[Account]:
    """Every account of the scenario with its request times, ordered by (random) account_id:
    group-neutral, and a tie-break for equal timestamps that does not depend on other accounts,
    so campaign knobs leave the benign part of the stream unchanged. A borrowed account (a
    campaign sending on another population's account, `Account.borrowed`) sorts after its
    owner."""
    mint = IdMint()
    accounts: list[Account] = []
    held = set(scenario_groups(sc))
    for cls in POPULATIONS:
        if cls.group in held:
            accounts.extend(a for a in cls(sc, mint).build() if a.times)
    accounts.sort(key=lambda a: (a.account_id, a.borrowed))
    return accounts
