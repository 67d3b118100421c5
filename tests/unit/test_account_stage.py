"""`models.account_stage.AccountStage`: per-account event-time windows and the summaries they fan out.

Times are built from the config (window length, lateness, idle expiry), never hard-coded, so
these tests hold whatever those tunables are set to.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from distillguard.models.account import (
    MAX_IP_PREFIXES_PER_WINDOW,
    MAX_KEYS_PER_ACCOUNT,
    AccountState,
    Verdict,
)
from distillguard.models.account_stage import (
    JOIN_AT_ONCE_REQUESTS,
    MAX_VERDICTS_PER_ACCOUNT,
    RECENT_PROMPTS,
    AccountPartition,
    AccountStage,
    Outputs,
)
from distillguard.models.behaviour import rotation
from distillguard.models.config import DetectorConfig
from distillguard.models.events import RequestEvent
from distillguard.models.keys import (
    infrastructure_keys,
    ip_prefix,
    key_kind,
    template_key,
    template_keys,
)
from distillguard.models.messages import BROADCAST, AccountVerdict, ClusterSummary
from distillguard.models.templates import RECURRING_AFTER, SIGNATURE_BITS
from distillguard.models.windows import window_start
from distillguard.streams.edge.codec import encode_account_state
from tests.conftest import make_event

CFG = DetectorConfig()
WS = CFG.window_s
LATE = CFG.allowed_lateness_s
W0 = window_start(1_700_000_000.0, WS)  # an aligned window start
T0 = W0 + 10.0


class Harness:
    """Drives one partition of the stage the way the agent and the pipeline do."""

    def __init__(self, cfg: DetectorConfig = CFG) -> None:
        self.stage = AccountStage(cfg)
        self.part = AccountPartition.create(cfg, 0)
        self.states: dict[str, AccountState] = {}
        self.expired: list[str] = []

    def event(self, ev: RequestEvent) -> tuple[Outputs, list[tuple[str, Outputs]]]:
        """One event in; its own outputs and those of the accounts it made due."""
        state, out = self.stage.on_event(self.states.get(ev.account_id), ev, self.part)
        self.states[ev.account_id] = state
        due_outs = []
        for account in self.stage.due_accounts(self.part):
            due_state = self.states.get(account)
            if due_state is None:
                continue
            due_out = self.stage.on_due(due_state, self.part)
            if due_out.expired:
                del self.states[account]
                self.expired.append(account)
            due_outs.append((account, due_out))
        return out, due_outs

    def verdict(self, state: AccountState | None, account: str,
                v: Verdict) -> tuple[AccountState, Outputs]:
        """A verdict arrives, then the partition's event time reaches its time to apply (as
        another account's event would move it); the account's outputs of both, merged."""
        state, out = self.stage.on_verdict(state, AccountVerdict(account, v, v.issued_ts),
                                           self.part)
        self.states[account] = state
        self.part.watermark.observe(v.issued_ts + CFG.verdict_delay_s)
        for due in self.stage.due_accounts(self.part):
            due_out = self.stage.on_due(self.states[due], self.part)
            if due == account:
                out.decisions += due_out.decisions
        return self.states[account], out


def ev(account: str, ts: float, n: int = 0, **fields: Any) -> RequestEvent:
    return make_event(account, ts, n, **fields)


def windows(summaries: Iterable[ClusterSummary]) -> list[ClusterSummary]:
    return [s for s in summaries if s.kind == "window"]


def joins(summaries: Iterable[ClusterSummary]) -> list[ClusterSummary]:
    return [s for s in summaries if s.kind == "join"]


TEMPLATE = "0123456789abcdef"  # the prompt of make_event's default


def warm_up(h: Harness, prompt: str = TEMPLATE, ts: float = T0 - 5) -> None:
    """Other accounts of the partition use a prompt until its buckets recur."""
    for i in range(RECURRING_AFTER):
        h.event(ev(f"warm-{i}", ts + i * 0.01, prompt_simhash=prompt))


# --- joins ------------------------------------------------------------------------------------


def test_first_event_joins_its_infrastructure_keys_with_its_content() -> None:
    h = Harness()
    e = ev("a", T0, payment_fingerprint="pay-1", system_prompt_hash="sys-1", asn=64500,
           user_agent="sdk/1.0", reasoning_requested=True, task_category="coding",
           completion_tokens=777)
    out, _ = h.event(e)
    # a prompt seen for the first time in the partition is not a template: no template join
    assert [s.cluster_key for s in out.summaries] == list(infrastructure_keys(e))
    assert {key_kind(s.cluster_key) for s in out.summaries} == {"ip", "pay", "sys", "asnua"}
    for s in out.summaries:
        assert (s.kind, s.account_id, s.window_start, s.event_ts) == ("join", "a", W0, T0)
        assert s.account_first_ts == T0
        # the joining request itself, so a crowd of new accounts has content to judge at once
        assert (s.requests, s.reasoning, s.high_value, s.completion_tokens) == (1, 1, 1, 777)
    assert out.decisions == []


def test_template_buckets_are_joined_once_they_recur_in_the_partition() -> None:
    h = Harness()
    buckets = template_keys(int(TEMPLATE, 16), CFG.simhash_bands)
    for i in range(RECURRING_AFTER):  # earlier sightings, by other accounts
        out, _ = h.event(ev(f"other-{i}", T0 + i))
        assert not any(key_kind(s.cluster_key) == "tpl" for s in out.summaries)
    out, _ = h.event(ev("a", T0 + 10, reasoning_requested=True, task_category="math",
                        completion_tokens=321))
    tpl = [s for s in out.summaries if key_kind(s.cluster_key) == "tpl"]
    assert [s.cluster_key for s in tpl] == list(buckets)
    for s in tpl:
        assert (s.kind, s.account_id, s.window_start, s.event_ts) == ("join", "a", W0, T0 + 10)
        assert (s.requests, s.reasoning, s.high_value, s.completion_tokens) == (1, 1, 1, 321)
    # joined once: the same template again in the window is not announced again
    out, _ = h.event(ev("a", T0 + 11, 1))
    assert out.summaries == []


def test_a_template_recurring_only_through_the_accounts_own_use_is_joined_too() -> None:
    h = Harness()
    for i in range(RECURRING_AFTER):
        out, _ = h.event(ev("a", T0 + i, i))
        assert not any(key_kind(s.cluster_key) == "tpl" for s in out.summaries)
    out, _ = h.event(ev("a", T0 + 10, 10))
    assert {s.cluster_key for s in joins(out.summaries)} == set(
        template_keys(int(TEMPLATE, 16), CFG.simhash_bands))


def test_only_the_recurring_bands_of_a_prompt_are_joined() -> None:
    h = Harness()
    warm_up(h)
    # a prompt that shares only band 0 (the low 16 bits) with the recurring template
    out, _ = h.event(ev("a", T0, prompt_simhash="fedcba987654cdef"))
    tpl = [s.cluster_key for s in joins(out.summaries) if key_kind(s.cluster_key) == "tpl"]
    assert tpl == ["tpl:0:cdef"]


def test_templates_are_joined_at_once_only_for_an_accounts_first_requests() -> None:
    h = Harness()
    for i in range(JOIN_AT_ONCE_REQUESTS):  # in the window before
        h.event(ev("a", W0 - WS + i, i, prompt_simhash="1111111111111111"))
    warm_up(h, prompt="00000000deadbeef", ts=T0 + 5)
    out, _ = h.event(ev("a", T0 + 10, 99, prompt_simhash="00000000deadbeef"))
    assert joins(out.summaries) == []  # an established user is not announced per template
    out, _ = h.event(ev("b", T0 + 11, prompt_simhash="00000000deadbeef"))
    assert {s.cluster_key for s in joins(out.summaries) if key_kind(s.cluster_key) == "tpl"} == set(
        template_keys(0x00000000DEADBEEF, CFG.simhash_bands))
    # the account's window summary still reports the template at close
    out, _ = h.event(ev("a", W0 + WS + 1, 100))
    closed = {s.cluster_key for s in windows(out.summaries)}
    assert set(template_keys(0x00000000DEADBEEF, CFG.simhash_bands)) <= closed


def test_later_events_join_only_new_infrastructure_keys() -> None:
    h = Harness()
    h.event(ev("a", T0, payment_fingerprint="pay-1", prompt_simhash="1111111111111111"))
    out, _ = h.event(ev("a", T0 + 1, 1, payment_fingerprint="pay-1",
                        prompt_simhash="fedcba9876543210"))
    assert out.summaries == []  # same infrastructure; a new prompt is not announced per event
    out, _ = h.event(ev("a", T0 + 2, 2, payment_fingerprint="pay-2",
                        prompt_simhash="2222222222222222"))
    assert [(s.kind, s.cluster_key) for s in out.summaries] == [("join", "pay:pay-2")]


def test_the_account_keeps_its_latest_prompts() -> None:
    h = Harness()
    prompts = [f"{i:016x}" for i in range(RECENT_PROMPTS + 3)]
    for i, p in enumerate(prompts):
        h.event(ev("a", T0 + i, i, prompt_simhash=p))
        assert h.states["a"].recent_prompts[-1] == int(p, 16)
    assert h.states["a"].recent_prompts == [int(p, 16) for p in prompts[-RECENT_PROMPTS:]]


def test_a_young_accounts_prompt_joins_its_template_buckets_at_the_first_sighting() -> None:
    # recurrence is counted per partition, so a template spread thinly over many partitions
    # would lose its first sighting in each: a young account's prompts are fanned out at once
    h = Harness()
    buckets = template_keys(int(TEMPLATE, 16), CFG.simhash_bands)
    out, _ = h.event(ev("young", T0, account_created_ts=T0 - 86400.0))
    assert [s.cluster_key for s in joins(out.summaries)
            if key_kind(s.cluster_key) == "tpl"] == list(buckets)
    assert all(s.young for s in out.summaries)
    # an established account, or one of unknown age, still waits for recurrence
    for i, (created, prompt) in enumerate(((T0 - CFG.young_account_age_s - 86400.0,
                                            "a1b2c3d4e5f60718"),
                                           (None, "9f8e7d6c5b4a3921"))):
        out, _ = h.event(ev(f"old-{i}", T0 + 1 + i, account_created_ts=created,
                            prompt_simhash=prompt))
        assert not any(key_kind(s.cluster_key) == "tpl" for s in out.summaries), created


@pytest.mark.parametrize("created_offset,young", [
    (-3600.0, True), (-(CFG.young_account_age_s + 1.0), False), (None, False)])
def test_join_says_whether_the_account_is_young(created_offset: float | None,
                                                 young: bool) -> None:
    created = None if created_offset is None else T0 + created_offset
    out, _ = Harness().event(ev("a", T0, account_created_ts=created))
    assert out.summaries and all(s.young is young for s in out.summaries)


def test_ip_keys_per_account_are_bounded_and_overflow_counted() -> None:
    h = Harness()
    cap, extra = CFG.max_ip_keys_per_account, 3
    joined_ip = []
    for i in range(cap + extra):
        out, _ = h.event(ev("a", T0 + i, i, ip=f"198.51.{i}.7"))
        joined_ip += [s.cluster_key for s in out.summaries if key_kind(s.cluster_key) == "ip"]
    st = h.states["a"]
    assert joined_ip == [f"ip:{ip_prefix(f'198.51.{i}.7')}" for i in range(cap)]
    assert sum(key_kind(k) == "ip" for k in st.keys) == cap
    assert st.ip_keys_overflow == extra


# --- windows closed by the account's own next event ------------------------------------------


def test_next_event_in_a_later_window_closes_the_window() -> None:
    h = Harness()
    warm_up(h)  # the template already recurs in the partition
    first = [ev("a", T0 + 10 * i, i, reasoning_requested=i < 2, task_category="coding",
                completion_tokens=100 * (i + 1), payment_fingerprint="pay-1")
             for i in range(3)]
    for e in first:
        out, _ = h.event(e)
        assert windows(out.summaries) == []
    out, _ = h.event(ev("a", W0 + WS + 1, 9, payment_fingerprint="pay-1"))
    closed = windows(out.summaries)
    st = h.states["a"]
    expected_keys = set(st.keys) | set(template_keys(first[0].simhash, CFG.simhash_bands))
    assert {s.cluster_key for s in closed} == expected_keys
    for s in closed:
        assert s.account_id == "a" and s.window_start == W0
        assert (s.requests, s.reasoning, s.high_value) == (3, 2, 3)
        assert s.completion_tokens == 600
        assert s.event_ts == first[-1].ts  # the newest event the window rests on
    assert st.windows_closed == 1
    assert st.window is not None and st.window.start == W0 + WS and st.window.requests == 1


def test_window_summaries_go_to_the_infrastructure_keys_used_in_that_window() -> None:
    h = Harness()
    h.event(ev("a", T0, payment_fingerprint="pay-1"))
    h.event(ev("a", W0 + WS + 1, 1, payment_fingerprint="pay-2"))  # closes window 1
    out, _ = h.event(ev("a", W0 + 2 * WS + 1, 2, payment_fingerprint="pay-2"))
    closed = {s.cluster_key for s in windows(out.summaries) if key_kind(s.cluster_key) != "tpl"}
    assert "pay:pay-1" in h.states["a"].keys  # still a key of the account ...
    assert closed == {"pay:pay-2", f"ip:{ip_prefix('203.0.113.10')}",
                      *(k for k in h.states["a"].keys if k.startswith("asnua:"))}
    assert "pay:pay-1" not in closed  # ... but it saw nothing of this window


def test_template_summaries_carry_what_was_asked_with_that_template() -> None:
    h = Harness()
    warm_up(h)
    h.event(ev("a", T0, 0, reasoning_requested=True, task_category="coding",
               completion_tokens=100))
    h.event(ev("a", T0 + 1, 1, reasoning_requested=True, task_category="math",
               completion_tokens=300))
    for i in range(2, 6):  # one-off prompts, no reasoning, no high-value category
        h.event(ev("a", T0 + i, i, prompt_simhash=f"{i:04x}{i:04x}{i:04x}{i:04x}",
                   task_category="chat", completion_tokens=100 * i))
    out, _ = h.event(ev("a", W0 + WS + 1, 9))
    by_key = {s.cluster_key: s for s in windows(out.summaries)}
    for key in template_keys(int(TEMPLATE, 16), CFG.simhash_bands):
        s = by_key[key]
        assert (s.requests, s.reasoning, s.high_value) == (2, 2, 2)
        assert s.completion_tokens == 2 * (1800 // 6)  # the window's mean per request
    infra = by_key[f"ip:{ip_prefix('203.0.113.10')}"]
    assert (infra.requests, infra.reasoning, infra.high_value) == (6, 2, 2)
    assert infra.completion_tokens == 1800
    # the one-off prompts' buckets never recurred: never fanned out
    assert all(k in template_keys(int(TEMPLATE, 16), CFG.simhash_bands)
               for k in by_key if key_kind(k) == "tpl")


def test_a_recurring_template_is_joined_even_after_one_off_prompts_fill_the_window() -> None:
    h = Harness()
    warm_up(h, prompt="00000000deadbeef")
    for i in range(8):
        h.event(ev("a", T0 + i, i, prompt_simhash=f"{i + 1:04x}{i + 2:04x}{i + 3:04x}{i + 4:04x}"))
    out, _ = h.event(ev("a", T0 + 10, 10, prompt_simhash="00000000deadbeef"))
    buckets = set(template_keys(0x00000000DEADBEEF, CFG.simhash_bands))
    assert {s.cluster_key for s in joins(out.summaries)} >= buckets


def test_ip_rotation_is_counted_in_every_window() -> None:
    h = Harness()
    for w in range(3):
        for i in range(MAX_IP_PREFIXES_PER_WINDOW):
            h.event(ev("a", W0 + w * WS + 10 + i, 10 * w + i, ip=f"198.{w}.{i}.7"))
        win = h.states["a"].window
        assert win is not None and len(win.ip_prefixes) == MAX_IP_PREFIXES_PER_WINDOW, w
    assert h.states["a"].ip_keys_overflow > 0


def test_event_in_the_same_window_does_not_close_it() -> None:
    h = Harness()
    h.event(ev("a", W0))
    out, _ = h.event(ev("a", W0 + WS - 0.001, 1))
    assert windows(out.summaries) == []
    assert h.states["a"].windows_closed == 0 and h.states["a"].window.requests == 2


def test_window_fans_out_at_most_the_configured_template_keys() -> None:
    cfg = DetectorConfig(max_template_keys_per_window=3)
    h = Harness(cfg)
    # one template used often, then many one-off prompts
    for i in range(6):
        h.event(ev("a", T0 + i, i, prompt_simhash="aaaabbbbccccdddd"))
    for i in range(6):
        h.event(ev("a", T0 + 10 + i, 10 + i, prompt_simhash=f"{i:04x}{i + 1:04x}{i + 2:04x}"
                                                             f"{i + 3:04x}"))
    out, _ = h.event(ev("a", W0 + WS + 1, 99))
    tpl = [s.cluster_key for s in windows(out.summaries) if key_kind(s.cluster_key) == "tpl"]
    assert len(tpl) == 3
    assert set(tpl) <= set(template_keys(0xAAAABBBBCCCCDDDD, cfg.simhash_bands))


# --- windows closed by the partition watermark -----------------------------------------------


def test_watermark_closes_an_idle_accounts_window() -> None:
    h = Harness()
    h.event(ev("a", T0, payment_fingerprint="pay-1", reasoning_requested=True))
    # another account of the partition moves event time on, but not yet past a's window
    _, due = h.event(ev("b", W0 + WS + LATE - 1))
    assert [a for a, o in due if windows(o.summaries)] == []
    assert h.states["a"].window is not None
    _, due = h.event(ev("b", W0 + WS + LATE, 1))
    by_account = dict(due)
    assert "a" in by_account
    closed = windows(by_account["a"].summaries)
    assert closed and {s.account_id for s in closed} == {"a"}
    assert {s.cluster_key for s in closed} >= {"pay:pay-1", f"ip:{ip_prefix('203.0.113.10')}"}
    assert all(s.window_start == W0 and s.requests == 1 and s.reasoning == 1 for s in closed)
    assert h.states["a"].window is None and h.states["a"].windows_closed == 1
    assert not by_account["a"].expired


def test_on_due_before_the_watermark_passes_changes_nothing() -> None:
    h = Harness()
    h.event(ev("a", T0))
    h.event(ev("b", W0 + WS + LATE - 5))
    out = h.stage.on_due(h.states["a"], h.part)  # a stale or early hint
    assert out.summaries == [] and not out.expired
    assert h.states["a"].window is not None and h.states["a"].window.requests == 1


def test_closing_by_watermark_and_by_next_event_summarise_alike() -> None:
    def closed_by(next_event: RequestEvent) -> list[tuple[Any, ...]]:
        h = Harness()
        warm_up(h)
        for i in range(3):
            h.event(ev("a", T0 + i, i, reasoning_requested=True, task_category="math"))
        out, due = h.event(next_event)
        summaries = windows(out.summaries) + [s for _, o in due for s in windows(o.summaries)]
        return sorted((s.cluster_key, s.window_start, s.requests, s.reasoning, s.high_value,
                       s.event_ts) for s in summaries if s.account_id == "a")
    by_own_event = closed_by(ev("a", W0 + WS + LATE + 1, 9))
    assert by_own_event and all(row[2:5] == (3, 3, 3) for row in by_own_event)
    assert by_own_event == closed_by(ev("b", W0 + WS + LATE + 1, 9))


# --- late events ------------------------------------------------------------------------------


def test_late_events_are_counted_and_still_aggregated() -> None:
    h = Harness()
    h.event(ev("a", T0 + 1000))
    out, _ = h.event(ev("a", T0 + 1000 - LATE - 1, 1))
    assert out.late is True
    st = h.states["a"]
    assert st.late_events == 1 and st.requests == 2
    out, _ = h.event(ev("a", T0 + 1000 - LATE, 2))  # exactly at the watermark: on time
    assert out.late is False and h.states["a"].late_events == 1


def test_late_first_event_of_another_account_is_counted() -> None:
    h = Harness()
    h.event(ev("a", T0 + 5000))
    out, _ = h.event(ev("b", T0))
    assert out.late and h.states["b"].late_events == 1 and h.states["b"].requests == 1


# --- idle expiry by event time ----------------------------------------------------------------


def test_idle_state_expires_by_event_time() -> None:
    h = Harness()
    h.event(ev("a", T0))
    h.event(ev("b", W0 + WS + LATE, 1))  # closes a's window; a is kept
    assert "a" in h.states and h.expired == []
    h.event(ev("b", T0 + CFG.idle_expiry_s + LATE - 1, 2))
    assert "a" in h.states  # idle, but not yet for long enough
    _, due = h.event(ev("b", T0 + CFG.idle_expiry_s + LATE, 3))
    assert ("a" in dict(due)) and dict(due)["a"].expired
    assert "a" not in h.states and h.expired == ["a"]


def test_state_with_an_action_in_force_outlives_idle_expiry() -> None:
    h = Harness()
    h.event(ev("a", T0))
    h.event(ev("b", W0 + WS + LATE, 1))
    st = h.states["a"]
    st.action, st.action_until = "block", T0 + CFG.idle_expiry_s + 10_000
    h.event(ev("b", T0 + CFG.idle_expiry_s + LATE, 2))
    assert "a" in h.states  # the action must still be liftable and renewable
    h.event(ev("b", st.action_until + LATE, 3))
    assert "a" not in h.states and h.expired == ["a"]


def test_on_due_expires_only_past_idle_time() -> None:
    h = Harness()
    st, _ = h.stage.on_event(None, ev("a", T0), h.part)
    st.window = None  # as after a closed window
    h.part.watermark.observe(T0 + CFG.idle_expiry_s + LATE - 1)
    assert not h.stage.on_due(st, h.part).expired
    h.part.watermark.observe(T0 + CFG.idle_expiry_s + LATE)
    assert h.stage.on_due(st, h.part).expired


# --- verdicts ---------------------------------------------------------------------------------


def _verdict(key: str, score: float = 1.0, ts: float = T0, signature: int = 0,
             proven: float = 1.0) -> Verdict:
    """A conviction of a crowd made entirely of campaign accounts (prior 1), proven to harvest
    for long unless told otherwise: evidence against an account too new to judge."""
    return Verdict(key, score, ts, ts + CFG.verdict_ttl_s, f"cv-{key}", f"cluster {key} convicted",
                   signature, 1.0, proven)


def test_verdict_for_an_unknown_account_creates_state_and_may_decide() -> None:
    h = Harness()
    st, out = h.verdict(None, "z", _verdict("pay:p"))
    assert st.account_id == "z" and "pay:p" in st.verdicts
    assert [(d.account_id, d.action) for d in out.decisions] == [("z", "throttle")]
    # a network crowd says nothing of an account too new to judge by its own requests
    st, out = h.verdict(st, "z", _verdict("ip:10.0.0.0/24"))
    assert out.decisions == [] and st.action == "throttle"
    # a proven campaign's system prompt beside its card: two kinds corroborate a block
    st, out = h.verdict(st, "z", _verdict("sys:s"))
    assert out.decisions and out.decisions[-1].action == "block"
    assert st.action == "block"


def test_template_verdicts_act_once_the_account_uses_the_templates() -> None:
    h = Harness()
    other = "fedcba9876543210"  # a second template, sharing no band with TEMPLATE
    st, out = h.verdict(None, "z", _verdict("pay:p"))
    assert [d.action for d in out.decisions] == ["throttle"]
    for prompt in (TEMPLATE, other):
        for key in template_keys(int(prompt, 16), CFG.simhash_bands):
            st, out = h.verdict(st, "z", _verdict(key, score=0.9, signature=int(prompt, 16)))
            assert out.decisions == []  # the account has not used the template (yet)
    h.states["z"] = st
    out, _ = h.event(ev("z", T0 + 1, 1, prompt_simhash="1111222233334444"))
    assert out.decisions == []  # an unrelated prompt: still no template evidence
    # the account's age is unknown, so one template counts in full (models/policy.py,
    # _template_weight): with the payment instrument, two kinds of key corroborate a block
    out, _ = h.event(ev("z", T0 + 2, 2, prompt_simhash=TEMPLATE))
    assert [d.action for d in out.decisions] == ["block"]
    assert h.states["z"].recent_prompts == [0x1111222233334444, int(TEMPLATE, 16)]


def _tpl(i: int) -> str:
    return f"tpl:{i % 4}:{i:04x}"


def test_verdicts_per_account_are_bounded_and_the_oldest_go_first() -> None:
    h = Harness()
    st = None
    n = MAX_VERDICTS_PER_ACCOUNT + 20
    for i in range(n):
        st, _ = h.verdict(st, "z", _verdict(_tpl(i), ts=T0 + i))
        assert len(st.verdicts) <= MAX_VERDICTS_PER_ACCOUNT
    assert st is not None and len(st.verdicts) >= MAX_VERDICTS_PER_ACCOUNT // 2
    kept = sorted(int(v.issued_ts - T0) for v in st.verdicts.values())
    assert kept == list(range(kept[0], n))  # the newest are kept, the oldest evicted


def test_infrastructure_verdicts_outlast_template_verdicts_at_the_cap() -> None:
    h = Harness()
    st, _ = h.verdict(None, "z", _verdict("pay:p", ts=T0))
    st, _ = h.verdict(st, "z", _verdict("sys:s", ts=T0 + 1))
    for i in range(2 * MAX_VERDICTS_PER_ACCOUNT):
        st, _ = h.verdict(st, "z", _verdict(_tpl(i), ts=T0 + 10 + i))
    assert len(st.verdicts) <= MAX_VERDICTS_PER_ACCOUNT
    assert {"pay:p", "sys:s"} <= set(st.verdicts)  # the oldest, but not templates
    assert st.action == "block"


def test_expired_verdicts_are_evicted_first() -> None:
    h = Harness()
    old = Verdict("pay:old", 1.0, T0 - 100, T0 - 1, "cv-old", "expired")
    st, _ = h.verdict(None, "z", old)
    for i in range(MAX_VERDICTS_PER_ACCOUNT):
        st, _ = h.verdict(st, "z", _verdict(_tpl(i), ts=T0 + i))
    assert "pay:old" not in st.verdicts  # expired: gone before any template verdict in force
    assert len(st.verdicts) <= MAX_VERDICTS_PER_ACCOUNT
    assert _tpl(MAX_VERDICTS_PER_ACCOUNT - 1) in st.verdicts


# --- when verdicts apply: a fixed point of the partition's event stream ------------------------

DELAY = CFG.verdict_delay_s


def told(account: str, v: Verdict, at: float | None = None) -> AccountVerdict:
    """The verdict as the cluster stage sends it, telling the account at `at` (its issue)."""
    return AccountVerdict(account, v, v.issued_ts if at is None else at)


def test_a_verdict_waits_and_applies_when_the_partition_reaches_its_time() -> None:
    h = Harness()
    h.event(ev("z", T0))
    st, out = h.stage.on_verdict(h.states["z"], told("z", _verdict("pay:p", ts=T0)), h.part)
    assert out.decisions == [] and not out.late_verdict
    assert st.verdicts == {} and [v.cluster_key for _, v in st.pending_verdicts] == ["pay:p"]
    # another account's events move the partition's event time on
    _, due = h.event(ev("y", T0 + DELAY - 1))
    assert all(not o.decisions for _, o in due) and h.states["z"].verdicts == {}
    _, due = h.event(ev("y", T0 + DELAY, 1))
    decided = [d for a, o in due if a == "z" for d in o.decisions]
    assert [(d.action, d.event_ts) for d in decided] == [("throttle", T0 + DELAY)]
    assert "pay:p" in h.states["z"].verdicts and h.states["z"].pending_verdicts == []


def test_the_accounts_own_event_applies_its_due_verdicts_before_it_counts() -> None:
    h = Harness()
    h.event(ev("z", T0))
    h.stage.on_verdict(h.states["z"], told("z", _verdict("pay:p", ts=T0)), h.part)
    out, _ = h.event(ev("z", T0 + DELAY + 30, 1))
    # decided at this event, before it is counted (it was served: the gateway learns now)
    assert [(d.action, d.event_ts) for d in out.decisions] == [("throttle", T0 + DELAY + 30)]
    assert h.states["z"].requests == 2 and "pay:p" in h.states["z"].verdicts


def test_verdicts_apply_in_a_fixed_order_whatever_their_arrival_order() -> None:
    verdicts = [_verdict("pay:p", score=0.7, ts=T0), _verdict("ip:10.0.0.0/24", ts=T0),
                _verdict("pay:p", score=0.95, ts=T0 + 30)]

    def run(order: list[Verdict]) -> list[tuple[str, str, float]]:
        h = Harness()
        h.event(ev("z", T0))
        for v in order:
            h.stage.on_verdict(h.states["z"], told("z", v), h.part)
        _, due = h.event(ev("y", T0 + 30 + DELAY))
        return [(d.decision_id, d.action, d.score) for a, o in due if a == "z"
                for d in o.decisions]

    first = run(verdicts)
    assert first and first == run(verdicts[::-1]) == run([verdicts[1], verdicts[2], verdicts[0]])


def test_a_verdict_past_its_time_is_applied_at_once_and_counted_late() -> None:
    h = Harness()
    h.event(ev("z", T0))
    h.event(ev("y", T0 + DELAY + 5))  # the partition is past the verdict's time already
    st, out = h.stage.on_verdict(h.states["z"], told("z", _verdict("pay:p", ts=T0)), h.part)
    assert out.late_verdict and st.pending_verdicts == []
    assert [d.action for d in out.decisions] == ["throttle"]


def test_a_new_tick_is_announced_once_and_stamps_the_summaries() -> None:
    h = Harness()
    tick_s = CFG.cluster_tick_s
    start = (int(T0) // tick_s + 1) * tick_s  # a tick boundary
    out, _ = h.event(ev("z", start - 1))
    assert out.tick == int(start - 1) // tick_s
    assert out.summaries and {s.tick for s in out.summaries} == {out.tick}
    again, _ = h.event(ev("y", start - 0.5))
    assert again.tick is None  # still the same tick
    assert {s.tick for s in again.summaries} == {out.tick}
    later, _ = h.event(ev("x", start))
    assert later.tick == out.tick + 1 and {s.tick for s in later.summaries} == {later.tick}
    late, _ = h.event(ev("w", start - 30))  # an older event does not move the tick back
    assert late.tick is None and {s.tick for s in late.summaries} == {later.tick}


def test_a_member_told_after_the_conviction_is_acted_on_from_when_it_was_told() -> None:
    h = Harness()
    h.event(ev("late-joiner", T0 + 3600))
    v = _verdict("pay:p", ts=T0)  # convicted an hour before this member joined
    _, out = h.stage.on_verdict(h.states["late-joiner"], told("late-joiner", v, T0 + 3660),
                                 h.part)
    assert not out.late_verdict and out.decisions == []  # not at once: at its own time
    _, due = h.event(ev("y", T0 + 3660 + DELAY))
    decided = [d for a, o in due if a == "late-joiner" for d in o.decisions]
    assert [(d.action, d.event_ts) for d in decided] == [("throttle", T0 + 3660 + DELAY)]


def test_a_replacement_account_joining_a_convicted_cluster_is_acted_on_at_its_first_request() -> None:
    h = Harness()
    h.event(ev("old-member", T0))
    conviction = told(BROADCAST, _verdict("pay:campaign", ts=T0))
    assert not h.stage.on_conviction(conviction, h.part).late_verdict
    # before the conviction's time to apply, a joiner is not acted on at once ...
    early, _ = h.event(ev("early", T0 + DELAY - 1, payment_fingerprint="campaign"))
    assert early.decisions == [] and "pay:campaign" not in h.states["early"].verdicts
    # ... from then on, at its first request; a fresh account on a convicted payment
    # instrument is a replacement, which corroborates a block (models/policy.py)
    out, _ = h.event(ev("replacement", T0 + DELAY, payment_fingerprint="campaign"))
    assert [(d.account_id, d.action) for d in out.decisions] == [("replacement", "block")]
    assert any("replacement account" in r for r in out.decisions[0].reasons)
    assert h.states["replacement"].verdicts["pay:campaign"].verdict_id == "cv-pay:campaign"


def test_a_withdrawn_conviction_is_handed_to_joiners_no_more_but_its_members_keep_it() -> None:
    h = Harness()
    course = {"system_prompt_hash": "course-notebook"}
    conviction = _verdict("sys:course-notebook", ts=T0)
    h.stage.on_conviction(told(BROADCAST, conviction), h.part)
    h.event(ev("member", T0 + DELAY, **course))
    assert h.states["member"].verdicts["sys:course-notebook"] == conviction
    # the crowd no longer bears it out: the cluster stage withdraws it an hour later
    withdrawn_at = T0 + 3600
    withdrawal = Verdict("sys:course-notebook", conviction.score, withdrawn_at,
                         conviction.issued_ts, "cv-withdrawn",
                         "withdrawn: the crowd now scores 0.40", 0, 0.0, 0.0)
    assert withdrawal.is_withdrawal and not withdrawal.is_template_notice
    h.stage.on_conviction(told(BROADCAST, withdrawal), h.part)
    # a joiner after the withdrawal's time to apply holds nothing ...
    h.event(ev("joiner", withdrawn_at + DELAY, **course))
    assert "sys:course-notebook" not in h.states["joiner"].verdicts
    # ... nor one joining late with an event from before the withdrawal was issued
    h.event(ev("late", T0 + 1800, **course))
    assert "sys:course-notebook" not in h.states["late"].verdicts
    # the member keeps the conviction it was told of
    h.event(ev("member", withdrawn_at + DELAY + 1, **course))
    assert h.states["member"].verdicts["sys:course-notebook"] == conviction


def test_one_account_s_flood_of_new_system_prompts_and_clients_joins_a_bounded_number_of_keys(
        ) -> None:
    # A helper's attack: 30,000 requests in five minutes, each with a new system prompt and user
    # agent, grew the account's key list without bound (9 MiB of state, scanned per request)
    # and made a cluster per request.
    h = Harness()
    joined = 0
    for i in range(1_000):
        out, _ = h.event(ev("flooder", T0 + i * 0.3, i, system_prompt_hash=f"sys-{i:04d}",
                            user_agent=f"flood/{i}", asn=64_500 + i % 7))
        joined += sum(1 for j in joins(out.summaries) if key_kind(j.cluster_key) != "tpl")
    state = h.states["flooder"]
    assert len(state.keys) == MAX_KEYS_PER_ACCOUNT and joined == MAX_KEYS_PER_ACCOUNT
    assert state.window is not None and len(state.window.infra_keys) <= MAX_KEYS_PER_ACCOUNT
    assert state.keys_overflow == 2 * 1_000 + 1 - MAX_KEYS_PER_ACCOUNT  # sys and asnua, one ip
    assert len(encode_account_state(state)) < 64 * 1024
    # its rotation is still counted (models/behaviour.py): the bound is on keys, not evidence
    assert rotation(state.behaviour, state.requests) > 0.5
    # and an honest account's keys are untouched by it
    h.event(ev("neighbour", T0 + 400, system_prompt_hash="sys-0001"))
    assert "sys:sys-0001" in h.states["neighbour"].keys


RESCANS = """
import sys
from distillguard.models.convicted import ConvictedClusters
from tests.unit.test_account_stage import BROADCAST, DELAY, T0, Harness, Verdict, _verdict, ev, told
scans = []
prune = ConvictedClusters.prune
ConvictedClusters.prune = lambda self, now: (scans.append(now), prune(self, now))[1]
h = Harness()
for i in range(50):
    h.stage.on_conviction(told(BROADCAST, _verdict(f"sys:other-{i}", ts=T0)), h.part)
