"""The population base and the original nine populations: who they are, when they send, and
what each request looks like. The scenario families' crowds and campaigns build on this
(`crowds.py`, `adversaries.py`); `roster.py` lists them all.

A population builds its `Account`s up front: static attributes plus the account's sorted
request times (and, where needed, a parallel list of marks, e.g. the position in a replayed
prompt sequence). The request payload is drawn lazily, request by request, from the account's
own rng while `generate.py` merges all accounts in time order; since every account is drawn
in its own time order, the result does not depend on how the streams interleave.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from . import network as net
from .network import Picker
from .scenario import Scenario
from .seeding import IdMint, rng_for
from .simhash import perturb, random_simhash, to_hex

LARGE = "claude-x-large"
SMALL = "claude-x-small"
NEW_LARGE = "claude-y-large"  # released during the run when Scenario.model_release_h is set

MESSAGES = "/v1/messages"

DAY = 86400.0

# Median prompt and completion tokens per task category, with lognormal sigmas.
_TOKENS: dict[str, tuple[float, float, float, float]] = {
    "chat": (300, 1.0, 250, 0.9),
    "writing": (500, 1.0, 600, 0.8),
    "coding": (1500, 1.1, 700, 0.9),
    "tool_use": (2500, 0.9, 400, 0.9),
    "reasoning": (400, 0.9, 1500, 0.7),
    "math": (250, 0.8, 1200, 0.7),
    "other": (800, 1.2, 300, 1.0),
}
_TOKEN_MU = {c: (math.log(p), sp, math.log(q), sq) for c, (p, sp, q, sq) in _TOKENS.items()}
MAX_COMPLETION = 32_000
_exp = math.exp

# Cumulative error thresholds (429, 400, 5xx).
ERR_ORDINARY = (0.008, 0.020, 0.025)
ERR_BATCH = (0.020, 0.026, 0.030)
ERR_PUSHY = (0.040, 0.045, 0.050)  # clients that run into rate limits


class Account:
    __slots__ = (
        "account_id", "asn", "borrowed", "country", "created_ts", "group", "ip", "keys", "label",
        "marks", "org_id", "payment_fingerprint", "pop", "rng", "state", "times", "user_agent",
    )

    def __init__(self, pop: Population, rng: random.Random, account_id: str) -> None:
        self.pop = pop
        self.group = pop.group
        self.label = pop.label
        self.rng = rng
        self.account_id = account_id
        self.org_id: str | None = None
        self.payment_fingerprint: str | None = None
        self.created_ts: float | None = None
        self.user_agent: str | None = None
        self.keys: list[str] = []
        self.ip = ""
        self.asn: int | None = None
        self.country: str | None = None
        self.times: list[float] = []
        self.marks: list[int] | None = None
        self.state: Any = None
        # True when the account_id is another population's account that this one sends on (a
        # stolen key): its requests are this population's, its label is the owner's.
        self.borrowed = False


# --- shared helpers -------------------------------------------------------------------------


def diurnal(ts: float, tz_h: float, amp: float = 0.7) -> float:
    """Relative request rate at local time: peak mid-afternoon, trough before dawn."""
    local_h = (ts / 3600.0 + tz_h) % 24.0
    return 1.0 + amp * math.cos(2.0 * math.pi * (local_h - 15.0) / 24.0)


def mean_diurnal(t0: float, t1: float, tz_h: float) -> float:
    steps = 12
    return sum(diurnal(t0 + (t1 - t0) * (k + 0.5) / steps, tz_h) for k in range(steps)) / steps


def session_times(
    rng: random.Random, n: int, t0: float, t1: float, tz_h: float, mean_session: float,
    median_gap_s: float, jitter: float = 0.0,
) -> list[float]:
    """About `n` request times in [t0, t1): sessions start with the daily rhythm, requests in a
    session follow each other after lognormal think times. At least one time is returned."""
    peak = 1.7
    mu_gap = math.log(median_gap_s)
    p_more = 1.0 - 1.0 / max(1.0, mean_session)
    out: list[float] = []
    left = n
    while left > 0:
        while True:  # thinning: session starts follow the diurnal rate
            start = t0 + rng.random() * (t1 - t0)
            if rng.random() * peak < diurnal(start, tz_h):
                break
        t = start
        while True:
            if t >= t1:
                break
            out.append(t)
            left -= 1
            if left <= 0 or rng.random() > p_more:
                break
            gap = min(_exp(mu_gap + 0.8 * rng.gauss()), 1800.0)
            if jitter:
                gap *= 1.0 + rng.uniform(-jitter, jitter)
            t += gap
    return out


def stochastic_round(x: float, rng: random.Random) -> int:
    base = math.floor(x)
    return base + (1 if rng.random() < x - base else 0)


def finalize_times(a: Account, times: list[float], t0: float, t1: float) -> None:
    """Sort, round to milliseconds, keep [t0, t1)."""
    rounded = sorted(round(t, 3) for t in times if t0 <= t < t1)
    a.times = [t for t in rounded if t < t1]  # rounding may reach t1


def finalize_marked(a: Account, timed: list[tuple[float, int]], t0: float, t1: float) -> None:
    """Like finalize_times; each time's mark (sequence position, template...) travels with it."""
    pairs = sorted((round(t, 3), m) for t, m in timed if t0 <= t < t1)
    pairs = [(t, m) for t, m in pairs if t < t1]
    a.times = [t for t, _ in pairs]
    a.marks = [m for _, m in pairs]


def old_created(rng: random.Random, start: float, min_days: float, max_days: float) -> float:
    """Account creation log-uniform between min_days and max_days before `start`."""
    days = math.exp(rng.uniform(math.log(min_days), math.log(max_days)))
    return float(round(start - days * DAY - rng.random() * DAY))


