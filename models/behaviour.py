"""What an account's own requests say about it: identity rotation, harvest, templates it uses.

A crowd on a shared key (models/scoring.py) is judged by its accounts, and its verdict weighs on
an account in proportion to how much the account itself behaves like the crowd's harvesters
(models/policy.py): an honest user of a popular ISP, card or tutorial prompt sends ordinary
requests and is not the campaign that shares the key with it. This module computes, from a few
bounded counters per account, the two figures that both sides use:

- `rotation` (0..1): the account moves to a new network (ASN) or a new client (user agent) on
  most of its requests. Residential-proxy campaigns do, and bought or aged accounts rotate to
  look like many people; an honest user has a home, a phone and perhaps an office.
- `harvest` (0..1): the account asks for high-value answers and shows a tell of harvesting on
  top: written-out reasoning, several known crowd templates (each a prompt family other accounts
  send too, models/templates.py `KnownTemplates`), a sustained volume of templated high-value
  requests, or rotation. High-value categories alone are no tell (coding is what most users ask).
  A figure from one or two requests says little, so it is scaled by `confidence`.

>>> b = Behaviour()
>>> for asn in (1, 2, 3, 4, 5):
...     b.observe(asn=asn, client="c", high_value=True, reasoning=True, template=0,
...               prefix=None, ts=0.0)
>>> rotation(b, 5), harvest(b, 5)
(1.0, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Distinct ASNs, clients and templates remembered per account (the latest; older ones drop out).
MAX_REMEMBERED = 8
# Rotation counts from this many switches to a network or client not among the remembered ones:
# one or two are a phone and an office.
ROTATION_MIN_SWITCHES = 3
# New prefixes count as rotation once the account has been seen on this many networks (ASNs).
ROTATION_MIN_NETWORKS = 3
# A switch on this share of the requests (after the first) is full rotation. (A fresh exit of a
# residential proxy pool is often on an ISP seen before: big ISPs hold most households.)
ROTATING_SHARE = 0.25
# Reasoning requested on a share of the requests above REASONING_TELL_FROM is a tell, full at
# REASONING_TELL_FULL: honest users ask for it on ~10-20% of their requests, and a student or a
# mathematician on nearly half; campaigns that harvest written-out reasoning on most.
REASONING_TELL_FROM = 0.3
REASONING_TELL_FULL = 0.8
# Distinct known crowd templates: the first is anyone's tutorial or homework, each further one
# adds a third of a tell (so two tutorials are no tell, four templates a full one).
TEMPLATES_FOR_FULL_TELL = 4
# An account whose templated requests are all of one or two known templates is what honest
# crowds look like (a tutorial, homework, a tool's scaffold, even one that asks for reasoning):
# its harvest figure is damped by this, by the number of templates (0: none, all its own),
# unless it hops from network to network (`harvest`).
FOCUS = (1.0, 0.4, 0.6)
# Templated high-value requests beyond this many are a sustained-harvest tell, full at
# TEMPLATED_VOLUME_FLOOR + TEMPLATED_VOLUME_SPAN.
TEMPLATED_VOLUME_FLOOR = 8
TEMPLATED_VOLUME_SPAN = 24
# Requests after which the figures count in full (fewer: scaled down linearly): a tutorial's
# first pages, a class's first exercise are what anyone's first requests may be.
CONFIDENT_REQUESTS = 5
# An account harvests when `harvest` reaches this; the same threshold makes a crowd member count
# as one of the harvesters (models/cluster.py).
HARVESTING = 0.5
ROTATING = 0.5
# Two prompts within this many SimHash bits of each other are near-duplicates of one template
# (templated prompts are at most a few bits from their template, so at most twice that from each
# other); unrelated prompts are ~32 bits apart and this close with probability 4e-5.
SAME_TEMPLATE_BITS = 16
# History levels of an account (`history`): too new to be judged by its figures, judged, and
# harvesting known templates for longer than a tutorial or a course lasts (this many templated
# high-value requests: tutorials and homework are a handful).
NEW, JUDGED, SUSTAINED = 0, 1, 2
SUSTAINED_TEMPLATED_REQUESTS = 6
# A harvest of known templates (`Behaviour.harvesting_since`) ends after a pause this long: the
# exam, the class or the tutorial is over, and a question of it hours later starts another.
# Two hours: a slow campaign's accounts send a templated prompt every 20-30 minutes or more
# often, so a pause this long by chance is rare (e^-4 at a 30-minute mean).
HARVEST_PAUSE_S = 2 * 3600
# Harvest time adds up over a day from the account's first harvest of it: a campaign that
# pauses longer than HARVEST_PAUSE_S between stretches still reaches a session's worth.
HARVEST_DAY_S = 24 * 3600
# Harvest time is active time: a gap between two templated high-value requests of a harvest
# counts up to this much. A slow campaign sends one every 20-30 minutes or more often, so its
# time counts in full; a job sending one an hour (a cron's templated prompt: 25 requests in a
# day, an adversary's probe) harvests for half its span, not for a day.
HARVEST_ACTIVE_GAP_S = 30 * 60
# A day's harvest carries into the next only when it lasted at least this long: a campaign that
# pauses a few hours a day harvests most of each day, a person's routine (two hours every
# evening, a working day at a tool's templates) less than half of it, and must not add up to a
# day's harvest over a week or two. (What a campaign can then send every day without a block,
# just under half a day at the machine's pace, ~710 requests, is what one harvesting a whole
# day and resting the next already could: an adversary's measure, 706.)
HARVEST_CARRY_MIN_S = 12 * 3600
# A harvest counts at least this long per templated high-value request after its first: a burst
# of 19 (one under the machine's pace, `machine_paced`) sent at once after each pause of over two
# hours counted almost no time, so five of them fitted beside just under half a day of harvest
# without the day being carried (~815 requests a day, never blocked: an adversary's probe).
HARVEST_S_PER_REQUEST = 60.0
# A person sends a templated high-value request every few minutes (an exam's question, a class's
# exercise: read the answer, think, send the next); a harvesting script one or more a minute,
# and a short, intense campaign takes what it wants in less than a session. This many in one
# harvest at this pace or faster is a machine's (`machine_paced`). Sixty, not twenty: a MOOC's
# learners retrying an assignment's prompts one to three a minute and an exam's candidates
# answering a question a minute send up to ~50 in one harvest (at 20: 790 of 58,778 honest
# accounts blocked at fresh seeds of the tuning families, 41 at 60; on the held-out set benign
# accounts blocked 0.15% -> 0.01%; docs/tuning.md); until its 60th a script is throttled, 2 a
# minute (throttle before block, issue 14).
MACHINE_PACE_REQUESTS = 60
MACHINE_PACE_PER_MIN = 1.0
# What a request asked, as bits of `Behaviour.recent_asks`.
HIGH_VALUE = 1
REASONING = 2


@dataclass(slots=True)
class Behaviour:
    asns: list[int] = field(default_factory=list)
    asn_switches: int = 0
    clients: list[str] = field(default_factory=list)
    client_switches: int = 0
    # Network prefixes (IPv4 /24, IPv6 /48): a proxy's fresh exits are on new ones even where
    # they fall on an ISP seen before; counted as rotation only beside several ASNs (a phone on
    # its carrier's pool changes prefixes, not networks).
    prefixes: list[str] = field(default_factory=list)
    prefix_switches: int = 0
    high_value: int = 0
    reasoning: int = 0
    templated_high_value: int = 0
    # The latest MAX_REMEMBERED requests: what each asked (HIGH_VALUE | REASONING bits) and the
    # known crowd template (signature) its prompt was of, 0 for none. The harvest figure is of
    # what the account asks now, so a tutorial's pages stop counting once their user has moved
    # on to ordinary use.
    recent_asks: list[int] = field(default_factory=list)
    recent_templates: list[int] = field(default_factory=list)
    # How long the account has harvested known templates (templated high-value requests) in
    # its current day (`harvest_span`): the current harvest, from `harvesting_since` to
    # `harvesting_last` (0: none yet), plus the earlier ones of the day that began at
    # `harvest_day_start`. A pause longer than HARVEST_PAUSE_S ends a harvest; the next such
    # request starts another, and a new day once HARVEST_DAY_S have passed. An exam, a class
    # or a tutorial is a harvest of an hour or two, two classes a day two; a campaign's
    # accounts go on, pausing or not (models/policy.py `_may_block`).
    harvesting_since: float = 0.0
    harvesting_last: float = 0.0
    harvested_earlier_s: float = 0.0
    harvest_day_start: float = 0.0
    # The harvest time of the days before the current one, while they follow each other (a
    # day's first harvest within HARVEST_DAY_S of the previous day's end) and each lasted
    # HARVEST_CARRY_MIN_S or more; a day without any harvest, or with less, clears it. A
    # campaign that pauses for two hours once a day would otherwise start every day afresh and
    # never reach a day's worth (an adversary's probe: ~1,180 requests a day per account, never
    # blocked); a bootcamp's day, an exam or a class does not go on for days.
    harvested_before_s: float = 0.0
    # Templated high-value requests of the current harvest: its pace (`machine_paced`).
    harvest_requests: int = 0
    # Idle time of the current harvest: what its gaps exceed HARVEST_ACTIVE_GAP_S by, summed
    # (its time, `harvest_span`, and its pace, `machine_paced`, are over the active rest).
    harvest_idle_s: float = 0.0

    def observe(self, asn: int | None, client: str | None, high_value: bool, reasoning: bool,
                template: int, prefix: str | None, ts: float) -> None:
        """Fold one request (of event time `ts`) in: O(MAX_REMEMBERED) at most. `template`:
        the signature of the known template the prompt is of, 0 if none."""
        if asn is not None and asn not in self.asns:
            if self.asns:
                self.asn_switches += 1
            _remember(self.asns, asn)
        if prefix is not None and prefix not in self.prefixes:
            if self.prefixes:
                self.prefix_switches += 1
            _remember(self.prefixes, prefix)
        if client is not None and client not in self.clients:
            if self.clients:
                self.client_switches += 1
            _remember(self.clients, client)
        self.high_value += high_value
        self.reasoning += reasoning
        if high_value and template != 0:
            self.templated_high_value += 1
            if not self.harvesting_last or ts - self.harvesting_last > HARVEST_PAUSE_S:
                self._start_harvest(ts)
            elif ts - self.harvesting_last > HARVEST_ACTIVE_GAP_S:
                self.harvest_idle_s += ts - self.harvesting_last - HARVEST_ACTIVE_GAP_S
            # (a late request, older than the latest, continues the harvest without moving it.
            # One older than the harvest's start, by less than a pause, began it: the start
            # moves back to it, so that a burst behind a record stamped ahead is timed, and
            # paced, from its own first request. One older by more than a pause is no part of
            # it: a record stamped hours ahead started it, and the on-time requests after it
            # would otherwise join a harvest of span 0, a person 3 minutes apart
            # "machine-paced".)
            if ts < self.harvesting_since:
                if self.harvesting_since - ts <= HARVEST_PAUSE_S:
                    # (its gap to the old start counts as any gap does: 30 minutes at most)
                    self.harvest_idle_s += max(0.0, self.harvesting_since - ts
                                               - HARVEST_ACTIVE_GAP_S)
                    self.harvesting_since = ts
                    self.harvest_requests += 1
            else:
                self.harvest_requests += 1
            self.harvesting_last = max(self.harvesting_last, ts)
        _remember(self.recent_asks, (HIGH_VALUE if high_value else 0)
                  | (REASONING if reasoning else 0))
        _remember(self.recent_templates, template)

    def _start_harvest(self, ts: float) -> None:
        ended = _counted_harvest_s(self)
        if self.harvesting_last and ts - self.harvest_day_start < HARVEST_DAY_S:
            self.harvested_earlier_s += ended
        else:
            day = self.harvested_earlier_s + ended
            if (self.harvesting_last and ts - self.harvesting_last < HARVEST_DAY_S
                    and day >= HARVEST_CARRY_MIN_S):
                # the next day, begun within a day of the last harvest's end, after a day of
                # half a day's harvest or more: the day that ended is carried. (From its end,
                # not its start: a workshop on Monday 09:00-21:00 and Wednesday from 08:30 is
                # two days apart, not one day's harvest on Wednesday evening, as it was
                # measured from Monday's start.)
                self.harvested_before_s += day
            else:
                self.harvested_before_s = 0.0
            self.harvested_earlier_s, self.harvest_day_start = 0.0, ts
        self.harvesting_since = ts
        self.harvest_requests = 0
        self.harvest_idle_s = 0.0

    def to_wire(self) -> list[Any]:
        return [self.asns, self.asn_switches, self.clients, self.client_switches,
                self.high_value, self.reasoning, self.templated_high_value, self.recent_asks,
                self.recent_templates, self.prefixes, self.prefix_switches,
                self.harvesting_since, self.harvesting_last, self.harvested_earlier_s,
                self.harvest_day_start, self.harvest_requests, self.harvested_before_s,
                self.harvest_idle_s]

    @classmethod
    def from_wire(cls, w: list[Any]) -> Behaviour:
        return cls(asns=list(w[0]), asn_switches=w[1], clients=list(w[2]),
                   client_switches=w[3], high_value=w[4], reasoning=w[5],
                   templated_high_value=w[6], recent_asks=list(w[7]),
                   recent_templates=list(w[8]), prefixes=list(w[9]), prefix_switches=w[10],
                   # (11 fields: a state from core 0.8 or before; its next templated
                   # high-value request starts a harvest)
                   harvesting_since=w[11] if len(w) > 15 else 0.0,
                   harvesting_last=w[12] if len(w) > 15 else 0.0,
                   harvested_earlier_s=w[13] if len(w) > 15 else 0.0,
                   harvest_day_start=w[14] if len(w) > 15 else 0.0,
                   harvest_requests=w[15] if len(w) > 15 else 0,
                   # (16 fields: a state from core 0.10; its days before start now)
                   harvested_before_s=w[16] if len(w) > 16 else 0.0,
                   # (17 fields: a state from core 0.10; its current harvest counts as
                   # active throughout)
                   harvest_idle_s=w[17] if len(w) > 17 else 0.0)


def breadth(b: Behaviour) -> int:
    """Distinct known crowd templates among the account's latest requests. (Signatures within
    SAME_TEMPLATE_BITS are one template: a partition may come to know a template by a second,
    nearby signature while the account sends it.)"""
    distinct: list[int] = []
    for t in b.recent_templates:
        if t and all((t ^ d).bit_count() > SAME_TEMPLATE_BITS for d in distinct):
            distinct.append(t)
    return len(distinct)


def _remember(items: list[Any], item: Any) -> None:
    items.append(item)
    if len(items) > MAX_REMEMBERED:
        del items[0]


def history(b: Behaviour, requests: int) -> int:
    """NEW, JUDGED or SUSTAINED (see there)."""
    if requests < CONFIDENT_REQUESTS and rotation(b, requests) < ROTATING:
        return NEW
    return SUSTAINED if b.templated_high_value >= SUSTAINED_TEMPLATED_REQUESTS else JUDGED


def confidence(requests: int) -> float:
    return min(1.0, requests / CONFIDENT_REQUESTS)


def rotation(b: Behaviour, requests: int) -> float:
    switches = max(b.asn_switches, b.client_switches,
                   b.prefix_switches if len(b.asns) >= ROTATION_MIN_NETWORKS else 0)
    return _rotation(switches, requests)


def hopping(b: Behaviour, requests: int) -> float:
    """`rotation` by new networks (ASNs) and clients alone, not by new prefixes: a residential
    proxy pool's exits are on ever new networks; a privacy relay, a company's cloud proxy or a
    carrier's NAT moves an honest user between the prefixes of a few."""
    return _rotation(max(b.asn_switches, b.client_switches), requests)


