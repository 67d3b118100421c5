"""What to simulate: one frozen `Scenario` with one knob dataclass per population.

Every count of accounts below is the count at `scale=1.0`; the scenario's `scale` multiplies it
(and never rounds a population away: a population with a non-zero count keeps at least one
account). Rates are per account and are not scaled, so events grow with `scale` too.
Times are hours from `start_ts` unless the name says otherwise. See docs/simulator.md for who
each population stands for. The populations added for the scenario families (`families.py`)
count 0 accounts by default, so `Scenario()` holds the original nine; every knob dataclass says
its count as `size`.

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

    @property
    def size(self) -> int:
        return self.accounts


@dataclass(frozen=True)
class EnterpriseOrgs:
    """Organisations with several accounts, one payment instrument, steady templated batches."""

    orgs: int = 5
    min_accounts_per_org: int = 6
    max_accounts_per_org: int = 10
    requests_per_min: float = 4.0  # per account, steady all day
    templates_per_org: int = 5
    max_bit_flips: int = 3

    @property
    def size(self) -> int:
        return self.orgs


@dataclass(frozen=True)
class NatCampus:
    """Hundreds of students and staff behind one campus NAT address."""

    users: int = 300
    mean_requests_per_6h: float = 14.0
    volume_sigma: float = 1.1
    new_account_share: float = 0.4  # accounts opened this term
    homework_share: float = 0.15  # users who paste the same assignment question

    @property
    def size(self) -> int:
        return self.users


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
    # The quickstart's pages: two language tracks; a user's k-th tutorial request is page
    # (track + 2k) mod tutorial_templates, so 2 means one prompt per language.
    tutorial_templates: int = 2
    tutorial_categories: tuple[str, ...] = ("writing", "chat")  # drawn uniformly per request
    tutorial_reasoning_share: float = 0.0
    tutorial_system_prompt_share: float = 0.5  # requests carrying the docs' example system prompt
    latest_sdk_share: float = 0.6  # sign-ups running the SDK version released with the launch
    launches: int = 1  # launch waves (a launch, then e.g. a viral post), each a share of sign-ups
    launch_spacing_h: float = 2.0  # between launch waves

    @property
    def size(self) -> int:
        return self.accounts


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

    @property
    def size(self) -> int:
        return self.accounts


# Benign crowds that share a key honestly. Their account counts default to 0: the default and
# small scenarios do not contain them; the scenario families (simulator/families.py) do.


@dataclass(frozen=True)
class Classroom:
    """Online courses or conference workshops: attendees worldwide send the same exercises in
    one or two synchronised sessions, and use the API ordinarily otherwise."""

    accounts: int = 0
    classes: int = 1  # independent courses; attendees are split among them
    sessions: int = 1  # synchronised sessions per class
    first_session_h: float = 1.0  # start of a class's first session (classes are staggered)
    session_gap_h: float = 2.5  # between a class's session starts
    min_session_min: float = 30.0
    max_session_min: float = 90.0
    attendance: float = 0.85  # chance an attendee joins a given session
    max_join_delay_min: float = 10.0  # attendees drop in up to this late
    new_account_share: float = 0.4  # signed up for the course, days to minutes before
    exercises: int = 4  # exercise prompts per session, worked through in order
    exercise_categories: tuple[str, ...] = ("coding", "math", "reasoning")
    min_exercise_requests: int = 2  # per attendee and session (retries are near-duplicates)
    max_exercise_requests: int = 8
    exercise_reasoning_share: float = 0.3
    course_system_prompt_share: float = 0.5  # exercise requests with the notebook's system prompt
    max_bit_flips: int = 4
    mean_other_requests_per_6h: float = 8.0  # ordinary use outside the exercises

    @property
    def size(self) -> int:
        return self.accounts


@dataclass(frozen=True)
class CampusLab:
    """Students behind a campus NAT (a few addresses) with a synchronised lab session."""

    students: int = 0
    campuses: int = 1  # each its own university, NAT pool, course and lab time
    nat_ips: int = 3  # public addresses of a campus's NAT pool (in one /24)
    new_account_share: float = 0.35  # accounts opened this term
    null_payment_share: float = 0.3
    lab_h: float = 1.5  # start of the first campus's lab session (later campuses follow)
    lab_min: float = 90.0
    lab_share: float = 0.7  # students attending the lab
    course_templates: int = 5
    lab_template_share: float = 0.5  # of a student's lab requests; the rest is ordinary
    min_lab_requests: int = 6
    max_lab_requests: int = 20
    lab_reasoning_share: float = 0.6
    max_bit_flips: int = 4
    mean_requests_per_6h: float = 14.0  # ordinary use over the run
    volume_sigma: float = 1.1

    @property
    def size(self) -> int:
        return self.students


@dataclass(frozen=True)
class TeamCard:
    """Company teams: a few to ~30 accounts per org on the org's one card, varied ordinary use."""

    orgs: int = 0
    min_accounts_per_org: int = 3
    max_accounts_per_org: int = 30  # team sizes are log-uniform in between
    recent_share: float = 0.2  # accounts added to their team in the last month
    office_share: float = 0.5  # orgs whose staff work behind an office NAT (else from home)
    internal_tool_share: float = 0.3  # orgs with an internal tool's system prompt
    mean_requests_per_6h: float = 40.0
    volume_sigma: float = 1.2

    @property
    def size(self) -> int:
        return self.orgs