def category_picker(weights: dict[str, float]) -> Picker:
    return Picker(list(weights.items()))


class ModelChooser:
    """Large/small split, with a share of large requests moving to the new model after release."""

    __slots__ = ("cap", "large_share", "ramp_s", "release_ts")

    def __init__(self, sc: Scenario, large_share: float, cap: float, ramp_h: float) -> None:
        self.large_share = large_share
        self.release_ts = None if sc.model_release_h is None else (
            sc.start_ts + sc.model_release_h * 3600.0)
        self.cap = cap
        self.ramp_s = max(ramp_h, 1e-6) * 3600.0

    def choose(self, rng: random.Random, ts: float) -> str:
        if rng.random() >= self.large_share:
            return SMALL
        if self.release_ts is not None and ts >= self.release_ts and self.cap > 0:
            share = self.cap * min(1.0, (ts - self.release_ts) / self.ramp_s)
            if rng.random() < share:
                return NEW_LARGE
        return LARGE


def make_event(
    a: Account, ts: float, ip: str, asn: int | None, country: str | None, model: str,
    endpoint: str | None, category: str, simhash: int, system_prompt: str | None,
    reasoning: bool, tools: int | None, completion_scale: float,
    err: tuple[float, float, float], key: str | None = None,
) -> dict[str, Any]:
    """One request event in contract field order; `event_id` is filled in by the merger."""
    rng = a.rng
    gauss = rng.gauss  # lognormal draws as exp(gauss): much faster than lognormvariate
    mu_p, s_p, mu_c, s_c = _TOKEN_MU[category]
    prompt_tokens = int(_exp(mu_p + s_p * gauss())) + 8 + 120 * (tools or 0)
    u = rng.random()
    if u >= err[2]:
        status = 200
        if reasoning:
            mu_c += 0.8
        completion = int(_exp(mu_c + s_c * gauss()) * completion_scale) + 1
        completion = min(completion, MAX_COMPLETION)
        per_token = 7.0 if model == SMALL else 20.0
        latency: int = int((250.0 + completion * per_token) * _exp(0.25 * gauss()))
    else:
        completion = 0
        if u < err[0]:
            status, latency = 429, 3 + int(rng.random() * 38)
        elif u < err[1]:
            status, latency = 400, 5 + int(rng.random() * 76)
        else:
            status = 529 if rng.random() < 0.3 else 500
            latency = 200 + int(rng.random() * 29800)
    return {
        "event_id": "",
        "ts": ts,
        "account_id": a.account_id,
        "org_id": a.org_id,
        "api_key_id": key if key is not None else a.keys[0],
        "ip": ip,
        "asn": asn,
        "country": country,
        "user_agent": a.user_agent,
        "payment_fingerprint": a.payment_fingerprint,
        "account_created_ts": a.created_ts,
        "model": model,
        "endpoint": endpoint,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "latency_ms": latency,
        "status": status,
        "prompt_simhash": to_hex(simhash),
        "system_prompt_hash": system_prompt,
        "reasoning_requested": reasoning,
        "tools_count": tools,
        "task_category": category,
    }


def hash_id(rng: random.Random) -> str:
    """An opaque 16-hex-digit hash (system prompts)."""
    return f"{rng.getrandbits(64):016x}"


def near(template: int, max_flips: int, rng: random.Random) -> int:
    """A near-duplicate of `template`: 0..max_flips bits flipped, uniformly."""
    return perturb(template, int(rng.random() * (max_flips + 1)), rng)


def pick(items: list[Any], rng: random.Random) -> Any:
    """Uniform choice; cheaper than rng.choice/randrange in the per-request path."""
    return items[int(rng.random() * len(items))]


# --- population base ------------------------------------------------------------------------


class Population(ABC):
    group = ""
    label = "benign"

    def __init__(self, sc: Scenario, mint: IdMint) -> None:
        self.sc = sc
        self.mint = mint
        self.rng = rng_for(sc.seed, self.group, "population")
        self.t0 = sc.start_ts
        self.t1 = sc.end_ts

    def new_account(self, index: int) -> Account:
        rng = rng_for(self.sc.seed, self.group, "account", index)
        return Account(self, rng, self.mint.new("acct-", rng))

    @abstractmethod
    def build(self) -> list[Account]:
        """The population's accounts, each with its sorted request times."""

    @abstractmethod
    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        """Account `a`'s `i`-th request, at event time `ts`."""


def tools_for(category: str, rng: random.Random, coding_tools_share: float = 0.15) -> int:
    if category == "tool_use":
        return 1 + int(rng.random() * 8)
    if category == "coding" and rng.random() < coding_tools_share:
        return 1 + int(rng.random() * 5)
    return 0


# Chance of an extended-thinking request per category for ordinary users (~10% overall).
_ORDINARY_REASONING = {"chat": 0.04, "writing": 0.04, "coding": 0.10, "tool_use": 0.04,
                       "reasoning": 0.5, "math": 0.4, "other": 0.04}
_ORDINARY_CATEGORIES = {"chat": 30, "writing": 18, "coding": 25, "reasoning": 5, "math": 5,
                        "tool_use": 5, "other": 12}


class _PersonalState:
    """What an individual user carries between requests."""

    __slots__ = ("alt", "cats", "extra", "recent", "system_prompts")

    def __init__(self, cats: Picker, system_prompts: list[str | None],
                 alt: tuple[str, int, str] | None) -> None:
        self.cats = cats
        self.system_prompts = system_prompts
        self.recent: list[int] = []
        self.alt = alt
        self.extra: Any = None