def _rotation(switches: int, requests: int) -> float:
    if switches < ROTATION_MIN_SWITCHES or requests <= 1:
        return 0.0
    return min(1.0, switches / (requests - 1) / ROTATING_SHARE)


def harvest(b: Behaviour, requests: int) -> float:
    """High-value share of the latest requests times the strongest combination of harvesting
    tells, scaled by confidence: 0 for an account asking ordinary things, 1 for one harvesting
    plainly."""
    asks = b.recent_asks
    if requests <= 0 or not asks:
        return 0.0
    high_value = sum(1 for a in asks if a & HIGH_VALUE) / len(asks)
    reasoning_share = sum(1 for a in asks if a & REASONING) / len(asks)
    reasoning = max(0.0, min(1.0, (reasoning_share - REASONING_TELL_FROM)
                             / (REASONING_TELL_FULL - REASONING_TELL_FROM)))
    known = breadth(b)
    templates = min(1.0, max(0, known - 1) / (TEMPLATES_FOR_FULL_TELL - 1))
    volume = min(1.0, max(0, b.templated_high_value - TEMPLATED_VOLUME_FLOOR)
                 / TEMPLATED_VOLUME_SPAN)
    rotating = rotation(b, requests)
    none = (1.0 - reasoning) * (1.0 - templates) * (1.0 - volume) * (1.0 - rotating)
    # An account that rotates is judged from its first requests: rotation is what a tutorial's
    # or a class's new users never do, so there is nothing to wait for. And one that hops from
    # network to network (or client to client) is not excused for keeping to one or two
    # templates (since core 0.17: a hydra harvesting one template on a proxy pool had a figure
    # of 0.4 at most, under HARVESTING, and was never acted on), but one that moves between the
    # prefixes of a few networks still is: a course behind a company's cloud proxy or a privacy
    # relay (both adversaries' probes: a course behind a cloud proxy, all of it blocked when
    # new prefixes lifted the focus too).
    focus = max(FOCUS[known] if known < len(FOCUS) else 1.0, hopping(b, requests))
    sure = max(confidence(requests), rotating)
    return round(high_value * (1.0 - none) * focus * sure, 4)