@dataclass(frozen=True)
class Reseller:
    """A reseller's card funding many customers' accounts: distinct orgs, mostly young accounts,
    each customer on their own home connection in the countries the reseller sells to."""

    accounts: int = 0
    resellers: int = 1  # each its own card and markets; accounts are split among them
    countries: int = 3  # markets per reseller
    young_share: float = 0.7  # accounts provisioned 1-45 days ago (the rest: up to 2 years)
    mean_requests_per_6h: float = 25.0
    volume_sigma: float = 1.2

    @property
    def size(self) -> int:
        return self.accounts


@dataclass(frozen=True)
class AgentFleet:
    """CI and agent fleets: established accounts of one or a few orgs sending templated
    coding/tool-use jobs with one fixed system prompt around the clock from cloud runners."""

    accounts: int = 0
    orgs: int = 1
    templates: int = 4  # per org: the fleet's job prompts
    max_bit_flips: int = 3
    requests_per_min: float = 1.0  # per account, averaged over the day
    rate_spread: float = 0.3  # +-fraction per account
    min_job_requests: int = 3  # a job is a short agent loop of requests seconds apart
    max_job_requests: int = 12
    working_hours_amp: float = 0.3  # how much more CI runs during the org's working day
    min_account_age_days: float = 90.0
    max_account_age_days: float = 1500.0

    @property
    def size(self) -> int:
        return self.accounts


@dataclass(frozen=True)
class OssTool:
    """Users of a popular open-source coding tool: ordinary individuals whose requests carry the
    tool's default system prompt and user agent, and now and then its fixed scaffold prompts."""

    accounts: int = 0
    tool: str = "aider"  # a key of simulator.network.OSS_TOOLS
    versions: int = 3  # releases in use; the newest is the most common
    new_account_share: float = 0.25
    default_system_prompt_share: float = 0.9  # users who keep the tool's default system prompt
    scaffold_templates: int = 4  # the tool's own prompts (commit messages, summaries, repo map)
    scaffold_share: float = 0.15  # of requests
    max_bit_flips: int = 3
    mean_requests_per_6h: float = 60.0
    volume_sigma: float = 1.1
    mean_session_requests: float = 12.0  # coding sessions are long agent loops
    median_gap_s: float = 25.0

    @property
    def size(self) -> int:
        return self.accounts


@dataclass(frozen=True)
class Cgnat:
    """Ordinary users behind a mobile carrier's CGNAT or a hosted-notebook service's egress:
    very many users on a few /24s of one ASN."""

    accounts: int = 0
    egress: str = "mobile"  # "mobile" (one carrier's CGNAT) or "notebook" (cloud egress)
    prefixes: int = 2  # the /24s everybody's traffic leaves from
    new_account_share: float = 0.3
    address_change_share: float = 0.3  # requests mapped to another pool address than the last
    mean_requests_per_6h: float = 20.0
    volume_sigma: float = 1.2

    @property
    def size(self) -> int:
        return self.accounts

@dataclass(frozen=True)
class Hackathon:
    """A hackathon or bootcamp weekend: mostly brand-new accounts in small teams, all behind the
    venue's few NAT addresses for the day (then from home), the organisers' starter prompts and
    system prompt in the first hours, then varied coding in bursts per team."""

    accounts: int = 0
    venue: str = "conference"  # "campus" (a university's network) or "conference" (a venue's line)
    venue_ips: int = 3  # public addresses of the venue's NAT (in one /24 of one ASN)
    kickoff_h: float = 1.0  # when the event opens (local daytime: the venue's country follows)
    venue_h: float = 8.0  # hours at the venue from the kickoff; then everybody works from home
    new_account_share: float = 0.75  # created the same day, for the event
    min_team_size: int = 2
    max_team_size: int = 5
    team_card_share: float = 0.25  # teams on one member's card and org
    null_payment_share: float = 0.4  # of the others: sponsor credits, no card
    starter_templates: int = 3  # the starter kit's boilerplate prompts, worked through in order
    starter_h: float = 2.0  # the starter prompts come within this long of the kickoff
    min_starter_requests: int = 1  # per participant
    max_starter_requests: int = 4
    kit_system_prompt_share: float = 0.5  # teams whose app keeps the starter kit's system prompt
    kit_sdk_share: float = 0.5  # participants on the SDK version the kit pins
    max_bit_flips: int = 4
    bursts_per_h: float = 1.0  # a team's work bursts at the venue (mean gap between them: 1/x h)
    min_burst_min: float = 10.0
    max_burst_min: float = 40.0
    burst_gap_s: float = 60.0  # median gap between a participant's requests in a burst
    app_template_share: float = 0.1  # burst requests that are the team's app prompt (after the starter)
    mean_home_requests_per_6h: float = 25.0  # ordinary use from home, before and after the venue

    @property
    def size(self) -> int:
        return self.accounts


