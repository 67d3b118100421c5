"""Campaigns of the scenario families: aged accounts, low-and-slow, returning after a pause,
framing a benign crowd, camouflaged by decoys, mimicking people with unique prompts, sleeping
as ordinary users before they harvest, sitting an exam to harvest its questions, riding a
viral prompt's wave before harvesting, seats bought inside shell orgs, a harvest dressed as
eval runs, and a harvest through stolen keys of apps built on the API.

Like the original four (`populations.py`), they honour the scenario's robustness knobs: the
account multiplier spreads the same volume over more accounts, timing jitter stretches their
inter-arrival times, and `rotate_ip_per_request` gives every request a fresh residential exit.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from . import network as net
from .crowds import (
    AgentFleetRunners,
    AppBackendUsers,
    CampusLabStudents,
    CgnatUsers,
    ClassroomAttendees,
    EvalRunners,
    ExamCandidates,
    OssToolUsers,
    ResellerCustomers,
    ViralPromptSenders,
    created_before,
    eval_pace,
    viral_client,
)
from .network import Picker
from .populations import (
    DAY,
    ERR_BATCH,
    ERR_ORDINARY,
    ERR_PUSHY,
    MESSAGES,
    Account,
    Campaign,
    LaunchWaveUsers,
    ModelChooser,
    Ordinary,
    category_picker,
    finalize_marked,
    finalize_times,
    hash_id,
    make_event,
    near,
    old_created,
    pick,
    proxy_prefixes,
    session_times,
    stochastic_round,
)
from .scenario import Scenario
from .seeding import IdMint, rng_for
from .simhash import perturb, random_simhash

Exit = tuple[str, int | None, str | None]

# What distillation harvests: high-value categories.
_HARVEST: dict[str, float] = {"reasoning": 40, "coding": 30, "math": 20, "tool_use": 10}
# What aged accounts' template families are about.
_AGED_FAMILIES: dict[str, float] = {"reasoning": 45, "coding": 30, "math": 25}
# Low-value templates a decoy campaign spreads (translate, greet, summarise).
_DECOY_CATEGORIES: dict[str, float] = {"chat": 1, "writing": 1, "other": 1}
# Countries whose residential addresses bought accounts and their proxies claim (each with
# several ISPs in network.py, so a rotated exit often lands in another ASN).
_CLAIMED = Picker([("US", 6.0), ("GB", 2.0), ("DE", 1.5), ("CA", 1.5), ("FR", 1.0),
                   ("JP", 1.0), ("BR", 0.5), ("IN", 0.5)])


def residential_exit(country: str, rng: random.Random) -> Exit:
    """A residential or mobile proxy exit in `country`: a random subscriber of a random ISP."""
    isp = net.isp_in(country, rng)
    return net.v4_in(isp, rng), isp.asn, country


def poisson_times(rng: random.Random, rate_per_s: float, t0: float, t1: float,
                  jittered: Any) -> list[float]:
    """Poisson request times in [t0, t1) at `rate_per_s`; `jittered` stretches each gap."""
    times: list[float] = []
    t = t0 + rng.expovariate(rate_per_s)
    while t < t1:
        times.append(t)
        t += jittered(rng.expovariate(rate_per_s), rng)
    return times


def paced_times(rng: random.Random, gap_s: float, t0: float, t1: float,
                jittered: Any) -> list[float]:
    """Requests every ~gap_s (+-15%) from t0 + a random offset, as a harvesting script paces."""
    times: list[float] = []
    t = t0 + rng.uniform(0.0, gap_s)
    while t < t1:
        times.append(t)
        t += jittered(gap_s * rng.uniform(0.85, 1.15), rng)
    return times


def held_exit(st: list[Any], rotate: bool, rng: random.Random, min_per_ip: int,
              max_per_ip: int) -> Exit:
    """The exit of a campaign account's request: a new residential one on every request when the
    scenario rotates; else the account's own (`st[0]`), which an account on rotating proxies
    (`st[1]`, its requests left on this exit, not None) changes every few requests."""
    if rotate:
        return net.rotating_exit(rng)
    if st[1] is not None:
        if st[1] <= 0:
            st[0] = net.rotating_exit(rng)
            st[1] = rng.randint(max(1, min_per_ip), max(1, min_per_ip, max_per_ip))
        st[1] -= 1
    return st[0]


def at_least_one(times: list[float], rng: random.Random, t0: float, t1: float) -> list[float]:
    """Every account of a campaign sends at least once (also at a high account multiplier)."""
    return times or [t0 + (t1 - t0) * rng.random()]


def templates_for(rng: random.Random, n: int, cats: dict[str, float]) -> list[tuple[int, str]]:
    """`n` harvest templates, each with the category its prompts are classified as."""
    picker = category_picker(cats)
    return [(random_simhash(rng), picker.pick(rng)) for _ in range(max(1, n))]


# --- aged accounts --------------------------------------------------------------------------


@dataclass
class _TemplateFamily:
    """A prompt-template family: many variants a few bits from one base."""

    variants: list[int]
    category: str


def template_families(prng: random.Random, families: int, variants: int,
                      categories: dict[str, float]) -> list[_TemplateFamily]:
    """`families` template families, of `categories` by weight, each `variants` variants 3 to
    7 bits from its base (the draws in this order: a scenario's traffic depends on it)."""
    return [_TemplateFamily([perturb(base, prng.randint(3, 7), prng)
                             for _ in range(max(1, variants))], cat)
            for base, cat in templates_for(prng, families, categories)]


class AgedAccounts(Campaign):
    """Bought or aged accounts: created months to years ago, each on its own card or none; most
    requests come from a fresh residential or mobile exit in the account's claimed country and
    many from a fresh client; a few template families, written-out reasoning, long answers."""

    group = "campaign_aged"

    def build(self) -> list[Account]:
        k = self.sc.campaign_aged
        prng = self.rng
        self.families = template_families(prng, k.template_families, k.family_variants,
                                          _AGED_FAMILIES)
        self.models = ModelChooser(self.sc, 0.85, cap=0.4, ramp_h=2.0)
        start = self.campaign_start(k.start_h)
        out = []
        for idx in range(self.sc.campaign_accounts(k.accounts)):
            a = self.new_account(idx)
            rng = a.rng
            a.created_ts = old_created(rng, self.t0, k.min_account_age_days,
                                       k.max_account_age_days)
            a.payment_fingerprint = (None if rng.random() < k.null_payment_share
                                     else self.mint.new("pf-", rng))
            a.org_id = self.mint.new("org-", rng)
            a.keys = [self.mint.new("key-", rng)]
            a.user_agent = net.random_user_agent(rng)
            country = _CLAIMED.pick(rng)
            a.ip, a.asn, a.country = residential_exit(country, rng)
            a.state = [(a.ip, a.asn, a.country), country]
            rate = k.requests_per_h / 3600.0 * rng.uniform(0.5, 1.5) / self.multiplier
            first = start + rng.uniform(0.0, 1800.0)
            finalize_times(a, at_least_one(poisson_times(rng, rate, first, self.t1, self.jittered),
                                           rng, first, self.t1), self.t0, self.t1)
            out.append(a)
        return out

    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        rng = a.rng
        k = self.sc.campaign_aged
        st = a.state
        if self.rotate:
            st[0] = net.rotating_exit(rng)
        elif rng.random() < k.ip_rotation_share:
            st[0] = residential_exit(st[1], rng)
        ip, asn, country = st[0]
        family: _TemplateFamily = pick(self.families, rng)
        ev = make_event(
            a, ts, ip, asn, country, self.models.choose(rng, ts), MESSAGES, family.category,
            near(pick(family.variants, rng), k.max_bit_flips, rng), None,
            rng.random() < k.reasoning_share, 0, k.completion_scale, ERR_ORDINARY,
        )
        if rng.random() < k.ua_rotation_share:
            ev["user_agent"] = net.random_user_agent(rng)
        return ev


# --- low and slow ---------------------------------------------------------------------------


class SlowCampaign(Campaign):
    """Low and slow over the whole run: each account sends a few templated requests an hour
    from a sticky residential exit; some accounts share one of a few cards."""

    group = "campaign_slow"

    def build(self) -> list[Account]:
        k = self.sc.campaign_slow
        prng = self.rng
        self.templates = templates_for(prng, k.templates, _HARVEST)
        self.cards = [self.mint.new("pf-", prng) for _ in range(max(1, k.payment_fingerprints))]
        self.uas = [net.sdk_user_agent(prng) for _ in range(3)]
        self.system_prompt = hash_id(prng)
        self.models = ModelChooser(self.sc, 0.8, cap=0.3, ramp_h=6.0)
        out = []
        for idx in range(self.sc.campaign_accounts(k.accounts)):
            a = self.new_account(idx)
            rng = a.rng
            a.created_ts = old_created(rng, self.t0, k.min_account_age_days,
                                       k.max_account_age_days)
            a.payment_fingerprint = (pick(self.cards, rng) if rng.random() < k.shared_payment_share
                                     else self.mint.new("pf-", rng))
            a.org_id = self.mint.new("org-", rng)
            a.keys = [self.mint.new("key-", rng)]
            a.user_agent = pick(self.uas, rng)
            country = _CLAIMED.pick(rng)
            a.ip, a.asn, a.country = residential_exit(country, rng)
            a.state = [(a.ip, a.asn, a.country), country]
            rate = k.requests_per_h / 3600.0 * rng.uniform(0.7, 1.3) / self.multiplier
            finalize_times(a, at_least_one(poisson_times(rng, rate, self.t0, self.t1,
                                                         self.jittered), rng, self.t0, self.t1),
                           self.t0, self.t1)
            out.append(a)
        return out

    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        rng = a.rng
        k = self.sc.campaign_slow
        st = a.state
        if self.rotate:
            st[0] = net.rotating_exit(rng)
        elif rng.random() < k.ip_rotation_share:
            st[0] = residential_exit(st[1], rng)
        ip, asn, country = st[0]
        template, cat = pick(self.templates, rng)
        return make_event(
            a, ts, ip, asn, country, self.models.choose(rng, ts), MESSAGES, cat,
            near(template, k.max_bit_flips, rng),
            self.system_prompt if rng.random() < 0.7 else None,
            rng.random() < k.reasoning_share, 0, 2.0, ERR_ORDINARY,
        )


# --- returning after a pause ----------------------------------------------------------------


def _proxy_ips(rng: random.Random, prefixes: list[tuple[tuple[int, int, int], net.Network]]
               ) -> tuple[list[str], net.Network]:
    prefix, host = prefixes[rng.randrange(len(prefixes))]
    return [net.v4_host(prefix, rng) for _ in range(rng.randint(1, 2))], host


class ReturningCampaign(Campaign):
    """Harvests for a while from datacenter proxies, pauses longer than a block lasts, and
    comes back with the same accounts and templates (from fresh proxy addresses, by default).
    Mark = phase (0 or 1)."""

    group = "campaign_returning"

    def phases(self) -> list[tuple[float, float]]:
        k = self.sc.campaign_returning
        start = self.campaign_start(k.start_h)
        first_end = start + k.first_phase_h * 3600.0
        back = first_end + k.pause_h * 3600.0
        return [(start, min(first_end, self.t1)),
                (back, min(back + k.second_phase_h * 3600.0, self.t1))]

    def build(self) -> list[Account]:
        k = self.sc.campaign_returning
        prng = self.rng
        self.templates = templates_for(prng, k.templates, _HARVEST)
        # the burst campaign's kind of proxy ranges; a second set for the return
        self.prefixes = [proxy_prefixes(prng, k.proxy_asns, k.proxy_prefixes) for _ in range(2)]
        self.cards = [self.mint.new("pf-", prng) for _ in range(max(1, k.payment_fingerprints))]
        self.ua = net.sdk_user_agent(prng)
        self.system_prompt = hash_id(prng)
        self.models = ModelChooser(self.sc, 0.85, cap=0.5, ramp_h=1.0)
        phases = self.phases()
        gap_base = 60.0 / max(k.requests_per_min, 1e-6) * self.multiplier
        out = []
        for idx in range(self.sc.campaign_accounts(k.accounts)):
            a = self.new_account(idx)
            rng = a.rng
            ips0, host0 = _proxy_ips(rng, self.prefixes[0])
            ips1, host1 = _proxy_ips(rng, self.prefixes[1]) if k.new_ips_on_return else (
                ips0, host0)
            a.ip, a.asn, a.country = ips0[0], host0.asn, host0.country
            a.state = ((ips0, host0), (ips1, host1))
            a.org_id = self.mint.new("org-", rng)
            a.keys = [self.mint.new("key-", rng)]
            a.payment_fingerprint = pick(self.cards, rng)
            a.user_agent = self.ua
            a.created_ts = created_before(rng, phases[0][0], 2 * DAY, 30 * DAY)
            gap = gap_base * rng.uniform(0.8, 1.25)
            timed = [(t, p) for p, (p0, p1) in enumerate(phases)
                     for t in paced_times(rng, gap, p0, p1, self.jittered)]
            if not timed:
                timed = [(phases[0][0] + rng.uniform(0.0, 60.0), 0)]
            finalize_marked(a, timed, self.t0, self.t1)
            out.append(a)
        return out

    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        rng = a.rng
        k = self.sc.campaign_returning
        if self.rotate:
            ip, asn, country = net.rotating_exit(rng)
        else:
            ips, host = a.state[a.marks[i]]  # type: ignore[index]
            ip, asn, country = pick(ips, rng), host.asn, host.country
        template, cat = pick(self.templates, rng)
        return make_event(
            a, ts, ip, asn, country, self.models.choose(rng, ts), MESSAGES, cat,
            near(template, k.max_bit_flips, rng), self.system_prompt,
            rng.random() < k.reasoning_share, 3 + int(rng.random() * 10) if cat == "tool_use"
            else 0, 2.5, ERR_PUSHY,
        )


# --- framing a benign crowd -----------------------------------------------------------------


@dataclass
class _Disguise:
    """What the framing accounts copy from the crowd: fixed identity parts, a way to draw an
    address, and the crowd's shared prompts (empty when the copied key is not a prompt)."""

    user_agent: Any  # str, or a callable(rng) drawing one
    system_prompt: str | None
    tools: int
    address: Any  # callable(rng) -> Exit
    payment: str | None  # the copied card, else each account its own
    shared_prompts: list[tuple[int, str]]
    created: Any  # callable(rng) -> created_ts
    # sent with the copied prompts, on this share of them (the course notebook's system prompt)
    shared_system_prompt: tuple[str, float] | None = None


_FRAMING_HARVEST: dict[str, dict[str, float]] = {
    "tool": {"coding": 55, "tool_use": 30, "reasoning": 15},
    "fleet": {"coding": 50, "tool_use": 35, "reasoning": 15}}


class FramingCampaign(Campaign):
    """A handful of harvesting accounts that copy one benign crowd's shared key, so that a
    cluster built on that key holds both. `campaign_framing.copies` says which key."""

    group = "campaign_framing"

    def build(self) -> list[Account]:
        k = self.sc.campaign_framing
        prng = self.rng
        self.templates = templates_for(prng, k.templates,
                                       _FRAMING_HARVEST.get(k.copies, _HARVEST))
        self.models = ModelChooser(self.sc, 0.9, cap=0.5, ramp_h=1.0)
        disguise = self._disguise()
        start = self.campaign_start(k.start_h)
        gap_base = 60.0 / max(k.requests_per_min, 1e-6) * self.multiplier
        out = []
        for idx in range(self.sc.campaign_accounts(k.accounts)):
            a = self.new_account(idx)
            rng = a.rng
            a.org_id = self.mint.new("org-", rng)
            a.keys = [self.mint.new("key-", rng)]
            a.payment_fingerprint = disguise.payment or self.mint.new("pf-", rng)
            ua = disguise.user_agent
            a.user_agent = ua(rng) if callable(ua) else ua
            a.ip, a.asn, a.country = disguise.address(rng)
            a.created_ts = disguise.created(rng)
            a.state = [(a.ip, a.asn, a.country), disguise]
            first = max(start, a.created_ts + 60.0) + rng.uniform(0.0, 300.0)
            timed: list[tuple[float, int]] = []
            if k.copies == "tutorial":  # a sign-up's first requests: the quickstart pages
                t = a.created_ts + rng.uniform(30.0, 600.0)
                for step in range(rng.randint(2, 4)):
                    timed.append((t, -1 - step))
                    t += rng.uniform(20.0, 150.0)
                first = max(first, t)
            timed += [(t, 0) for t in paced_times(rng, gap_base * rng.uniform(0.8, 1.25),
                                                   first, self.t1, self.jittered)]
            finalize_marked(a, timed or [(first, 0)], self.t0, self.t1)
            out.append(a)
        return out

    def _disguise(self) -> _Disguise:
        """The copied crowd, rebuilt from its own seed with a throwaway id mint (so its keys
        are exactly the crowd's)."""
        sc, copies = self.sc, self.sc.campaign_framing.copies
        t0 = self.t0
        if copies == "tutorial":
            wave = LaunchWaveUsers(sc, IdMint())
            launch = wave.launch_times()[0]
            mean_delay = max(1.0, sc.launch_wave.mean_signup_delay_min) * 60.0
            cats = sc.launch_wave.tutorial_categories
            tutorials = [(t, cats[p % len(cats)]) for p, t in enumerate(wave.tutorials)]
            return _Disguise(
                lambda rng: pick(wave.latest_uas, rng), None, 0, _home_exit, None, tutorials,
                lambda rng: float(round(min(launch + rng.expovariate(1.0 / mean_delay),
                                            self.t1 - 600.0))))
        if copies == "tool":
            tool = OssToolUsers(sc, IdMint())
            return _Disguise(tool.user_agents[0], tool.default_prompts[0], tool.tool.tools,
                             _home_exit, None, tool.scaffolds,
                             lambda rng: old_created(rng, t0, 3, 120))
        if copies == "egress":
            cg = CgnatUsers(sc, IdMint())
            return _Disguise(net.random_user_agent, None, 0,
                             lambda rng: (cg.pool_address(rng), cg.carrier.asn,
                                          cg.carrier.country),
                             None, [], lambda rng: old_created(rng, t0, 3, 120))
        if copies == "campus":
            campus = CampusLabStudents(sc, IdMint()).campuses[0]
            uni = campus.network
            return _Disguise(net.random_user_agent, None, 0,
                             lambda rng: (pick(campus.nat_ips, rng), uni.asn, uni.country),
                             None, campus.templates, lambda rng: old_created(rng, t0, 5, 120))
        if copies == "classroom":  # the first course: its exercises, notebook and pinned SDK
            course = ClassroomAttendees(sc, IdMint()).courses[0]
            first = course.sessions[0].start
            return _Disguise(
                lambda rng: (course.user_agent if rng.random() < 0.5
                             else net.random_user_agent(rng)),
                None, 0, _home_exit, None,
                [ex for session in course.sessions for ex in session.exercises],
                lambda rng: created_before(rng, first, 300.0, 14 * DAY),
                (course.system_prompt, sc.classroom.course_system_prompt_share))
        if copies == "fleet":  # the first fleet's agent definition, from a hoster's range
            fleet = AgentFleetRunners(sc, IdMint()).first_fleet()
            hosts = proxy_prefixes(self.rng, 1, 2)
            return _Disguise(
                fleet.user_agent, fleet.system_prompt, fleet.tools,
                lambda rng: _hosted_exit(hosts, rng), None, [],
                lambda rng: old_created(rng, t0, 20, 400))
        seller = ResellerCustomers(sc, IdMint()).resellers[0]  # "card"
        return _Disguise(net.random_user_agent, None, 0,
                         lambda rng: residential_exit(seller.markets.pick(rng), rng),
                         seller.card, [], lambda rng: old_created(rng, t0, 1, 45))

    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        rng = a.rng
        k = self.sc.campaign_framing
        st = a.state
        disguise: _Disguise = st[1]
        mark = a.marks[i]  # type: ignore[index]
        if self.rotate:
            ip, asn, country = net.rotating_exit(rng)
        elif k.copies in ("egress", "campus"):
            ip, asn, country = disguise.address(rng)  # the shared pool's addresses
        else:
            ip, asn, country = st[0]
        shared = disguise.shared_prompts
        system_prompt = disguise.system_prompt
        if mark < 0 and shared:  # the sign-up's tutorial walk: page (step mod pages)
            template, cat = shared[(-1 - mark) % len(shared)]
            reasoning, scale = False, 0.5
        elif shared and rng.random() < k.copied_template_share:
            template, cat = pick(shared, rng)
            reasoning, scale = rng.random() < k.reasoning_share, 2.0
            if disguise.shared_system_prompt is not None:
                sp, share = disguise.shared_system_prompt
                system_prompt = sp if rng.random() < share else None
        else:
            template, cat = pick(self.templates, rng)
            reasoning, scale = rng.random() < k.reasoning_share, 2.5
        return make_event(
            a, ts, ip, asn, country, self.models.choose(rng, ts), MESSAGES, cat,
            near(template, k.max_bit_flips, rng), system_prompt, reasoning,
            disguise.tools if disguise.tools else (4 + int(rng.random() * 8)
                                                   if cat == "tool_use" else 0),
            scale, ERR_PUSHY,
        )


def _home_exit(rng: random.Random) -> Exit:
    """A home connection somewhere, as an ordinary user's."""
    return residential_exit(net.COUNTRIES.pick(rng), rng)


def _hosted_exit(hosts: list[tuple[tuple[int, int, int], net.Network]],
                 rng: random.Random) -> Exit:
    """An address in one of a few /24s at a hoster."""
    prefix, host = hosts[int(rng.random() * len(hosts))]
    return net.v4_host(prefix, rng), host.asn, host.country


# --- camouflage and decoys ------------------------------------------------------------------

# Low-value requests a campaign mixes in to look like people.
_CAMOUFLAGE = category_picker({"chat": 45, "writing": 35, "other": 20})


class DecoyCampaign(Campaign):
    """Harvests templates with written-out reasoning, but mixes in a share of benign-looking
    requests (unique prompts, low-value categories) and seeds decoy templates of low-value
    prompts across its accounts; accounts look like people (sessions, residential exits kept
    for a while, varied clients)."""

    group = "campaign_decoy"

    def build(self) -> list[Account]:
        k = self.sc.campaign_decoy
        prng = self.rng
        self.templates = templates_for(prng, k.templates, _HARVEST)
        self.decoys = templates_for(prng, k.decoy_templates, _DECOY_CATEGORIES)
        self.cards = [self.mint.new("pf-", prng) for _ in range(max(1, k.payment_fingerprints))]
        self.models = ModelChooser(self.sc, 0.75, cap=0.3, ramp_h=2.0)
        start = self.campaign_start(k.start_h)
        out = []
        for idx in range(self.sc.campaign_accounts(k.accounts)):
            a = self.new_account(idx)
            rng = a.rng
            country = _CLAIMED.pick(rng)
            tz = net.TZ_OFFSET_H[country]
            a.ip, a.asn, a.country = residential_exit(country, rng)
            a.state = [(a.ip, a.asn, a.country), country,
                       rng.randint(k.min_requests_per_ip, k.max_requests_per_ip)]
            a.org_id = self.mint.new("org-", rng)
            a.keys = [self.mint.new("key-", rng)]
            a.user_agent = net.random_user_agent(rng)
            a.payment_fingerprint = (pick(self.cards, rng) if rng.random() < k.shared_payment_share
                                     else self.mint.new("pf-", rng))
            a.created_ts = old_created(rng, self.t0, 5, 90)
            mean = k.mean_requests_per_6h * (self.t1 - start) / (6 * 3600.0) / self.multiplier
            n = max(1, stochastic_round(mean * math.exp(0.4 * rng.gauss()), rng))
            finalize_times(a, session_times(rng, n, start, self.t1, tz, 8.0, 30.0, self.jitter),
                           self.t0, self.t1)
            out.append(a)
        return out

    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        rng = a.rng
        k = self.sc.campaign_decoy
        st = a.state
        if self.rotate:
            ip, asn, country = net.rotating_exit(rng)
        else:
            if st[2] <= 0:
                st[0] = residential_exit(st[1], rng)
                st[2] = rng.randint(k.min_requests_per_ip, k.max_requests_per_ip)
            st[2] -= 1
            ip, asn, country = st[0]
        u = rng.random()
        model = self.models.choose(rng, ts)
        if u < k.camouflage_share:  # looks like anyone's chat
            return make_event(a, ts, ip, asn, country, model, MESSAGES, _CAMOUFLAGE.pick(rng),
                              random_simhash(rng), None, rng.random() < 0.03, 0, 1.0,
                              ERR_ORDINARY)
        if u < k.camouflage_share + k.decoy_template_share:
            template, cat = pick(self.decoys, rng)
            return make_event(a, ts, ip, asn, country, model, MESSAGES, cat,
                              near(template, k.max_bit_flips, rng), None, False, 0, 0.8,
                              ERR_ORDINARY)
        template, cat = pick(self.templates, rng)
        return make_event(
            a, ts, ip, asn, country, model, MESSAGES, cat, near(template, k.max_bit_flips, rng),
            None, rng.random() < k.reasoning_share,
            3 + int(rng.random() * 10) if cat == "tool_use" else 0, 2.5, ERR_ORDINARY,
        )


# --- mimicking people: no templates at all --------------------------------------------------

# The one client the harvesting pipeline runs.
_MIMIC_CLIENTS = ("python-httpx/0.27.2", "python-httpx/0.28.1", "aiohttp/3.10.10",
                  "anthropic-python/0.45.2 CPython/3.12.8 Linux", "node-fetch/3.3.2",
                  "anthropic-typescript/0.36.3")


class MimicCampaign(Campaign):
    """Harvests with every prompt unique (each question paraphrased by another model), from
    established or bought accounts each on its own card and org; what the accounts share is a
    cloud egress range and the pipeline's client. Reasoning on most requests, long answers,
    a moderate Poisson rate per account."""

    group = "campaign_mimic"

    def build(self) -> list[Account]:
        k = self.sc.campaign_mimic
        prng = self.rng
        self.cloud = pick(list(net.CLOUD), prng)
        self.prefixes = [net.v4_prefix24(self.cloud, prng)
                         for _ in range(max(1, k.egress_prefixes))]
        self.ua = pick(list(_MIMIC_CLIENTS), prng)
        self.cats = category_picker(_HARVEST)
        self.models = ModelChooser(self.sc, 0.9, cap=0.5, ramp_h=1.5)
        start = self.campaign_start(k.start_h)
        out = []
        for idx in range(self.sc.campaign_accounts(k.accounts)):
            a = self.new_account(idx)
            rng = a.rng
            a.created_ts = old_created(rng, self.t0, k.min_account_age_days,
                                       max(k.min_account_age_days, k.max_account_age_days))
            a.payment_fingerprint = self.mint.new("pf-", rng)
            a.org_id = self.mint.new("org-", rng)
            a.keys = [self.mint.new("key-", rng)]
            a.user_agent = self.ua
            ips = [net.v4_host(pick(self.prefixes, rng), rng)
                   for _ in range(rng.randint(1, max(1, k.ips_per_account)))]
            a.ip, a.asn, a.country = ips[0], self.cloud.asn, self.cloud.country
            a.state = (ips, hash_id(rng) if rng.random() < k.system_prompt_share else None)
            spread = min(0.9, max(0.0, k.rate_spread))
            rate = (k.requests_per_h / 3600.0 * rng.uniform(1.0 - spread, 1.0 + spread)
                    / self.multiplier)
            first = start + rng.uniform(0.0, 1800.0)
            finalize_times(a, at_least_one(poisson_times(rng, rate, first, self.t1, self.jittered),
                                           rng, first, self.t1), self.t0, self.t1)
            out.append(a)
        return out

    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        rng = a.rng
        k = self.sc.campaign_mimic
        ip, asn, country = self.exit_for(a)
        cat = self.cats.pick(rng)
        return make_event(
            a, ts, ip, asn, country, self.models.choose(rng, ts), MESSAGES, cat,
            random_simhash(rng), a.state[1], rng.random() < k.reasoning_share,
            3 + int(rng.random() * 10) if cat == "tool_use" else 0, k.completion_scale,
            ERR_ORDINARY,
        )


# --- sleepers: ordinary first, harvesting later ---------------------------------------------

_ASLEEP, _AWAKE = 0, 1


class SleeperCampaign(Campaign, Ordinary):
    """Accounts made weeks before, used like ordinary people's (unique prompts, mixed
    categories, sessions on the claimed country's clock, a home address) until each switches,
    at its own time within the window, to harvesting a handful of templates with reasoning
    requested; some then run from a script (one SDK agent) or a datacenter address."""

    group = "campaign_sleeper"
    label = "attack"

    def __init__(self, sc: Scenario, mint: IdMint) -> None:
        Ordinary.__init__(self, sc, mint)
        self.jitter = sc.timing_jitter
        self.rotate = sc.rotate_ip_per_request
        self.multiplier = sc.campaign_account_multiplier
        k = sc.campaign_sleeper
        prng = self.rng
        self.templates = templates_for(prng, k.templates, _HARVEST)
        self.harvest_ua = net.sdk_user_agent(prng)
        self.hosts = proxy_prefixes(prng, 1, 2)
        self.harvest_models = ModelChooser(sc, 0.9, cap=0.4, ramp_h=1.5)

    def switch_window(self) -> tuple[float, float]:
        """When accounts switch: from switch_h (in the first half of the run) for
        switch_window_h, leaving at least half an hour of harvest."""
        k = self.sc.campaign_sleeper
        lo = self.campaign_start(k.switch_h)
        hi = min(lo + max(0.0, k.switch_window_h) * 3600.0, self.t1 - 1800.0)
        return lo, max(lo, hi)

    def build(self) -> list[Account]:
        k = self.sc.campaign_sleeper
        lo, hi = self.switch_window()
        out = []
        for idx in range(self.sc.campaign_accounts(k.accounts)):
            a = self.new_account(idx)
            rng = a.rng
            country = _CLAIMED.pick(rng)
            tz = net.TZ_OFFSET_H[country]
            self.personal(a, country, 0.1)
            a.payment_fingerprint = None if rng.random() < 0.1 else self.mint.new("pf-", rng)
            a.created_ts = old_created(rng, self.t0, k.min_account_age_days,
                                       max(k.min_account_age_days, k.max_account_age_days))
            switch = rng.uniform(lo, hi)
            n = self.volume(rng, k.mean_requests_per_6h, 0.6, tz)
            n = max(1, stochastic_round(n / self.multiplier, rng))
            asleep = [t for t in session_times(rng, n, self.t0, self.t1, tz, 6.0, 40.0,
                                               self.jitter) if t < switch]
            rate = k.requests_per_h / 3600.0 * rng.uniform(0.7, 1.3) / self.multiplier
            awake = at_least_one(poisson_times(rng, rate, switch, self.t1, self.jittered),
                                 rng, switch, self.t1)
            ua = self.harvest_ua if rng.random() < k.harvest_client_share else None
            hosted = None
            if rng.random() < k.new_exit_share:
                prefix, host = pick(self.hosts, rng)
                hosted = (net.v4_host(prefix, rng), host.asn, host.country)
            a.state.extra = (switch, ua, hosted)
            finalize_marked(a, [(t, _ASLEEP) for t in asleep] + [(t, _AWAKE) for t in awake],
                            self.t0, self.t1)
            out.append(a)
        return out

    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        rng = a.rng
        st = a.state
        if a.marks[i] == _ASLEEP:  # type: ignore[index]
            ev = self.personal_request(a, ts, st)
            if self.rotate:
                ev["ip"], ev["asn"], ev["country"] = net.rotating_exit(rng)
            return ev
        k = self.sc.campaign_sleeper
        _, ua, hosted = st.extra
        ip: str
        asn: int | None
        country: str | None
        if self.rotate:
            ip, asn, country = net.rotating_exit(rng)
        elif hosted is not None:
            ip, asn, country = hosted
        else:
            ip, asn, country = a.ip, a.asn, a.country
        template, cat = pick(self.templates, rng)
        ev = make_event(
            a, ts, ip, asn, country, self.harvest_models.choose(rng, ts), MESSAGES, cat,
            near(template, k.max_bit_flips, rng), None, rng.random() < k.reasoning_share,
            3 + int(rng.random() * 10) if cat == "tool_use" else 0, 2.5, ERR_ORDINARY,
        )
        if ua is not None:
            ev["user_agent"] = ua
        return ev


# --- sitting an exam to harvest its questions -----------------------------------------------


class ExamCampaign(Campaign):
    """A lab's young accounts that sit the certification exam with its candidates (the same
    opening, the same questions in the same order, the provider's SDK for some) and keep
    harvesting its questions, and follow-ups of their own, for hours after it ends; reasoning
    on most requests; some accounts on rotating residential proxies, the others each on one
    home exit. Mark = the question the exam is on (>= 0), or -1 after the exam."""

    group = "campaign_exam"

    def build(self) -> list[Account]:
        k = self.sc.campaign_exam
        prng = self.rng
        # the crowd's exam, rebuilt from its own seed (whether or not the crowd is here)
        self.exam = exam = ExamCandidates(self.sc, IdMint()).exam
        self.templates = templates_for(prng, k.templates, _HARVEST)
        self.cards = [self.mint.new("pf-", prng) for _ in range(max(1, k.payment_fingerprints))]
        self.models = ModelChooser(self.sc, 0.9, cap=0.0, ramp_h=1.0)  # the exam's model
        stop = min(self.t1, exam.end + max(0.0, k.after_h) * 3600.0)
        delay = max(0.0, self.sc.certification_exam.max_start_delay_min) * 60.0
        sp_share = self.sc.certification_exam.vendor_system_prompt_share
        n_q = len(exam.questions)
        lo_ip = max(1, k.min_requests_per_ip)
        out = []
        for idx in range(self.sc.campaign_accounts(k.accounts)):
            a = self.new_account(idx)
            rng = a.rng
            a.org_id = self.mint.new("org-", rng)
            a.keys = [self.mint.new("key-", rng)]
            a.payment_fingerprint = (pick(self.cards, rng) if rng.random() < k.shared_payment_share
                                     else self.mint.new("pf-", rng))
            a.user_agent = (exam.user_agent if rng.random() < k.vendor_sdk_share
                            else net.random_user_agent(rng))
            a.created_ts = created_before(
                rng, exam.start, max(60.0, k.min_account_age_min * 60.0),
                max(k.min_account_age_min * 60.0 + 60.0, k.max_account_age_days * DAY))
            proxied = rng.random() < k.proxy_share
            exit_: Exit = (net.rotating_exit(rng) if proxied
                           else residential_exit(net.COUNTRIES.pick(rng), rng))
            a.ip, a.asn, a.country = exit_
            # [current exit, requests left on it (None: one home exit), system prompt]
            a.state = [exit_, rng.randint(lo_ip, max(lo_ip, k.max_requests_per_ip))
                       if proxied else None, exam.system_prompt if rng.random() < sp_share
                       else None]
            begin = min(exam.start + rng.uniform(0.0, delay), exam.end - 60.0)
            rate = k.requests_per_h / 3600.0 * rng.uniform(0.7, 1.3) / self.multiplier
            times = at_least_one(poisson_times(rng, rate, begin, stop, self.jittered),
                                 rng, begin, stop)
            span = exam.end - begin
            finalize_marked(a, [(t, min(n_q - 1, int((t - begin) / span * n_q))
                                 if t < exam.end else -1) for t in times], self.t0, self.t1)
            out.append(a)
        return out

    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        rng = a.rng
        k = self.sc.campaign_exam
        st = a.state
        ip, asn, country = held_exit(st, self.rotate, rng, k.min_requests_per_ip,
                                     k.max_requests_per_ip)
        mark = a.marks[i]  # type: ignore[index]
        if mark >= 0:  # in the exam: the question the candidates are on
            template, cat = self.exam.questions[mark]
        elif rng.random() < k.question_share:
            template, cat = pick(self.exam.questions, rng)
        else:
            template, cat = pick(self.templates, rng)
        return make_event(
            a, ts, ip, asn, country, self.models.choose(rng, ts), MESSAGES, cat,
            near(template, k.max_bit_flips, rng), st[2], rng.random() < k.reasoning_share,
            3 + int(rng.random() * 8) if cat == "tool_use" else 0, 2.0, ERR_ORDINARY,
        )


# --- riding a viral prompt's wave -----------------------------------------------------------

# What a lab harvests once it has blended in: reasoning-heavy answers.
_VIRAL_HARVEST: dict[str, float] = {"reasoning": 55, "math": 25, "coding": 20}
# Marks of a wave rider's requests (>= 0: the viral prompt's version it blends in with).
_RIDE_HARVEST = -1


class ViralCampaign(Campaign):
    """A lab's accounts riding a viral prompt's wave: each arrives on the crowd's own arrival
    curve and sends the viral prompt (its version, its noise) a few times to blend in, then
    harvests reasoning-heavy answers with the lab's own template families for hours at a
    per-account rate under any rate limit, now and then the viral prompt again. Young accounts
    or bought aged ones (by seed); some on rotating residential proxies, the others each on one
    home exit; the crowd's browser and app clients for some, an SDK for the others."""

    group = "campaign_viral"

    def build(self) -> list[Account]:
        k = self.sc.campaign_viral
        prng = self.rng
        # the crowd's wave, rebuilt from its own seed (whether or not the crowd is here)
        self.wave = wave = ViralPromptSenders(self.sc, IdMint()).wave
        self.families = template_families(prng, k.template_families, k.family_variants,
                                          _VIRAL_HARVEST)
        self.cards = [self.mint.new("pf-", prng) for _ in range(max(1, k.payment_fingerprints))]
        self.models = ModelChooser(self.sc, 0.85, cap=0.3, ramp_h=2.0)
        app_share = self.sc.viral_prompt.app_share
        lo_ip = max(1, k.min_requests_per_ip)
        latest = max(self.t0, self.t1 - 3600.0)  # every account rides it for an hour at least
        out = []
        for idx in range(self.sc.campaign_accounts(k.accounts)):
            a = self.new_account(idx)
            rng = a.rng
            a.org_id = self.mint.new("org-", rng)
            a.keys = [self.mint.new("key-", rng)]
            a.payment_fingerprint = (pick(self.cards, rng) if rng.random() < k.shared_payment_share
                                     else self.mint.new("pf-", rng))
            a.user_agent = (viral_client(rng, False, app_share) if rng.random() < k.browser_share
                            else net.sdk_user_agent(rng))
            proxied = rng.random() < k.proxy_share
            exit_: Exit = (net.rotating_exit(rng) if proxied
                           else residential_exit(net.COUNTRIES.pick(rng), rng))
            a.ip, a.asn, a.country = exit_
            version = int(rng.random() * len(wave.variants))
            # [current exit, requests left on it (None: one home exit), the viral version]
            a.state = [exit_, rng.randint(lo_ip, max(lo_ip, k.max_requests_per_ip))
                       if proxied else None, version]
            begin = min(wave.arrival(rng), latest)
            a.created_ts = created_before(
                rng, begin, max(60.0, k.min_account_age_days * DAY),
                max(k.min_account_age_days * DAY + 60.0, k.max_account_age_days * DAY))
            # the viral prompt first, like everyone arriving (spread over the accounts when
            # the multiplier splits the lab's volume), then the harvest
            n_viral = stochastic_round(rng.randint(1, max(1, k.max_viral_requests))
                                       / self.multiplier, rng)
            timed: list[tuple[float, int]] = []
            t = begin
            for _ in range(n_viral):
                timed.append((t, version))
                t += self.jittered(min(math.exp(math.log(75.0) + 0.9 * rng.gauss()), 1800.0),
                                   rng)
            start = t + rng.uniform(60.0, 600.0)
            stop = min(self.t1, start + max(0.0, k.harvest_h) * 3600.0 * rng.uniform(0.8, 1.2))
            rate = k.requests_per_h / 3600.0 * rng.uniform(0.7, 1.3) / self.multiplier
            timed += [(x, _RIDE_HARVEST)
                      for x in poisson_times(rng, rate, start, stop, self.jittered)]
            if not timed:
                timed = [(x, _RIDE_HARVEST) for x in at_least_one([], rng, begin, self.t1)]
            finalize_marked(a, timed, self.t0, self.t1)
            out.append(a)
        return out

    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        rng = a.rng
        k = self.sc.campaign_viral
        st = a.state
        ip, asn, country = held_exit(st, self.rotate, rng, k.min_requests_per_ip,
                                     k.max_requests_per_ip)
        mark = a.marks[i]  # type: ignore[index]
        if mark >= 0 or rng.random() < k.viral_share:  # the viral prompt, with the crowd's noise
            wave = self.wave
            return make_event(
                a, ts, ip, asn, country, self.models.choose(rng, ts), MESSAGES, wave.category,
                near(wave.variants[st[2]], self.sc.viral_prompt.max_bit_flips, rng), None,
                rng.random() < k.reasoning_share, 0, 1.0, ERR_ORDINARY,
            )
        family: _TemplateFamily = pick(self.families, rng)
        return make_event(
            a, ts, ip, asn, country, self.models.choose(rng, ts), MESSAGES, family.category,
            near(pick(family.variants, rng), k.max_bit_flips, rng), None,
            rng.random() < k.reasoning_share, 0, k.completion_scale, ERR_ORDINARY,
        )


# --- seats bought inside a legitimate-looking org -------------------------------------------

# Countries a shell company on a team plan claims (where the provider sells team plans).
_SHELL_COUNTRIES = Picker([("US", 6.0), ("GB", 2.0), ("SG", 2.0), ("DE", 1.5), ("CA", 1.5),
                           ("NL", 1.0), ("JP", 1.0), ("AU", 1.0)])


@dataclass
class _ShellOrg:
    """One shell company: its org_id and card, its claimed country and office egress, the
    lab's script client and tool prompt, and the shift its operators work."""

    org_id: str
    card: str
    country: str
    office: Exit  # the office egress /24's network (ip is a placeholder)
    office_ips: list[str]
    user_agent: str
    system_prompt: str
    founded: float
    shift: tuple[float, float]


class SeatCampaign(Campaign):
    """A lab that buys seats inside a legitimate-looking org (a team plan under a shell
    company): many young seats on the org's one org_id and card, each worked at a person's pace
    through the operators' shift (sessions of requests a minute or two apart, breaks between),
    reasoning on most requests, a few template families with heavy noise and unique follow-ups
    between. A seat leaves by the org's office egress, or by its own home-like exit in the
    org's country (another exit there now and then); the lab's SDK script or a client of the
    seat's own."""

    group = "campaign_seats"

    def build(self) -> list[Account]:
        k = self.sc.campaign_seats
        prng = self.rng
        self.families = template_families(prng, k.template_families, k.family_variants,
                                          _AGED_FAMILIES)
        self.cats = category_picker(_HARVEST)
        self.models = ModelChooser(self.sc, 0.85, cap=0.3, ramp_h=2.0)
        n_seats = self.sc.campaign_accounts(k.accounts)
        orgs = [self._org(prng) for _ in range(max(1, min(k.orgs, n_seats)))]
        out = []
        for idx in range(n_seats):
            a = self.new_account(idx)
            rng = a.rng
            org = orgs[idx % len(orgs)]
            a.org_id, a.payment_fingerprint = org.org_id, org.card
            a.keys = [self.mint.new("key-", rng)]
            a.user_agent = (org.user_agent if rng.random() < k.sdk_share
                            else net.random_user_agent(rng))
            oldest = max(org.founded, self.t0 - max(1.0, k.max_seat_age_days) * DAY)
            a.created_ts = float(round(rng.uniform(oldest, self.t0 - 3600.0)))
            office = rng.random() < k.office_share
            exit_: Exit = ((pick(org.office_ips, rng), org.office[1], org.country) if office
                           else residential_exit(org.country, rng))
            a.ip, a.asn, a.country = exit_
            # [its exit, office addresses or None, claimed country, system prompt or None]
            a.state = [exit_, org.office_ips if office else None, org.country,
                       org.system_prompt if rng.random() < k.system_prompt_share else None]
            lo, hi = org.shift
            begin = lo + rng.uniform(0.0, 2700.0)
            end = max(begin + 600.0, hi - rng.uniform(0.0, 2700.0))
            rate = k.requests_per_h * rng.uniform(0.6, 1.4) / self.multiplier
            finalize_times(a, at_least_one(self._paced(rng, rate, begin, min(end, self.t1)),
                                           rng, begin, min(end, self.t1)), self.t0, self.t1)
            out.append(a)
        return out

    def _org(self, prng: random.Random) -> _ShellOrg:
        k = self.sc.campaign_seats
        country = _SHELL_COUNTRIES.pick(prng)
        isp = net.isp_in(country, prng)  # a business line at a local ISP, or a coworking space
        prefix = net.v4_prefix24(isp, prng)
        start = self.campaign_start(k.shift_start_h) + prng.uniform(0.0, 1800.0)
        return _ShellOrg(
            org_id=self.mint.new("org-", prng), card=self.mint.new("pf-", prng), country=country,
            office=("", isp.asn, country),
            office_ips=sorted({net.v4_host(prefix, prng) for _ in range(prng.randint(1, 4))}),
            user_agent=net.sdk_user_agent(prng), system_prompt=hash_id(prng),
            founded=old_created(prng, self.t0, k.min_org_age_days, k.max_org_age_days),
            shift=(start, min(self.t1, start + max(1.0, k.shift_h) * 3600.0)))

    def _paced(self, rng: random.Random, rate_per_h: float, t0: float, t1: float
               ) -> list[float]:
        """A person's pace at `rate_per_h` on average: sessions of about
        `mean_session_requests` requests a lognormal think time apart (median `median_gap_s`),
        breaks between them long enough for the rate."""
        k = self.sc.campaign_seats
        gap = max(5.0, k.median_gap_s)
        mu = math.log(gap)
        p_more = 1.0 - 1.0 / max(1.0, k.mean_session_requests)
        busy = min(0.95, max(1e-6, rate_per_h) * gap / 3600.0)  # share of the time in sessions
        times: list[float] = []
        t = t0 + rng.uniform(0.0, 600.0)
        while t < t1:
            s0 = t
            while t < t1:
                times.append(t)
                t += self.jittered(min(math.exp(mu + 0.6 * rng.gauss()), 1800.0), rng)
                if rng.random() > p_more:
                    break
            t += self.jittered((t - s0 + gap) * (1.0 / busy - 1.0) * rng.uniform(0.5, 1.5), rng)
        return times

    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        rng = a.rng
        k = self.sc.campaign_seats
        st = a.state
        if self.rotate:
            ip, asn, country = net.rotating_exit(rng)
        elif st[1] is not None:
            ip, asn, country = pick(st[1], rng), a.asn, a.country
        elif rng.random() < k.ip_rotation_share:
            ip, asn, country = residential_exit(st[2], rng)
        else:
            ip, asn, country = st[0]
        if rng.random() < k.template_share:
            family: _TemplateFamily = pick(self.families, rng)
            cat, simhash = family.category, near(pick(family.variants, rng), k.max_bit_flips, rng)
        else:  # a follow-up of its own on the answer
            cat, simhash = self.cats.pick(rng), random_simhash(rng)
        return make_event(
            a, ts, ip, asn, country, self.models.choose(rng, ts), MESSAGES, cat, simhash, st[3],
            rng.random() < k.reasoning_share, 2 + int(rng.random() * 8) if cat == "tool_use"
            else 0, k.completion_scale, ERR_ORDINARY,
        )


# --- a harvest dressed as eval runs ---------------------------------------------------------


@dataclass
class _ShellTeam:
    """A shell org of the lab: its org_id and card, its NAT addresses in the lab's cloud, and
    the SDK version its harness pins."""

    org_id: str
    card: str
    ips: list[str]
    user_agent: str


class EvalMimicCampaign(Campaign):
    """A lab that dresses its harvest as eval runs: accounts in a few shell orgs (each one org
    and card) or on their own, the most popular open-source harness's default system prompt, a
    pinned SDK, cloud egress (the lab's own /24s, or the hosted CI runners' pool the honest
    evaluators' CI uses), runs of eval size at an eval's pace with bounded concurrency, its own
    prompt-template families mixed with the public benchmarks' items; but run after run, back
    to back for many hours, reasoning on most requests, long answers."""

    group = "campaign_evalmimic"

    def build(self) -> list[Account]:
        k = self.sc.campaign_evalmimic
        prng = self.rng
        # the evaluators' world, rebuilt from its own seed (whether or not they are here): the
        # public benchmarks' items, the harnesses' default prompts, the hosted runners' pool
        self.crowd = crowd = EvalRunners(self.sc, IdMint())
        self.families = template_families(prng, k.template_families, k.family_variants,
                                          _HARVEST)
        self.models = ModelChooser(self.sc, 0.85, cap=0.5, ramp_h=1.0)
        cloud = pick(list(net.CLOUD), prng)
        prefixes = [net.v4_prefix24(cloud, prng) for _ in range(prng.randint(1, 3))]
        teams = [_ShellTeam(self.mint.new("org-", prng), self.mint.new("pf-", prng),
                            sorted({net.v4_host(pick(prefixes, prng), prng)
                                    for _ in range(prng.randint(1, 3))}),
                            net.python_sdk_user_agent(prng))
                 for _ in range(max(0, k.orgs))]
        start = self.campaign_start(k.start_h)
        lo = max(1, k.min_run_items)
        out = []
        for idx in range(self.sc.campaign_accounts(k.accounts)):
            a = self.new_account(idx)
            rng = a.rng
            a.keys = [self.mint.new("key-", rng)]
            if teams and rng.random() < k.org_share:
                team = teams[idx % len(teams)]
                a.org_id, a.payment_fingerprint, a.user_agent = team.org_id, team.card, team.user_agent
                own_ips = team.ips
            else:  # on its own: an org and card of its own (or none), a VM of the lab's
                a.org_id = self.mint.new("org-", rng)
                a.payment_fingerprint = None if rng.random() < 0.3 else self.mint.new("pf-", rng)
                a.user_agent = net.python_sdk_user_agent(rng)
                own_ips = [net.v4_host(pick(prefixes, rng), rng)]
            a.created_ts = old_created(rng, self.t0, k.min_account_age_days,
                                       max(k.min_account_age_days, k.max_account_age_days))
            a.ip, a.asn, a.country = own_ips[0], cloud.asn, cloud.country
            hosted = rng.random() < k.hosted_ci_share
            prompt = crowd.harness_prompts[0] if rng.random() < k.harness_prompt_share else None
            # per run: (model, its addresses, asn, country)
            runs: list[tuple[str, list[str], int, str]] = []
            timed: list[tuple[float, int]] = []
            t = start + rng.uniform(0.0, 1800.0)
            stop = min(self.t1, t + max(0.5, k.harvest_h) * 3600.0 * rng.uniform(0.9, 1.1))
            # the multiplier slows every account's runs and breaks alike: the same duty cycle
            rate = k.requests_per_min * rng.uniform(0.8, 1.2) / self.multiplier
            while t < stop:
                if hosted:  # a fresh hosted runner for every job
                    ips = [net.v4_host(pick(crowd.hosted_prefixes, rng), rng)]
                    runs.append((self.models.choose(rng, t), ips, crowd.hosted_cloud.asn,
                                 crowd.hosted_cloud.country))
                else:
                    runs.append((self.models.choose(rng, t), own_ips, cloud.asn, cloud.country))
                n = int(math.exp(rng.uniform(math.log(lo), math.log(max(lo, k.max_run_items) + 1))))
                times = [x for x in eval_pace(rng, t, n, rate, k.max_concurrency, self.jittered)
                         if x < stop]
                timed += [(x, len(runs) - 1) for x in times]
                pause = rng.expovariate(1.0 / (max(0.1, k.break_min) * 60.0 * self.multiplier))
                t = (times[-1] if times else t) + self.jittered(pause, rng)
            if not timed:
                if not runs:
                    runs.append((self.models.choose(rng, start), own_ips, cloud.asn,
                                 cloud.country))
                timed = [(x, 0) for x in at_least_one([], rng, start, self.t1)]
            a.state = (runs, prompt)
            finalize_marked(a, timed, self.t0, self.t1)
            out.append(a)
        return out

    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        rng = a.rng
        k = self.sc.campaign_evalmimic
        runs, prompt = a.state
        model, ips, asn, country = runs[a.marks[i]]  # type: ignore[index]
        if self.rotate:
            ip, asn, country = net.rotating_exit(rng)
        else:
            ip = ips[0] if len(ips) == 1 else pick(ips, rng)
        crowd = self.crowd
        if rng.random() < k.public_share:  # a public benchmark's item, as anyone's harness sends it
            b = int(rng.random() * len(crowd.benchmarks))
            cat = crowd.benchmarks[b].category
            simhash = near(pick(crowd.items[b], rng), self.sc.eval_runs.max_bit_flips, rng)
            tools = 0
        else:
            family: _TemplateFamily = pick(self.families, rng)
            cat = family.category
            simhash = near(pick(family.variants, rng), k.max_bit_flips, rng)
            tools = 2 + int(rng.random() * 8) if cat == "tool_use" else 0
        return make_event(
            a, ts, ip, asn, country, model, MESSAGES, cat, simhash, prompt,
            rng.random() < k.reasoning_share, tools, k.completion_scale, ERR_BATCH,
        )


# --- a harvest through apps' stolen keys ----------------------------------------------------


class AppKeyCampaign(Campaign):
    """A lab harvesting through stolen or resold API keys of a few apps' orgs (`app_backend`):
    on each stolen key its requests go out on the app's own service account (the gateway
    reports the account's org, card and age), interleaved with the app's honest traffic, but
    from the lab's egress (another cloud or hoster than the app's, or rotating residential
    proxies), with the lab's client, its own system prompt or none, and its own template
    families, reasoning on most requests, long answers; plus a few established accounts of its
    own (one org and card each, or none) doing the same. Hours long.

    A stolen key's requests are sent on a borrowed account (`Account.borrowed`): the account
    keeps its owner's benign label (its org did nothing wrong: acting on it stops the app for
    every one of its users); the lab's own accounts are labelled attack. The account multiplier
    spreads its own accounts' volume over more accounts; the stolen keys are what the lab got,
    so their number and pace stay (timing jitter and address rotation apply to both)."""

    group = "campaign_appkeys"

    def build(self) -> list[Account]:
        k = self.sc.campaign_appkeys
        prng = self.rng
        self.families = template_families(prng, k.template_families, k.family_variants,
                                          _HARVEST)
        self.system_prompt = hash_id(prng)
        self.models = ModelChooser(self.sc, 0.9, cap=0.6, ramp_h=1.0)
        user_agent = net.python_sdk_user_agent(prng)  # the lab's harvesting client
        stolen: list[Account] = []
        app_clouds: set[int] = set()
        if self.sc.app_backend.size > 0:  # the apps' world, rebuilt from its own seeds
            apps = AppBackendUsers(self.sc, IdMint()).apps
            for app in prng.sample(apps, min(len(apps), max(0, k.stolen_keys))):
                app_clouds.add(app.cloud.asn)
                stolen.append(app.service[0] if prng.random() < 0.7 else pick(app.service, prng))
        hosts = [c for c in net.CLOUD if c.asn not in app_clouds] + list(net.DATACENTER)
        host: net.Network = pick(hosts, prng)
        prefixes = [net.v4_prefix24(host, prng) for _ in range(prng.randint(1, 3))]
        start = self.campaign_start(k.start_h)
        out: list[Account] = []
        for j, owner in enumerate(stolen):
            # the leaked key, on the app's account: its id, org, card and age as the gateway knows
            a = Account(self, rng_for(self.sc.seed, self.group, "stolen", j), owner.account_id)
            a.borrowed = True
            a.org_id, a.payment_fingerprint = owner.org_id, owner.payment_fingerprint
            a.created_ts = owner.created_ts
            a.keys = [pick(owner.keys, a.rng)]
            self._harvest(a, user_agent, host, prefixes, start, 1.0)
            out.append(a)
        for idx in range(self.sc.campaign_accounts(k.accounts)):
            a = self.new_account(idx)
            rng = a.rng
            a.org_id = self.mint.new("org-", rng)
            a.payment_fingerprint = None if rng.random() < 0.2 else self.mint.new("pf-", rng)
            a.keys = [self.mint.new("key-", rng)]
            a.created_ts = old_created(rng, self.t0, k.min_account_age_days,
                                       max(k.min_account_age_days, k.max_account_age_days))
            self._harvest(a, user_agent, host, prefixes, start, self.multiplier)
            out.append(a)
        return out

    def _harvest(self, a: Account, user_agent: str, host: net.Network,
                 prefixes: list[tuple[int, int, int]], start: float, multiplier: float) -> None:
        k = self.sc.campaign_appkeys
        rng = a.rng
        a.user_agent = user_agent
        if rng.random() < k.proxy_share:  # rotating residential proxies: [exit, left on it]
            a.ip, a.asn, a.country = net.rotating_exit(rng)
            a.state = [(a.ip, a.asn, a.country), 0]
        else:  # a VM of the lab's
            a.ip, a.asn, a.country = net.v4_host(pick(prefixes, rng), rng), host.asn, host.country
            a.state = [(a.ip, a.asn, a.country), None]
        t0 = start + rng.uniform(0.0, 1800.0)
        t1 = min(self.t1, t0 + max(0.5, k.harvest_h) * 3600.0 * rng.uniform(0.85, 1.15))
        rate = k.requests_per_min * rng.uniform(0.7, 1.3) / multiplier / 60.0
        finalize_times(a, at_least_one(poisson_times(rng, rate, t0, t1, self.jittered), rng,
                                       t0, max(t0 + 1.0, t1)), self.t0, self.t1)

    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        rng = a.rng
        k = self.sc.campaign_appkeys
        ip, asn, country = held_exit(a.state, self.rotate, rng, k.min_per_exit, k.max_per_exit)
        family: _TemplateFamily = pick(self.families, rng)
        cat = family.category
        return make_event(
            a, ts, ip, asn, country, self.models.choose(rng, ts), MESSAGES, cat,
            near(pick(family.variants, rng), k.max_bit_flips, rng),
            self.system_prompt if rng.random() < k.system_prompt_share else None,
            rng.random() < k.reasoning_share, 2 + int(rng.random() * 8) if cat == "tool_use"
            else 0, k.completion_scale, ERR_ORDINARY,
        )
