"""An adversary's probe of core 0.14's crowd hours (issue 14, branch `adversary14`), and what
changed because of it.

The rule (models/crowd_hours.py): in a clock hour, an established account that sent a system
prompt 20+ high-value reasoning requests of known templates, 50%+ of its requests, harvests it; 3+ harvesters of 3+ orgs and 3+ cards (orgs >= 0.8 x harvesters) make a crowd hour;
4 crowd hours (a day apart at most) throttle. Measured on the whole core, probes in /tmp/adv14/
(the helper's), against the first cut (which had no "known templates" condition):

    honest crowd (own org + card each)                        first cut   now
    12 devs of one IDE agent, 40/h, 9-17h, 2 days               12/12      0/12 (prompts their own)
    5 companies, same public benchmark harness, 120/h, 5 h        5/5      5/5 (xfail below)
    hackathon, 30 people, starter-kit prompt, 25/h, 6 h          30/30     0 unless templated
    framing: 2 honest heavy users + 1 framer (96 req in 4 h)      2/2      0/2; 2/2 when the honest
                                                                           users send the tool's
                                                                           templates (xfail)

    lab evasion (6 aged accounts, own org + card)      hv req/account/day unthrottled
    no system prompt (put it in the user turn)          2,886 at 120/h (anything: nothing acts)
    a prompt per account, or per pair of accounts       721 at 30/h
    30/h + 40/h one-token chat padding                  721
    260 junk system prompts once (MAX_KEYS_PER_ACCOUNT) 1,441 at 60/h
    two accounts per org, 40/h                          962
    18/h, one prompt                                    431
    fixed since the first cut: 4 decoy prompts per 5-min window (1,441: prompt_harvest kept the
    window's first 4 prompts; now the least counted gives way), 3 h on / 7 h off (864: the
    account's state, with its crowd hours, expired after 6 h idle; now kept a day past the last
    crowd hour), a record stamped 24 h ahead (never throttled: only the latest hour any member
    sent was judged; now the hour each harvester crossed in).

The tests below hold the guarantees and mark the weaknesses (strict xfails, with the figures).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from distillguard.models.account import (
    MAX_PROMPT_HARVEST_KEYS_PER_WINDOW,
    AccountState,
    AccountWindow,
    count_prompt_harvest,
)
from distillguard.models.cluster import _hour_counts
from distillguard.models.crowd_hours import HOUR_S, HOURS_TO_ACT, counts_crowd_hours
from distillguard.models.decision import BLOCK, THROTTLE, Decision
from distillguard.models.events import RequestEvent
from distillguard.models.messages import ClusterSummary
from distillguard.models.pipeline import Pipeline
from tests.unit.test_crowd_hours import CFG, T0, YEAR

UA = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"
_R = random.Random(14)
LAB_TEMPLATES = tuple(_R.getrandbits(64) for _ in range(4))  # a harvest's prompt families
BENCHMARK = tuple(_R.getrandbits(64) for _ in range(4))  # a public benchmark's items


def _stream(account: str, n: int, start: float, end: float, per_hour: float, *,
            org: str | None, card: str | None,
            sp: str | Callable[[int], str | None] | None = None, category: str = "reasoning",
            reasoning: bool = True, seed: int = 1, tag: str = "",
            jitter: tuple[float, float] = (0.6, 1.4),
            templates: tuple[int, ...] = ()) -> list[RequestEvent]:
    """One established account's requests from start to end at about per_hour, from its own
    home address: each prompt its own, or one of `templates` with two bits of noise. `sp` is a
    system prompt hash, None, or a function of the request's index giving one."""
    rng = random.Random(seed)

    def prompt() -> int:
        if not templates:
            return rng.getrandbits(64)
        return rng.choice(templates) ^ (1 << rng.randrange(64)) ^ (1 << rng.randrange(64))

    out: list[RequestEvent] = []
    ts = start + rng.uniform(0, HOUR_S / per_hour)
    i = 0
    while ts < end:
        out.append(RequestEvent(
            event_id=f"{account}-{tag}-{i}", ts=ts, account_id=account,
            ip=f"98.{n % 250}.{n // 250}.7", model="m", prompt_tokens=300,
            completion_tokens=900, status=200, simhash=prompt(),
            reasoning_requested=reasoning, org_id=org, asn=7922 + n, user_agent=UA,
            payment_fingerprint=card, account_created_ts=T0 - YEAR,
            system_prompt_hash=sp(i) if callable(sp) else sp, task_category=category))
        i += 1
        ts += rng.uniform(*jitter) * HOUR_S / per_hour
    return out


