"""What to simulate: one frozen `Scenario` with one knob dataclass per population.

Every count of accounts below is the count at `scale=1.0`; the scenario's `scale` multiplies it
(and never rounds a population away: a population with a non-zero count keeps at least one
account). Rates are per account and are not scaled, so events grow with `scale` too.
Times are hours from `start_ts` unless the name says otherwise. See docs/simulator.md for who
each population stands for.

>>> s = Scenario.small()
>>> s.duration_h, s.accounts(4000)
(1.0, 240)
>>> Scenario().campaign_start_h(1.0)
1.0
"""

from __future__ import annotations

from dataclasses import dataclass, replace

# --- benign populations -------------------------------------------------------------------


@dataclass(frozen=True)
class OrdinaryUsers:
    """Individual API users: heavy-tailed volume, daily rhythm, unique prompts."""

    accounts: int = 4000
    # Mean requests per account over 6 hours at the peak of its day; lognormal, heavy-tailed.
    mean_requests_per_6h: float = 50.0
    volume_sigma: float = 1.3
    mean_session_requests: float = 6.0
    median_gap_s: float = 40.0  # think time between requests of one session
    repeat_share: float = 0.05  # requests that resend one of the account's earlier prompts
    reasoning_share: float = 0.10
    ipv6_share: float = 0.15
    null_payment_share: float = 0.15
    common_system_prompt_share: float = 0.10  # accounts using a popular app's system prompt


@dataclass(frozen=True)
class EnterpriseOrgs:
    """Organisations with several accounts, one payment instrument, steady templated batches."""

    orgs: int = 5
    min_accounts_per_org: int = 6
    max_accounts_per_org: int = 10
    requests_per_min: float = 4.0  # per account, steady all day
    templates_per_org: int = 5
    max_bit_flips: int = 3


@dataclass(frozen=True)
class NatCampus:
    """Hundreds of students and staff behind one campus NAT address."""

    users: int = 300
    mean_requests_per_6h: float = 14.0
    volume_sigma: float = 1.1
    new_account_share: float = 0.4  # accounts opened this term
    homework_share: float = 0.15  # users who paste the same assignment question


@dataclass(frozen=True)
class LaunchWave:
    """New sign-ups after a launch, all pasting the quickstart prompt first."""

    accounts: int = 800
    launch_h: float = 1.5
    mean_signup_delay_min: float = 45.0  # exponential delay of each sign-up after the launch
    min_tutorial_requests: int = 2
    max_tutorial_requests: int = 4
    min_later_requests: int = 1
    max_later_requests: int = 12
    max_bit_flips: int = 3


@dataclass(frozen=True)
class Researchers:
    """University labs running public reasoning benchmarks."""

    accounts: int = 12
    labs: int = 3
    benchmarks: int = 4
    min_runs: int = 1
    max_runs: int = 3
    min_run_requests: int = 80
    max_run_requests: int = 250
    min_run_requests_per_min: float = 5.0
    max_run_requests_per_min: float = 12.0
    reasoning_share: float = 0.85  # of benchmark requests


# --- campaigns ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CampaignBurst:
    """MiniMax/Moonshot-like: a few hundred fast accounts on datacenter proxies, coding/tools."""

    accounts: int = 250
    start_h: float = 1.0
    requests_per_min: float = 2.0  # per account at multiplier 1; far below a 30/min limit
    proxy_asns: int = 3
    proxy_prefixes: int = 6  # IPv4 /24s spread over the proxy ASNs
    payment_fingerprints: int = 6
    creation_waves: int = 3
    templates: int = 40
    max_bit_flips: int = 4
    pivot_share: float = 0.5  # share moved to the newly released model ...
    pivot_ramp_h: float = 1.0  # ... within this long after the release


@dataclass(frozen=True)
class CampaignHydra:
    """Alibaba-like low-and-slow: churning accounts behind rotating residential proxies."""

    concurrent_accounts: int = 260  # live accounts at any time; each dead one is replaced
    start_h: float = 0.0
    min_lifetime_min: float = 30.0
    max_lifetime_min: float = 120.0
    min_requests_per_account: int = 8
    max_requests_per_account: int = 30
    on_min: float = 20.0  # the proxy's synchronised duty cycle
    off_min: float = 10.0
    templates: int = 30
    max_bit_flips: int = 4
    user_agents: int = 3
    null_payment_share: float = 0.5
    shared_payment_share: float = 0.15
    shared_payment_fingerprints: int = 4
    min_requests_per_ip: int = 3  # a residential exit is kept this many requests ...
    max_requests_per_ip: int = 6  # ... and then rotated


@dataclass(frozen=True)
class CampaignCot:
    """DeepSeek-like chain-of-thought elicitation: one prompt sequence replayed in lockstep."""

    accounts: int = 150
    start_h: float = 0.5
    round_on_min: float = 12.0  # all accounts work together ...
    round_off_min: float = 8.0  # ... and pause together
    step_s: float = 45.0  # spacing of the sequence's prompts within a round
    sequence_length: int = 60
    reasoning_share: float = 0.9
    payment_fingerprints: int = 5
    proxy_prefixes: int = 4
    round_dropout: float = 0.03  # chance an account sits out a round
    max_bit_flips: int = 3