@dataclass(frozen=True)
class SupportDesk:
    """A company's customer-support agents: one org and card, established accounts, office
    egress /24s, a few canned reply templates pasted all day at a steady rate per shift."""

    accounts: int = 0
    offices: int = 1  # each an office /24 in its own country, with its own clock
    egress_ips: int = 3  # addresses of an office's egress /24
    shifts: int = 2  # shifts per office day: 1 (08-17), 2 (06-14, 14-22) or 3 (also 22-06)
    templates: int = 6  # canned replies the agents paste with the customer's details
    template_share: float = 0.5  # of requests
    max_bit_flips: int = 5
    requests_per_h: float = 15.0  # per agent on shift (+-40% per agent)
    system_prompt_share: float = 0.9  # requests through the support tool's system prompt
    recent_share: float = 0.15  # agents hired in the last month
    large_share: float = 0.4  # requests on the large model (pinned, no switch to a new one)

    @property
    def size(self) -> int:
        return self.accounts


@dataclass(frozen=True)
class CertificationExam:
    """A proctored online certification exam: candidates worldwide (no shared address), many on
    accounts opened for it, all starting within minutes of the opening and working through the
    same exam questions (near-duplicates, retried now and then) with reasoning often requested,
    many through the exam provider's SDK; before and after, light ordinary use."""

    accounts: int = 0
    exam_h: float = 1.0  # when the exam opens (kept inside the run)
    exam_min: float = 90.0  # how long it lasts
    max_start_delay_min: float = 4.0  # candidates start within this long of the opening
    new_account_share: float = 0.5  # opened for the exam, days to minutes before it
    null_payment_share: float = 0.3
    questions: int = 10  # the exam's questions, the same for every candidate, in order
    question_categories: tuple[str, ...] = ("coding", "reasoning")
    min_question_requests: int = 1  # per question attempted (retries are near-duplicates)
    max_question_requests: int = 3
    reasoning_share: float = 0.5  # of exam requests
    vendor_sdk_share: float = 0.6  # candidates sitting it through the provider's SDK client
    vendor_system_prompt_share: float = 0.3  # candidates whose harness sends its system prompt
    max_bit_flips: int = 4
    mean_other_requests_per_6h: float = 6.0  # ordinary use outside the exam

    @property
    def size(self) -> int:
        return self.accounts


@dataclass(frozen=True)
class ViralPrompt:
    """A prompt gone viral on social media ("explain step by step how ..., show your
    reasoning"): within minutes to hours hundreds to thousands of accounts send it, each with
    its own small edits, a large share of them opened that day to try it, many from mobile
    carriers' CGNAT pools and big home ISPs, from browsers and apps; arrivals spike, then decay.
    Each sends it a few times (some ask follow-ups), then a few ordinary requests or nothing;
    established accounts among them keep their ordinary use."""

    accounts: int = 0
    spike_h: float = 1.0  # when the post takes off (hours from the start)
    rise_min: float = 10.0  # arrivals ramp up over this long ...
    half_life_min: float = 45.0  # ... then decay with this half-life
    new_account_share: float = 0.5  # accounts opened that day to try it
    null_payment_share: float = 0.4  # of the new accounts (established ones: 15%)
    mobile_share: float = 0.4  # accounts on a mobile carrier's CGNAT pool (else a home ISP)
    cgnat_prefixes: int = 3  # /24s in each carrier's pool
    app_share: float = 0.4  # of the clients it is tried from: apps (else browsers)
    variants: int = 2  # versions of the prompt going round (3-6 bits apart)
    category: str = "reasoning"  # what the prompt is classified as
    max_bit_flips: int = 4  # personal edits (template noise)
    min_viral_requests: int = 1  # sends of the prompt per account
    max_viral_requests: int = 4
    reasoning_share: float = 0.7  # of the viral sends ("show your reasoning")
    followup_share: float = 0.3  # accounts asking 1-3 follow-ups of their own, with reasoning
    stay_share: float = 0.4  # new accounts going on with 1-6 ordinary requests (else nothing)
    mean_other_requests_per_6h: float = 20.0  # established accounts' ordinary use

    @property
    def size(self) -> int:
        return self.accounts