def _background(hours: float) -> list[RequestEvent]:
    """Other customers' light chat, so event time moves in every partition overnight."""
    out: list[RequestEvent] = []
    for b in range(16):
        out += _stream(f"bg-{b}", 200 + b, T0, T0 + hours * HOUR_S, 20, org=f"o-bg-{b}",
                       card=f"c-bg-{b}", category="chat", reasoning=False, seed=900 + b)
    return out


def _decisions(events: list[RequestEvent]) -> dict[str, list[Decision]]:
    by_account: dict[str, list[Decision]] = {}
    for d in Pipeline(CFG, partitions=4).run(sorted(events, key=lambda e: e.ts)):
        by_account.setdefault(d.account_id, []).append(d)
    return by_account


def _acted(decided: dict[str, list[Decision]], accounts: list[str]) -> list[str]:
    return [a for a in accounts if any(d.action != "allow" for d in decided.get(a, []))]


def _lab(sp: Callable[[int, int], str | None], *, per_hour: float = 30, hours: float = 24,
         org: Callable[[int], str] | None = None, pad: float = 0,
         extra: Callable[[str, int, str], list[RequestEvent]] | None = None,
         ) -> tuple[list[RequestEvent], list[str]]:
    """Six aged accounts, each its own org and card, harvesting reasoning all day."""
    events: list[RequestEvent] = []
    accounts = []
    for i in range(6):
        a = f"lab-{i}"
        o = org(i) if org else f"org-{a}"
        def prompt(k: int, i: int = i) -> str | None:
            return sp(i, k)

        events += _stream(a, i, T0, T0 + hours * HOUR_S, per_hour, org=o, card=f"card-{a}",
                          sp=prompt, seed=300 + i, templates=LAB_TEMPLATES)
        if pad:
            events += _stream(a, i, T0, T0 + hours * HOUR_S, pad, org=o, card=f"card-{a}",
                              category="chat", reasoning=False, seed=700 + i, tag="pad")
        if extra:
            events += extra(a, i, o)
        accounts.append(a)
    return events, accounts


# --- guarantees ----------------------------------------------------------------------------


def test_the_lab_on_one_shared_prompt_is_throttled_and_never_blocked() -> None:
    events, lab = _lab(lambda i, k: "lab-sp", hours=8)
    decided = _decisions(events)
    assert sorted(_acted(decided, lab)) == lab
    for a in lab:
        first = next(d for d in decided[a] if d.action != "allow")
        assert first.action == THROTTLE
        # its 4th crowd hour: the 5th of its harvest, whose first hour is spent making its
        # templates known (a crowd of three agreeing on each)
        assert first.event_ts < T0 + (HOURS_TO_ACT + 1) * HOUR_S + 15 * 60
        assert all(d.action != BLOCK for d in decided[a])


def test_a_big_single_org_key_of_heavy_employees_is_never_a_crowd() -> None:
    # 300 heavy employees of one org and card on the company's agent prompt: never told,
    # so every summary re-arms the hour check; nothing is acted on (and it costs no more CPU
    # than the same traffic without reasoning: 7.7 s against 7.6 s for 1,500 of them, p6_cpu.py)
    events: list[RequestEvent] = []
    staff = []
    for i in range(300):
        a = f"emp-{i}"
        events += _stream(a, i, T0, T0 + 2 * HOUR_S, 30, org="bigco", card="bigco-card",
                          sp="bigco-sp", category="coding", seed=i, templates=LAB_TEMPLATES)
        staff.append(a)
    assert _acted(_decisions(events), staff) == []


def test_prompt_harvest_keys_per_window_are_bounded() -> None:
    win = AccountWindow(start=T0)
    for k in range(1000):
        ev = RequestEvent(event_id=f"e{k}", ts=T0 + k * 0.1, account_id="a", ip="1.2.3.4",
                          model="m", prompt_tokens=1, completion_tokens=1, status=200,
                          simhash=k, reasoning_requested=True, system_prompt_hash=f"p{k}",
                          task_category="math")
        count_prompt_harvest(win, ev, templated=True)
    assert len(win.prompt_harvest) == MAX_PROMPT_HARVEST_KEYS_PER_WINDOW


