"""Established strangers harvesting shared templates at a machine's pace: specifications for
any rule meant to catch a lab on aged accounts that keep their address and client (the
independent validation world's chain-of-thought campaign: 12 accounts, 110 reasoning requests
each in 67 minutes, not acted on at its seed 21).

A rule was tried after core 0.17 (branch `exp14-machine`, not kept; docs/tuning.md): in a template
crowd, established members harvesting at a machine's pace counted as suspicious when they were
strangers (3+ organisations and cards, the organisations 0.8 of them). It blocked the lab, 12 of 12
at 42-47 minutes. Its adversary (helper, branch `adversary19`) then found that it blocked honest
customers running a public benchmark suite from CI, 12 of 12, and throttled an open-source agent's
developers and a viral prompt pack's bots. It also let one attacker frame four honest benchmark
runs, and the lab stepped out of it with two accounts per organisation or a pace of 0.97 a minute.
These are that adversary's worlds (`Pipeline`, 4 partitions, 16 background chat accounts), with the
figures it measured under the rule.

- Plain tests: honest crowds that core 0.17 leaves alone and that any such rule must leave
  alone too.
- Strict xfails: the lab itself, which core 0.17 does not act on (0 of 12, 110 of 110 served),
  and the cheap ways out of the rule that was tried.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from distillguard.models.config import DetectorConfig
from distillguard.models.events import RequestEvent
from distillguard.models.pipeline import Pipeline

CFG = DetectorConfig()
T0 = 1_767_225_600
YEAR = 365 * 86400.0
DAY = 86400.0
H = 3600.0
S = T0 + 600  # the crowd's start
SDK = "python-sdk/1.40"
_R = random.Random(19)
LAB = tuple(_R.getrandbits(64) for _ in range(6))  # a lab's template families
BENCH = tuple(_R.getrandbits(64) for _ in range(6))  # public benchmarks' prompt formats
SCAFFOLD = tuple(_R.getrandbits(64) for _ in range(3))  # an OSS agent's scaffold templates
VIRAL = tuple(_R.getrandbits(64) for _ in range(1))  # a viral prompt
MORE = tuple(_R.getrandbits(64) for _ in range(24))  # more families
SUITE = BENCH[:4]


def _uniform(start: float, end: float, per_min: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    out, ts = [], start + rng.uniform(0, 60 / per_min)
    while ts < end:
        out.append(ts)
        ts += rng.uniform(0.8, 1.2) * 60 / per_min
    return out


def _bursts(start: float, end: float, n: int, gap: float, pause: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    out, ts = [], start + rng.uniform(0, gap)
    while ts < end:
        for _ in range(n):
            if ts >= end:
                break
            out.append(ts)
            ts += gap * rng.uniform(0.9, 1.1)
        ts += pause
    return out


@dataclass
class Acct:
    name: str
    kind: str
    times: list[float]
    templates: tuple[int, ...]
    org: str | None
    card: str | None
    created: float = T0 - YEAR
    reasoning: bool = True
    category: str = "math"
    ua: str = SDK
    n: int = 0  # its own home address and network
    pad: float = 0.0  # share of its requests that are one-off chat


def _events(a: Acct) -> list[RequestEvent]:
    rng = random.Random(a.name)
    out = []
    for i, ts in enumerate(a.times):
        padded = bool(a.pad) and rng.random() < a.pad
        if padded or not a.templates:
            sim = rng.getrandbits(64)
        else:
            sim = rng.choice(a.templates)
            for _ in range(rng.randint(0, 2)):
                sim ^= 1 << rng.randrange(64)
        out.append(RequestEvent(
            event_id=f"{a.name}-{i}", ts=ts, account_id=a.name,
            ip=f"98.{a.n % 250}.{a.n // 250}.7", model="m", prompt_tokens=300,
            completion_tokens=900, status=200, simhash=sim,
            reasoning_requested=a.reasoning and not padded, org_id=a.org, asn=7922 + a.n,
            user_agent=a.ua, payment_fingerprint=a.card, account_created_ts=a.created,
            task_category="chat" if padded else a.category))
    return out


def _background(hours: float) -> list[Acct]:
    """Other customers' light chat, so event time moves in every partition."""
    return [Acct(f"bg-{b}", "bg", _uniform(T0, T0 + hours * H, 1 / 3, 900 + b), (),
                 f"o-bg-{b}", f"c-bg-{b}", reasoning=False, category="chat",
                 ua="Mozilla/5.0 Firefox/128.0", n=200 + b) for b in range(16)]