@dataclass(frozen=True)
class MoocDeadline:
    """A MOOC's homework deadline: thousands of learners worldwide (many on accounts opened that
    week for the course's free credits) work through the same assignment's problems, reasoning
    asked for, from home on big ISPs and mobile carriers or from the course's hosted notebook;
    most start in the last hours before the deadline (arrivals rise towards it), a few run past
    it into the grace period; then ordinary use, or nothing."""

    accounts: int = 0
    courses: int = 1  # each its own assignment and deadline (later courses: later deadlines)
    deadline_h: float = 5.0  # the first course's deadline (kept an hour or more inside the run)
    deadline_spacing_h: float = 1.0  # between the courses' deadlines
    rush_h: float = 3.0  # mean lead: a learner starts Exp(rush_h) hours before the deadline
    mean_work_min: float = 60.0  # how long a learner works on it (lognormal, sigma 0.5)
    late_share: float = 0.08  # learners still at it at the deadline: they run into the grace
    grace_min: float = 30.0  # ... period, then stop
    new_account_share: float = 0.5  # opened that week for the course (a minute to 7 days before)
    null_payment_share: float = 0.6  # of the new accounts: the course's credits, no card
    mobile_share: float = 0.2  # learners on a mobile carrier's CGNAT (else their home ISP)
    cgnat_prefixes: int = 3  # /24s of each carrier's pool
    notebook_share: float = 0.25  # learners working in the course's hosted notebook
    problems: int = 6  # the assignment's problems, the same for every learner, in order
    problem_categories: tuple[str, ...] = ("coding", "math", "reasoning")
    min_problem_requests: int = 1  # per problem attempted (retries are near-duplicates)
    max_problem_requests: int = 4
    reasoning_share: float = 0.5  # of assignment requests
    max_bit_flips: int = 5  # each learner's own code and wording in the prompt
    stay_share: float = 0.4  # new accounts sending 1-6 ordinary requests after their work
    mean_other_requests_per_6h: float = 12.0  # established accounts' ordinary use

    @property
    def size(self) -> int:
        return self.accounts


@dataclass(frozen=True)
class EvalRuns:
    """Companies and research groups running model evaluations and batch jobs through the API:
    a few public benchmarks' prompts (the same items every customer sends, since the benchmarks
    are public), sent by a CI job or a notebook at a machine's pace with bounded concurrency,
    from cloud egress with a pinned SDK and an open-source eval harness's default system prompt;
    runs of ten minutes to hours, some nightly; several accounts per org on its one card,
    beside the members' ordinary use."""

    orgs: int = 0
    min_accounts_per_org: int = 2
    max_accounts_per_org: int = 6
    service_share: float = 0.5  # of an org's accounts: service accounts (CI); at least one
    project_account_share: float = 0.2  # service accounts created for the project (1-30 days)
    harnesses: int = 2  # open-source eval harnesses in use (the first the most popular)
    default_system_prompt_share: float = 0.8  # orgs that keep their harness's default prompt
    benchmarks: int = 6  # public benchmarks in use (of crowds.PUBLIC_BENCHMARKS)
    max_suite: int = 4  # benchmarks in an org's suite (1..this)
    min_run_items: int = 200  # items of one run, over its suite (log-uniform)
    max_run_items: int = 2000
    min_requests_per_min: float = 5.0  # an org's pace (log-uniform; +-30% per run)
    max_requests_per_min: float = 60.0
    max_concurrency: int = 16  # a run's worker pool: its first requests go out together
    nightly_share: float = 0.4  # orgs with a nightly CI eval (a cron at night, org time)
    ci_runs_per_day: float = 2.0  # on-demand CI runs per service account in a working day
    notebook_runs_per_day: float = 1.0  # runs a member starts from a notebook per working day
    hosted_ci_share: float = 0.4  # orgs whose CI runs on hosted runners (a shared cloud pool)
    thinking_share: float = 0.4  # runs with extended thinking on every request
    samples_share: float = 0.1  # runs sampling every item several times (pass@k)
    batch_share: float = 0.2  # CI runs that are a batch job over the org's own templates
    retry_share: float = 0.02  # requests sent again after a 429 or 5xx (backoff)
    max_bit_flips: int = 2  # the harness's formatting of an item (version, chat template)
    release_run_share: float = 0.5  # orgs that benchmark a model released during the run
    mean_other_requests_per_6h: float = 20.0  # members' ordinary use

    @property
    def size(self) -> int:
        return self.orgs