def harvest_span(b: Behaviour) -> float:
    """Event seconds the account has harvested known templates in its current day and the days
    before it that followed each other: its earlier harvests and the current one (0: none),
    each counted as active time (gaps up to HARVEST_ACTIVE_GAP_S), and at least a minute a
    request (HARVEST_S_PER_REQUEST)."""
    if not b.harvesting_last:
        return 0.0
    return b.harvested_before_s + b.harvested_earlier_s + _counted_harvest_s(b)


def _counted_harvest_s(b: Behaviour) -> float:
    """What the current harvest counts for toward a day's harvest: its active time, and at least
    HARVEST_S_PER_REQUEST for each of its requests after the first (0: none)."""
    if not b.harvesting_last:
        return 0.0
    return max(_current_harvest_s(b), max(0, b.harvest_requests - 1) * HARVEST_S_PER_REQUEST)


def _current_harvest_s(b: Behaviour) -> float:
    """Active seconds of the current harvest (0: none)."""
    if not b.harvesting_last:
        return 0.0
    return max(0.0, b.harvesting_last - b.harvesting_since - b.harvest_idle_s)


def machine_paced(b: Behaviour, requests: int = MACHINE_PACE_REQUESTS,
                  per_min: float = MACHINE_PACE_PER_MIN) -> bool:
    """Whether the current harvest holds `requests` templated high-value requests or more at
    `per_min` a minute or faster, on average over it (the settings `machine_pace_requests` and
    `machine_pace_per_min`; the defaults here are theirs). `requests` 0: never."""
    if requests <= 0 or b.harvest_requests < requests:
        return False
    # Over the harvest's active time, as its duration is counted: over its whole span, a burst
    # after each gap of almost two hours (which counts 30 minutes) harvested four requests per
    # counted minute unpaced, 5,567 before a day's harvest against 1,332 (an adversary's probe).
    span_min = _current_harvest_s(b) / 60.0
    return b.harvest_requests - 1 >= span_min * per_min