# --- benign ---------------------------------------------------------------------------------


class Ordinary(Population):
    group = "ordinary"

    def __init__(self, sc: Scenario, mint: IdMint) -> None:
        super().__init__(sc, mint)
        k = sc.ordinary
        self.k = k
        self.common_system_prompts = [hash_id(self.rng) for _ in range(3)]
        self.models = ModelChooser(sc, 0.55, cap=0.15, ramp_h=3.0)
        scale = k.reasoning_share / 0.10
        self.reasoning_p = {c: min(1.0, p * scale) for c, p in _ORDINARY_REASONING.items()}

    def personal(self, a: Account, country: str, ipv6_share: float) -> None:
        """Home network, client, payment, org and habits of one individual user."""
        rng = a.rng
        isp = net.isp_in(country, rng)
        a.ip, a.asn, a.country = net.home_address(isp, rng, ipv6_share), isp.asn, country
        alt = None
        if rng.random() < 0.3:  # a phone or office connection used now and then
            other = net.isp_in(country, rng)
            alt = (net.home_address(other, rng, ipv6_share), other.asn, country)
        a.user_agent = net.random_user_agent(rng)
        a.org_id = self.mint.new("org-", rng)
        a.keys = [self.mint.new("key-", rng) for _ in range(rng.choice((1, 1, 1, 2, 3)))]
        cats = category_picker({c: w * rng.lognormvariate(0.0, 0.8)
                                for c, w in _ORDINARY_CATEGORIES.items()})
        u = rng.random()
        sps: list[str | None]
        if u < 0.45:
            sps = [None]
        elif u < 0.45 + self.k.common_system_prompt_share:
            sps = [rng.choice(self.common_system_prompts), None]
        else:
            sps = [hash_id(rng) for _ in range(rng.randint(1, 2))] + [None]
        a.state = _PersonalState(cats, sps, alt)

    def volume(self, rng: random.Random, mean: float, sigma: float, tz: float) -> int:
        mu = math.log(mean) - sigma * sigma / 2.0
        base = rng.lognormvariate(mu, sigma) * self.sc.duration_h / 6.0
        base *= mean_diurnal(self.t0, self.t1, tz) / 1.7
        return max(1, min(5000, stochastic_round(base, rng)))

    def build(self) -> list[Account]:
        k = self.k
        out = []
        for idx in range(self.sc.accounts(k.accounts)):
            a = self.new_account(idx)
            rng = a.rng
            country = net.COUNTRIES.pick(rng)
            tz = net.TZ_OFFSET_H[country]
            self.personal(a, country, k.ipv6_share)
            a.payment_fingerprint = (None if rng.random() < k.null_payment_share
                                     else self.mint.new("pf-", rng))
            a.created_ts = old_created(rng, self.t0, 7, 1500)
            n = self.volume(rng, k.mean_requests_per_6h, k.volume_sigma, tz)
            finalize_times(a, session_times(rng, n, self.t0, self.t1, tz, k.mean_session_requests,
                                            k.median_gap_s), self.t0, self.t1)
            out.append(a)
        return out

    def personal_request(self, a: Account, ts: float, st: _PersonalState,
                         category: str | None = None, simhash: int | None = None,
                         repeat_share: float = 0.05, tools: int | None = None
                         ) -> dict[str, Any]:
        """One request of an individual: own habits, home (or alternative) address; `tools`
        fixes the tool definitions sent (a client that always sends its own)."""
        rng = a.rng
        cat = category or st.cats.pick(rng)
        if simhash is None:
            if st.recent and rng.random() < repeat_share:
                simhash = pick(st.recent, rng)
            else:
                simhash = random_simhash(rng)
                if len(st.recent) < 20:
                    st.recent.append(simhash)
        ip: str
        asn: int | None
        country: str | None
        if st.alt is not None and rng.random() < 0.2:
            ip, asn, country = st.alt
        else:
            ip, asn, country = a.ip, a.asn, a.country
        sps = st.system_prompts
        return make_event(
            a, ts, ip, asn, country, self.models.choose(rng, ts),
            MESSAGES if rng.random() < 0.98 else "/v1/complete", cat, simhash,
            sps[0] if len(sps) == 1 else pick(sps, rng),
            rng.random() < self.reasoning_p[cat], tools_for(cat, rng) if tools is None else tools,
            1.0, ERR_ORDINARY,
            a.keys[0] if len(a.keys) == 1 else pick(a.keys, rng),
        )

    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        return self.personal_request(a, ts, a.state, repeat_share=self.k.repeat_share)


@dataclass(frozen=True)
class _Profile:
    """What an enterprise product sends."""

    cats: dict[str, float]
    tools: tuple[int, int]
    reasoning: float
    large: float  # share of requests on the large model
    scale: float  # completion length relative to the category's median


_ENTERPRISE_PROFILES: tuple[_Profile, ...] = (
    _Profile({"coding": 1.0}, (0, 0), 0.05, 0.7, 1.0),  # code-review bot in CI
    _Profile({"chat": 0.8, "writing": 0.2}, (2, 6), 0.0, 0.2, 0.8),  # support assistant
    _Profile({"other": 0.8, "writing": 0.2}, (1, 1), 0.0, 0.3, 0.6),  # document extraction
    _Profile({"tool_use": 0.7, "coding": 0.3}, (4, 12), 0.2, 0.8, 1.2),  # data-analysis agent
    # a synthetic-data team distilling its own fine-tunes: legitimate, reasoning-heavy batches
    _Profile({"reasoning": 0.6, "math": 0.4}, (0, 0), 0.7, 0.9, 1.5),
)