@dataclass(frozen=True)
class AppBackend:
    """Honest API resellers: customer-facing apps (a tutoring app, a coding assistant, a writing
    tool, ...) built on the API, each sending its end users' requests through a few backend
    service accounts of one established org on one card: the app's system prompts and prompt
    templates wrapping the user's input, from the app's cloud egress with a server SDK, all day
    on the end users' diurnal curve; beside the org's developers' ordinary use."""

    orgs: int = 0  # apps, each one org
    min_service_accounts: int = 1  # backend service accounts per app (prod, staging, workers)
    max_service_accounts: int = 4
    min_developers: int = 1  # the org's developers, who use the API as people do
    max_developers: int = 8
    total_peak_rpm: float = 150.0  # all apps' requests a minute at their peaks, at scale 1
    popularity_exponent: float = 1.0  # the k-th app gets a share ~ 1 / k ** this
    min_trough_share: float = 0.05  # the night's rate against the peak's (per app, uniform)
    max_trough_share: float = 0.35
    global_share: float = 0.2  # apps whose users are in two regions (a flatter day)
    min_session_requests: float = 1.5  # an end user's requests in a visit (mean, per app)
    max_session_requests: float = 6.0
    median_think_s: float = 45.0  # between two requests of one visit
    template_share: float = 0.8  # requests wrapped in one of the app's templates (else free)
    min_template_bits: int = 2  # a templated prompt's distance from its template: user input
    max_template_bits: int = 10
    min_account_age_days: float = 90.0  # the apps' orgs (log-uniform)
    max_account_age_days: float = 1500.0
    deploy_share: float = 0.3  # apps that deploy a new system-prompt version during the run
    dev_test_share: float = 0.3  # of a developer's requests: trying the app's own prompts
    mean_other_requests_per_6h: float = 25.0  # a developer's ordinary use

    @property
    def size(self) -> int:
        return self.orgs


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
    user_agents: int = 2
    system_prompts: int = 3  # agent harnesses' system prompts shared across accounts

    @property
    def size(self) -> int:
        return self.accounts


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
    ua_rotation_share: float = 0.0  # requests sent with a freshly drawn client user agent
    min_account_age_min: float = 1.0  # accounts are created this long before their first
    max_account_age_min: float = 60.0  # request (or before the run, for the first slots)

    @property
    def size(self) -> int:
        return self.concurrent_accounts


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
    creation_wave_days: tuple[float, float] = (14.0, 7.0)  # accounts made in two waves before

    @property
    def size(self) -> int:
        return self.accounts


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

    @property
    def size(self) -> int:
        return self.accounts


# Campaigns of the scenario families (account counts default to 0, like the crowds above).


@dataclass(frozen=True)
class CampaignAged:
    """Bought or aged accounts, each on its own card (or none), rotating residential/mobile
    exits and client user agents, sharing a few prompt-template families."""

    accounts: int = 0
    start_h: float = 0.5
    min_account_age_days: float = 90.0
    max_account_age_days: float = 1400.0
    null_payment_share: float = 0.3
    ip_rotation_share: float = 0.8  # requests from a fresh residential or mobile exit
    ua_rotation_share: float = 0.5  # requests with a freshly drawn client user agent
    template_families: int = 3  # each a base prompt with many variants 3-7 bits away
    family_variants: int = 40
    max_bit_flips: int = 3
    reasoning_share: float = 0.85
    requests_per_h: float = 8.0  # per account, moderate
    completion_scale: float = 2.5  # long written-out answers

    @property
    def size(self) -> int:
        return self.accounts


@dataclass(frozen=True)
class CampaignSlow:
    """A low-and-slow campaign over the whole run: a few templated requests per account-hour."""

    accounts: int = 0
    requests_per_h: float = 2.0
    templates: int = 20
    max_bit_flips: int = 4
    reasoning_share: float = 0.6
    min_account_age_days: float = 7.0
    max_account_age_days: float = 200.0
    shared_payment_share: float = 0.3  # accounts on one of the campaign's few cards
    payment_fingerprints: int = 3
    ip_rotation_share: float = 0.05  # sticky residential exits, rarely changed

    @property
    def size(self) -> int:
        return self.accounts