def test_a_late_window_of_an_earlier_hour_leaves_the_hours_counts() -> None:
    def summary(start: int, harvested: int, requests: int) -> ClusterSummary:
        return ClusterSummary(cluster_key="sys:x", account_id="a", kind="window",
                              window_start=start, event_ts=start, requests=requests,
                              reasoning=requests, high_value=requests, completion_tokens=0,
                              young=False, account_first_ts=0.0, tick=0,
                              key_harvest=harvested)

    sys_key, ip_key = counts_crowd_hours("sys:x"), counts_crowd_hours("ip:1.2.3")
    hour, harvested, requests = _hour_counts(sys_key, summary(T0 + HOUR_S + 300, 12, 12), 0, 0, 0)
    assert (hour, harvested, requests) == (T0 + HOUR_S, 12, 12)
    assert _hour_counts(sys_key, summary(T0 + 3000, 9, 9), hour, harvested, requests) == (
        T0 + HOUR_S, 12, 12)  # late: the hour before
    assert _hour_counts(ip_key, summary(T0 + 2 * HOUR_S, 9, 9), hour, harvested,
                        requests) == (hour, harvested, requests)  # not a content key


def test_crowd_hours_survive_the_state_wire_form() -> None:
    state = AccountState.new("a", float(T0))
    state.crowd_hours, state.crowd_hour_last = 3, T0
    state.crowd_hour_key, state.crowd_hour_reason = "sys:x", "why"
    back = AccountState.from_wire(state.to_wire())
    assert (back.crowd_hours, back.crowd_hour_last, back.crowd_hour_key,
            back.crowd_hour_reason) == (3, T0, "sys:x", "why")


# --- weaknesses: honest users throttled ----------------------------------------------------


def test_independent_users_of_one_coding_agent_are_not_throttled() -> None:
    """Found on the first cut (every harvester of the hour counted): independent developers of
    one IDE coding agent (one fixed system prompt, tool use with reasoning, 40 req/h, own org and
    card each) made a crowd hour every hour, 12/12 throttled at their 4th hour, 56% of each
    working day's requests after it (p1_honest.py, p1_week.py). A harvester must now be
    harvesting known templates (an hour counts its requests of known templates only): their
    prompts are their own."""
    events: list[RequestEvent] = []
    devs = []
    rng = random.Random(1)
    for i in range(6):
        a = f"dev-{i}"
        start = T0 + 9 * HOUR_S + rng.uniform(0, 1) * HOUR_S
        events += _stream(a, i, start, start + 8 * HOUR_S, 40, org=f"org-{a}", card=f"card-{a}",
                          sp="ide-agent-v3", category="tool_use", seed=1000 + i)
        devs.append(a)
    assert _acted(_decisions(events), devs) == []


@pytest.mark.xfail(strict=True, reason=(
    "five independent companies running the same public benchmark (its items: shared templates) "
    "with one harness's system prompt on a model-release evening (120 math reasoning req/h each, "
    "5 h) are throttled 5/5 at their 4th hour, ~350 requests in: by every figure the rule sees, "
    "a lab dressed as eval runs (p1_honest.py case B)"))
def test_independent_companies_running_one_public_benchmark_are_not_throttled() -> None:
    events: list[RequestEvent] = []
    evals = []
    for i in range(5):
        a = f"evalco-{i}"
        start = T0 + 17 * HOUR_S + i * 600
        events += _stream(a, i, start, start + 5 * HOUR_S, 120, org=f"org-{a}",
                          card=f"card-{a}", sp="gsm-harness", category="math", seed=500 + i,
                          templates=BENCHMARK)
        evals.append(a)
    assert _acted(_decisions(events), evals) == []