conviction = _verdict("sys:course-notebook", ts=T0)
h.stage.on_conviction(told(BROADCAST, conviction), h.part)
h.event(ev("member", T0 + DELAY, system_prompt_hash="course-notebook"))
before = len(scans)
withdrawal = Verdict("sys:course-notebook", conviction.score, T0 + 3600, conviction.issued_ts,
                     "cv-withdrawn", "withdrawn", 0, 0.0, 0.0)
h.stage.on_conviction(told(BROADCAST, withdrawal), h.part)
h.event(ev("joiner", T0 + 3600 + DELAY, system_prompt_hash="course-notebook"))
assert "sys:course-notebook" not in h.states["joiner"].verdicts
print(len(scans) - before)
"""


def test_a_withdrawal_of_a_known_conviction_does_not_rescan_the_partition_s_convictions() -> None:
    # A withdrawal expires before it is issued; core 0.8 first lowered the partition's pruning
    # bound by it, so every withdrawal rescanned every convicted key (2 of the 3 minutes of a
    # replay of the default scenario: ~2,600 withdrawals and ~3,000 keys per partition). Only a
    # new key can lower the bound. Counted on the sources (a compiled core calls `prune`
    # directly, past any replacement), in a process of their own.
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", RESCANS], check=False, cwd=root,
                          capture_output=True, text=True,
                          env={**os.environ, "DISTILLGUARD_CORE": "interpreted"},
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0", done.stdout


def test_a_prompt_of_a_convicted_template_holds_its_verdict_whatever_the_accounts_age() -> None:
    # An established account past its first requests joins no template bucket until the
    # template recurs in its partition; a prompt near a convicted bucket's signature holds its
    # verdict at once all the same. A prompt that only shares convicted buckets' bands (what a
    # random prompt meets by chance where campaigns are convicted by the thousand) does not.
    h = Harness()
    old = T0 - CFG.young_account_age_s - 86400.0
    for i in range(JOIN_AT_ONCE_REQUESTS):
        h.event(ev("veteran", T0 - 600 + i, i, account_created_ts=old,
                   prompt_simhash=f"{i:016x}"))
    template = int(TEMPLATE, 16)
    campaign = template_keys(template, CFG.simhash_bands)
    prompt = 0xFEDC_BA98_7654_3210
    # shares the prompt's bands 0-2 (what counting bands took for the template) but not band 3
    lookalike = (prompt & 0xFFFF_FFFF_FFFF) | (0x0F0F << 48)
    assert (prompt ^ lookalike).bit_count() > SIGNATURE_BITS
    h.stage.on_conviction(told(BROADCAST, _verdict(campaign[0], 0.9, T0, template)), h.part)
    for key in template_keys(lookalike, CFG.simhash_bands)[:3]:
        h.stage.on_conviction(told(BROADCAST, _verdict(key, 0.9, T0, lookalike)), h.part)
    at = T0 + DELAY
    h.event(ev("veteran", at, 50, account_created_ts=old, prompt_simhash=f"{prompt:016x}"))
    assert not any(k.startswith("tpl:") for k in h.states["veteran"].verdicts)
    out, _ = h.event(ev("veteran", at + 1, 51, account_created_ts=old,
                        prompt_simhash=f"{template ^ 0b101 << 20:016x}"))  # two bits flipped
    # it holds the verdict, and joins the template's own crowd (the template is known: a crowd
    # agreed on it), but no bucket: an established account's one-off prompts wait for recurrence
    assert [s.cluster_key for s in joins(out.summaries)] == [template_key(template)]
    assert [k for k in h.states["veteran"].verdicts if k.startswith("tpl:")] == [campaign[0]]
    # one bucket of one template is no template evidence yet (models/policy.py): no action
    assert out.decisions == []


def test_a_recovered_account_is_due_when_the_core_would_next_look_at_it() -> None:
    before = Harness()
    before.event(ev("z", T0))
    st, _ = before.stage.on_verdict(before.states["z"], told("z", _verdict("pay:p", ts=T0)),
                                    before.part)
    # the partition moves: a fresh partition context, the state from the changelog
    moved = AccountPartition.create(CFG, 0)
    before.stage.watch(st, moved)
    assert moved.watermark.max_ts == T0
    window_close = W0 + WS + LATE
    assert moved.due.pop_due(T0 + DELAY - 1) == []
    assert moved.due.pop_due(T0 + DELAY) == ["z"]  # the held verdict's time to apply
    assert moved.due.pop_due(window_close - 1) == []
    assert moved.due.pop_due(window_close) == ["z"]  # the open window's close


# --- known templates, behaviour, organisation, offenders ---------------------------------------


def _notice(key: str, signature: int, ts: float = T0) -> Verdict:
    """The cluster stage's broadcast that a bucket's crowd agreed on a template (score 0)."""
    return Verdict(key, 0.0, ts, ts, f"tn-{key}", "template", signature, 0.0)


def test_a_template_notice_makes_the_template_known_and_convicts_nothing() -> None:
    h = Harness()
    template = int(TEMPLATE, 16)
    out = h.stage.on_conviction(told(BROADCAST, _notice("tpl:0:cdef", template)), h.part)
    assert out.decisions == [] and len(h.part.convicted) == 0
    assert h.part.known.match(template, T0 + DELAY - 1) == 0  # from its time to apply on
    assert h.part.known.match(template, T0 + DELAY) == template
    # a prompt of it, near or noisy, is templated; the account joins the template's own crowd
    noisy = template ^ 0x0001_0001_0001_0001  # one bit flipped in each 16-bit band
    assert not set(template_keys(noisy, CFG.simhash_bands)) & set(
        template_keys(template, CFG.simhash_bands))
    out, _ = h.event(ev("u", T0 + DELAY, prompt_simhash=f"{noisy:016x}"))
    assert template_key(template) in [s.cluster_key for s in joins(out.summaries)]
    b = h.states["u"].behaviour
    assert b.recent_templates == [template] and b.templated_high_value == 0  # (chat: no value)


def test_summaries_carry_the_accounts_own_behaviour() -> None:
    h = Harness()
    e = ev("r", T0, reasoning_requested=True, task_category="coding", payment_fingerprint="p")
    out, _ = h.event(e)
    first = joins(out.summaries)[0]
    assert 0 < first.harvest < 1 and first.rotation == 0.0 and first.history == 0
    for n in range(1, 8):  # a new client on every request, written-out reasoning throughout
        out, _ = h.event(ev("r", T0 + n, n, reasoning_requested=True, task_category="coding",
                            user_agent=f"client/{n}", payment_fingerprint="p",
                            ip=f"198.51.{n}.7"))
    out, _ = h.event(ev("r", T0 + WS, 9, reasoning_requested=True, task_category="coding"))
    window = [s for s in windows(out.summaries) if s.cluster_key == "pay:p"]
    assert window and window[0].harvest == 1.0 and window[0].rotation == 1.0
    assert window[0].history >= 1


def test_the_organisation_is_remembered_from_the_first_request() -> None:
    h = Harness()
    h.event(ev("o", T0, org_id="org-7"))
    h.event(ev("o", T0 + 1, 1, org_id=None))
    assert h.states["o"].org_id == "org-7"


def test_an_account_blocked_before_is_remembered_past_idle_expiry() -> None:
    # waiting out a block must not make an account a newcomer again
    h = Harness()
    h.event(ev("x", T0))
    h.states["x"].strikes = 1
    h.event(ev("y", T0 + CFG.idle_expiry_s + WS + LATE))  # x idle past expiry
    assert "x" in h.states and "x" not in h.expired
    h.event(ev("y", T0 + CFG.offender_memory_s + WS + LATE, 1))
    assert "x" in h.expired