@dataclass(frozen=True)
class CampaignReturning:
    """Works for a while, pauses longer than a block lasts, and returns with the same accounts
    and templates."""

    accounts: int = 0
    start_h: float = 0.5
    first_phase_h: float = 2.5
    pause_h: float = 7.0  # longer than a 6 h block TTL
    second_phase_h: float = 4.0  # cut at the end of the run
    requests_per_min: float = 1.0  # per account while active
    templates: int = 30
    max_bit_flips: int = 4
    reasoning_share: float = 0.5
    proxy_asns: int = 2
    proxy_prefixes: int = 4
    payment_fingerprints: int = 4
    new_ips_on_return: bool = True  # the second phase comes from fresh proxy addresses

    @property
    def size(self) -> int:
        return self.accounts


FRAMING_TARGETS = ("tutorial", "tool", "egress", "campus", "card", "classroom", "fleet")


@dataclass(frozen=True)
class CampaignFraming:
    """A handful of attacker accounts that copy a benign crowd's shared key while harvesting:
    the launch wave's tutorial prompt (`tutorial`), the oss_tool's system prompt and user agent
    (`tool`), the cgnat /24s (`egress`), the first campus_lab NAT pool (`campus`), the first
    reseller's card (`card`), the first course's exercise prompts (`classroom`), or the first
    agent fleet's system prompt and user agent (`fleet`). The copied values are the crowd's,
    whether or not the crowd is in the scenario."""

    accounts: int = 0
    copies: str = "tutorial"
    start_h: float = 1.0
    requests_per_min: float = 1.5  # per account: heavy harvesting
    templates: int = 12
    max_bit_flips: int = 4
    reasoning_share: float = 0.7
    copied_template_share: float = 0.2  # `tutorial`: harvest requests replaying the tutorial

    def __post_init__(self) -> None:
        if self.copies not in FRAMING_TARGETS:
            raise ValueError(f"campaign_framing.copies must be one of {FRAMING_TARGETS}")

    @property
    def size(self) -> int:
        return self.accounts


@dataclass(frozen=True)
class CampaignDecoy:
    """A campaign mixing benign-looking requests into its harvest and seeding decoy templates."""

    accounts: int = 0
    start_h: float = 0.5
    mean_requests_per_6h: float = 120.0  # per account, in sessions like a person's
    camouflage_share: float = 0.4  # unique prompts in low-value categories, no reasoning
    decoy_templates: int = 5  # low-value templates (translate, greet, summarise) it spreads
    decoy_template_share: float = 0.1
    templates: int = 25  # what it harvests
    max_bit_flips: int = 4
    reasoning_share: float = 0.7  # of harvest requests
    shared_payment_share: float = 0.4
    payment_fingerprints: int = 5
    min_requests_per_ip: int = 5  # a residential exit is kept this many requests, then rotated
    max_requests_per_ip: int = 20

    @property
    def size(self) -> int:
        return self.accounts


@dataclass(frozen=True)
class CampaignMimic:
    """Harvesting without templates: every prompt unique (paraphrased by another model),
    established or bought accounts each on its own card, sharing only a cloud egress range and
    one client user agent; reasoning on most requests, moderate volume per account."""

    accounts: int = 0
    start_h: float = 0.5
    min_account_age_days: float = 30.0
    max_account_age_days: float = 700.0
    egress_prefixes: int = 1  # the cloud /24s every account leaves from
    ips_per_account: int = 2  # at most; each account uses 1..this many addresses there
    requests_per_h: float = 10.0  # per account, Poisson
    rate_spread: float = 0.4  # +-fraction per account
    reasoning_share: float = 0.85
    completion_scale: float = 2.5
    system_prompt_share: float = 0.3  # accounts sending a system prompt of their own

    @property
    def size(self) -> int:
        return self.accounts


@dataclass(frozen=True)
class CampaignSleeper:
    """Accounts made weeks before that use the API like ordinary people for the first hours,
    then switch (each at its own time within a window) to harvesting a handful of templates
    with reasoning requested."""

    accounts: int = 0
    min_account_age_days: float = 14.0
    max_account_age_days: float = 60.0
    mean_requests_per_6h: float = 30.0  # asleep: ordinary use on the claimed country's clock
    switch_h: float = 2.0  # accounts switch between switch_h ...
    switch_window_h: float = 2.0  # ... and switch_h + switch_window_h
    requests_per_h: float = 15.0  # awake: harvesting, per account (Poisson, +-30%)
    templates: int = 6
    max_bit_flips: int = 4
    reasoning_share: float = 0.8  # of harvest requests
    harvest_client_share: float = 0.5  # accounts whose harvest runs from a script (SDK agent)
    new_exit_share: float = 0.3  # accounts whose harvest leaves from a datacenter address

    @property
    def size(self) -> int:
        return self.accounts