@dataclass
class Outcome:
    accounts: int
    acted: int
    blocked: int
    first_acted_min: float | None  # minutes after S
    first_blocked_min: float | None
    served: float  # requests per account sent up to its first action (all, if none)


def _run(accts: list[Acct], hours: float = 6) -> dict[str, Outcome]:
    evs = [e for a in accts + _background(hours) for e in _events(a)]
    evs.sort(key=lambda e: e.ts)
    acted: dict[str, float] = {}
    blocked: dict[str, float] = {}
    for d in Pipeline(CFG, partitions=4).run(evs):
        if d.action != "allow":
            acted.setdefault(d.account_id, d.event_ts)
        if d.action == "block":
            blocked.setdefault(d.account_id, d.event_ts)
    out = {}
    for kind in {a.kind for a in accts}:
        group = [a for a in accts if a.kind == kind]
        fa = [(acted[a.name] - S) / 60 for a in group if a.name in acted]
        fb = [(blocked[a.name] - S) / 60 for a in group if a.name in blocked]
        served = sum(sum(1 for t in a.times if a.name not in acted or t <= acted[a.name])
                     for a in group) / len(group)
        out[kind] = Outcome(len(group), len(fa), len(fb), min(fa, default=None),
                            min(fb, default=None), served)
    return out


def _lab(n: int = 12, per_min: float = 110 / 67, minutes: float = 67,
         org: Callable[[int], str] = lambda i: f"org-lab-{i}",
         card: Callable[[int], str] = lambda i: f"card-lab-{i}",
         times: Callable[[int], list[float]] | None = None,
         templates: Callable[[int], tuple[int, ...]] = lambda i: LAB,
         created: Callable[[int], float] = lambda i: T0 - YEAR,
         start: Callable[[int], float] = lambda i: S + i * 20, kind: str = "lab",
         pad: float = 0.0) -> list[Acct]:
    """A lab on aged accounts, each its own org, card and home address (note 15's campaign:
    110 reasoning requests in 67 minutes on 6 template families)."""
    return [Acct(f"{kind}-{i}", kind,
                 times(i) if times else _uniform(start(i), start(i) + minutes * 60, per_min, i),
                 templates(i), org(i), card(i), created=created(i), n=i, pad=pad)
            for i in range(n)]


def _honest(kind: str, n: int, per_min: float, minutes: float, templates: tuple[int, ...], *,
            start: Callable[[int], float] = lambda i: S + i * 120,
            created: Callable[[int], float] = lambda i: T0 - YEAR, category: str = "math",
            reasoning: bool = True) -> list[Acct]:
    """n independent customers, each its own org, card and address, at a machine's pace."""
    return [Acct(f"{kind}-{i}", kind,
                 _uniform(start(i), start(i) + minutes * 60, per_min, 100 + i), templates,
                 f"org-{kind}-{i}", f"card-{kind}-{i}", created=created(i), category=category,
                 reasoning=reasoning, n=100 + i)
            for i in range(n)]


# --- the gap: the lab is not acted on -------------------------------------------------------

LAB_NOT_ACTED_ON = (
    "core 0.17 acts on none of the lab (0 of 12, 110 of 110 served): its established members "
    "count as honest harvesters of its template crowds. The exp14 rule blocked 12 of "
    "12 at 42-47 min (68 of 110 served), also with two accounts per card, 40% chat padding or "
    "4 young accounts among them (acted on at 27-57 min). It was not kept (module docstring)")


@pytest.mark.xfail(strict=True, reason=LAB_NOT_ACTED_ON)
def test_the_lab_of_twelve_strangers_is_blocked() -> None:
    """Under the exp14 rule: 12/12 blocked, first acted on 42 min in (blocked at 47),
    68 of 110 requests served each. Core 0.17 serves all 110 and acts on none."""
    lab = _run(_lab())["lab"]
    assert lab.blocked == 12 and lab.first_acted_min is not None
    assert lab.first_acted_min < 50 and lab.served < 80