@dataclass
class _Org:
    org_id: str
    payment_fingerprint: str
    prefix: tuple[int, int, int]  # its /24 at the cloud provider
    asn: int
    country: str
    user_agent: str
    system_prompt: str
    templates: list[int]
    cats: Picker
    profile: _Profile
    models: ModelChooser
    created: float


class Enterprise(Population):
    group = "enterprise"

    def build(self) -> list[Account]:
        k = self.sc.enterprise
        prng = self.rng
        out = []
        idx = 0
        for o in range(self.sc.accounts(k.orgs)):
            cloud = net.CLOUD[prng.randrange(len(net.CLOUD))]
            prof = _ENTERPRISE_PROFILES[o % len(_ENTERPRISE_PROFILES)]
            org = _Org(
                org_id=self.mint.new("org-", prng),
                payment_fingerprint=self.mint.new("pf-", prng),
                prefix=net.v4_prefix24(cloud, prng),
                asn=cloud.asn,
                country=prng.choice(("US", "US", "US", "DE", "GB", "JP", "IE")),
                user_agent=net.sdk_user_agent(prng),
                system_prompt=hash_id(prng),
                templates=[random_simhash(prng) for _ in range(max(1, k.templates_per_org))],
                cats=category_picker(prof.cats),
                profile=prof,
                models=ModelChooser(self.sc, prof.large, cap=0.0, ramp_h=1.0),  # pinned model
                created=old_created(prng, self.t0, 365, 1500),
            )
            for _ in range(prng.randint(k.min_accounts_per_org, k.max_accounts_per_org)):
                a = self.new_account(idx)
                idx += 1
                rng = a.rng
                a.org_id, a.payment_fingerprint = org.org_id, org.payment_fingerprint
                a.user_agent, a.asn, a.country = org.user_agent, org.asn, org.country
                a.created_ts = org.created + float(round(rng.uniform(0, 300) * DAY))
                a.keys = [self.mint.new("key-", rng) for _ in range(rng.randint(1, 2))]
                ips = [net.v4_host(org.prefix, rng) for _ in range(rng.randint(2, 4))]
                a.ip = ips[0]
                a.state = (org, ips)
                rate = k.requests_per_min / 60.0 * rng.uniform(0.7, 1.3)
                times, t = [], self.t0 + rng.expovariate(rate)
                while t < self.t1:
                    times.append(t)
                    t += rng.expovariate(rate)
                if not times:
                    times = [self.t0 + rng.random() * (self.t1 - self.t0)]
                finalize_times(a, times, self.t0, self.t1)
                out.append(a)
        return out

    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        rng = a.rng
        org: _Org = a.state[0]
        prof = org.profile
        cat = org.cats.pick(rng)
        lo, hi = prof.tools
        return make_event(
            a, ts, pick(a.state[1], rng), a.asn, a.country, org.models.choose(rng, ts),
            MESSAGES if rng.random() < 0.6 else "/v1/messages/batches", cat,
            near(pick(org.templates, rng), self.sc.enterprise.max_bit_flips, rng),
            org.system_prompt, rng.random() < prof.reasoning,
            lo + int(rng.random() * (hi - lo + 1)) if hi else 0, prof.scale, ERR_BATCH,
            a.keys[0] if len(a.keys) == 1 else pick(a.keys, rng),
        )


class Nat(Ordinary):
    group = "nat"

    def __init__(self, sc: Scenario, mint: IdMint) -> None:
        super().__init__(sc, mint)
        campus = net.UNIVERSITY[self.rng.randrange(len(net.UNIVERSITY))]
        self.campus = campus
        self.nat_ip = net.v4_in(campus, self.rng)
        self.tz = -8.0 if campus.asn in (25, 32) else net.TZ_OFFSET_H[campus.country]
        if campus.asn == 3:
            self.tz = -5.0
        self.homework = random_simhash(self.rng)

    def build(self) -> list[Account]:
        k = self.sc.nat
        out = []
        for idx in range(self.sc.accounts(k.users)):
            a = self.new_account(idx)
            rng = a.rng
            self.personal(a, self.campus.country, 0.0)
            a.state.alt = None
            a.ip, a.asn, a.country = self.nat_ip, self.campus.asn, self.campus.country
            a.payment_fingerprint = None if rng.random() < 0.3 else self.mint.new("pf-", rng)
            if rng.random() < k.new_account_share:
                a.created_ts = old_created(rng, self.t0, 5, 120)
            else:
                a.created_ts = old_created(rng, self.t0, 120, 1500)
            # homework: how many times this user pastes the shared assignment question
            a.state.extra = rng.randint(1, 3) if rng.random() < k.homework_share else 0
            n = self.volume(rng, k.mean_requests_per_6h, k.volume_sigma, self.tz)
            n = max(n, a.state.extra)
            finalize_times(a, session_times(rng, n, self.t0, self.t1, self.tz, 5.0, 45.0),
                           self.t0, self.t1)
            out.append(a)
        return out

    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        st = a.state
        if st.extra and a.rng.random() < 0.5:
            st.extra -= 1
            rng = a.rng
            return self.personal_request(a, ts, st, rng.choice(("math", "coding")),
                                         near(self.homework, 3, rng))
        return self.personal_request(a, ts, st)