@dataclass(frozen=True)
class CampaignExam:
    """A lab's young accounts that sit the certification exam with the candidates (the same
    opening, the same questions in the same order) and keep harvesting its questions for hours
    after it ends, reasoning requested on most requests, some behind rotating residential
    proxies."""

    accounts: int = 0
    min_account_age_min: float = 10.0  # created this long before the exam opens ...
    max_account_age_days: float = 3.0  # ... to this long before (log-uniform)
    requests_per_h: float = 20.0  # per account, Poisson (+-30%), during the exam and after
    after_h: float = 3.0  # harvesting goes on this long after the exam ends (cut at the run's end)
    question_share: float = 0.8  # after the exam: requests on its questions (else own templates)
    templates: int = 8  # the lab's own follow-up templates
    max_bit_flips: int = 4
    reasoning_share: float = 0.85
    vendor_sdk_share: float = 0.5  # accounts sending the exam provider's SDK user agent
    proxy_share: float = 0.4  # accounts on rotating residential proxies (the others: one home exit)
    min_requests_per_ip: int = 2  # a proxy exit is kept this many requests ...
    max_requests_per_ip: int = 6  # ... and then rotated
    shared_payment_share: float = 0.3  # accounts on one of the lab's cards (else own card)
    payment_fingerprints: int = 2

    @property
    def size(self) -> int:
        return self.accounts


@dataclass(frozen=True)
class CampaignViral:
    """A lab's accounts riding a viral prompt's wave: each arrives with the crowd, sends the
    viral prompt a few times to blend in, then harvests reasoning-heavy answers with the lab's
    own template families for hours, at a per-account rate under any rate limit; young accounts
    or bought aged ones, some behind rotating residential proxies."""

    accounts: int = 0
    bought_aged: bool = False  # bought aged accounts (else young ones opened for the wave)
    min_account_age_days: float = 0.02  # created this long before the account's first request ...
    max_account_age_days: float = 3.0  # ... to this long before (log-uniform)
    max_viral_requests: int = 3  # the viral prompt first, 1..n times
    harvest_h: float = 4.0  # then harvesting this long (+-20% per account; cut at the run's end)
    requests_per_h: float = 15.0  # per account, Poisson (+-30%)
    template_families: int = 20  # each a base prompt with variants 3-7 bits away
    family_variants: int = 20
    max_bit_flips: int = 4
    viral_share: float = 0.05  # of the harvest requests: the viral prompt again
    reasoning_share: float = 0.85
    completion_scale: float = 2.5  # long written-out answers
    browser_share: float = 0.5  # accounts on the crowd's browser and app clients (else an SDK)
    proxy_share: float = 0.4  # accounts on rotating residential proxies (the others: one exit)
    min_requests_per_ip: int = 2  # a proxy exit is kept this many requests ...
    max_requests_per_ip: int = 6  # ... and then rotated
    shared_payment_share: float = 0.2  # accounts on one of the lab's cards (else own card)
    payment_fingerprints: int = 2

    @property
    def size(self) -> int:
        return self.accounts


@dataclass(frozen=True)
class CampaignSeats:
    """A lab that buys seats inside a legitimate-looking org (a team plan under a shell
    company): many young seats on the org's one org_id and card, each worked at a person's pace
    through the operators' shift (sessions, think times, a lunch break), reasoning on most
    requests, a few prompt-template families with heavy noise and unique follow-ups between;
    seats leave by the org's office egress or their own home-like exits in its country."""

    accounts: int = 0  # seats, split over the orgs
    orgs: int = 1  # shell orgs, each its own org_id, card, country and office
    min_org_age_days: float = 20.0  # the org was set up this long ago ...
    max_org_age_days: float = 120.0
    max_seat_age_days: float = 21.0  # ... and its seats added over the last this-many days
    shift_start_h: float = 0.5  # the operators' shift (hours from the start, cut at the end)
    shift_h: float = 8.0
    requests_per_h: float = 15.0  # per seat while working (+-40% per seat)
    median_gap_s: float = 120.0  # think time between a seat's requests in a session
    mean_session_requests: float = 15.0
    template_families: int = 3  # each a base prompt with many variants 3-7 bits away
    family_variants: int = 40
    max_bit_flips: int = 6  # heavy noise on top of the variant
    template_share: float = 0.75  # of requests; the rest unique follow-ups
    reasoning_share: float = 0.8
    completion_scale: float = 2.2
    office_share: float = 0.5  # seats on the org's office egress (else own residential exit)
    ip_rotation_share: float = 0.1  # requests of a home seat from another exit in its country
    sdk_share: float = 0.6  # seats on the lab's SDK script (else a browser or client of its own)
    system_prompt_share: float = 0.5  # seats sending the org's tool system prompt

    @property
    def size(self) -> int:
        return self.accounts


