"""Crowd hours: established accounts of many organisations harvesting one system prompt together.

A campaign on aged or bought accounts shows nothing of its own that an honest power user does
not: it is old, it keeps its card and its address, it sends reasoning requests at a person's
pace. What it cannot hide is that its accounts belong to different organisations and cards (it
bought them one by one), yet harvest with the same system prompt (its harvesting harness's),
heavily, in the same hours. Honest crowds on one system prompt are light (a course, a tool's
users: a few templated requests an hour each), one organisation on one card (a team's eval
harness, an app's service accounts), or heavy but each writing its own prompts (developers
using one coding agent).

So a system prompt's clock hour is a **crowd hour** when at least `MIN_HARVESTERS` established
accounts harvested it that hour, from at least `MIN_ORGS` organisations and `MIN_CARDS` cards,
the organisations at least `ORG_SHARE` of the harvesters (a team of five on one org is not five
strangers). An account harvests a system prompt in an hour when it sent `HOUR_REQUESTS`
high-value requests with reasoning with it (counted in the account's windows,
`AccountWindow.prompt_harvest`, each window only when at least `TEMPLATED_SHARE` of them are of
a crowd's known templates), at least `HARVEST_SHARE` of all it sent that hour: a heavy user
writing its own prompts is no harvester, nor one whose tool adds a few scaffold templates to
them. Each harvester is told (models/cluster_stage.py); an
account told of `HOURS_TO_ACT` crowd hours, the latest no longer ago than a verdict lasts, is
throttled (models/policy.py), never blocked on it: a crowd hour names no single account's
wrongdoing, and a throttled honest user recovers.

Measured (docs/tuning.md, "Crowd hours"): before it was built, a study of 390 tuning runs (branch
`issue14-established`) found nothing per account that separated these campaigns from research
groups and eval customers, and a crowd rule that did. System prompts only: template keys
caught nothing more on the evaluation, and on a network key (an ISP with a browser's user agent,
a campus NAT) any three heavy users of a big provider make a crowd. What it cannot tell apart,
and how a lab that knows it steps out of it: tests/unit/test_crowd_hours_adversary.py.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Final

from distillguard.models.account import Verdict
from distillguard.models.keys import SYSTEM_PROMPT

HOUR_S: Final = 3600
# High-value reasoning requests one account sends with one system prompt in one clock hour
# (`ClusterSummary.key_harvest`, summed) to count as one of its harvesters that hour: one every
# three minutes, all hour; a person at a course or a tool sends a few.
HOUR_REQUESTS: Final = 20
# ... and at least this share of all the requests the account sent in that hour; in each
# window, at least TEMPLATED_SHARE of them of a crowd's known templates (`window_harvest`).
HARVEST_SHARE: Final = 0.5
TEMPLATED_SHARE: Final = 0.5
MIN_HARVESTERS: Final = 3
MIN_ORGS: Final = 3
MIN_CARDS: Final = 3
ORG_SHARE: Final = 0.8
# Crowd hours an account must be told of before it is throttled: a burst hour of a benchmark
# run, a class's lab, is not a campaign's working day.
HOURS_TO_ACT: Final = 4
# A new crowd hour more than a day after the account's last starts the count again.
COUNT_RESET_S: Final = 86400
# The keys whose crowds are judged by the hour: system prompts (`counts_crowd_hours`).
CROWD_KEY_PREFIX: Final = SYSTEM_PROMPT + ":"
# Marks a crowd hour's notice among the verdicts an account is told (`is_crowd_hour`).
NOTICE_PREFIX: Final = "ch-"


def org_identity(org_id: str | None, account_id: str) -> int:
    """A 32-bit hash of an account's organisation; without one, of the account itself: an
    account with no organisation is an organisation of one."""
    return zlib.crc32((f"org:{org_id}" if org_id else f"account:{account_id}").encode())


def card_identity(card: str | None, account_id: str) -> int:
    """A 32-bit hash of an account's payment instrument; without one, of the account itself."""
    return zlib.crc32((f"pay:{card}" if card else f"account:{account_id}").encode())


