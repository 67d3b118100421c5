"""Prompt templates: which buckets recur (a partition-local count of recent bucket use), and
what template a bucket's crowd uses (its signature).

Most prompts are unique, and fanning every one of their LSH buckets out to the cluster stage
would cost several messages per request and create a cluster per prompt. A bucket becomes worth
a cluster once it recurs: seen `RECURRING_AFTER` times before in the partition within the last
two generations (a generation is the cluster horizon in event time). Campaign templates recur
within minutes; most one-off prompts never do. A young account's prompts do not wait for it
(models/account_stage.py): a template shared thinly over many partitions loses its first
sighting in each, and young accounts are the crowd a template is judged on.

The bucket space is small and fixed (`bands` x 2^16 for 16-bit bands), so the counts are two
bytearrays: constant memory, O(1) per lookup, whatever the traffic.

>>> rec = TemplateRecurrence(bands=4, generation_s=7200)
>>> rec.observe(0x0123_4567_89ab_cdef, ts=0.0)
[]
>>> rec.observe(0x0123_4567_89ab_cdef, ts=10.0)
[0, 1, 2, 3]
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

# A bucket recurs once it has been seen this many times before. One earlier sighting lets a
# campaign's templates recur in every partition within minutes of its start; the price is that
# a partition's unique prompts fill a good share of the 2^16 slots of a band within hours, so
# some one-off prompts recur by chance (measured: about 1.9 cluster summaries per event on the
# default scenario, against 1.4 with two sightings, for a faster hydra response).
RECURRING_AFTER = 1


# A prompt within this many bits of a convicted template bucket's signature is of its template.
# A campaign's prompts are their template with a few bits flipped, so they lie within a few bits
# of it; an unrelated prompt that shares one of the bucket's 16-bit bands by chance has its other
# 48 bits at random, ~24 from the signature, and is this close one time in 500,000.
SIGNATURE_BITS = 8


# Prompts (of distinct accounts, models/cluster.py) that must agree for a bucket to have a template
# at all: two accounts sending one prompt is a conversation, three a template crowd.
AGREEING_PROMPTS = 3


def uses_template(simhash: int, signature: int) -> bool:
    """Whether a prompt is of the template with this signature (0, no template: never)."""
    return signature != 0 and (simhash ^ signature).bit_count() <= SIGNATURE_BITS


def signature(prompts: list[int]) -> int:
    """The template the prompts share: their bitwise majority, provided most of them, and at
    least AGREEING_PROMPTS, lie within SIGNATURE_BITS of it; else 0 (no template: prompts that
    only share a band by chance, or too few to tell, whose majority is each prompt's own bits).

    >>> template = 0x0123_4567_89AB_CDEF
    >>> hex(signature([template ^ 1, template ^ 2, template ^ 4]))
    '0x123456789abcdef'
    >>> signature([template]), signature([template, template ^ 2])
    (0, 0)
    >>> signature([template ^ 1, template ^ 2, 0xFEDC_BA98_7654_3210])  # two agree: no template
    0
    >>> signature([0x0123_4567_89AB_CDEF, 0xFEDC_BA98_7654_3210, 0x0F0F_0F0F_0F0F_0F0F])
    0
    """
    if len(prompts) < AGREEING_PROMPTS:
        return 0
    half = len(prompts) / 2
    majority = sum(1 << bit for bit in range(64)
                   if sum((p >> bit) & 1 for p in prompts) > half)
    near = sum(1 for p in prompts if (p ^ majority).bit_count() <= SIGNATURE_BITS)
    return majority if near > half and near >= AGREEING_PROMPTS else 0


@dataclass(slots=True)
class TemplateRecurrence:
    bands: int
    generation_s: int
    generation: int = -1
    current: bytearray = field(default_factory=bytearray)
    previous: bytearray = field(default_factory=bytearray)

    def __post_init__(self) -> None:
        size = self.bands << (64 // self.bands)
        self.current = bytearray(size)
        self.previous = bytearray(size)

    def observe(self, simhash: int, ts: float) -> list[int]:
        """Count one prompt; return the bands (0..bands-1) whose bucket has been seen before."""
        gen = int(ts // self.generation_s)
        if gen > self.generation:
            self.previous = self.current if gen == self.generation + 1 else bytearray(
                len(self.current))
            self.current = bytearray(len(self.current))
            self.generation = gen
        width = 64 // self.bands
        mask = (1 << width) - 1
        current, previous = self.current, self.previous
        recurring = []
        for band in range(self.bands):
            slot = (band << width) | ((simhash >> (band * width)) & mask)
            count = current[slot]
            if count + previous[slot] >= RECURRING_AFTER:
                recurring.append(band)
            if count < 255:
                current[slot] = count + 1
        return recurring


# Bands of the index of known templates: 8 bands of 8 bits, so that a prompt within
# SIGNATURE_BITS of a template shares at least one band with it whatever bits it flipped (7 flips
# cannot touch all 8 bands, 8 almost never do). The cluster buckets (16-bit bands) find a noisy
# template's crowd slowly; once its signature is known, every prompt of it is recognised here.
_INDEX_BANDS = 8
# Known templates per account partition: templates of real crowds (campaigns, tutorials,
# homework, enterprise batches), a few thousand at most; the earliest to apply go first beyond
# this.
MAX_KNOWN_TEMPLATES = 4096


@dataclass(slots=True)
class KnownTemplates:
    """Templates a crowd of accounts agreed on (signatures, from the cluster stage), known to an
    account partition from their time to apply on, and the convicted buckets of each.

    The buckets of one template each elect a signature, nearly the same one: a signature within
    SIGNATURE_BITS of a known one is that template. Notices are taken in when their time to apply
    comes, in the order of (time, signature), whatever order they arrived in: what a partition
    knows at an event time, and by which signature, depends only on the notices that apply by
    then, so a live fleet and a replay name every template alike. Bounded: MAX_KNOWN_TEMPLATES
    (the earliest known go first), and as many notices waiting.

    >>> known = KnownTemplates()
    >>> known.add(0x0123_4567_89AB_CDEF ^ 0b11, 150.0, "tpl:1:89ab")
    >>> known.add(0x0123_4567_89AB_CDEF, 100.0)
    >>> known.match(0x0123_4567_89AB_CDEF, 99.0)  # not yet
    0
    >>> hex(known.match(0x0123_4567_89AB_CDEF ^ 0b1011, 100.0)), known.match(0x0123, 100.0)
    ('0x123456789abcdef', 0)
    >>> template = known.match(0x0123_4567_89AB_CDEF, 150.0)  # (the later notice is the same)
    >>> hex(template), known.convicted_buckets(template)
    ('0x123456789abcdef', ('tpl:1:89ab',))
    """

    # signature -> (known from, its convicted buckets, sorted)
    entries: dict[int, tuple[float, tuple[str, ...]]] = field(default_factory=dict)
    index: list[dict[int, list[int]]] = field(
        default_factory=lambda: [{} for _ in range(_INDEX_BANDS)])
    # Notices not yet taken in, a heap of (applies from, signature, convicted bucket or "").
    waiting: list[tuple[float, int, str]] = field(default_factory=list)
    # Everything applying up to this event time has been taken in.
    taken_to: float = 0.0

    def add(self, signature: int, apply_ts: float, convicted_bucket: str = "") -> None:
        """A notice that a crowd agreed on this template (with one of its convicted buckets,
        when given), to be known from `apply_ts` on."""
        if apply_ts < self.taken_to:
            self._take_in(apply_ts, signature, convicted_bucket)  # (came after its time)
            return
        if len(self.waiting) >= MAX_KNOWN_TEMPLATES:  # (no fleet lets so many wait)
            self.waiting.remove(max(self.waiting))
            heapq.heapify(self.waiting)
        heapq.heappush(self.waiting, (apply_ts, signature, convicted_bucket))

    def match(self, simhash: int, now_ts: float) -> int:
        """The known template (its signature) the prompt is of at `now_ts`, or 0."""
        self._catch_up(now_ts)
        if not self.entries:
            return 0  # (a partition that knows no template yet: most prompts, early on)
        for band, table in enumerate(self.index):
            for signature in table.get((simhash >> (band * 8)) & 0xFF, ()):
                if (simhash ^ signature).bit_count() <= SIGNATURE_BITS:
                    return signature
        return 0

    def convicted_buckets(self, signature: int) -> tuple[str, ...]:
        entry = self.entries.get(signature)
        return entry[1] if entry is not None else ()

    def _catch_up(self, now_ts: float) -> None:
        self.taken_to = max(self.taken_to, now_ts)
        waiting = self.waiting
        while waiting and waiting[0][0] <= now_ts:  # in (time, signature) order: a heap
            self._take_in(*heapq.heappop(waiting))

    def _take_in(self, apply_ts: float, signature: int, bucket: str) -> None:
        known = self._nearest(signature)
        if known:
            at, buckets = self.entries[known]
            if bucket and bucket not in buckets:
                buckets = tuple(sorted((*buckets, bucket)))
            self.entries[known] = (at, buckets)
            return
        if len(self.entries) >= MAX_KNOWN_TEMPLATES:
            self._forget(next(iter(self.entries)))  # the earliest taken in
        self.entries[signature] = (apply_ts, (bucket,) if bucket else ())
        for band, table in enumerate(self.index):
            table.setdefault((signature >> (band * 8)) & 0xFF, []).append(signature)

    def _nearest(self, simhash: int) -> int:
        for band, table in enumerate(self.index):
            for signature in table.get((simhash >> (band * 8)) & 0xFF, ()):
                if (simhash ^ signature).bit_count() <= SIGNATURE_BITS:
                    return signature
        return 0

    def _forget(self, signature: int) -> None:
        del self.entries[signature]
        for band, table in enumerate(self.index):
            value = (signature >> (band * 8)) & 0xFF
            table[value].remove(signature)
            if not table[value]:
                del table[value]

    def __len__(self) -> int:
        return len(self.entries)

    def to_wire(self) -> list[Any]:
        return [[[signature, at, list(buckets)] for signature, (at, buckets)
                 in self.entries.items()], [list(w) for w in self.waiting], self.taken_to]

    @classmethod
    def from_wire(cls, w: list[Any]) -> KnownTemplates:
        known = cls()
        for signature, at, buckets in w[0]:
            known._take_in(float(at), int(signature), "")
            for bucket in buckets:
                known._take_in(float(at), int(signature), bucket)
        known.waiting = [(float(at), int(signature), str(bucket)) for at, signature, bucket in w[1]]
        heapq.heapify(known.waiting)
        known.taken_to = float(w[2])
        return known