@dataclass(frozen=True)
class CampaignEvalMimic:
    """A lab that dresses its harvest as eval runs: accounts in a few shell orgs (or on their
    own), the most popular eval harness's default system prompt, a pinned SDK, cloud egress (its
    own /24s or the hosted CI runners' pool), runs of its own prompt-template families mixed with
    the public benchmarks' items at an eval's pace, back to back for many hours, reasoning on
    most requests, long answers."""

    accounts: int = 0
    orgs: int = 2  # shell orgs, each one org_id and card
    org_share: float = 0.7  # accounts in a shell org (else an org and card of its own, or none)
    min_account_age_days: float = 14.0  # log-uniform ...
    max_account_age_days: float = 400.0
    start_h: float = 0.5  # the first runs start (kept in the first half of the run)
    harvest_h: float = 8.0  # each account runs back to back this long (+-10%, cut at the end)
    min_run_items: int = 300  # items of one run (log-uniform), like an eval's
    max_run_items: int = 3000
    requests_per_min: float = 15.0  # per account while a run is on (+-20%)
    break_min: float = 5.0  # mean pause between two runs (the next job in the queue)
    max_concurrency: int = 16
    template_families: int = 8  # the lab's own: each a base prompt and many variants
    family_variants: int = 200
    max_bit_flips: int = 3
    public_share: float = 0.25  # requests that are public benchmark items
    reasoning_share: float = 0.85
    completion_scale: float = 2.5
    harness_prompt_share: float = 0.9  # accounts sending the popular harness's default prompt
    hosted_ci_share: float = 0.3  # accounts on the hosted CI runners' pool (else the lab's /24s)

    @property
    def size(self) -> int:
        return self.accounts


@dataclass(frozen=True)
class CampaignAppKeys:
    """A lab harvesting through stolen or resold API keys of a few apps' orgs (`app_backend`):
    its requests go out on the apps' own service accounts, interleaved with the apps' honest
    traffic, but from the lab's own egress (another cloud, or residential proxies) with its own
    client, system prompt and template families, reasoning on; plus a few established accounts
    of its own doing the same. Hours long."""

    accounts: int = 0  # the lab's own accounts
    stolen_keys: int = 2  # keys of the apps' service accounts it got (one per app, at most)
    min_account_age_days: float = 60.0  # its own accounts (log-uniform; bought or its own)
    max_account_age_days: float = 900.0
    start_h: float = 0.5  # kept in the first half of the run
    harvest_h: float = 5.0  # each key and account harvests this long (+-15%, cut at the end)
    requests_per_min: float = 6.0  # per key or account while it harvests (+-30%)
    proxy_share: float = 0.5  # keys/accounts on rotating residential proxies (else a cloud VM)
    min_per_exit: int = 1  # requests a proxy exit carries before it changes
    max_per_exit: int = 6
    template_families: int = 10  # the lab's own: a base prompt and variants
    family_variants: int = 60
    max_bit_flips: int = 3
    reasoning_share: float = 0.85
    completion_scale: float = 2.4
    system_prompt_share: float = 0.5  # requests with the lab's own system prompt (else none)

    @property
    def size(self) -> int:
        return self.accounts


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
    # The scenario families' populations: absent (0 accounts) unless a family sets them.
    classroom: Classroom = Classroom()
    campus_lab: CampusLab = CampusLab()
    team_card: TeamCard = TeamCard()
    reseller: Reseller = Reseller()
    agent_fleet: AgentFleet = AgentFleet()
    oss_tool: OssTool = OssTool()
    cgnat: Cgnat = Cgnat()
    campaign_aged: CampaignAged = CampaignAged()
    campaign_slow: CampaignSlow = CampaignSlow()
    campaign_returning: CampaignReturning = CampaignReturning()
    campaign_framing: CampaignFraming = CampaignFraming()
    campaign_decoy: CampaignDecoy = CampaignDecoy()
    hackathon: Hackathon = Hackathon()
    support_desk: SupportDesk = SupportDesk()
    campaign_mimic: CampaignMimic = CampaignMimic()
    campaign_sleeper: CampaignSleeper = CampaignSleeper()
    certification_exam: CertificationExam = CertificationExam()
    campaign_exam: CampaignExam = CampaignExam()
    viral_prompt: ViralPrompt = ViralPrompt()
    campaign_viral: CampaignViral = CampaignViral()
    bootcamp: Classroom = Classroom()  # a classroom whose sessions fill a day
    mooc: MoocDeadline = MoocDeadline()
    campaign_seats: CampaignSeats = CampaignSeats()
    eval_runs: EvalRuns = EvalRuns()
    campaign_evalmimic: CampaignEvalMimic = CampaignEvalMimic()
    app_backend: AppBackend = AppBackend()
    campaign_appkeys: CampaignAppKeys = CampaignAppKeys()

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