@pytest.mark.xfail(strict=True, reason=LAB_NOT_ACTED_ON)
@pytest.mark.parametrize("variant", ["two-per-card", "chat-padding-40pct", "four-young"])
def test_the_lab_is_still_blocked_when_it(variant: str) -> None:
    """Under the exp14 rule: two accounts per card (own org), blocked as the lab; 40%
    one-off chat padding at 2.7/min, 12/12 acted on at 42 min, 9 blocked, 122 of 181 served; 4
    of 12 accounts young, 12/12 blocked at 32 min."""
    if variant == "two-per-card":
        accts = _lab(card=lambda i: f"card-lab-{i // 2}")
    elif variant == "chat-padding-40pct":
        accts = _lab(per_min=2.7, pad=0.4)
    else:
        accts = _lab(created=lambda i: T0 - (YEAR if i < 8 else 10 * DAY))
    lab = _run(accts)["lab"]
    assert lab.acted == 12 and lab.blocked >= 9


@pytest.mark.parametrize("crowd", ["one-benchmark", "four-orgs-suite", "one-viral-prompt"])
def test_honest_machine_paced_strangers_are_left_alone(crowd: str) -> None:
    """Independent customers at a machine's pace that the exp14 rule left alone too:
    one public benchmark (6 orgs, 10/min, 40 min: one known template damps the harvest figure
    to 0.4, `FOCUS`), a suite of four by four orgs (under `template_min_accounts`), 15 bots
    sending one viral prompt (2/min, 90 min)."""
    if crowd == "one-benchmark":
        accts = _honest("c", 6, 10, 40, BENCH[:1])
    elif crowd == "four-orgs-suite":
        accts = _honest("c", 4, 10, 40, SUITE)
    else:
        accts = _honest("c", 15, 2, 90, VIRAL, category="reasoning")
    assert _run(accts)["c"].acted == 0


# --- honest crowds: what the rule tried acted on ---------------------------------------------

HONEST_ACTED = {
    # name: (world, kind, the figure the xfail documents)
    "ci-12-orgs-suite-3pm-2h": lambda: _honest("c", 12, 3, 120, SUITE,
                                               start=lambda i: S + i * 600),
    "ci-6-orgs-suite-3pm-2h": lambda: _honest("c", 6, 3, 120, SUITE,
                                              start=lambda i: S + i * 600),
    "release-5-orgs-suite-5pm-1h": lambda: _honest("c", 5, 5, 60, SUITE),
    "oss-agent-8-devs-scaffolds": lambda: _honest("c", 8, 4, 60, SCAFFOLD, category="coding"),
    "two-benchmarks-6-orgs-10pm": lambda: _honest("c", 6, 10, 40, BENCH[:2]),
    "viral-pack-15-bots": lambda: _honest("c", 15, 2, 90, BENCH[3:6], category="reasoning"),
}


@pytest.mark.parametrize("crowd", sorted(HONEST_ACTED))
def test_honest_machine_paced_strangers_are_not_acted_on(crowd: str) -> None:
    """Honest independent customers (each its own org, card and address) at a machine's pace
    on shared templates. Under the exp14 rule:
    - 12 orgs' CI running a public 4-benchmark suite at 3/min for 2 h, 10 min apart: 12/12
      BLOCKED (acted on at 68-70 min, blocked from 120, 71 of 360 served);
    - 6 orgs the same, starts over 1 h: 6/6 BLOCKED from 97 min;
    - 5 orgs on a release evening, 5/min for 1 h: 5/5 throttled at 57 min;
    - 8 developers of an OSS agent whose 3 scaffold templates run in loops (coding, 4/min,
      1 h): 8/8 throttled at 42 min;
    - 15 small customers' bots sending a viral pack of 3 reasoning prompts (2/min): 15/15
      throttled at 52 min;
    - 6 orgs running two benchmarks interleaved at 10/min for 40 min: 4-6 of 6 throttled at
      37-46 min over six draws.
    Core 0.17 acts on none of them."""
    assert _run(HONEST_ACTED[crowd]())["c"].acted == 0