@dataclass(frozen=True)
class CampaignStealth:
    """Imitates ordinary users but reuses shared templates and favours reasoning/coding."""

    accounts: int = 80
    mean_requests_per_6h: float = 60.0
    volume_sigma: float = 0.5
    template_share: float = 0.6
    templates: int = 25
    max_bit_flips: int = 4
    reasoning_share: float = 0.4
    active_tz_offset_h: float = 8.0  # the operators' working day, whatever the IPs claim
    min_account_age_days: float = 3.0
    max_account_age_days: float = 40.0


@dataclass(frozen=True)
class Scenario:
    """A complete, deterministic description of a simulated run."""

    seed: int = 7
    start_ts: float = 1_767_225_600.0  # 2026-01-01T00:00Z
    duration_h: float = 6.0
    scale: float = 1.0
    # A new large model is released at this hour (None: no release); campaign_burst pivots to it.
    model_release_h: float | None = 3.0

    ordinary: OrdinaryUsers = OrdinaryUsers()
    enterprise: EnterpriseOrgs = EnterpriseOrgs()
    nat: NatCampus = NatCampus()
    launch_wave: LaunchWave = LaunchWave()
    researchers: Researchers = Researchers()
    campaign_burst: CampaignBurst = CampaignBurst()
    campaign_hydra: CampaignHydra = CampaignHydra()
    campaign_cot: CampaignCot = CampaignCot()
    campaign_stealth: CampaignStealth = CampaignStealth()

    # Robustness knobs for the evaluation (campaign populations only).
    campaign_account_multiplier: float = 1.0  # same campaign volume over N x more accounts
    timing_jitter: float = 0.0  # +-fraction on campaign inter-arrival times, e.g. 0.5
    rotate_ip_per_request: bool = False  # campaign accounts use a fresh IP on every request

    def __post_init__(self) -> None:
        if self.duration_h <= 0:
            raise ValueError("duration_h must be positive")
        if self.scale <= 0:
            raise ValueError("scale must be positive")
        if self.campaign_account_multiplier <= 0:
            raise ValueError("campaign_account_multiplier must be positive")
        if not 0.0 <= self.timing_jitter < 1.0:
            raise ValueError("timing_jitter must be in [0, 1)")

    @property
    def end_ts(self) -> float:
        return self.start_ts + self.duration_h * 3600.0

    def accounts(self, base: int) -> int:
        """Scaled account count; a non-empty population keeps at least one account."""
        return 0 if base <= 0 else max(1, round(base * self.scale))

    def campaign_accounts(self, base: int) -> int:
        """Scaled count of a campaign, times the account multiplier."""
        return 0 if base <= 0 else max(1, round(base * self.scale * self.campaign_account_multiplier))

    def campaign_start_h(self, start_h: float) -> float:
        """A campaign's start, clamped to the first half of the run so it always shows up."""
        return min(max(0.0, start_h), self.duration_h * 0.5)

    @classmethod
    def default(cls) -> Scenario:
        """Six hours of traffic: ~7,100 accounts, ~395,000 events."""
        return cls()

    @classmethod
    def small(cls, seed: int = 7) -> Scenario:
        """One hour at 6% scale: a few hundred accounts, every population, for tests."""
        return cls(
            seed=seed,
            duration_h=1.0,
            scale=0.06,
            model_release_h=0.5,
            enterprise=EnterpriseOrgs(orgs=1, min_accounts_per_org=4, max_accounts_per_org=4),
            launch_wave=replace(LaunchWave(), launch_h=0.2, mean_signup_delay_min=15.0),
            researchers=replace(Researchers(), min_run_requests=30, max_run_requests=60),
            campaign_burst=replace(CampaignBurst(), start_h=0.2, pivot_ramp_h=0.25),
            campaign_cot=replace(CampaignCot(), start_h=0.1, round_on_min=8.0, round_off_min=4.0),
            campaign_hydra=replace(CampaignHydra(), min_lifetime_min=15.0, max_lifetime_min=40.0),
            # enough stealth traffic in one hour for its shared templates to show at all
            campaign_stealth=replace(CampaignStealth(), accounts=120, mean_requests_per_6h=120.0),
        )


def scenario_for(seed: int = 7, small: bool = False, scale: float | None = None,
                 duration_h: float | None = None, account_multiplier: float | None = None,
                 jitter: float | None = None, rotate_ip: bool = False) -> Scenario:
    """The default (or small) scenario with the knobs a command line exposes; None keeps one.

    >>> scenario_for(seed=3, small=True, jitter=0.5).timing_jitter
    0.5
    """
    base = Scenario.small(seed=seed) if small else Scenario(seed=seed)
    changes: dict[str, object] = {}
    if scale is not None:
        changes["scale"] = scale
    if duration_h is not None:
        changes["duration_h"] = duration_h
    if account_multiplier is not None:
        changes["campaign_account_multiplier"] = account_multiplier
    if jitter is not None:
        changes["timing_jitter"] = jitter
    if rotate_ip:
        changes["rotate_ip_per_request"] = True
    return replace(base, **changes)  # type: ignore[arg-type]