class LaunchWaveUsers(Ordinary):
    group = "launch_wave"

    def __init__(self, sc: Scenario, mint: IdMint) -> None:
        super().__init__(sc, mint)
        prng = self.rng
        # The quickstart's pages in two language tracks, and the docs' example system prompt.
        self.tutorials = [random_simhash(prng)
                          for _ in range(max(1, sc.launch_wave.tutorial_templates))]
        self.tutorial_system_prompt = hash_id(prng)
        self.latest_uas = [
            f"anthropic-python/0.45.0 CPython/3.{minor}.{patch} {os_}"
            for minor, patch, os_ in ((12, 8, "Darwin"), (12, 8, "Linux"), (11, 9, "Windows"),
                                      (13, 1, "Darwin"))
        ] + ["anthropic-typescript/0.36.3", "anthropic-typescript/0.36.2"]

    def launch_times(self) -> list[float]:
        """Event times of the launch waves: the first within the first half of the run (so it
        always shows), later ones `launch_spacing_h` apart within its first three quarters."""
        k = self.sc.launch_wave
        first = min(max(0.0, k.launch_h), self.sc.duration_h * 0.5)
        return [self.t0 + min(first + w * max(0.0, k.launch_spacing_h),
                              self.sc.duration_h * (0.5 if w == 0 else 0.75)) * 3600.0
                for w in range(max(1, k.launches))]

    def build(self) -> list[Account]:
        k = self.sc.launch_wave
        launches = self.launch_times()
        # a later wave (a viral post, a second region) brings fewer sign-ups than the launch
        waves = Picker([(w, 1.0 / (w + 1)) for w in range(len(launches))])
        mean_delay = max(1.0, k.mean_signup_delay_min) * 60.0
        n_pages = len(self.tutorials)
        out = []
        for idx in range(self.sc.accounts(k.accounts)):
            a = self.new_account(idx)
            rng = a.rng
            country = net.COUNTRIES.pick(rng)
            tz = net.TZ_OFFSET_H[country]
            self.personal(a, country, self.k.ipv6_share)
            if rng.random() < k.latest_sdk_share:
                a.user_agent = rng.choice(self.latest_uas)
            a.payment_fingerprint = None if rng.random() < 0.4 else self.mint.new("pf-", rng)
            launch = launches[0] if len(launches) == 1 else launches[waves.pick(rng)]
            latest = self.t1 - 120.0
            while True:
                created = launch + rng.expovariate(1.0 / mean_delay)
                if created < latest:
                    break
                if launch >= latest:
                    created = launch
                    break
            a.created_ts = float(round(created))
            first = a.created_ts + rng.uniform(30.0, 600.0)
            if first >= self.t1:
                first = a.created_ts + (self.t1 - a.created_ts) * rng.random()
            lang = 0 if a.user_agent is None or "typescript" not in a.user_agent else 1
            timed: list[tuple[float, int]] = []
            t = first
            for step in range(rng.randint(k.min_tutorial_requests, k.max_tutorial_requests)):
                timed.append((t, (lang + 2 * step) % n_pages))  # the next page of its track
                t += rng.uniform(20.0, 150.0)
            later = rng.randint(k.min_later_requests, k.max_later_requests)
            if later and t + 300.0 < self.t1:
                for u in session_times(rng, later, t + 300.0, self.t1, tz, 4.0, 40.0):
                    timed.append((u, -1))
            finalize_marked(a, timed, self.t0, self.t1)
            out.append(a)
        return out

    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        mark = a.marks[i]  # type: ignore[index]
        if mark < 0:
            return self.personal_request(a, ts, a.state)
        rng = a.rng
        k = self.sc.launch_wave
        cats = k.tutorial_categories
        reasoning = k.tutorial_reasoning_share
        return make_event(
            a, ts, a.ip, a.asn, a.country, LARGE, MESSAGES, cats[int(rng.random() * len(cats))],
            near(self.tutorials[mark], k.max_bit_flips, rng),
            self.tutorial_system_prompt if rng.random() < k.tutorial_system_prompt_share
            else None, reasoning > 0 and rng.random() < reasoning, 0, 0.5, ERR_ORDINARY,
        )


_LAB_CHAT = ["chat", "coding", "writing", "reasoning"]