def counts_crowd_hours(cluster_key: str) -> bool:
    return cluster_key.startswith(CROWD_KEY_PREFIX)


def window_harvest(counts: tuple[int, int] | None) -> int:
    """What an account's window counts toward its hour's harvest of a system prompt, from its
    (high-value reasoning requests with the prompt, those of them of known templates): all of
    them when at least `TEMPLATED_SHARE` are of known templates, else none. A lab's noisy
    templates are known on some of its prompts only (measured on `eval_harness` at a tuning
    seed: 59%); a coding agent's heavy users write their own prompts, and its scaffold
    templates are a quarter of them at most."""
    if counts is None or counts[1] < TEMPLATED_SHARE * counts[0]:
        return 0
    return counts[0]


def hour_harvester(harvested: int, requests: int) -> bool:
    """Whether an account's hour of a key, `harvested` high-value reasoning requests with it of
    `requests` in all, makes it one of the hour's harvesters: `HOUR_REQUESTS` of them, and
    `HARVEST_SHARE` of what it sent (an app's service account whose key a lab stole carries
    the lab's harvest beside its own users' traffic: its organisation did nothing wrong)."""
    return harvested >= HOUR_REQUESTS and harvested >= HARVEST_SHARE * requests


def hour_of(window_start: int) -> int:
    return window_start - window_start % HOUR_S


def convicts(harvesters: list[tuple[int, int]]) -> bool:
    """Whether an hour's harvesters of one key, each (organisation, card), make a crowd hour."""
    if len(harvesters) < MIN_HARVESTERS:
        return False
    orgs = len({org for org, _ in harvesters})
    cards = len({card for _, card in harvesters})
    return orgs >= MIN_ORGS and cards >= MIN_CARDS and orgs >= ORG_SHARE * len(harvesters)


def notice(cluster_key: str, hour: int, harvesters: list[tuple[int, int]],
           model_version: str) -> Verdict:
    """What a crowd hour's harvesters are told: the key, the hour (issued at its start, in force
    till its end) and the crowd's figures. Not a cluster verdict (`is_crowd_hour`): the account
    stage counts it (`record`), the policy never weighs it as a crowd's evidence."""
    text = f"{cluster_key}|{hour}|{model_version}"
    orgs = len({org for org, _ in harvesters})
    cards = len({card for _, card in harvesters})
    return Verdict(cluster_key=cluster_key, score=1.0, issued_ts=hour, expires_ts=hour + HOUR_S,
                   verdict_id=NOTICE_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:24],
                   reason=(f"crowd hour on {cluster_key} from {hour}: {len(harvesters)} "
                           f"established accounts of {orgs} organisations and {cards} cards "
                           f"each sent {HOUR_REQUESTS}+ high-value reasoning requests"),
                   signature=0, prior=0.0, proven=0.0)


def is_crowd_hour(verdict: Verdict) -> bool:
    return verdict.verdict_id.startswith(NOTICE_PREFIX)


def record(hours: int, last_hour: int, told: Verdict) -> tuple[int, int]:
    """An account's (crowd hours, start of its latest) after it is told of one more: an hour
    counts once whatever keys convicted it, and a day without one starts the count again."""
    hour = int(told.issued_ts)
    if hour <= last_hour:
        return hours, last_hour  # told of this hour already (another key), or a late notice
    if last_hour and hour - last_hour > COUNT_RESET_S:
        return 1, hour
    return hours + 1, hour


def in_force(hours: int, last_hour: int, now_ts: float, verdict_ttl_s: int) -> bool:
    """Whether an account's crowd hours throttle it now: `HOURS_TO_ACT` of them, the latest
    ended no longer ago than a verdict lasts."""
    return hours >= HOURS_TO_ACT and now_ts < last_hour + HOUR_S + verdict_ttl_s