def _framed(honest_templates: tuple[int, ...], framer_templates: tuple[int, ...],
            framer_hours: float = 4) -> list[str]:
    """Two honest heavy users of a niche tool's prompt (30 coding reasoning req/h, 8 h) and ONE
    stranger harvesting that prompt 24 an hour for `framer_hours`: the honest users acted on."""
    events: list[RequestEvent] = []
    honest = []
    for i in range(2):
        a = f"honest-{i}"
        start = T0 + 9 * HOUR_S + i * 300
        events += _stream(a, i, start, start + 8 * HOUR_S, 30, org=f"org-{a}", card=f"card-{a}",
                          sp="niche-tool", category="coding", seed=10 + i,
                          templates=honest_templates)
        honest.append(a)
    events += _stream("framer", 100, T0 + 9 * HOUR_S, T0 + (9 + framer_hours) * HOUR_S, 24,
                      org="org-framer",
                      card="card-framer", sp="niche-tool", seed=90, jitter=(0.95, 1.05),
                      templates=framer_templates)
    return _acted(_decisions(events), honest)


def test_one_stranger_cannot_make_two_honest_heavy_users_a_crowd() -> None:
    """Found on the first cut: two honest heavy users of a niche tool's prompt (alone never
    acted on) were both throttled at their 4th hour by ONE stranger account sending that prompt
    24 reasoning req/h for 4 h (p2_frame.py). Their prompts are their own, so they are no
    harvesters of known templates (next test: when they are)."""
    assert _framed(honest_templates=(), framer_templates=LAB_TEMPLATES) == []


@pytest.mark.xfail(strict=True, reason=(
    "framing, the residue: two honest heavy users of a niche tool who send its scaffold "
    "templates (30 coding reasoning req/h, 8 h; alone never acted on) are harvesters of known "
    "templates, and ONE stranger harvesting that prompt and those templates for 6 h (which "
    "also makes them known: a crowd of three; its first hour, before they are known, counts "
    "for nothing) makes each hour a crowd hour: both throttled (never blocked)"))
def test_one_stranger_cannot_make_two_honest_templated_users_a_crowd() -> None:
    assert _framed(honest_templates=BENCHMARK, framer_templates=BENCHMARK, framer_hours=6) == []


# --- weaknesses: the lab's cheap ways out --------------------------------------------------


def test_a_lab_pausing_seven_hours_between_three_hour_sessions_is_throttled() -> None:
    """Found on the first cut: an account's state (and its crowd hours) expired after
    idle_expiry_s (6 h), not after the documented day without a crowd hour (COUNT_RESET_S): 3 h
    sessions 7 h apart kept 6/6 lab accounts unthrottled at 864 hv req/day (p4_idle_reset.py).
    The state is now kept a day past the last crowd hour."""
    events: list[RequestEvent] = []
    lab = []
    for i in range(6):
        a = f"lab-{i}"
        for s in range(2):
            start = T0 + s * 10 * HOUR_S + 60
            events += _stream(a, i, start, start + 3 * HOUR_S - 120, 60, org=f"org-{a}",
                              card=f"card-{a}", sp="lab-sp", seed=i * 10 + s, tag=str(s),
                              jitter=(0.9, 1.1), templates=LAB_TEMPLATES)
        lab.append(a)
    decided = _decisions(events + _background(20))
    assert sorted(_acted(decided, lab)) == lab


def _decoys(a: str, i: int, org: str) -> list[RequestEvent]:
    """Four one-token math reasoning requests, each a system prompt of its own, at the start
    of each 5-minute window: they take all MAX_PROMPT_HARVEST_KEYS_PER_WINDOW slots."""
    return [RequestEvent(event_id=f"{a}-decoy-{w}-{d}", ts=T0 + w * 300 + 1 + d, account_id=a,
                         ip=f"98.{i}.0.7", model="m", prompt_tokens=5, completion_tokens=1,
                         status=200, simhash=(w * 4 + d) * 7919, reasoning_requested=True,
                         org_id=org, asn=7922 + i, user_agent=UA, payment_fingerprint=f"card-{a}",
                         account_created_ts=T0 - YEAR, system_prompt_hash=f"decoy-{d}",
                         task_category="math")
            for w in range(8 * 12) for d in range(4)]


def test_decoy_prompts_at_each_windows_start_do_not_hide_the_harvest() -> None:
    """Found on the first cut: four one-off prompts at each 5-minute window's start took every
    `prompt_harvest` slot, and the harvest's own prompt was never counted (0/6 acted on at 60/h,
    1,441 a day each). The least counted prompt now gives its place (space-saving)."""
    events, lab = _lab(lambda i, k: "lab-sp", per_hour=60, hours=8, extra=_decoys)
    assert sorted(_acted(_decisions(events), lab)) == lab