def test_a_young_startup_beside_four_benchmark_runs_is_not_blocked() -> None:
    """4 established orgs running a suite at 10/min (alone under template_min_accounts) and one
    young startup account running it too. Under the exp14 rule: 4 + 1 suspicious, the
    crowd convicted, the startup BLOCKED at 42 min (machine pace lets it block)."""
    out = _run(_honest("c", 5, 10, 40, SUITE,
                       created=lambda i: T0 - (10 * DAY if i == 4 else YEAR)))
    assert out["c"].blocked == 0


@pytest.mark.parametrize("attackers", ["one-aged", "one-young", "two-young-beside-three"])
def test_attackers_cannot_make_honest_benchmark_runs_a_campaign(attackers: str) -> None:
    """Framing. 4 honest orgs running a suite at 5/min for an hour are never acted on alone.
    Under the exp14 rule, ONE attacker account (aged, its own org and card) harvesting
    the same suite beside them made 5 machine strangers: 4/4 honest throttled at 57 min (270 of
    300 served), in 4 draws of 4. A young attacker did the same (4/4 at 57 min, itself blocked
    at 38). 2 young attackers beside 3 honest orgs at 10/min for 40 min: 0, 1, 3 and 3 of 3
    honest acted on over 4 draws."""
    if attackers == "two-young-beside-three":
        out = _run(_honest("c", 3, 10, 40, SUITE)
                   + _lab(2, per_min=10, minutes=40, templates=lambda i: SUITE, kind="atk",
                          created=lambda i: T0 - 3 * DAY))
        assert out["c"].acted == 0
        return
    alone = _run(_honest("c", 4, 5, 60, SUITE))["c"]
    assert alone.acted == 0  # (holds: the honest crowd alone)
    age = YEAR if attackers == "one-aged" else 3 * DAY
    out = _run(_honest("c", 4, 5, 60, SUITE)
               + _lab(1, per_min=5, minutes=60, templates=lambda i: SUITE, kind="atk",
                      created=lambda i: T0 - age))
    assert out["c"].acted == 0


# --- the rule tried: the lab's ways out ----------------------------------------------------


def _trickle_then_burst(i: int) -> list[float]:
    # a templated request every 25 min for 8 h (active time banked: gaps under 30 min count in
    # full), then 400 at 10/min: the harvest's average stays under 1/min
    t = [S + i * 20 + k * 1500 for k in range(20)]
    return t + _uniform(t[-1] + 60, t[-1] + 60 + 40 * 60, 10, i)


EVASIONS = {
    "two-per-org": lambda: _lab(org=lambda i: f"org-lab-{i // 2}"),
    "0.97-per-min": lambda: _lab(per_min=0.97, minutes=120),
    "19-then-20min-pause": lambda: _lab(times=lambda i: _bursts(S + i * 20, S + 3 * H, 19, 10,
                                                                20 * 60, i)),
    "four-at-a-time": lambda: _lab(start=lambda i: S + (i // 4) * 12600 + i * 20),
    "24-families-3-a-family": lambda: _lab(templates=lambda i: tuple(MORE[(i * 6 + j) % 24]
                                                                      for j in range(6))),
    "trickle-then-burst": lambda: _lab(times=_trickle_then_burst),
}


@pytest.mark.xfail(strict=True, reason=(
    "core 0.17 acts on none of the lab; under the exp14 rule (12/12 blocked at "
    "42-47 min, 68 of 110 served) it was acted on by nothing (0/12) either when it: puts two accounts on each org (6 orgs < 0.8 x 12; 110 of "
    "110 served); paces at 0.97/min (117 in 2 h; 465 a day's 8 h) or 0.9/min; sends 19 "
    "requests 10 s apart then pauses 20 min (152 in 3 h); runs 4 accounts at a time in shifts "
    "3.5 h apart (a crowd of 4 < template_min_accounts); spreads over 24 families, 3 accounts "
    "each; trickles a request every 25 min for 8 h, then sends 400 at 10/min (the pace is an "
    "average over the harvest's active time)"))
@pytest.mark.parametrize("evasion", sorted(EVASIONS))
def test_the_lab_cannot_step_out_of_the_rule_cheaply(evasion: str) -> None:
    assert _run(EVASIONS[evasion](), hours=12)["lab"].acted == 12