class ResearchLabs(Population):
    group = "researchers"

    def build(self) -> list[Account]:
        k = self.sc.researchers
        prng = self.rng
        n_bench = max(1, k.benchmarks)
        # Public benchmarks: a shared instruction template; items are near-duplicates of it and
        # every lab runs them in the same order.
        self.benchmarks = []
        for b in range(n_bench):
            base = random_simhash(prng)
            items = [perturb(base, prng.randint(3, 7), prng) for _ in range(200)]
            self.benchmarks.append((items, "math" if b % 2 == 0 else "reasoning", hash_id(prng)))
        labs = []
        for _ in range(max(1, min(k.labs, self.sc.accounts(k.accounts)))):
            uni = net.UNIVERSITY[prng.randrange(len(net.UNIVERSITY))]
            labs.append((self.mint.new("org-", prng), uni, net.v4_prefix24(uni, prng)))
        self.models = ModelChooser(self.sc, 0.9, cap=0.6, ramp_h=0.5)  # they try new models fast
        span = self.t1 - self.t0
        out = []
        for idx in range(self.sc.accounts(k.accounts)):
            a = self.new_account(idx)
            rng = a.rng
            org, uni, prefix = labs[idx % len(labs)]
            a.org_id, a.asn, a.country = org, uni.asn, uni.country
            a.ip = net.v4_host(prefix, rng)
            a.payment_fingerprint = self.mint.new("pf-", rng)
            a.created_ts = old_created(rng, self.t0, 120, 1100)
            a.keys = [self.mint.new("key-", rng)]
            a.user_agent = net.sdk_user_agent(rng) if rng.random() < 0.7 else (
                f"python-requests/2.32.{rng.randint(0, 3)}")
            timed: list[tuple[float, int]] = []
            for _ in range(rng.randint(k.min_runs, k.max_runs)):
                bench = rng.randrange(n_bench)
                t = self.t0 + rng.random() * span * 0.85
                gap = 60.0 / rng.uniform(k.min_run_requests_per_min, k.max_run_requests_per_min)
                for item in range(rng.randint(k.min_run_requests, k.max_run_requests)):
                    timed.append((t, bench * 1_000_000 + item))
                    t += gap * rng.uniform(0.85, 1.15)
            tz = -8.0 if uni.country == "US" else net.TZ_OFFSET_H[uni.country]
            for t in session_times(rng, rng.randint(3, 15), self.t0, self.t1, tz, 5.0, 60.0):
                timed.append((t, -1))
            finalize_marked(a, timed, self.t0, self.t1)
            a.state = None
            out.append(a)
        return out

    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        rng = a.rng
        mark = a.marks[i]  # type: ignore[index]
        model = self.models.choose(rng, ts)
        if mark < 0:  # reading papers, writing code between runs
            cat = pick(_LAB_CHAT, rng)
            return make_event(a, ts, a.ip, a.asn, a.country, model, MESSAGES, cat,
                              random_simhash(rng), None, rng.random() < 0.3,
                              tools_for(cat, rng), 1.0, ERR_ORDINARY)
        items, cat, sp = self.benchmarks[mark // 1_000_000]
        item = items[(mark % 1_000_000) % len(items)]
        return make_event(
            a, ts, a.ip, a.asn, a.country, model, MESSAGES, cat, perturb(item, int(rng.random() * 2), rng),
            sp, rng.random() < self.sc.researchers.reasoning_share, 0, 2.0, ERR_BATCH,
        )


# --- campaigns ------------------------------------------------------------------------------


class Campaign(Population):
    label = "attack"

    def __init__(self, sc: Scenario, mint: IdMint) -> None:
        super().__init__(sc, mint)
        self.jitter = sc.timing_jitter
        self.rotate = sc.rotate_ip_per_request
        self.multiplier = sc.campaign_account_multiplier

    def jittered(self, gap: float, rng: random.Random) -> float:
        if self.jitter:
            return gap * (1.0 + rng.uniform(-self.jitter, self.jitter))
        return gap

    def campaign_start(self, start_h: float) -> float:
        return self.t0 + self.sc.campaign_start_h(start_h) * 3600.0

    def exit_for(self, a: Account) -> tuple[str, int | None, str | None]:
        """The address of one request: the account's own, or a fresh one when rotating."""
        if self.rotate:
            return net.rotating_exit(a.rng)
        ips = a.state[0]
        ip = ips[0] if len(ips) == 1 else pick(ips, a.rng)
        return ip, a.asn, a.country


def proxy_prefixes(rng: random.Random, n_asns: int, n_prefixes: int
                   ) -> list[tuple[tuple[int, int, int], net.Network]]:
    asns = rng.sample(net.DATACENTER, max(1, min(n_asns, len(net.DATACENTER))))
    return [(net.v4_prefix24(asns[i % len(asns)], rng), asns[i % len(asns)])
            for i in range(max(1, n_prefixes))]


class Burst(Campaign):
    group = "campaign_burst"

    def build(self) -> list[Account]:
        k = self.sc.campaign_burst
        prng = self.rng
        self.prefixes = proxy_prefixes(prng, k.proxy_asns, k.proxy_prefixes)
        self.payments = [self.mint.new("pf-", prng) for _ in range(max(1, k.payment_fingerprints))]
        self.templates = [random_simhash(prng) for _ in range(max(1, k.templates))]
        self.template_pick = Picker([(t, 1.0 / (r + 1) ** 0.5)
                                     for r, t in enumerate(self.templates)])
        self.system_prompts = [hash_id(prng) for _ in range(max(1, k.system_prompts))]
        self.uas = [net.sdk_user_agent(prng) for _ in range(max(1, k.user_agents))]
        self.cats = category_picker({"coding": 55, "tool_use": 35, "reasoning": 10})
        self.models = ModelChooser(self.sc, 0.85, cap=k.pivot_share, ramp_h=k.pivot_ramp_h)
        start = self.campaign_start(k.start_h)
        waves = max(1, k.creation_waves)
        gap_base = 60.0 / max(k.requests_per_min, 1e-6) * self.multiplier
        out = []
        for idx in range(self.sc.campaign_accounts(k.accounts)):
            a = self.new_account(idx)
            rng = a.rng
            prefix, host = self.prefixes[rng.randrange(len(self.prefixes))]
            a.asn, a.country = host.asn, host.country
            ips = [net.v4_host(prefix, rng) for _ in range(rng.randint(1, 2))]
            a.ip = ips[0]
            a.org_id = self.mint.new("org-", rng)
            a.keys = [self.mint.new("key-", rng)]
            a.payment_fingerprint = self.payments[rng.randrange(len(self.payments))]
            a.user_agent = self.uas[rng.randrange(len(self.uas))]
            wave = rng.randrange(waves)
            created = start - (waves - 1 - wave) * DAY - 600.0 + rng.uniform(-1200.0, 1200.0)
            first = start + rng.uniform(0.0, 600.0)
            a.created_ts = float(round(min(created, first - 60.0)))
            sp = (None if rng.random() < 0.1
                  else self.system_prompts[rng.randrange(len(self.system_prompts))])
            a.state = (ips, sp)
            gap = gap_base * rng.uniform(0.8, 1.25)
            times, t = [], first
            while t < self.t1:
                times.append(t)
                t += self.jittered(gap * rng.uniform(0.85, 1.15), rng)
            finalize_times(a, times or [start], self.t0, self.t1)
            out.append(a)
        return out

    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        rng = a.rng
        ip, asn, country = self.exit_for(a)
        cat = self.cats.pick(rng)
        return make_event(
            a, ts, ip, asn, country, self.models.choose(rng, ts), MESSAGES, cat,
            near(self.template_pick.pick(rng), self.sc.campaign_burst.max_bit_flips, rng),
            a.state[1], rng.random() < 0.3, 3 + int(rng.random() * 18) if cat != "reasoning" else 0,
            2.5, ERR_PUSHY,
        )


class Hydra(Campaign):
    group = "campaign_hydra"

    def build(self) -> list[Account]:
        k = self.sc.campaign_hydra
        prng = self.rng
        self.templates = [random_simhash(prng) for _ in range(max(1, k.templates))]
        self.uas = [net.sdk_user_agent(prng) for _ in range(max(1, k.user_agents))]
        self.payments = [self.mint.new("pf-", prng)
                         for _ in range(max(1, k.shared_payment_fingerprints))]
        self.system_prompts = [hash_id(prng) for _ in range(2)]
        self.cats = category_picker({"coding": 40, "reasoning": 25, "tool_use": 15, "math": 10,
                                     "writing": 10})
        self.models = ModelChooser(self.sc, 0.75, cap=0.1, ramp_h=3.0)
        start = self.campaign_start(k.start_h)
        on, off = max(1.0, k.on_min) * 60.0, max(0.0, k.off_min) * 60.0
        cycle = on + off

        def on_to_wall(x: float) -> float:
            c = x // on
            return start + c * cycle + (x - c * on)

        def wall_to_on(t: float) -> float:
            d = t - start
            c = d // cycle
            return c * on + min(d - c * cycle, on)

        x_end = wall_to_on(self.t1)
        out: list[Account] = []
        idx = 0
        for slot in range(self.sc.campaign_accounts(k.concurrent_accounts)):
            srng = rng_for(self.sc.seed, self.group, "slot", slot)
            life = srng.uniform(k.min_lifetime_min, k.max_lifetime_min) * 60.0
            born = start - srng.uniform(0.0, life)  # already mid-life when the run starts
            while born < self.t1:
                a = self.new_account(idx)
                idx += 1
                rng = a.rng
                n_plan = rng.randint(k.min_requests_per_account, k.max_requests_per_account)
                n_plan = max(1, stochastic_round(n_plan / self.multiplier, rng))
                life_on = life * on / cycle  # duty-cycled working time over a full life
                gap = life_on / n_plan
                x0 = wall_to_on(max(born, start))
                x1 = min(wall_to_on(born + life), x_end)
                times = []
                x = x0 + gap * rng.uniform(0.0, 1.0)
                while x < x1:
                    times.append(on_to_wall(x))
                    x += self.jittered(gap * rng.uniform(0.9, 1.1), rng)
                if not times and x1 > x0:  # at least one request while it lives
                    times = [on_to_wall(x0 + (x1 - x0) * rng.random())]
                if times:
                    finalize_times(a, times, self.t0, self.t1)
                if a.times:
                    self._identity(a, k, first=min(born, a.times[0]))
                    out.append(a)
                born = born + life + srng.uniform(0.0, 180.0)  # its replacement
                life = srng.uniform(k.min_lifetime_min, k.max_lifetime_min) * 60.0
        return out

    def _identity(self, a: Account, k: Any, first: float) -> None:
        rng = a.rng
        a.created_ts = float(round(first - rng.uniform(k.min_account_age_min * 60.0,
                                                       k.max_account_age_min * 60.0)))
        u = rng.random()
        if u < k.null_payment_share:
            a.payment_fingerprint = None
        elif u < k.null_payment_share + k.shared_payment_share:
            a.payment_fingerprint = self.payments[rng.randrange(len(self.payments))]
        else:
            a.payment_fingerprint = self.mint.new("pf-", rng)
        a.org_id = self.mint.new("org-", rng)
        a.keys = [self.mint.new("key-", rng)]
        a.user_agent = self.uas[rng.randrange(len(self.uas))]
        a.ip, a.asn, a.country = net.rotating_exit(rng)
        sp = None if rng.random() < 0.5 else self.system_prompts[rng.randrange(2)]
        # [current exit, requests left on it, system prompt]
        a.state = [(a.ip, a.asn, a.country),
                   rng.randint(k.min_requests_per_ip, k.max_requests_per_ip), sp]

    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        rng = a.rng
        k = self.sc.campaign_hydra
        st = a.state
        if self.rotate:
            ip, asn, country = net.rotating_exit(rng)
        else:
            if st[1] <= 0:
                st[0] = net.rotating_exit(rng)
                st[1] = rng.randint(k.min_requests_per_ip, k.max_requests_per_ip)
            st[1] -= 1
            ip, asn, country = st[0]
        cat = self.cats.pick(rng)
        tools = 2 + int(rng.random() * 11) if cat == "tool_use" or (
            cat == "coding" and rng.random() < 0.4) else 0
        ev = make_event(
            a, ts, ip, asn, country, self.models.choose(rng, ts), MESSAGES, cat,
            near(pick(self.templates, rng), k.max_bit_flips, rng),
            st[2], rng.random() < 0.45, tools, 1.8, ERR_ORDINARY,
        )
        if k.ua_rotation_share and rng.random() < k.ua_rotation_share:
            ev["user_agent"] = net.random_user_agent(rng)  # the proxy's client pool
        return ev


class Cot(Campaign):
    group = "campaign_cot"

    def build(self) -> list[Account]:
        k = self.sc.campaign_cot
        prng = self.rng
        seq_len = max(1, k.sequence_length)
        self.sequence = [random_simhash(prng) for _ in range(seq_len)]
        self.sequence_cats = [prng.choices(("reasoning", "math", "other"), (65, 25, 10))[0]
                              for _ in range(seq_len)]
        self.prefixes = proxy_prefixes(prng, 2, k.proxy_prefixes)
        self.payments = [self.mint.new("pf-", prng) for _ in range(max(1, k.payment_fingerprints))]
        self.system_prompts = [hash_id(prng) for _ in range(2)]
        self.ua = "python-httpx/0.27.2"
        self.models = ModelChooser(self.sc, 0.95, cap=0.0, ramp_h=1.0)
        waves = tuple(self.t0 - days * DAY for days in k.creation_wave_days)
        start = self.campaign_start(k.start_h)
        on, cycle = k.round_on_min * 60.0, (k.round_on_min + k.round_off_min) * 60.0
        steps = max(1, int(on // k.step_s))
        rounds = max(1, math.ceil((self.t1 - start) / cycle))
        m = self.multiplier
        integral = abs(m - round(m)) < 1e-9
        m_int = round(m)
        out = []
        for idx in range(self.sc.campaign_accounts(k.accounts)):
            a = self.new_account(idx)
            rng = a.rng
            prefix, host = self.prefixes[rng.randrange(len(self.prefixes))]
            a.ip, a.asn, a.country = net.v4_host(prefix, rng), host.asn, host.country
            a.state = ([a.ip],)
            a.org_id = self.mint.new("org-", rng)
            a.keys = [self.mint.new("key-", rng)]
            a.payment_fingerprint = self.payments[rng.randrange(len(self.payments))]
            a.user_agent = self.ua
            a.created_ts = float(round(waves[rng.randrange(len(waves))]
                                       + rng.uniform(-3600.0, 3600.0)))
            offset = rng.uniform(0.0, 4.0)
            timed: list[tuple[float, int]] = []
            for r in range(rounds):
                if rng.random() < k.round_dropout:
                    continue
                t = start + r * cycle + offset
                for s in range(steps):
                    p = r * steps + s
                    keep = ((p + idx) % m_int == 0) if integral else (rng.random() * m < 1.0)
                    if keep:
                        timed.append((t + rng.uniform(-1.0, 1.0), p))
                    t += self.jittered(k.step_s, rng)
            if not any(start <= t < self.t1 for t, _ in timed):
                timed = [(start + offset + idx % steps * k.step_s, idx % steps)]
            finalize_marked(a, timed, self.t0, self.t1)
            out.append(a)
        return out

    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        rng = a.rng
        k = self.sc.campaign_cot
        pos = a.marks[i] % len(self.sequence)  # type: ignore[index]
        ip, asn, country = self.exit_for(a)
        return make_event(
            a, ts, ip, asn, country, self.models.choose(rng, ts), MESSAGES,
            self.sequence_cats[pos], near(self.sequence[pos], k.max_bit_flips, rng),
            self.system_prompts[0] if rng.random() < 0.9 else self.system_prompts[1],
            rng.random() < k.reasoning_share, 0, 3.0, ERR_ORDINARY,
        )


class Stealth(Campaign, Ordinary):
    group = "campaign_stealth"
    label = "attack"

    def __init__(self, sc: Scenario, mint: IdMint) -> None:
        Ordinary.__init__(self, sc, mint)
        self.jitter = sc.timing_jitter
        self.rotate = sc.rotate_ip_per_request
        self.multiplier = sc.campaign_account_multiplier
        k = sc.campaign_stealth
        self.templates = [random_simhash(self.rng) for _ in range(max(1, k.templates))]
        self.stealth_cats = category_picker({"reasoning": 25, "coding": 30, "math": 10,
                                             "chat": 15, "writing": 15, "tool_use": 5})
        self.models = ModelChooser(sc, 0.75, cap=0.15, ramp_h=3.0)
        self.claimed = net.Picker([("US", 6.0), ("GB", 2.0), ("DE", 1.5), ("CA", 1.5)])

    def build(self) -> list[Account]:
        k = self.sc.campaign_stealth
        tz = k.active_tz_offset_h
        out = []
        for idx in range(self.sc.campaign_accounts(k.accounts)):
            a = self.new_account(idx)
            rng = a.rng
            self.personal(a, self.claimed.pick(rng), 0.1)
            a.payment_fingerprint = None if rng.random() < 0.15 else self.mint.new("pf-", rng)
            a.created_ts = old_created(rng, self.t0, k.min_account_age_days,
                                       k.max_account_age_days)
            n = self.volume(rng, k.mean_requests_per_6h, k.volume_sigma, tz)
            n = max(1, stochastic_round(n / self.multiplier, rng))
            finalize_times(a, session_times(rng, n, self.t0, self.t1, tz, 6.0, 40.0,
                                            self.jitter), self.t0, self.t1)
            out.append(a)
        return out

    def request(self, a: Account, i: int, ts: float) -> dict[str, Any]:
        rng = a.rng
        k = self.sc.campaign_stealth
        st = a.state
        cat = self.stealth_cats.pick(rng)
        simhash = (near(pick(self.templates, rng), k.max_bit_flips, rng)
                   if rng.random() < k.template_share else None)
        ev = self.personal_request(a, ts, st, cat, simhash)
        ev["reasoning_requested"] = rng.random() < k.reasoning_share
        if self.rotate:
            ev["ip"], ev["asn"], ev["country"] = net.rotating_exit(rng)
        return ev