def _burn(a: str, i: int, org: str) -> list[RequestEvent]:
    """260 one-token chat requests, each a system prompt of its own, in the 10 minutes before:
    the account's keys reach MAX_KEYS_PER_ACCOUNT and its harvest prompt is never joined."""
    return [RequestEvent(event_id=f"{a}-burn-{k}", ts=T0 - 600 + k, account_id=a,
                         ip=f"98.{i}.0.7", model="m", prompt_tokens=5, completion_tokens=1,
                         status=200, simhash=k * 104729, reasoning_requested=False, org_id=org,
                         asn=7922 + i, user_agent=UA, payment_fingerprint=f"card-{a}",
                         account_created_ts=T0 - YEAR, system_prompt_hash=f"burn-{a}-{k}",
                         task_category="chat")
            for k in range(260)]


@pytest.mark.xfail(strict=True, reason=(
    "six aged lab accounts (own org + card) harvesting 60 reasoning req/h for 8 h on one prompt "
    "are throttled 6/6 at the 4th hour; these cheap changes leave them 0/6 acted on by anything: "
    "no system prompt at all (2,886 hv req/account/day at 120/h), a prompt per pair of accounts, "
    "40/h one-token chat padding, 260 junk prompts once (MAX_KEYS_PER_ACCOUNT: the harvest "
    "prompt is never joined), two accounts per org at 40/h (p3_evade.py)"))
@pytest.mark.parametrize("evasion", ["no-prompt", "prompt-per-pair", "padding", "key-cap-burn",
                                     "two-per-org"])
def test_the_lab_cannot_step_out_of_its_crowd_cheaply(evasion: str) -> None:
    shared = (lambda i, k: "lab-sp")
    kw: dict[str, Any] = {"per_hour": 60, "hours": 8}
    if evasion == "no-prompt":
        kw["per_hour"] = 120
        events, lab = _lab(lambda i, k: None, **kw)
    elif evasion == "prompt-per-pair":
        events, lab = _lab(lambda i, k: f"lab-sp-{i // 2}", **kw)
    elif evasion == "padding":
        events, lab = _lab(shared, per_hour=30, hours=8, pad=40)
    elif evasion == "key-cap-burn":
        events, lab = _lab(shared, extra=_burn, **kw)
    else:
        events, lab = _lab(shared, per_hour=40, hours=8, org=lambda i: f"lab-org-{i // 2}")
    assert sorted(_acted(_decisions(events), lab)) == lab


@pytest.mark.xfail(strict=True, reason=(
    "one event with the prompt stamped 1.5 h ahead (another account, a skewed clock) moves its "
    "account partition's tick ahead, so that partition's summaries are folded 1.5 h late, after "
    "the other harvesters' counts have moved to the next hour: one crowd hour lost, the lab "
    "throttled at 5.9 h instead of 5.0 h (p5_future.py; the first cut judged only the latest "
    "hour any member sent, and lost every hour to a record 24 h ahead). Live, the edge refuses "
    "a record over max_event_ahead_s (300 s) ahead: only a replayed file can do this"))
def test_one_future_stamped_member_does_not_hide_the_crowd() -> None:
    events, lab = _lab(lambda i, k: "lab-sp", hours=10)
    events.sort(key=lambda e: e.ts)
    skewed = RequestEvent(event_id="skew", ts=T0 + 2.5 * HOUR_S, account_id="skewed",
                          ip="1.2.3.4", model="m", prompt_tokens=5, completion_tokens=5,
                          status=200, simhash=1, reasoning_requested=True, org_id="o-skew",
                          payment_fingerprint="c-skew", account_created_ts=T0 - YEAR,
                          system_prompt_hash="lab-sp", task_category="math")
    at = next(n for n, e in enumerate(events) if e.ts > T0 + HOUR_S)
    events.insert(at, skewed)
    decided: dict[str, list[Decision]] = {}
    for d in Pipeline(CFG, partitions=4).run(events):  # in arrival order, not sorted
        decided.setdefault(d.account_id, []).append(d)
    for a in lab:
        first = next(d for d in decided[a] if d.action != "allow")
        late = first.event_ts - T0
        assert late < (HOURS_TO_ACT + 1) * HOUR_S + 15 * 60, (a, late)
