"""Benign crowds that share a key honestly: the false positives a cluster detector must survive.

Each crowd shares one thing a campaign also shares, for an innocent reason: an exercise prompt
(`classroom`), a campus NAT pool and course templates (`campus_lab`), a company card and org
(`team_card`), a reseller's card (`reseller`), a fixed system prompt and job templates in the
cloud (`agent_fleet`), a tool's system prompt, user agent and scaffold prompts (`oss_tool`), a
carrier's or notebook service's /24s (`cgnat`), a venue's NAT, same-day accounts and a starter
kit's prompts (`hackathon`), an org's card, office /24s and canned replies (`support_desk`),
an exam's questions, opening time, young accounts and provider's client (`certification_exam`),
a viral prompt, same-day accounts, carriers' CGNAT /24s and browser clients (`viral_prompt`),
public benchmarks' items, an eval harness's system prompt, a Python SDK, cloud and hosted CI
runners' egress and a machine's pace (`eval_runs`), an app's service accounts, system prompts,
prompt templates, cloud egress and server SDK, all day (`app_backend`).
Apart from the shared key the members behave like `ordinary` users (most crowds reuse
`Ordinary.personal` and `Ordinary.personal_request`).

Keys another population may copy (`campaign_framing`, `campaign_exam`, `campaign_viral`,
`campaign_evalmimic`, and the apps' service accounts `campaign_appkeys` sends on) are drawn
in `__init__` from the population's own rng, so building the
crowd again gives the same values.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from . import network as net
from .network import Picker
from .populations import (
    DAY,
    ERR_BATCH,
    ERR_ORDINARY,
    MESSAGES,
    NEW_LARGE,
    SMALL,
    Account,
    ModelChooser,
    Ordinary,
    Population,
    category_picker,
    finalize_marked,
    finalize_times,
    hash_id,
    make_event,
    near,
    old_created,
    pick,
    session_times,
    tools_for,
)
from .scenario import Classroom, Scenario
from .seeding import IdMint, rng_for
from .simhash import perturb, random_simhash

# What individual users of a crowd do between its shared moments: Ordinary's request mix.
_OTHER = -1


def log_uniform_int(rng: random.Random, lo: int, hi: int) -> int:
    """An integer in [lo, hi], log-uniform: small teams are more common than big ones."""
    lo, hi = max(1, lo), max(1, lo, hi)
    return min(hi, int(math.exp(rng.uniform(math.log(lo), math.log(hi + 1)))))


def created_before(rng: random.Random, ts: float, min_s: float, max_s: float) -> float:
    """A creation time log-uniformly between min_s and max_s seconds before `ts`."""
    return float(round(ts - math.exp(rng.uniform(math.log(min_s), math.log(max_s)))))


def campus_tz(uni: net.Network) -> float:
    """Local time of a campus (US campuses are on the coasts, not at the US default)."""
    if uni.asn == 3:
        return -5.0
    return -8.0 if uni.country == "US" else net.TZ_OFFSET_H[uni.country]


def keep_after(timed: list[tuple[float, int]], created: float) -> list[tuple[float, int]]:
    """A new account sends nothing before it exists (and not in its first half minute)."""
    return [(t, m) for t, m in timed if t >= created + 30.0]


# --- classroom ------------------------------------------------------------------------------


@dataclass
class _Session:
    start: float
    end: float
    exercises: list[tuple[int, str]]  # (template, category), worked through in order


@dataclass
class _Course:
    sessions: list[_Session]
    system_prompt: str  # the course notebook's
    user_agent: str  # the SDK version the course pins


class ClassroomAttendees(Ordinary):
    """An online course or conference workshop: attendees worldwide (no shared address) send
    the session's exercise prompts (near-duplicates) together, and use the API ordinarily."""

    group = "classroom"

    def __init__(self, sc: Scenario, mint: IdMint) -> None:
        super().__init__(sc, mint)
        self.courses = [self._course(c) for c in range(max(1, self.course_knobs.classes))]

    @property
    def course_knobs(self) -> Classroom:
        """The scenario's knobs of this population (a bootcamp is a classroom of its own)."""
        knobs: Classroom = getattr(self.sc, self.group)
        return knobs

    def _course(self, c: int) -> _Course:
        k = self.course_knobs
        prng = self.rng
        run_h = self.sc.duration_h
        first = k.first_session_h + (prng.uniform(0.0, max(0.0, run_h * 0.5)) if c else 0.0)
        main = prng.choice(k.exercise_categories)  # the course's subject
        sessions = []
        for s in range(max(1, k.sessions)):
            length_h = prng.uniform(k.min_session_min, k.max_session_min) / 60.0
            # a session that would overrun the run starts earlier, so it is seen whole
            start_h = max(0.0, min(first + s * k.session_gap_h, run_h - length_h))
            exercises = [(random_simhash(prng),
                          main if prng.random() < 0.7 else prng.choice(k.exercise_categories))
                         for _ in range(max(1, k.exercises))]
            start = self.t0 + start_h * 3600.0
            sessions.append(_Session(start, start + length_h * 3600.0, exercises))
        return _Course(sessions, hash_id(prng), net.sdk_user_agent(prng))

    def build(self) -> list[Account]:
        k = self.course_knobs
        out = []
        for idx in range(self.sc.accounts(k.accounts)):
            a = self.new_account(idx)
            rng = a.rng
            course = self.courses[idx % len(self.courses)]
            country = net.COUNTRIES.pick(rng)
            tz = net.TZ_OFFSET_H[country]
            self.personal(a, country, self.k.ipv6_share)
            a.state.extra = course
            if rng.random() < 0.5:
                a.user_agent = course.user_agent
            a.payment_fingerprint = None if rng.random() < 0.25 else self.mint.new("pf-", rng)
            if rng.random() < k.new_account_share:  # signed up for the course: days to minutes
                a.created_ts = created_before(rng, course.sessions[0].start, 300.0, 14 * DAY)
            else:
                a.created_ts = old_created(rng, self.t0, 7, 1500)
            timed = self._exercises(rng, course)
            n = self.volume(rng, k.mean_other_requests_per_6h, 1.0, tz)
            timed += [(t, _OTHER) for t in session_times(rng, n, self.t0, self.t1, tz, 5.0, 40.0)]
            finalize_marked(a, keep_after(timed, a.created_ts), self.t0, self.t1)
            out.append(a)
        return out

    def _exercises(self, rng: random.Random, course: _Course) -> list[tuple[float, int]]:
        """An attendee's exercise requests: spread over each session attended, each on the
        exercise the class is working on at that moment; mark = session * 1000 + exercise."""
        k = self.course_knobs
        timed: list[tuple[float, int]] = []
        for s, sess in enumerate(course.sessions):
            if rng.random() >= k.attendance:
                continue
            join = sess.start + rng.uniform(0.0, k.max_join_delay_min * 60.0)
            n_ex = len(sess.exercises)
            for _ in range(rng.randint(k.min_exercise_requests, k.max_exercise_requests)):
                t = rng.uniform(min(join, sess.end - 1.0), sess.end)
                ex = min(n_ex - 1, int((t - sess.start) / (sess.end - sess.start) * n_ex))
                timed.append((t, s * 1000 + ex))
        return timed

    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        mark = a.marks[i]  # type: ignore[index]
        if mark == _OTHER:
            return self.personal_request(a, ts, a.state)
        rng = a.rng
        k = self.course_knobs
        course: _Course = a.state.extra
        template, cat = course.sessions[mark // 1000].exercises[mark % 1000]
        return make_event(
            a, ts, a.ip, a.asn, a.country, self.models.choose(rng, ts), MESSAGES, cat,
            near(template, k.max_bit_flips, rng),
            course.system_prompt if rng.random() < k.course_system_prompt_share else None,
            rng.random() < k.exercise_reasoning_share, 0, 1.0, ERR_ORDINARY,
        )


class BootcampCohort(ClassroomAttendees):
    """A coding bootcamp's day: a cohort, most of it on accounts opened for the bootcamp, works
    through the day's exercises with reasoning asked for in session after session from morning
    to evening, from home (no shared address), and uses the API ordinarily in between. By its
    own requests each member harvests known templates on a young account for longer than any
    one class lasts."""

    group = "bootcamp"


# --- campus lab -----------------------------------------------------------------------------


@dataclass
class Campus:
    """One university: its NAT pool, clock, course templates and lab session."""

    network: net.Network
    nat_ips: list[str]
    tz: float
    templates: list[tuple[int, str]]  # (template, category)
    lab_start: float
    lab_end: float


class CampusLabStudents(Ordinary):
    """Students behind a campus NAT pool; those in the lab session send the course's templates
    (coding/math, reasoning often requested) for half of their lab requests."""

    group = "campus_lab"

    def __init__(self, sc: Scenario, mint: IdMint) -> None:
        super().__init__(sc, mint)
        k = sc.campus_lab
        prng = self.rng
        n = max(1, k.campuses)
        unis = prng.sample(net.UNIVERSITY, min(n, len(net.UNIVERSITY)))
        self.campuses = [self._campus(unis[c % len(unis)], c) for c in range(n)]

    def _campus(self, uni: net.Network, c: int) -> Campus:
        k = self.sc.campus_lab
        prng = self.rng
        prefix = net.v4_prefix24(uni, prng)
        ips = sorted({net.v4_host(prefix, prng) for _ in range(max(1, k.nat_ips))})
        templates = [(random_simhash(prng), "coding" if prng.random() < 0.6 else "math")
                     for _ in range(max(1, k.course_templates))]
        length_h = k.lab_min / 60.0
        start_h = k.lab_h + (prng.uniform(0.5, 2.5) * c if c else 0.0)
        start_h = max(0.0, min(start_h, self.sc.duration_h - length_h))
        start = self.t0 + start_h * 3600.0
        return Campus(uni, ips, campus_tz(uni), templates, start, start + length_h * 3600.0)

    def build(self) -> list[Account]:
        k = self.sc.campus_lab
        out = []
        for idx in range(self.sc.accounts(k.students)):
            a = self.new_account(idx)
            rng = a.rng
            campus = self.campuses[idx % len(self.campuses)]
            uni = campus.network
            # personal() keeps a 30% chance of an off-campus (home) connection as `alt`
            self.personal(a, uni.country, 0.0)
            a.ip, a.asn, a.country = pick(campus.nat_ips, rng), uni.asn, uni.country
            a.state.extra = campus
            a.payment_fingerprint = (None if rng.random() < k.null_payment_share
                                     else self.mint.new("pf-", rng))
            if rng.random() < k.new_account_share:
                a.created_ts = old_created(rng, self.t0, 5, 120)
            else:
                a.created_ts = old_created(rng, self.t0, 120, 1500)
            n = self.volume(rng, k.mean_requests_per_6h, k.volume_sigma, campus.tz)
            timed = [(t, _OTHER) for t in
                     session_times(rng, n, self.t0, self.t1, campus.tz, 5.0, 45.0)]
            if rng.random() < k.lab_share:
                arrive = campus.lab_start + rng.uniform(0.0, 300.0)
                for _ in range(rng.randint(k.min_lab_requests, k.max_lab_requests)):
                    t = rng.uniform(min(arrive, campus.lab_end - 1.0), campus.lab_end)
                    template = (rng.randrange(len(campus.templates))
                                if rng.random() < k.lab_template_share else _OTHER)
                    timed.append((t, template))
            finalize_marked(a, timed, self.t0, self.t1)
            out.append(a)
        return out

    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        rng = a.rng
        campus: Campus = a.state.extra
        if len(campus.nat_ips) > 1 and rng.random() < 0.1:
            a.ip = pick(campus.nat_ips, rng)  # the NAT maps the next connection elsewhere
        mark = a.marks[i]  # type: ignore[index]
        if mark == _OTHER:
            return self.personal_request(a, ts, a.state)
        k = self.sc.campus_lab
        template, cat = campus.templates[mark]
        return make_event(
            a, ts, a.ip, a.asn, a.country, self.models.choose(rng, ts), MESSAGES, cat,
            near(template, k.max_bit_flips, rng), None,
            rng.random() < k.lab_reasoning_share, 0, 1.0, ERR_ORDINARY,
        )


# --- company teams on one card --------------------------------------------------------------


class TeamMembers(Ordinary):
    """Several orgs, each a team of accounts on the org's card and org_id: established members
    and recent hires, working from an office NAT or from home, with varied unique prompts."""

    group = "team_card"

    def build(self) -> list[Account]:
        k = self.sc.team_card
        prng = self.rng
        out: list[Account] = []
        for _ in range(self.sc.accounts(k.orgs)):
            country = net.COUNTRIES.pick(prng)
            org_id, card = self.mint.new("org-", prng), self.mint.new("pf-", prng)
            founded = old_created(prng, self.t0, 60, 1500)
            office = None
            if prng.random() < k.office_share:
                isp = net.isp_in(country, prng)
                prefix = net.v4_prefix24(isp, prng)
                office = (isp, [net.v4_host(prefix, prng) for _ in range(prng.randint(1, 4))])
            tool_prompt = hash_id(prng) if prng.random() < k.internal_tool_share else None
            for _ in range(log_uniform_int(prng, k.min_accounts_per_org, k.max_accounts_per_org)):
                a = self.new_account(len(out))
                self._member(a, country, org_id, card, founded, office, tool_prompt)
                out.append(a)
        return out

    def _member(self, a: Account, country: str, org_id: str, card: str, founded: float,
                office: tuple[net.Network, list[str]] | None, tool_prompt: str | None) -> None:
        k = self.sc.team_card
        rng = a.rng
        tz = net.TZ_OFFSET_H[country]
        self.personal(a, country, self.k.ipv6_share)
        a.org_id, a.payment_fingerprint = org_id, card
        if office is not None:  # at the office most of the time, from home now and then
            a.state.alt = (a.ip, a.asn, a.country)
            isp, ips = office
            a.ip, a.asn = pick(ips, rng), isp.asn
        if tool_prompt is not None:
            a.state.system_prompts = [tool_prompt, *a.state.system_prompts]
        if rng.random() < k.recent_share:
            a.created_ts = float(round(self.t0 - rng.uniform(1.0, 30.0) * DAY))
        else:
            a.created_ts = float(round(rng.uniform(founded, max(founded, self.t0 - 30 * DAY))))
        n = self.volume(rng, k.mean_requests_per_6h, k.volume_sigma, tz)
        finalize_times(a, session_times(rng, n, self.t0, self.t1, tz, 6.0, 40.0),
                       self.t0, self.t1)


# --- a reseller's customers -----------------------------------------------------------------

# Where API resellers find customers: markets the provider does not serve directly, or where
# paying abroad is hard.
_RESELLER_MARKETS: dict[str, float] = {
    "IN": 3.0, "ID": 2.0, "VN": 2.0, "NG": 2.0, "TR": 2.0, "BR": 2.0, "PH": 2.0, "MX": 1.0,
    "ZA": 1.0, "TW": 1.0, "PL": 1.0,
}


@dataclass
class ResellerAccount:
    """One reseller: the card behind all its customers' accounts, and its markets."""

    card: str
    markets: Picker


class ResellerCustomers(Ordinary):
    """Many customers' accounts on one reseller's card: distinct orgs, mostly young accounts,
    each customer on their own home connection in the reseller's markets."""

    group = "reseller"

    def __init__(self, sc: Scenario, mint: IdMint) -> None:
        super().__init__(sc, mint)
        k = sc.reseller
        prng = self.rng
        self.resellers = []
        for _ in range(max(1, k.resellers)):
            markets = prng.sample(sorted(_RESELLER_MARKETS),
                                  max(1, min(k.countries, len(_RESELLER_MARKETS))))
            self.resellers.append(ResellerAccount(
                self.mint.new("pf-", prng),
                Picker([(c, _RESELLER_MARKETS[c] * prng.uniform(0.5, 2.0)) for c in markets])))

    def build(self) -> list[Account]:
        k = self.sc.reseller
        out = []
        for idx in range(self.sc.accounts(k.accounts)):
            a = self.new_account(idx)
            rng = a.rng
            seller = self.resellers[idx % len(self.resellers)]
            country = seller.markets.pick(rng)
            tz = net.TZ_OFFSET_H[country]
            self.personal(a, country, self.k.ipv6_share)
            a.payment_fingerprint = seller.card
            if rng.random() < k.young_share:
                a.created_ts = old_created(rng, self.t0, 1, 45)
            else:
                a.created_ts = old_created(rng, self.t0, 45, 730)
            n = self.volume(rng, k.mean_requests_per_6h, k.volume_sigma, tz)
            finalize_times(a, session_times(rng, n, self.t0, self.t1, tz, 6.0, 40.0),
                           self.t0, self.t1)
            out.append(a)
        return out


# --- CI and agent fleets --------------------------------------------------------------------

_FLEET_CLIENTS = ("python-httpx/0.27.2", "anthropic-python/0.45.2 CPython/3.12.8 Linux",
                  "anthropic-typescript/0.36.3", "langchain-anthropic/0.3.3")


@dataclass
class _Fleet:
    org_id: str
    card: str
    system_prompt: str  # fixed: the fleet's agent definition
    user_agent: str
    host: net.Network
    runners: list[str]  # addresses of its CI runners
    templates: list[tuple[int, str]]  # (template, category): the job's steps
    tools: int  # tool definitions the agent sends
    tz: float  # the org's working day, when CI runs more
    created: float


class AgentFleetRunners(Population):
    """CI and agent fleets: every account runs jobs (short loops of templated coding/tool-use
    requests seconds apart) around the clock from cloud or hoster runners, one system prompt."""

    group = "agent_fleet"

    def __init__(self, sc: Scenario, mint: IdMint) -> None:
        super().__init__(sc, mint)
        self.models = ModelChooser(sc, 0.6, cap=0.0, ramp_h=1.0)  # pinned, like enterprises

    def _fleet(self) -> _Fleet:
        k = self.sc.agent_fleet
        prng = self.rng
        if prng.random() < 0.7:
            host = pick(list(net.CLOUD), prng)
        else:  # self-hosted runners at a hoster
            host = pick([n for n in net.DATACENTER if n.asn in (24940, 16276, 14061)], prng)
        prefix = net.v4_prefix24(host, prng)
        templates = [(random_simhash(prng), "coding" if prng.random() < 0.55 else "tool_use")
                     for _ in range(max(1, k.templates))]
        return _Fleet(
            org_id=self.mint.new("org-", prng), card=self.mint.new("pf-", prng),
            system_prompt=hash_id(prng), user_agent=pick(list(_FLEET_CLIENTS), prng), host=host,
            runners=[net.v4_host(prefix, prng) for _ in range(prng.randint(2, 8))],
            templates=templates, tools=prng.randint(4, 20),
            tz=net.TZ_OFFSET_H.get(host.country, 0.0),
            created=old_created(prng, self.t0, k.min_account_age_days, k.max_account_age_days))

    def first_fleet(self) -> _Fleet:
        """On a fresh population: the first fleet exactly as `build` makes it (the org whose
        system prompt and user agent `campaign_framing` copies)."""
        return self._fleet()

    def build(self) -> list[Account]:
        k = self.sc.agent_fleet
        n_accounts = self.sc.accounts(k.accounts)
        fleets = [self._fleet() for _ in range(max(1, min(k.orgs, n_accounts)))]
        out = []
        for idx in range(n_accounts):
            a = self.new_account(idx)
            rng = a.rng
            fleet = fleets[idx % len(fleets)]
            a.org_id, a.payment_fingerprint, a.user_agent = fleet.org_id, fleet.card, fleet.user_agent
            a.asn, a.country, a.ip = fleet.host.asn, fleet.host.country, fleet.runners[0]
            a.keys = [self.mint.new("key-", rng)]
            a.created_ts = float(round(rng.uniform(fleet.created, fleet.created + 60 * DAY)))
            a.created_ts = min(a.created_ts, self.t0 - DAY)
            a.state = fleet
            finalize_marked(a, self._jobs(rng, fleet), self.t0, self.t1)
            out.append(a)
        return out

    def _jobs(self, rng: random.Random, fleet: _Fleet) -> list[tuple[float, int]]:
        """Job starts are Poisson, a little denser in the org's working day; a job walks
        through the fleet's templates from a random step. Mark = template index."""
        k = self.sc.agent_fleet
        rate = k.requests_per_min / 60.0 * rng.uniform(1.0 - k.rate_spread, 1.0 + k.rate_spread)
        mean_job = (k.min_job_requests + k.max_job_requests) / 2.0
        amp = max(0.0, k.working_hours_amp)
        peak = rate / mean_job * (1.0 + amp)
        n_t = len(fleet.templates)
        timed: list[tuple[float, int]] = []
        t = self.t0 + rng.expovariate(peak)
        while t < self.t1:
            if rng.random() * (1.0 + amp) < _working_day(t, fleet.tz, amp):
                step, u = rng.randrange(n_t), t
                for j in range(rng.randint(k.min_job_requests, k.max_job_requests)):
                    timed.append((u, (step + j) % n_t))
                    u += rng.uniform(2.0, 20.0)
            t += rng.expovariate(peak)
        if not timed:
            timed = [(self.t0 + rng.random() * (self.t1 - self.t0), 0)]
        return timed

    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        rng = a.rng
        fleet: _Fleet = a.state
        template, cat = fleet.templates[a.marks[i]]  # type: ignore[index]
        return make_event(
            a, ts, pick(fleet.runners, rng), a.asn, a.country, self.models.choose(rng, ts),
            MESSAGES, cat, near(template, self.sc.agent_fleet.max_bit_flips, rng),
            fleet.system_prompt, rng.random() < 0.1, fleet.tools, 1.0, ERR_BATCH,
        )


def _working_day(ts: float, tz: float, amp: float) -> float:
    """1 + amp during the local working day (08-19 h, any day of the week), less outside,
    so the mean over a day stays about 1."""
    local_h = (ts / 3600.0 + tz) % 24.0
    return 1.0 + amp if 8.0 <= local_h < 19.0 else 1.0 - amp * 11.0 / 13.0


# --- an open-source tool's users ------------------------------------------------------------

# Coding tools' users: coding first, the rest as ordinary users have it.
_TOOL_CATEGORIES = {"coding": 60, "tool_use": 12, "chat": 10, "writing": 6, "reasoning": 6,
                    "math": 2, "other": 4}
# The tool's own prompts: commit messages, chat summaries, repo maps.
_SCAFFOLD_CATEGORIES = ("writing", "other", "coding")


class OssToolUsers(Ordinary):
    """Individuals running one open-source coding tool: its user agent (a few releases), its
    default system prompt (one per release) on almost every request, coding-heavy unique
    prompts, and the tool's fixed scaffold prompts now and then, often on the small model."""

    group = "oss_tool"

    def __init__(self, sc: Scenario, mint: IdMint) -> None:
        super().__init__(sc, mint)
        k = sc.oss_tool
        if k.tool not in net.OSS_TOOLS:
            raise ValueError(f"oss_tool.tool must be one of {sorted(net.OSS_TOOLS)}")
        prng = self.rng
        self.tool = net.OSS_TOOLS[k.tool]
        n_versions = max(1, min(k.versions, len(self.tool.user_agents)))
        self.user_agents = list(self.tool.user_agents[:n_versions])
        self.versions = Picker([(v, 1.0 / (v + 1)) for v in range(n_versions)])  # newest first
        # the default system prompt changes with releases: one hash per version
        self.default_prompts = [hash_id(prng) for _ in range(n_versions)]
        self.scaffolds = [(random_simhash(prng), _SCAFFOLD_CATEGORIES[s % 3])
                          for s in range(max(1, k.scaffold_templates))]

    def build(self) -> list[Account]:
        k = self.sc.oss_tool
        out = []
        for idx in range(self.sc.accounts(k.accounts)):
            a = self.new_account(idx)
            rng = a.rng
            country = net.COUNTRIES.pick(rng)
            tz = net.TZ_OFFSET_H[country]
            self.personal(a, country, self.k.ipv6_share)
            version = self.versions.pick(rng)
            a.user_agent = self.user_agents[version]
            st = a.state
            st.cats = category_picker({c: w * rng.lognormvariate(0.0, 0.5)
                                       for c, w in _TOOL_CATEGORIES.items()})
            st.system_prompts = ([self.default_prompts[version]]
                                 if rng.random() < k.default_system_prompt_share
                                 else [hash_id(rng)])  # a user's own prompt file
            a.payment_fingerprint = None if rng.random() < 0.15 else self.mint.new("pf-", rng)
            if rng.random() < k.new_account_share:
                a.created_ts = old_created(rng, self.t0, 1, 60)
            else:
                a.created_ts = old_created(rng, self.t0, 60, 1500)
            n = self.volume(rng, k.mean_requests_per_6h, k.volume_sigma, tz)
            finalize_times(a, session_times(rng, n, self.t0, self.t1, tz,
                                            k.mean_session_requests, k.median_gap_s),
                           self.t0, self.t1)
            out.append(a)
        return out

    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        rng = a.rng
        k = self.sc.oss_tool
        st = a.state
        if rng.random() >= k.scaffold_share:
            return self.personal_request(a, ts, st, tools=self.tool.tools)
        template, cat = pick(self.scaffolds, rng)
        return make_event(
            a, ts, a.ip, a.asn, a.country,
            SMALL if rng.random() < 0.6 else self.models.choose(rng, ts), MESSAGES, cat,
            near(template, k.max_bit_flips, rng), st.system_prompts[0], False, 0, 0.4,
            ERR_ORDINARY,
        )


# --- carrier-grade NAT and notebook egress --------------------------------------------------


class CgnatUsers(Ordinary):
    """Ordinary users of mixed account ages behind one mobile carrier's CGNAT (its subscribers,
    its country) or a hosted-notebook service's egress (users worldwide, a cloud's /24s)."""

    group = "cgnat"

    def __init__(self, sc: Scenario, mint: IdMint) -> None:
        super().__init__(sc, mint)
        k = sc.cgnat
        if k.egress not in ("mobile", "notebook"):
            raise ValueError("cgnat.egress must be 'mobile' or 'notebook'")
        prng = self.rng
        self.mobile = k.egress == "mobile"
        self.carrier = pick(list(net.MOBILE if self.mobile else net.NOTEBOOK_EGRESS), prng)
        self.prefixes = [net.v4_prefix24(self.carrier, prng) for _ in range(max(1, k.prefixes))]

    def pool_address(self, rng: random.Random) -> str:
        return net.v4_host(pick(self.prefixes, rng), rng)

    def build(self) -> list[Account]:
        k = self.sc.cgnat
        out = []
        for idx in range(self.sc.accounts(k.accounts)):
            a = self.new_account(idx)
            rng = a.rng
            country = self.carrier.country if self.mobile else net.COUNTRIES.pick(rng)
            tz = net.TZ_OFFSET_H[country]
            self.personal(a, country, 0.0)  # `alt`: the home broadband some also use
            a.ip, a.asn, a.country = self.pool_address(rng), self.carrier.asn, self.carrier.country
            if not self.mobile and rng.random() < 0.8:
                a.user_agent = net.sdk_user_agent(rng)  # the notebook's Python SDK
            a.payment_fingerprint = None if rng.random() < 0.2 else self.mint.new("pf-", rng)
            if rng.random() < k.new_account_share:
                a.created_ts = old_created(rng, self.t0, 1, 60)
            else:
                a.created_ts = old_created(rng, self.t0, 60, 1500)
            n = self.volume(rng, k.mean_requests_per_6h, k.volume_sigma, tz)
            finalize_times(a, session_times(rng, n, self.t0, self.t1, tz, 6.0, 40.0),
                           self.t0, self.t1)
            out.append(a)
        return out

    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        rng = a.rng
        if rng.random() < self.sc.cgnat.address_change_share:
            a.ip = self.pool_address(rng)  # a new NAT mapping (or notebook VM)
        return self.personal_request(a, ts, a.state)


# --- a hackathon or bootcamp weekend --------------------------------------------------------

# What participants ask while hacking: coding first.
_HACK_CATEGORIES = {"coding": 50, "tool_use": 12, "chat": 12, "writing": 8, "reasoning": 8,
                    "math": 3, "other": 7}
# What a team's app sends the API while they build it.
_APP_CATEGORIES = ("chat", "writing", "coding", "tool_use", "other")
# Marks of a participant's requests (>= 0: the starter kit's prompt of that index).
_HOME, _BURST, _APP = -1, -2, -3


def local_hour(ts: float, tz: float) -> float:
    return (ts / 3600.0 + tz) % 24.0


@dataclass
class Venue:
    """Where the event happens: its NAT addresses (one /24 of one ASN), country and clock, the
    time at the venue, and the organisers' starter kit (prompts, system prompt, pinned SDK)."""

    network: net.Network
    nat_ips: list[str]
    country: str
    tz: float
    kickoff: float
    leave: float
    starters: list[tuple[int, str]]  # (template, category), worked through in order
    kit_system_prompt: str
    kit_user_agent: str


@dataclass
class _Team:
    org_id: str | None  # a team on one member's card is one org
    card: str | None
    app: tuple[int, str]  # the team's app prompt (template, category)
    app_system_prompt: str  # the kit's, or the team's own
    bursts: list[tuple[float, float]]  # when the team works at the venue


class HackathonTeams(Ordinary):
    """A hackathon: small teams of mostly same-day accounts behind the venue's NAT for the
    day, the starter kit's prompts first, then bursts of varied coding per team; from home
    before and after."""

    group = "hackathon"

    def __init__(self, sc: Scenario, mint: IdMint) -> None:
        super().__init__(sc, mint)
        k = sc.hackathon
        if k.venue not in ("campus", "conference"):
            raise ValueError("hackathon.venue must be 'campus' or 'conference'")
        kickoff = self.t0 + min(max(0.0, k.kickoff_h), sc.duration_h * 0.5) * 3600.0
        leave = min(self.t1, kickoff + max(0.5, k.venue_h) * 3600.0)
        self.venue = self._venue(kickoff, leave)

    def _venue(self, kickoff: float, leave: float) -> Venue:
        """A venue where the kickoff is in the daytime (08-19 h local): a university when the
        event is on a campus and one is awake, else a venue in a country that is."""
        k = self.sc.hackathon
        prng = self.rng
        network: net.Network | None = None
        if k.venue == "campus":
            unis = [u for u in net.UNIVERSITY if 8.0 <= local_hour(kickoff, campus_tz(u)) < 19.0]
            if unis:
                network = pick(unis, prng)
                country, tz = network.country, campus_tz(network)
        if network is None:
            awake = [c for c in net.COUNTRY_WEIGHTS
                     if 8.0 <= local_hour(kickoff, net.TZ_OFFSET_H[c]) < 19.0]
            country = Picker([(c, net.COUNTRY_WEIGHTS[c])
                              for c in awake or list(net.COUNTRY_WEIGHTS)]).pick(prng)
            tz = net.TZ_OFFSET_H[country]
            upstreams = [n for n in net.VENUE if n.country == country]
            network = (pick(upstreams, prng) if upstreams and prng.random() < 0.5
                       else net.isp_in(country, prng))  # a local ISP's business line
        prefix = net.v4_prefix24(network, prng)
        ips = sorted({net.v4_host(prefix, prng) for _ in range(max(1, k.venue_ips))})
        starters = [(random_simhash(prng), "coding" if prng.random() < 0.7
                     else pick(["chat", "tool_use", "writing"], prng))
                    for _ in range(max(1, k.starter_templates))]
        return Venue(network, ips, country, tz, kickoff, leave, starters, hash_id(prng),
                     net.sdk_user_agent(prng))

    def _team(self) -> _Team:
        k = self.sc.hackathon
        prng = self.rng
        v = self.venue
        org = card = None
        if prng.random() < k.team_card_share:
            org, card = self.mint.new("org-", prng), self.mint.new("pf-", prng)
        app = (random_simhash(prng), pick(list(_APP_CATEGORIES), prng))
        app_sp = v.kit_system_prompt if prng.random() < k.kit_system_prompt_share else hash_id(prng)
        rate = max(k.bursts_per_h, 1e-3) / 3600.0
        bursts = []
        t = v.kickoff + prng.uniform(0.0, 1800.0)
        while t < v.leave:
            end = t + prng.uniform(k.min_burst_min, max(k.min_burst_min, k.max_burst_min)) * 60.0
            bursts.append((t, min(end, v.leave)))
            t = end + prng.expovariate(rate)
        return _Team(org, card, app, app_sp, bursts)

    def build(self) -> list[Account]:
        k = self.sc.hackathon
        prng = self.rng
        n = self.sc.accounts(k.accounts)
        out: list[Account] = []
        while len(out) < n:
            team = self._team()
            lo = max(1, k.min_team_size)
            for _ in range(min(n - len(out), prng.randint(lo, max(lo, k.max_team_size)))):
                a = self.new_account(len(out))
                self._member(a, team)
                out.append(a)
        return out

    def _member(self, a: Account, team: _Team) -> None:
        k = self.sc.hackathon
        v = self.venue
        rng = a.rng
        self.personal(a, v.country, self.k.ipv6_share)  # home connection and habits
        st = a.state
        st.cats = category_picker({c: w * rng.lognormvariate(0.0, 0.5)
                                   for c, w in _HACK_CATEGORIES.items()})
        st.extra = [team, pick(v.nat_ips, rng)]  # the team, the NAT address it is mapped to
        u = rng.random()
        if u < k.kit_sdk_share:
            a.user_agent = v.kit_user_agent
        elif u < k.kit_sdk_share + 0.15:  # a coding tool's newest release
            a.user_agent = pick(list(net.OSS_TOOLS.values()), rng).user_agents[0]
        if team.card is not None:
            a.org_id, a.payment_fingerprint = team.org_id, team.card
        elif rng.random() < k.null_payment_share:
            a.payment_fingerprint = None
        else:
            a.payment_fingerprint = self.mint.new("pf-", rng)
        if rng.random() < k.new_account_share:  # the morning of the event, or at check-in
            if rng.random() < 0.6:
                a.created_ts = float(round(v.kickoff + rng.uniform(-3600.0, 2700.0)))
            else:
                a.created_ts = created_before(rng, v.kickoff, 3600.0, 14 * 3600.0)
        else:
            a.created_ts = old_created(rng, self.t0, 7, 1500)
        arrive = max(v.kickoff + rng.uniform(0.0, 1200.0), a.created_ts + 60.0)
        timed = self._at_venue(rng, team, arrive)
        n = self.volume(rng, k.mean_home_requests_per_6h, 1.1, v.tz)
        timed += [(t, _HOME) for t in session_times(rng, n, self.t0, self.t1, v.tz, 6.0, 40.0)
                  if not arrive <= t < v.leave]
        finalize_marked(a, keep_after(timed, a.created_ts), self.t0, self.t1)

    def _at_venue(self, rng: random.Random, team: _Team, arrive: float
                  ) -> list[tuple[float, int]]:
        """The starter kit's prompts in order in the first hours, then the team's bursts."""
        k = self.sc.hackathon
        v = self.venue
        if arrive >= v.leave:
            return []
        starter_end = max(min(v.leave, v.kickoff + k.starter_h * 3600.0), arrive + 600.0)
        lo = max(0, k.min_starter_requests)
        n_start = rng.randint(lo, max(lo, k.max_starter_requests))
        times = sorted(rng.uniform(arrive, starter_end) for _ in range(n_start))
        timed = [(t, step % len(v.starters)) for step, t in enumerate(times) if t < v.leave]
        mu = math.log(max(1.0, k.burst_gap_s))
        for start, end in team.bursts:
            if end <= arrive or rng.random() >= 0.75:  # not everyone works in every burst
                continue
            t = max(start, arrive) + rng.uniform(0.0, 120.0)
            while t < end:
                app = t > starter_end and rng.random() < k.app_template_share
                timed.append((t, _APP if app else _BURST))
                t += min(math.exp(mu + 0.8 * rng.gauss()), 900.0)
        return timed

    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        mark = a.marks[i]  # type: ignore[index]
        st = a.state
        if mark == _HOME:
            return self.personal_request(a, ts, st)
        rng = a.rng
        v = self.venue
        team: _Team = st.extra[0]
        if len(v.nat_ips) > 1 and rng.random() < 0.1:
            st.extra[1] = pick(v.nat_ips, rng)  # the NAT maps the next connection elsewhere
        ip = st.extra[1]
        if mark == _BURST:
            ev = self.personal_request(a, ts, st)
            ev["ip"], ev["asn"], ev["country"] = ip, v.network.asn, v.country
            return ev
        k = self.sc.hackathon
        sp: str | None
        if mark == _APP:
            template, cat = team.app
            sp, scale = team.app_system_prompt, 0.8
        else:
            template, cat = v.starters[mark]
            sp, scale = (v.kit_system_prompt if rng.random() < 0.8 else None), 0.7
        return make_event(
            a, ts, ip, v.network.asn, v.country, self.models.choose(rng, ts), MESSAGES, cat,
            near(template, k.max_bit_flips, rng), sp, rng.random() < 0.05,
            3 if cat == "tool_use" else 0, scale, ERR_ORDINARY,
        )


# --- a customer-support desk ----------------------------------------------------------------

# Where support centres are (relative weights).
_SUPPORT_COUNTRIES: dict[str, float] = {
    "PH": 3.0, "IN": 3.0, "US": 3.0, "GB": 1.5, "MX": 1.5, "PL": 1.0, "ZA": 1.0, "BR": 1.0,
    "DE": 1.0, "CA": 1.0,
}
_SUPPORT_CATEGORIES = {"chat": 45.0, "writing": 35.0, "other": 15.0, "reasoning": 5.0}
_SUPPORT_TOOLS = ("helpdesk-assist", "support-copilot", "reply-helper", "ticket-assistant",
                  "cx-drafts")
# Local start hours of an office's shifts, by the number of shifts it runs.
_SHIFT_STARTS = {1: (8.0,), 2: (6.0, 14.0), 3: (6.0, 14.0, 22.0)}


@dataclass
class _Office:
    network: net.Network
    ips: list[str]  # the office's egress addresses in one /24
    country: str
    tz: float


class SupportAgents(Population):
    """One company's support agents: established accounts on the org's card, office egress
    /24s, the support tool's client and system prompt, canned replies (near-duplicates)
    pasted all day between unique customer questions; a steady rate per agent on shift."""

    group = "support_desk"

    def build(self) -> list[Account]:
        k = self.sc.support_desk
        prng = self.rng
        self.org_id, self.card = self.mint.new("org-", prng), self.mint.new("pf-", prng)
        founded = old_created(prng, self.t0, 365, 2200)
        self.system_prompt = hash_id(prng)
        if prng.random() < 0.5:  # the company's managed browser, and the build before it
            v = prng.randint(127, 132)
            self.clients = [f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                            f"(KHTML, like Gecko) Chrome/{x}.0.0.0 Safari/537.36"
                            for x in (v, v - 1)]
        else:  # the support tool's own client
            name, minor = pick(list(_SUPPORT_TOOLS), prng), prng.randint(1, 9)
            self.clients = [f"{name}/2.{minor}.{prng.randint(0, 4)}", f"{name}/2.{minor - 1}.0"]
        self.templates = [(random_simhash(prng), "writing" if prng.random() < 0.5 else "chat")
                          for _ in range(max(1, k.templates))]
        self.cats = category_picker(_SUPPORT_CATEGORIES)
        self.tools = 0 if prng.random() < 0.5 else prng.randint(2, 6)
        self.models = ModelChooser(self.sc, k.large_share, cap=0.0, ramp_h=1.0)
        offices = [self._office(o) for o in range(max(1, k.offices))]
        starts = _SHIFT_STARTS[min(3, max(1, k.shifts))]
        out = []
        for idx in range(self.sc.accounts(k.accounts)):
            a = self.new_account(idx)
            rng = a.rng
            office = offices[idx % len(offices)]
            a.org_id, a.payment_fingerprint = self.org_id, self.card
            a.keys = [self.mint.new("key-", rng)]
            a.user_agent = self.clients[0] if rng.random() < 0.85 else self.clients[1]
            a.ip, a.asn, a.country = office.ips[0], office.network.asn, office.country
            if rng.random() < k.recent_share:
                a.created_ts = float(round(self.t0 - rng.uniform(1.0, 30.0) * DAY))
            else:
                a.created_ts = float(round(rng.uniform(founded, self.t0 - 30 * DAY)))
            a.state = office
            finalize_times(a, self._shift_times(rng, office, pick(list(starts), rng)),
                           self.t0, self.t1)
            out.append(a)
        return out

    def _office(self, o: int) -> _Office:
        """The first office is awake in the middle of the run (where the desk is staffed
        now); the others anywhere the company has support staff."""
        prng = self.rng
        mid = (self.t0 + self.t1) / 2.0
        countries = sorted(_SUPPORT_COUNTRIES)
        if o == 0:
            countries = [c for c in countries
                         if 9.0 <= local_hour(mid, net.TZ_OFFSET_H[c]) < 17.0] or countries
        country = Picker([(c, _SUPPORT_COUNTRIES[c]) for c in countries]).pick(prng)
        isp = net.isp_in(country, prng)  # the office's business line
        prefix = net.v4_prefix24(isp, prng)
        ips = sorted({net.v4_host(prefix, prng)
                      for _ in range(max(1, self.sc.support_desk.egress_ips))})
        return _Office(isp, ips, country, net.TZ_OFFSET_H[country])

    def _shift_times(self, rng: random.Random, office: _Office, start_h: float) -> list[float]:
        """Poisson requests at the agent's steady rate through its shift (8 h, 9 h for a day
        shift with lunch) on every day the run touches, minus a break; a day off now and then."""
        k = self.sc.support_desk
        rate = k.requests_per_h / 3600.0 * rng.uniform(0.6, 1.4)
        length = 9.0 if start_h == 8.0 else 8.0
        midnight = math.floor((self.t0 + office.tz * 3600.0) / DAY) * DAY - office.tz * 3600.0
        times: list[float] = []
        for day in range(-1, math.ceil((self.t1 - midnight) / DAY) + 1):
            if rng.random() < 2.0 / 7.0:  # a day off
                continue
            on = midnight + day * DAY + start_h * 3600.0 + rng.uniform(-300.0, 900.0)
            off = on + length * 3600.0 - rng.uniform(0.0, 900.0)
            pause = on + length * 3600.0 * rng.uniform(0.4, 0.6)
            pause_end = pause + rng.uniform(1800.0, 3600.0)
            if off <= self.t0 or on >= self.t1:
                continue
            t = max(on, self.t0) + rng.expovariate(rate)
            while t < min(off, self.t1):
                if not pause <= t < pause_end:
                    times.append(t)
                t += rng.expovariate(rate)
        return times

    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        rng = a.rng
        k = self.sc.support_desk
        office: _Office = a.state
        if rng.random() < k.template_share:  # a canned reply with the customer's details
            template, cat = pick(self.templates, rng)
            simhash = near(template, k.max_bit_flips, rng)
        else:  # the customer's own question
            cat, simhash = self.cats.pick(rng), random_simhash(rng)
        return make_event(
            a, ts, pick(office.ips, rng), office.network.asn, office.country,
            self.models.choose(rng, ts), MESSAGES, cat, simhash,
            self.system_prompt if rng.random() < k.system_prompt_share else None,
            rng.random() < 0.03, self.tools, 0.7, ERR_ORDINARY,
        )


# --- a proctored online certification exam -------------------------------------------------

# Exam providers whose SDK wraps the API client (illustrative names).
_EXAM_VENDORS = ("certbench", "proctorly", "examforge", "skillgate", "assessio")


@dataclass
class Exam:
    """The exam as its provider runs it: when it opens and closes, its questions in order, the
    provider's SDK client and its harness's system prompt."""

    start: float
    end: float
    questions: list[tuple[int, str]]  # (template, category), worked through in order
    user_agent: str
    system_prompt: str


class ExamCandidates(Ordinary):
    """A proctored online certification exam: candidates worldwide (each from home, no shared
    address), many on accounts opened for it, start within minutes of the opening and work
    through the same questions in order (near-duplicates, retries), reasoning often requested,
    many through the provider's SDK; light ordinary use before and after."""

    group = "certification_exam"

    def __init__(self, sc: Scenario, mint: IdMint) -> None:
        super().__init__(sc, mint)
        self.exam = self._exam()
        self.exam_models = ModelChooser(sc, 0.9, cap=0.0, ramp_h=1.0)  # the model it certifies

    def _exam(self) -> Exam:
        k = self.sc.certification_exam
        prng = self.rng
        length_h = min(max(0.25, k.exam_min / 60.0), self.sc.duration_h)
        # an exam that would overrun the run opens earlier, so it is seen whole
        start = self.t0 + max(0.0, min(k.exam_h, self.sc.duration_h - length_h)) * 3600.0
        main = prng.choice(k.question_categories)  # what the certification is about
        questions = [(random_simhash(prng),
                      main if prng.random() < 0.6 else prng.choice(k.question_categories))
                     for _ in range(max(1, k.questions))]
        vendor = pick(list(_EXAM_VENDORS), prng)
        ua = (f"{vendor}-sdk/{prng.randint(1, 4)}.{prng.randint(0, 12)}.{prng.randint(0, 9)} "
              f"anthropic-python/0.{prng.randint(40, 45)}.{prng.randint(0, 2)}")
        return Exam(start, min(self.t1, start + length_h * 3600.0), questions, ua, hash_id(prng))

    def build(self) -> list[Account]:
        k = self.sc.certification_exam
        exam = self.exam
        out = []
        for idx in range(self.sc.accounts(k.accounts)):
            a = self.new_account(idx)
            rng = a.rng
            country = net.COUNTRIES.pick(rng)
            tz = net.TZ_OFFSET_H[country]
            self.personal(a, country, self.k.ipv6_share)
            a.payment_fingerprint = (None if rng.random() < k.null_payment_share
                                     else self.mint.new("pf-", rng))
            if rng.random() < k.new_account_share:  # opened for the exam: days to minutes before
                a.created_ts = created_before(rng, exam.start, 300.0, 10 * DAY)
            else:
                a.created_ts = old_created(rng, self.t0, 7, 1500)
            begin = exam.start + rng.uniform(0.0, max(0.0, k.max_start_delay_min) * 60.0)
            begin = min(begin, exam.end - 60.0)
            finish = begin + (exam.end - begin) * rng.uniform(0.55, 1.0)  # early, or at the bell
            a.state.extra = (exam.user_agent if rng.random() < k.vendor_sdk_share else None,
                             exam.system_prompt if rng.random() < k.vendor_system_prompt_share
                             else None)
            timed = self._answers(rng, begin, finish)
            n = self.volume(rng, k.mean_other_requests_per_6h, 1.0, tz)
            timed += [(t, _OTHER) for t in session_times(rng, n, self.t0, self.t1, tz, 4.0, 40.0)
                      if not begin <= t < finish]
            finalize_marked(a, keep_after(timed, a.created_ts), self.t0, self.t1)
            out.append(a)
        return out

    def _answers(self, rng: random.Random, begin: float, finish: float
                 ) -> list[tuple[float, int]]:
        """A candidate's exam requests: the questions in order, each taking its own share of
        the candidate's time, 1..n requests on a question attempted (a retry is a
        near-duplicate), now and then a question skipped; mark = question index."""
        k = self.sc.certification_exam
        n_q = len(self.exam.questions)
        weights = [rng.uniform(0.5, 1.5) for _ in range(n_q)]
        unit = (finish - begin) / sum(weights)
        lo = max(1, k.min_question_requests)
        timed: list[tuple[float, int]] = []
        t = begin
        for q, w in enumerate(weights):
            span = w * unit
            if q == 0 or rng.random() >= 0.08:
                for _ in range(rng.randint(lo, max(lo, k.max_question_requests))):
                    timed.append((t + rng.uniform(0.0, span), q))
            t += span
        return timed

    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        mark = a.marks[i]  # type: ignore[index]
        if mark == _OTHER:
            return self.personal_request(a, ts, a.state)
        rng = a.rng
        k = self.sc.certification_exam
        user_agent, system_prompt = a.state.extra
        template, cat = self.exam.questions[mark]
        ev = make_event(
            a, ts, a.ip, a.asn, a.country, self.exam_models.choose(rng, ts), MESSAGES, cat,
            near(template, k.max_bit_flips, rng), system_prompt,
            rng.random() < k.reasoning_share, 2 + int(rng.random() * 6) if cat == "tool_use"
            else 0, 1.2, ERR_ORDINARY,
        )
        if user_agent is not None:  # the exam runs through the provider's SDK
            ev["user_agent"] = user_agent
        return ev


# --- a prompt gone viral --------------------------------------------------------------------

# Apps that let people try a prompt on their own API key (illustrative names).
_VIRAL_APPS = ("PromptPad", "ChatDeck", "AskBox", "PocketPrompt", "QuillAI")
_DESKTOPS = ("Windows NT 10.0; Win64; x64", "Macintosh; Intel Mac OS X 10_15_7",
             "X11; Linux x86_64")
# What follow-ups to the viral prompt are about, besides the prompt's own category.
_FOLLOWUP_CATEGORIES = ("reasoning", "math", "chat", "writing")
# Marks of a viral sender's requests (>= 0: the version of the prompt it sends).
_FOLLOWUP = -2


def carrier_pools(prng: random.Random, pools: int) -> Picker:
    """Mobile carriers with `pools` CGNAT /24s each, weighted by subscribers."""
    return Picker([((c, [net.v4_prefix24(c, prng) for _ in range(max(1, pools))]),
                    c.weight * net.COUNTRY_WEIGHTS[c.country]) for c in net.MOBILE])


def home_or_carrier(pop: Ordinary, a: Account, rng: random.Random, carriers: Picker,
                    mobile_share: float) -> tuple[bool, list[tuple[int, int, int]] | None, float]:
    """Place an account at home (a country's ISP) or on a mobile carrier's CGNAT pool: whether
    mobile, the carrier's /24s (None at home) and the local time zone."""
    mobile = rng.random() < mobile_share
    pool: list[tuple[int, int, int]] | None = None
    if mobile:
        carrier, pool = carriers.pick(rng)
        country = carrier.country
    else:
        country = net.COUNTRIES.pick(rng)
    pop.personal(a, country, pop.k.ipv6_share)
    if pool is not None:
        a.ip, a.asn = net.v4_host(pick(pool, rng), rng), carrier.asn
    return mobile, pool, net.TZ_OFFSET_H[country]


def viral_client(rng: random.Random, mobile: bool, app_share: float) -> str:
    """The client someone tries a viral prompt from: an app or a browser, on a phone (always,
    on a mobile carrier) or a desktop."""
    phone = mobile or rng.random() < 0.5
    if rng.random() < app_share:
        app = pick(list(_VIRAL_APPS), rng)
        version = f"{rng.randint(1, 5)}.{rng.randint(0, 14)}.{rng.randint(0, 9)}"
        if not phone:
            return f"{app}/{version} Electron/{rng.randint(30, 33)}.{rng.randint(0, 4)}.0"
        if rng.random() < 0.5:
            return (f"{app}/{version} (iPhone; iOS 18.{rng.randint(0, 2)}) "
                    f"CFNetwork/1568.{rng.randint(100, 300)}.51 Darwin/24.{rng.randint(0, 2)}.0")
        return f"{app}/{version} (Android {rng.randint(12, 15)}) okhttp/4.12.0"
    if phone:
        if rng.random() < 0.5:
            minor = rng.randint(0, 2)
            return (f"Mozilla/5.0 (iPhone; CPU iPhone OS 18_{minor} like Mac OS X) "
                    f"AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.{minor} "
                    "Mobile/15E148 Safari/604.1")
        return (f"Mozilla/5.0 (Linux; Android {rng.randint(12, 15)}; K) AppleWebKit/537.36 "
                f"(KHTML, like Gecko) Chrome/{rng.randint(128, 132)}.0.0.0 Mobile Safari/537.36")
    return (f"Mozilla/5.0 ({pick(list(_DESKTOPS), rng)}) AppleWebKit/537.36 (KHTML, like Gecko) "
            f"Chrome/{rng.randint(128, 132)}.0.0.0 Safari/537.36")


@dataclass
class Wave:
    """The viral prompt as it goes round: when it takes off, how arrivals rise and decay, its
    versions (templates) and category, and the mobile carriers' CGNAT /24s its senders use."""

    start: float
    rise_s: float
    decay_s: float  # mean of the exponential decay: the half-life / ln 2
    variants: list[int]
    category: str
    carriers: Picker  # of (carrier, its CGNAT /24s), weighted by subscribers

    def arrival(self, rng: random.Random) -> float:
        """When someone who saw the post first sends it: a short rise, then a decay."""
        return self.start + rng.uniform(0.0, self.rise_s) + rng.expovariate(1.0 / self.decay_s)


class ViralPromptSenders(Ordinary):
    """A prompt gone viral on social media: hundreds to thousands of accounts worldwide send
    it within hours, each with small edits of its own, arrivals spiking and then decaying; many
    accounts opened that day to try it, many on a mobile carrier's CGNAT or a big home ISP, from
    browsers and apps. Each sends it a few times (some ask follow-ups, with reasoning), then a
    few ordinary requests or nothing; established accounts keep their ordinary use."""

    group = "viral_prompt"

    def __init__(self, sc: Scenario, mint: IdMint) -> None:
        super().__init__(sc, mint)
        self.wave = self._wave()

    def _wave(self) -> Wave:
        k = self.sc.viral_prompt
        prng = self.rng
        start = self.t0 + min(max(0.0, k.spike_h), self.sc.duration_h * 0.5) * 3600.0
        base = random_simhash(prng)
        # the post as it was reposted, screenshotted and retyped: versions a few bits apart
        variants = [base] + [perturb(base, prng.randint(3, 6), prng)
                             for _ in range(max(1, k.variants) - 1)]
        carriers = carrier_pools(prng, k.cgnat_prefixes)
        return Wave(start, max(0.0, k.rise_min) * 60.0,
                    max(1.0, k.half_life_min) * 60.0 / math.log(2.0), variants, k.category,
                    carriers)

    def build(self) -> list[Account]:
        k = self.sc.viral_prompt
        wave = self.wave
        out = []
        for idx in range(self.sc.accounts(k.accounts)):
            a = self.new_account(idx)
            rng = a.rng
            mobile, pool, tz = home_or_carrier(self, a, rng, wave.carriers, k.mobile_share)
            arrive = wave.arrival(rng)
            client = viral_client(rng, mobile, k.app_share)
            new = rng.random() < k.new_account_share
            if new:  # opened that day to try it: a minute to 18 hours before
                a.user_agent = client
                a.payment_fingerprint = (None if rng.random() < k.null_payment_share
                                         else self.mint.new("pf-", rng))
                a.created_ts = created_before(rng, arrive, 60.0, 18 * 3600.0)
            else:
                a.payment_fingerprint = None if rng.random() < 0.15 else self.mint.new("pf-", rng)
                a.created_ts = old_created(rng, self.t0, 7, 1500)
            # [its carrier's CGNAT /24s or None, the client it tries the prompt from or None]
            a.state.extra = (pool, None if new or rng.random() < 0.5 else client)
            timed = self._burst(rng, arrive)
            end = timed[-1][0]
            if not new:
                n = self.volume(rng, k.mean_other_requests_per_6h, 1.1, tz)
                timed += [(t, _OTHER)
                          for t in session_times(rng, n, self.t0, self.t1, tz, 5.0, 40.0)]
            elif rng.random() < k.stay_share and end + 600.0 < self.t1:
                timed += [(t, _OTHER) for t in session_times(
                    rng, rng.randint(1, 6), end + 600.0, self.t1, tz, 3.0, 40.0)]
            finalize_marked(a, keep_after(timed, a.created_ts), self.t0, self.t1)
            out.append(a)
        return out

    def _burst(self, rng: random.Random, arrive: float) -> list[tuple[float, int]]:
        """The prompt sent 1..n times from `arrive` on (the first one first), and 1-3
        follow-ups for some, a minute or two apart; mark = the version the account saw."""
        k = self.sc.viral_prompt
        version = int(rng.random() * len(self.wave.variants))
        lo = max(1, k.min_viral_requests)
        rest = [version] * (rng.randint(lo, max(lo, k.max_viral_requests)) - 1)
        if rng.random() < k.followup_share:
            rest += [_FOLLOWUP] * rng.randint(1, 3)
        rng.shuffle(rest)
        timed: list[tuple[float, int]] = []
        t = arrive
        for mark in [version, *rest]:
            timed.append((t, mark))
            t += min(math.exp(math.log(75.0) + 0.9 * rng.gauss()), 1800.0)
        return timed

    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        rng = a.rng
        st = a.state
        pool, client = st.extra
        if pool is not None and rng.random() < 0.3:
            a.ip = net.v4_host(pick(pool, rng), rng)  # a new CGNAT mapping
        mark = a.marks[i]  # type: ignore[index]
        if mark == _OTHER:
            return self.personal_request(a, ts, st)
        k = self.sc.viral_prompt
        wave = self.wave
        if mark == _FOLLOWUP:  # a question of its own about the answer
            cat = wave.category if rng.random() < 0.6 else pick(list(_FOLLOWUP_CATEGORIES), rng)
            ev = self.personal_request(a, ts, st, cat)
        else:
            ev = self.personal_request(a, ts, st, wave.category,
                                       near(wave.variants[mark], k.max_bit_flips, rng))
        ev["reasoning_requested"] = rng.random() < k.reasoning_share
        if client is not None:
            ev["user_agent"] = client
        return ev


# --- a MOOC's homework deadline -------------------------------------------------------------

# Marks of a learner's requests (>= 0: course * 1000 + the problem it is on).
_MOOC_OTHER = -1


@dataclass
class Assignment:
    """One course's assignment as the platform runs it: its deadline, its problems in order,
    and the course's hosted notebook (cloud egress /24s, pinned SDK, tutor system prompt)."""

    deadline: float
    problems: list[tuple[int, str]]  # (template, category), the same for every learner
    notebook: net.Network
    notebook_prefixes: list[tuple[int, int, int]]
    notebook_user_agent: str
    notebook_system_prompt: str


class MoocLearners(Ordinary):
    """A MOOC's homework deadline: learners worldwide (none behind a shared address but the
    carriers' CGNAT pools and the course notebook's egress), many on accounts opened that week,
    work through the same problems in order (near-duplicates carrying their own code and
    wording, retries), reasoning often asked for; each starts an exponential lead before the
    deadline, so arrivals rise towards it; a few run into the grace period. Established
    learners keep their ordinary use; new ones go on with a few requests or stop."""

    group = "mooc"

    def __init__(self, sc: Scenario, mint: IdMint) -> None:
        super().__init__(sc, mint)
        k = sc.mooc
        prng = self.rng
        run_h = sc.duration_h
        self.carriers = carrier_pools(prng, k.cgnat_prefixes)
        self.assignments = []
        for c in range(max(1, k.courses)):
            # every deadline an hour or more before the run ends, so the rush is seen whole
            at_h = min(max(0.5, k.deadline_h + c * k.deadline_spacing_h), max(0.5, run_h - 1.0))
            main = prng.choice(k.problem_categories)  # the course's subject
            problems = [(random_simhash(prng),
                         main if prng.random() < 0.7 else prng.choice(k.problem_categories))
                        for _ in range(max(1, k.problems))]
            host = pick(list(net.NOTEBOOK_EGRESS), prng)
            self.assignments.append(Assignment(
                self.t0 + at_h * 3600.0, problems, host,
                [net.v4_prefix24(host, prng) for _ in range(prng.randint(1, 3))],
                net.sdk_user_agent(prng), hash_id(prng)))
        self.course_models = ModelChooser(sc, 0.5, cap=0.0, ramp_h=1.0)  # the course's model

    def build(self) -> list[Account]:
        k = self.sc.mooc
        out = []
        for idx in range(self.sc.accounts(k.accounts)):
            a = self.new_account(idx)
            rng = a.rng
            course = idx % len(self.assignments)
            asg = self.assignments[course]
            _, pool, tz = home_or_carrier(self, a, rng, self.carriers, k.mobile_share)
            notebook = rng.random() < k.notebook_share
            begin = asg.deadline - rng.expovariate(1.0 / max(0.05, k.rush_h) / 3600.0)
            work = max(600.0, k.mean_work_min * 60.0 * rng.lognormvariate(-0.125, 0.5))
            finish = begin + work
            if finish > asg.deadline:  # still at it: a few use the grace period, most submit
                finish = (asg.deadline + rng.uniform(0.0, k.grace_min * 60.0)
                          if rng.random() < k.late_share else asg.deadline)
            new = rng.random() < k.new_account_share
            if new:  # opened that week for the course: a minute to 7 days before starting
                a.payment_fingerprint = (None if rng.random() < k.null_payment_share
                                         else self.mint.new("pf-", rng))
                a.created_ts = created_before(rng, begin, 60.0, 7 * DAY)
            else:
                a.payment_fingerprint = None if rng.random() < 0.15 else self.mint.new("pf-", rng)
                a.created_ts = old_created(rng, self.t0, 7, 1500)
            # [course, its notebook's client and prompt or None, carrier pool or None]
            a.state.extra = (asg, notebook, pool)
            timed = self._work(rng, course, asg, begin, work, finish)
            end = timed[-1][0]
            if not new:
                n = self.volume(rng, k.mean_other_requests_per_6h, 1.1, tz)
                timed += [(t, _MOOC_OTHER) for t in session_times(
                    rng, n, self.t0, self.t1, tz, 5.0, 40.0) if not begin <= t < end]
            elif rng.random() < k.stay_share and end + 600.0 < self.t1:
                timed += [(t, _MOOC_OTHER) for t in session_times(
                    rng, rng.randint(1, 6), end + 600.0, self.t1, tz, 3.0, 40.0)]
            finalize_marked(a, keep_after(timed, a.created_ts), self.t0, self.t1)
            out.append(a)
        return out

    def _work(self, rng: random.Random, course: int, asg: Assignment, begin: float,
              work: float, finish: float) -> list[tuple[float, int]]:
        """A learner's assignment requests: the problems in order, each its own share of the
        `work` time, 1..n requests on each attempted (a retry is a near-duplicate), 10% of the
        problems after the first skipped; mark = course * 1000 + problem. A learner whose time
        runs out at `finish` (the deadline, or the end of their grace period) submits what they
        have: the requests after it are not sent. (Before this was fixed, docs/tuning.md, the work was
        squeezed into the time left instead: a learner starting a minute before the deadline sent
        every problem in that minute, at a pace no person reads answers at.)"""
        k = self.sc.mooc
        n_p = len(asg.problems)
        weights = [rng.uniform(0.5, 1.5) for _ in range(n_p)]
        unit = work / sum(weights)
        lo = max(1, k.min_problem_requests)
        timed: list[tuple[float, int]] = []
        t = begin
        for p, w in enumerate(weights):
            span = w * unit
            if p == 0 or rng.random() >= 0.1:
                for _ in range(rng.randint(lo, max(lo, k.max_problem_requests))):
                    timed.append((t + rng.uniform(0.0, span), course * 1000 + p))
            t += span
        timed.sort()
        # a learner out of time before the first request still sends one, in the time there is
        return [r for r in timed if r[0] < finish] or [(0.5 * (begin + finish), timed[0][1])]

    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        rng = a.rng
        st = a.state
        asg, notebook, pool = st.extra
        if pool is not None and rng.random() < 0.3:
            a.ip = net.v4_host(pick(pool, rng), rng)  # a new CGNAT mapping
        mark = a.marks[i]  # type: ignore[index]
        if mark == _MOOC_OTHER:
            return self.personal_request(a, ts, st)
        k = self.sc.mooc
        template, cat = asg.problems[mark % 1000]
        simhash = near(template, k.max_bit_flips, rng)
        if notebook:  # the course's hosted notebook: its egress, pinned SDK, tutor prompt
            ev = make_event(
                a, ts, net.v4_host(pick(asg.notebook_prefixes, rng), rng), asg.notebook.asn,
                asg.notebook.country, self.course_models.choose(rng, ts), MESSAGES, cat,
                simhash, asg.notebook_system_prompt, rng.random() < k.reasoning_share,
                tools_for(cat, rng), 1.0, ERR_ORDINARY)
            ev["user_agent"] = asg.notebook_user_agent
            return ev
        ev = self.personal_request(a, ts, st, cat, simhash)
        ev["reasoning_requested"] = rng.random() < k.reasoning_share
        return ev


# --- model evaluations and batch jobs -------------------------------------------------------


@dataclass(frozen=True)
class PublicBenchmark:
    """A public benchmark as an eval harness sends it: what the gateway's classifier calls its
    items, the size of its test split, the few-shot examples every prompt carries (the shared
    prefix that makes its items near-duplicates of one another; 0: the question dominates and
    every item is a prompt of its own), whether the harness's default prompt for it asks for the
    reasoning written out, and how long an answer is against the category's median (a letter
    for multiple choice, a worked solution, a program)."""

    name: str
    category: str
    items: int
    shots: int
    cot: bool
    answer_scale: float


# The public benchmarks customers run (test-split sizes of the real ones, shots and chain of
# thought as their common harness configurations).
PUBLIC_BENCHMARKS: tuple[PublicBenchmark, ...] = (
    PublicBenchmark("mmlu", "reasoning", 14042, 5, False, 0.02),
    PublicBenchmark("mmlu_pro", "reasoning", 12032, 5, True, 0.6),
    PublicBenchmark("gsm8k", "math", 1319, 8, True, 0.4),
    PublicBenchmark("math_500", "math", 500, 4, True, 0.8),
    PublicBenchmark("gpqa_diamond", "reasoning", 198, 0, True, 0.8),
    PublicBenchmark("bbh", "reasoning", 6511, 3, True, 0.3),
    PublicBenchmark("arc_challenge", "reasoning", 1172, 25, False, 0.02),
    PublicBenchmark("hellaswag", "other", 10042, 10, False, 0.02),
    PublicBenchmark("truthfulqa", "other", 817, 6, False, 0.2),
    PublicBenchmark("humaneval", "coding", 164, 0, False, 0.4),
    PublicBenchmark("mbpp", "coding", 500, 3, False, 0.3),
    PublicBenchmark("livecodebench", "coding", 880, 0, True, 1.2),
    PublicBenchmark("ifeval", "writing", 541, 0, False, 0.7),
    PublicBenchmark("aime", "math", 30, 0, True, 1.5),
)

# Open-source eval harnesses, most popular first. A harness sends its default system prompt
# (a hash drawn per scenario), the same for every customer who keeps it.
EVAL_HARNESSES: tuple[tuple[str, float], ...] = (
    ("lm-evaluation-harness", 5.0), ("inspect_ai", 3.0), ("lighteval", 2.0),
    ("simple-evals", 1.5), ("helm", 1.0), ("opencompass", 1.0),
)

# Where the companies and research groups that run evaluations through the API are.
_EVAL_COUNTRIES = Picker([("US", 8.0), ("GB", 2.0), ("DE", 1.5), ("FR", 1.5), ("CA", 1.5),
                          ("JP", 1.0), ("KR", 1.0), ("SG", 1.0), ("IN", 1.0), ("NL", 1.0)])
# What an org's own batch jobs are (classification, extraction, summaries, a little code).
_BATCH_CATEGORIES = category_picker({"other": 45, "writing": 30, "chat": 15, "coding": 10})
# Items kept per benchmark: a run never takes more of one benchmark than this.
_ITEM_CAP = 2500
# Marks of an eval account's requests: run * _RUN + slot * _SLOT + item, where slot is the
# benchmark's place in the run's suite (_BATCH_SLOT: a batch job, item = its template); or
# _OTHER for a member's ordinary use.
_SLOT = 10_000
_BATCH_SLOT = 15
_RUN = 16 * _SLOT
# A member's notebook runs from a hosted notebook on this share of them (else the org's cloud).
_HOSTED_NOTEBOOK_SHARE = 0.3
# Runs that go through their items shuffled (else in the dataset's order, as `--limit` takes).
_SHUFFLED_SHARE = 0.3


@dataclass
class EvalOrg:
    """A company or research group that runs evaluations: its org and card, where its cloud
    workloads leave from, the SDK its harness pins, the harness's system prompt, its suite of
    public benchmarks, its pace, and its nightly job."""

    org_id: str
    card: str
    country: str
    tz: float
    cloud: net.Network
    vpc_ips: list[str]  # the org's NAT gateways in its cloud
    user_agent: str  # the SDK version its harness pins
    system_prompt: str  # the harness's default, or a prompt of the org's own
    suite: list[int]  # the public benchmarks it runs (indices into EvalRunners.benchmarks)
    requests_per_min: float
    concurrency: int
    nightly_utc_h: float | None  # its nightly eval's cron (UTC hour), None without one
    hosted_ci: bool  # its CI runs on hosted runners (the shared pool), else in its cloud
    batch_templates: list[tuple[int, str]]  # its own batch jobs' prompt templates
    batch_prompt: str
    created: float
    release_run: bool  # it benchmarks a model released during the run


@dataclass
class _EvalRun:
    """One run as the gateway sees it: one model, client, address pool and thinking setting."""

    model: str
    thinking: bool
    suite: list[int]
    ips: list[str]
    asn: int
    country: str
    user_agent: str


def eval_pace(rng: random.Random, start: float, n: int, rate_per_min: float, concurrency: int,
              stretch: Any = None) -> list[float]:
    """The request times of a run of `n` requests through a pool of at most `concurrency`
    workers at `rate_per_min` on average: the pool's first requests go out together, the next
    ones as answers come back (lognormal gaps around the mean); `stretch(gap, rng)`, if given,
    changes each gap (a campaign's timing jitter)."""
    gap = 60.0 / max(0.1, rate_per_min)
    first = min(n, rng.randint(1, max(1, concurrency)))
    times = sorted(start + rng.uniform(0.0, 2.0) for _ in range(first))
    t = start + gap * first * rng.uniform(0.3, 1.0)
    for _ in range(n - first):
        times.append(t)
        step = gap * rng.lognormvariate(-0.08, 0.4)
        t += stretch(step, rng) if stretch is not None else step
    return times


class EvalRunners(Ordinary):
    """Companies and research groups running model evaluations and batch jobs: a few public
    benchmarks' items (the same prompts for every customer), sent by a CI job or a notebook at
    a machine's pace with bounded concurrency, from cloud egress, through an SDK and an
    open-source harness's default system prompt; runs of minutes to hours, some nightly; several
    accounts per org on its one card (service accounts, mostly aged, some opened for the project;
    members, who also use the API as people do).

    The public benchmarks' items, the harnesses' default prompts and the hosted runners' pool
    are drawn in `__init__` from the population's own rng (`campaign_evalmimic` copies them)."""

    group = "eval_runs"

    def __init__(self, sc: Scenario, mint: IdMint) -> None:
        super().__init__(sc, mint)
        k = sc.eval_runs
        prng = self.rng
        n_bench = max(1, min(k.benchmarks, len(PUBLIC_BENCHMARKS)))
        self.benchmarks = [PUBLIC_BENCHMARKS[b]
                           for b in sorted(prng.sample(range(len(PUBLIC_BENCHMARKS)), n_bench))]
        self.items = [self._items(b, prng) for b in self.benchmarks]
        harnesses = EVAL_HARNESSES[:max(1, min(k.harnesses, len(EVAL_HARNESSES)))]
        self.harnesses = Picker([(h, w) for h, (_, w) in enumerate(harnesses)])
        self.harness_prompts = [hash_id(prng) for _ in harnesses]
        # hosted CI runners leave from one big cloud's ranges, a new address for every job
        self.hosted_cloud = net.CLOUD[2]
        self.hosted_prefixes = [net.v4_prefix24(self.hosted_cloud, prng)
                                for _ in range(prng.randint(8, 24))]
        self.run_models = ModelChooser(sc, 0.7, cap=0.6, ramp_h=0.5)  # new models tried fast

    @staticmethod
    def _items(bench: PublicBenchmark, prng: random.Random) -> list[int]:
        """The benchmark's items as everybody's harness renders them: near its few-shot
        template, the nearer the more shots; with none, about as far apart as the questions."""
        base = random_simhash(prng)
        lo, hi = (2, 5) if bench.shots >= 5 else (3, 8) if bench.shots else (6, 20)
        return [perturb(base, prng.randint(lo, hi), prng)
                for _ in range(min(bench.items, _ITEM_CAP))]

    def _org(self, prng: random.Random) -> EvalOrg:
        k = self.sc.eval_runs
        country = _EVAL_COUNTRIES.pick(prng)
        tz = net.TZ_OFFSET_H[country]
        cloud = pick(list(net.CLOUD), prng)
        prefix = net.v4_prefix24(cloud, prng)
        harness = self.harnesses.pick(prng)
        n_suite = prng.randint(1, max(1, min(k.max_suite, len(self.benchmarks), _BATCH_SLOT)))
        lo = max(0.1, k.min_requests_per_min)
        hi = max(lo, k.max_requests_per_min)
        return EvalOrg(
            org_id=self.mint.new("org-", prng), card=self.mint.new("pf-", prng),
            country=country, tz=tz, cloud=cloud,
            vpc_ips=sorted({net.v4_host(prefix, prng) for _ in range(prng.randint(1, 3))}),
            user_agent=net.python_sdk_user_agent(prng),
            system_prompt=(self.harness_prompts[harness]
                           if prng.random() < k.default_system_prompt_share else hash_id(prng)),
            suite=prng.sample(range(len(self.benchmarks)), n_suite),
            requests_per_min=math.exp(prng.uniform(math.log(lo), math.log(hi))),
            concurrency=prng.randint(1, max(1, k.max_concurrency)),
            # a cron in the small hours of the org's night
            nightly_utc_h=((prng.uniform(0.0, 5.0) - tz) % 24.0
                           if prng.random() < k.nightly_share else None),
            hosted_ci=prng.random() < k.hosted_ci_share,
            batch_templates=[(random_simhash(prng), _BATCH_CATEGORIES.pick(prng))
                             for _ in range(prng.randint(2, 6))],
            batch_prompt=hash_id(prng),
            created=old_created(prng, self.t0, 90, 1500),
            release_run=prng.random() < k.release_run_share)

    def build(self) -> list[Account]:
        k = self.sc.eval_runs
        prng = self.rng
        out: list[Account] = []
        for _ in range(self.sc.accounts(k.orgs)):
            org = self._org(prng)
            n = log_uniform_int(prng, k.min_accounts_per_org, k.max_accounts_per_org)
            n_service = max(1, sum(prng.random() < k.service_share for _ in range(n)))
            for j in range(n):
                a = self.new_account(len(out))
                self._account(a, org, service=j < n_service, first=j == 0)
                out.append(a)
        return out

    def _account(self, a: Account, org: EvalOrg, service: bool, first: bool) -> None:
        k = self.sc.eval_runs
        rng = a.rng
        self.personal(a, org.country, self.k.ipv6_share)
        a.org_id, a.payment_fingerprint = org.org_id, org.card
        if service:  # a CI bot: one key, the harness's SDK, the org's cloud
            a.keys = [self.mint.new("key-", rng)]
            a.user_agent = org.user_agent
            a.ip, a.asn, a.country = org.vpc_ips[0], org.cloud.asn, org.cloud.country
            if rng.random() < k.project_account_share:  # opened for the eval project
                a.created_ts = float(round(self.t0 - rng.uniform(1.0, 30.0) * DAY))
            else:
                a.created_ts = float(round(rng.uniform(org.created,
                                                       max(org.created, self.t0 - 30 * DAY))))
        else:  # a member of the org: runs from a notebook, and uses the API as people do
            a.created_ts = float(round(rng.uniform(org.created, self.t0 - DAY)))
        runs: list[_EvalRun] = []
        timed: list[tuple[float, int]] = []
        since = self.t0 - 6 * 3600.0  # runs started before the window still going in it
        if service:
            if first and org.nightly_utc_h is not None:
                day = math.floor(since / DAY) * DAY
                while day < self.t1:
                    cron = day + org.nightly_utc_h * 3600.0
                    if since <= cron < self.t1:
                        timed += self._run(rng, org, runs, cron + rng.uniform(0.0, 600.0),
                                           service, nightly=True)
                    day += DAY
            for start in self._working_starts(rng, k.ci_runs_per_day, since, org.tz):
                timed += self._run(rng, org, runs, start, service)
        else:
            for start in self._working_starts(rng, k.notebook_runs_per_day, since, org.tz):
                timed += self._run(rng, org, runs, start, service)
            n = self.volume(rng, k.mean_other_requests_per_6h, 1.2, org.tz)
            timed += [(t, _OTHER) for t in session_times(rng, n, self.t0, self.t1, org.tz,
                                                         5.0, 45.0)]
        if first and org.release_run and self.sc.model_release_h is not None:
            # the new model, benchmarked within hours of its release
            release = self.t0 + self.sc.model_release_h * 3600.0
            timed += self._run(rng, org, runs, release + rng.expovariate(1.0 / 2700.0), service,
                               model=NEW_LARGE)
        a.state.extra = (org, runs)
        finalize_marked(a, timed, self.t0, self.t1)

    def _working_starts(self, rng: random.Random, per_day: float, since: float, tz: float
                        ) -> list[float]:
        """Run starts through the org's working day (09-19 h local), `per_day` of them a day."""
        rate = max(1e-6, per_day) / 36000.0
        out = []
        t = since + rng.expovariate(rate)
        while t < self.t1:
            if 9.0 <= local_hour(t, tz) < 19.0:
                out.append(t)
            t += rng.expovariate(rate)
        return out

    def _run(self, rng: random.Random, org: EvalOrg, runs: list[_EvalRun], start: float,
             service: bool, nightly: bool = False, model: str | None = None
             ) -> list[tuple[float, int]]:
        """One run's requests: a suite of the org's benchmarks (the nightly one whole, an
        on-demand one a part of it; every item `samples` times) or a batch job over the org's
        own templates; retries now and then."""
        k = self.sc.eval_runs
        r = len(runs)
        batch = service and not nightly and model is None and rng.random() < k.batch_share
        if service and org.hosted_ci:  # a fresh hosted runner for the job
            cloud = self.hosted_cloud
            ips = [net.v4_host(pick(self.hosted_prefixes, rng), rng)]
        elif not service and rng.random() < _HOSTED_NOTEBOOK_SHARE:
            cloud = pick(list(net.NOTEBOOK_EGRESS), rng)
            ips = [net.v4_in(cloud, rng)]
        else:
            cloud, ips = org.cloud, org.vpc_ips
        lo = max(1, k.min_run_items)
        n = int(math.exp(rng.uniform(math.log(lo), math.log(max(lo, k.max_run_items) + 1))))
        if not service:  # interactive: smaller runs
            n = max(20, n // 2)
        marks: list[int] = []
        suite: list[int] = []
        if batch:
            n_t = len(org.batch_templates)
            marks = [r * _RUN + _BATCH_SLOT * _SLOT + int(rng.random() * n_t) for _ in range(n)]
        else:
            suite = (list(org.suite) if nightly or len(org.suite) == 1 else
                     rng.sample(org.suite, rng.randint(1, len(org.suite))))
            samples = pick([3, 5, 10], rng) if rng.random() < k.samples_share else 1
            per = max(1, n // (len(suite) * samples))
            for slot, b in enumerate(suite):
                items = len(self.items[b])
                m = min(items, per)
                order = (rng.sample(range(items), m) if rng.random() < _SHUFFLED_SHARE
                         else range(m))
                for item in order:
                    marks += [r * _RUN + slot * _SLOT + item] * samples
        runs.append(_EvalRun(
            model=model or (SMALL if batch and rng.random() < 0.7
                            else self.run_models.choose(rng, start)),
            thinking=not batch and rng.random() < k.thinking_share, suite=suite, ips=ips,
            asn=cloud.asn, country=cloud.country,
            user_agent=(org.user_agent if service or rng.random() < 0.7
                        else net.python_sdk_user_agent(rng))))
        rate = org.requests_per_min * rng.uniform(0.7, 1.3)
        timed = list(zip(eval_pace(rng, start, len(marks), rate, org.concurrency), marks))
        # a request that met a 429 or a 5xx goes again after the client's backoff
        timed += [(t + rng.uniform(5.0, 90.0), m) for t, m in timed
                  if rng.random() < k.retry_share]
        return timed

    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        rng = a.rng
        st = a.state
        mark = a.marks[i]  # type: ignore[index]
        if mark == _OTHER:
            return self.personal_request(a, ts, st)
        org, runs = st.extra
        run: _EvalRun = runs[mark // _RUN]
        slot, item = (mark // _SLOT) % 16, mark % _SLOT
        ip = run.ips[0] if len(run.ips) == 1 else pick(run.ips, rng)
        if slot == _BATCH_SLOT:
            template, cat = org.batch_templates[item]
            ev = make_event(a, ts, ip, run.asn, run.country, run.model, MESSAGES, cat,
                            near(template, 4, rng), org.batch_prompt, False, 0, 0.5, ERR_BATCH)
        else:
            b = run.suite[slot]
            bench = self.benchmarks[b]
            ev = make_event(a, ts, ip, run.asn, run.country, run.model, MESSAGES, bench.category,
                            near(self.items[b][item], self.sc.eval_runs.max_bit_flips, rng),
                            org.system_prompt, run.thinking or bench.cot, 0, bench.answer_scale,
                            ERR_BATCH)
        ev["user_agent"] = run.user_agent
        return ev


# --- apps built on the API: honest resellers ------------------------------------------------


@dataclass(frozen=True)
class AppKind:
    """What kind of app a customer built on the API: what its users ask (the categories of its
    prompt templates), how often its features turn reasoning on, when in their day its users
    are busiest (local hour), how long its answers are, and whether it sends tool definitions."""

    name: str
    categories: dict[str, float]
    reasoning: tuple[float, float]  # the app's share of templates that ask for reasoning
    peak_local_h: tuple[float, float]
    completion_scale: float
    tools: bool


APP_KINDS: tuple[tuple[AppKind, float], ...] = (
    # homework help: after school and in the evening, worked solutions
    (AppKind("tutoring", {"math": 35, "reasoning": 25, "writing": 15, "coding": 15, "chat": 10},
             (0.4, 0.9), (17.0, 21.5), 1.2, False), 3.0),
    # a coding assistant SaaS: the working day, an agent's tools on every call
    (AppKind("coding_assistant", {"coding": 65, "tool_use": 25, "reasoning": 10},
             (0.2, 0.7), (10.0, 16.0), 1.0, True), 3.0),
    # a writing tool: drafts, rewrites, summaries through the day
    (AppKind("writing_tool", {"writing": 65, "chat": 10, "other": 25},
             (0.0, 0.1), (10.0, 20.0), 1.0, False), 3.0),
    # a customer-service chatbot on a shop's site
    (AppKind("support_bot", {"chat": 60, "other": 30, "writing": 10},
             (0.0, 0.05), (11.0, 19.0), 0.6, False), 1.0),
)
_APP_KIND = Picker(list(APP_KINDS))
# Where the apps' companies and most of their end users are.
_APP_COUNTRIES = Picker([("US", 8.0), ("GB", 2.0), ("DE", 1.5), ("IN", 1.5), ("FR", 1.0),
                         ("CA", 1.0), ("BR", 1.0), ("JP", 1.0), ("KR", 1.0), ("AU", 1.0)])
# Marks of an app account's requests: >= 0 the app's template of that index; _FREE a request
# whose user input dominates (a free-form chat turn); _OTHER a developer's ordinary use.
_FREE = -2


@dataclass
class App:
    """One app built on the API, as the gateway sees its org: the org and its card, the cloud
    its backend leaves from, its system prompts (one per feature, a new version after a deploy),
    its prompt templates, its users' day, and its backend service accounts."""

    name: str
    kind: AppKind
    org_id: str
    card: str
    created: float
    country: str
    tzs: list[float]  # its users' time zones (two for an app used in two regions)
    peak_h: float
    sharpness: float
    trough: float
    peak_rpm: float  # at scale 1, at the peak of its users' day
    cloud: net.Network
    ips: list[str]  # its backend's NAT gateways and instances, in a few /24s of its cloud
    system_prompts: list[list[str]]  # [version][feature]
    deploy_ts: float | None  # when version 1 goes live (None: no deploy in the run)
    categories: Picker  # what its users ask
    reasoning: float  # how often its features ask for reasoning
    templates: list[tuple[int, str, int, float]]  # (simhash, category, feature, reasoning p)
    template_weights: Picker  # template indices, the popular features first
    template_bits: tuple[int, int]  # user input moves a templated prompt this many bits
    session_requests: float  # an end user's requests per visit (mean)
    tools: int  # the tool definitions its agent sends (coding assistants), else 0
    service: list[Account]  # its backend service accounts
    service_weights: list[float]  # their shares of the end users' traffic
    sdk_after_deploy: dict[str, str]  # a service account's client after the deploy

    def rate_shape(self, ts: float) -> float:
        """The app's request rate against its peak at `ts`: its users' day (trough..1)."""
        best = 0.0
        for tz in self.tzs:
            h = local_hour(ts, tz)
            day = (0.5 * (1.0 + math.cos(2.0 * math.pi * (h - self.peak_h) / 24.0))) ** self.sharpness
            best = max(best, day)
        return self.trough + (1.0 - self.trough) * best


class AppBackendUsers(Ordinary):
    """Honest API resellers: apps built on the API (a tutoring app, a coding assistant, a
    writing tool, a support chatbot) whose backends send their end users' requests through a
    few service accounts of one established org on one card, wrapped in the app's system prompt
    and prompt templates, from the app's cloud egress with a server SDK, all day on its users'
    diurnal curve; and the org's developers, who use the API as people do (and try the app's
    prompts from their laptops).

    The apps and their service accounts (ids, org, card, keys) are drawn in `__init__` from the
    population's and the accounts' own rngs, so `campaign_appkeys`, rebuilding the crowd, sends
    on the very same accounts and keys."""

    group = "app_backend"

    def __init__(self, sc: Scenario, mint: IdMint) -> None:
        super().__init__(sc, mint)
        self.apps: list[App] = []
        n = sc.accounts(sc.app_backend.orgs)
        if n:
            # popularity: the k-th app's share of the traffic ~ 1 / k ** exponent (shuffled ranks)
            ranks = list(range(1, n + 1))
            self.rng.shuffle(ranks)
            weights = [1.0 / r ** max(0.0, sc.app_backend.popularity_exponent) for r in ranks]
            total = sum(weights)
            for w in weights:
                self.apps.append(self._app(w / total))

    def _app(self, share: float) -> App:
        k = self.sc.app_backend
        prng = self.rng
        kind: AppKind = _APP_KIND.pick(prng)
        country = _APP_COUNTRIES.pick(prng)
        tz = net.TZ_OFFSET_H[country]
        tzs = [tz]
        if prng.random() < k.global_share:  # a second market half a world away
            tzs.append(((tz + prng.choice((-9.0, -7.0, 8.0, 9.0)) + 12.0) % 24.0) - 12.0)
        cloud = pick(list(net.CLOUD), prng)
        ips = sorted({net.v4_host(prefix, prng)
                      for prefix in [net.v4_prefix24(cloud, prng)
                                     for _ in range(prng.randint(1, 4))]
                      for _ in range(prng.randint(2, 8))})
        features = prng.randint(1, 4)
        system_prompts = [[hash_id(prng) for _ in range(features)]]
        deploy_ts = None
        if prng.random() < k.deploy_share:
            system_prompts.append([hash_id(prng) if prng.random() < 0.7 else sp
                                   for sp in system_prompts[0]])
            deploy_ts = self.t0 + prng.uniform(0.1, 0.9) * (self.t1 - self.t0)
        cats = category_picker(kind.categories)
        lo_r, hi_r = kind.reasoning
        reasoning = prng.uniform(lo_r, hi_r)
        templates = []
        for _ in range(prng.randint(3, 12)):
            cat = cats.pick(prng)
            # features differ (a worked solution, a quick hint), around the app's setting
            p = min(1.0, max(0.0, reasoning + prng.uniform(-0.25, 0.25)))
            templates.append((random_simhash(prng), cat, prng.randrange(features), p))
        lo_b = prng.randint(max(0, k.min_template_bits), max(0, k.min_template_bits, k.max_template_bits))
        name = f"{kind.name}-{len(self.apps)}"
        org_id, card = self.mint.new("org-", prng), self.mint.new("pf-", prng)
        created = old_created(prng, self.t0, k.min_account_age_days,
                              max(k.min_account_age_days, k.max_account_age_days))
        python = prng.random() < 0.5  # the backend's language: its SDK
        n_service = log_uniform_int(prng, k.min_service_accounts, k.max_service_accounts)
        service: list[Account] = []
        after: dict[str, str] = {}
        for j in range(n_service):
            a = self.new_account(sum(len(x.service) for x in self.apps) + j)
            rng = a.rng
            a.org_id, a.payment_fingerprint = org_id, card
            a.created_ts = float(round(rng.uniform(created, max(created, self.t0 - 30 * DAY))))
            a.keys = [self.mint.new("key-", rng) for _ in range(rng.randint(1, 3))]
            a.user_agent = (net.python_sdk_user_agent(rng) if python
                            else f"anthropic-typescript/0.{rng.randint(30, 36)}.{rng.randint(0, 2)}")
            a.ip, a.asn, a.country = ips[0], cloud.asn, cloud.country
            after[a.account_id] = (net.python_sdk_user_agent(rng) if python
                                   else f"anthropic-typescript/0.{rng.randint(33, 37)}.{rng.randint(0, 2)}")
            service.append(a)
        return App(
            name=name, kind=kind, org_id=org_id, card=card, created=created, country=country,
            tzs=tzs, peak_h=prng.uniform(*kind.peak_local_h), sharpness=prng.uniform(1.0, 3.0),
            trough=prng.uniform(k.min_trough_share, max(k.min_trough_share, k.max_trough_share)),
            peak_rpm=k.total_peak_rpm * share, cloud=cloud, ips=ips,
            system_prompts=system_prompts, deploy_ts=deploy_ts, categories=cats,
            reasoning=reasoning, templates=templates,
            template_weights=Picker([(i, 1.0 / (i + 1)) for i in range(len(templates))]),
            template_bits=(lo_b, max(lo_b, k.max_template_bits)),
            session_requests=prng.uniform(max(1.0, k.min_session_requests),
                                          max(1.0, k.min_session_requests, k.max_session_requests)),
            tools=prng.randint(3, 12) if kind.tools else 0, service=service,
            # production takes most of the traffic; staging and workers a part
            service_weights=[1.0] + [prng.uniform(0.02, 0.5) for _ in service[1:]],
            sdk_after_deploy=after)

    def build(self) -> list[Account]:
        k = self.sc.app_backend
        out: list[Account] = []
        for app in self.apps:
            timed: dict[str, list[tuple[float, int]]] = {a.account_id: [] for a in app.service}
            for account_id, t, mark in self._end_users(app):
                timed[account_id].append((t, mark))
            for a in app.service:
                rows = timed[a.account_id]
                if not rows:  # a quiet staging account still sends its health check
                    rows.append((self.t0 + a.rng.random() * (self.t1 - self.t0), 0))
                a.state = app
                finalize_marked(a, rows, self.t0, self.t1)
                out.append(a)
        for app in self.apps:
            for _ in range(log_uniform_int(self.rng, k.min_developers, k.max_developers)):
                a = self.new_account(len(out))  # after every service account's index
                self._developer(a, app)
                out.append(a)
        return out

    def _end_users(self, app: App) -> list[tuple[str, float, int]]:
        """The app's end users' visits, all day: visits start at the app's rate over its users'
        day (thinning), each a few requests a think time apart, routed to a service account."""
        k = self.sc.app_backend
        prng = rng_for(self.sc.seed, self.group, "end-users", app.org_id)
        visit_rate = app.peak_rpm * self.sc.scale / 60.0 / app.session_requests  # per second
        out: list[tuple[str, float, int]] = []
        if visit_rate <= 0:
            return out
        routes = Picker([(a.account_id, w) for a, w in zip(app.service, app.service_weights)])
        mu = math.log(max(1.0, k.median_think_s))
        p_more = 1.0 - 1.0 / app.session_requests
        t = self.t0 - 1800.0  # visits already going on when the window opens
        while True:
            t += prng.expovariate(visit_rate)
            if t >= self.t1:
                break
            if prng.random() >= app.rate_shape(t):
                continue
            account_id = routes.pick(prng)
            mark = app.template_weights.pick(prng) if prng.random() < k.template_share else _FREE
            s = t
            while s < self.t1:
                out.append((account_id, s, mark))
                if prng.random() > p_more:
                    break
                s += min(math.exp(mu + 0.8 * prng.gauss(0.0, 1.0)), 1800.0)
        return out

    def _developer(self, a: Account, app: App) -> None:
        """One of the org's developers: a person on the org's card, from home or the office,
        now and then trying the app's own prompts."""
        k = self.sc.app_backend
        rng = a.rng
        self.personal(a, app.country, self.k.ipv6_share)
        a.org_id, a.payment_fingerprint = app.org_id, app.card
        a.created_ts = float(round(rng.uniform(app.created, self.t0 - 7 * DAY)))
        a.state.extra = app
        n = self.volume(rng, k.mean_other_requests_per_6h, 1.2, app.tzs[0])
        times = session_times(rng, n, self.t0, self.t1, app.tzs[0], 6.0, 40.0)
        finalize_marked(a, [(t, app.template_weights.pick(rng) if rng.random() < k.dev_test_share
                             else _OTHER) for t in times], self.t0, self.t1)

    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        rng = a.rng
        mark = a.marks[i]  # type: ignore[index]
        ip: str
        asn: int | None
        country: str | None
        if isinstance(a.state, App):
            app = a.state
            ip = pick(app.ips, rng)
            asn, country = app.cloud.asn, app.cloud.country
        else:
            app = a.state.extra
            if mark == _OTHER:
                return self.personal_request(a, ts, a.state)
            ip, asn, country = a.ip, a.asn, a.country
        version = 1 if app.deploy_ts is not None and ts >= app.deploy_ts else 0
        prompts = app.system_prompts[version]
        if mark == _FREE:  # the user's own text dominates the prompt
            cat = app.categories.pick(rng)
            simhash = random_simhash(rng)
            feature = 0
            reasoning = rng.random() < app.reasoning
        else:
            template, cat, feature, p = app.templates[mark]
            lo, hi = app.template_bits
            simhash = perturb(template, lo + int(rng.random() * (hi - lo + 1)), rng)
            reasoning = rng.random() < p
        ev = make_event(
            a, ts, ip, asn, country, self.models.choose(rng, ts), MESSAGES, cat, simhash,
            prompts[feature], reasoning, app.tools if cat in ("coding", "tool_use") else 0,
            app.kind.completion_scale, ERR_BATCH, a.keys[0] if len(a.keys) == 1 else pick(a.keys, rng))
        if version and isinstance(a.state, App):
            ev["user_agent"] = app.sdk_after_deploy.get(a.account_id, a.user_agent)
        return ev
