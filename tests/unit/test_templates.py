"""`models.templates`: which template buckets recur in a partition, and the known templates.

A bucket (one band of a prompt SimHash) recurs once it has been seen RECURRING_AFTER times
before within the current and the previous generation. Tests read the threshold and the
generation length from the code, so they hold whatever those are tuned to.
"""

from __future__ import annotations

import itertools
import random

import orjson
import pytest

from distillguard.models.account_stage import AccountPartition
from distillguard.models.config import DetectorConfig
from distillguard.models.templates import (
    MAX_KNOWN_TEMPLATES,
    RECURRING_AFTER,
    SIGNATURE_BITS,
    KnownTemplates,
    TemplateRecurrence,
)

BANDS = 4
GEN = 7200
ALL = list(range(BANDS))
PROMPT = 0x0123_4567_89AB_CDEF


def fresh(bands: int = BANDS) -> TemplateRecurrence:
    return TemplateRecurrence(bands=bands, generation_s=GEN)


def sightings_until_recurring(rec: TemplateRecurrence, simhash: int, ts: float) -> int:
    for n in range(1, 300):
        if rec.observe(simhash, ts + n):
            return n
    raise AssertionError("never recurred")


# --- threshold --------------------------------------------------------------------------------


def test_a_bucket_recurs_after_the_configured_earlier_sightings() -> None:
    rec = fresh()
    for _ in range(RECURRING_AFTER):
        assert rec.observe(PROMPT, 10.0) == []  # not yet: too few earlier sightings
    assert rec.observe(PROMPT, 11.0) == ALL
    assert rec.observe(PROMPT, 12.0) == ALL  # and stays recurring


def test_threshold_counts_sightings_from_any_account_or_prompt_sharing_the_band() -> None:
    rec = fresh()
    # other prompts that share only band 0 (the low 16 bits) with PROMPT
    for i in range(RECURRING_AFTER):
        assert 0 not in rec.observe(((i + 1) << 16) | (PROMPT & 0xFFFF), 10.0 + i)
    assert rec.observe(PROMPT, 20.0) == [0]  # band 0 recurs; the other three are new


def test_unrelated_prompts_do_not_recur() -> None:
    rec = fresh()
    rng = random.Random(3)
    recurring = sum(bool(rec.observe(rng.getrandbits(64), 10.0 + i)) for i in range(200))
    assert recurring <= 2  # 200 random prompts in 4 x 2^16 buckets: a chance collision at most


# --- generations ------------------------------------------------------------------------------


def test_sightings_of_the_previous_generation_still_count() -> None:
    rec = fresh()
    for _ in range(RECURRING_AFTER):
        rec.observe(PROMPT, GEN - 1.0)  # end of generation 0
    assert rec.observe(PROMPT, GEN + 1.0) == ALL  # generation 1 remembers generation 0


def test_sightings_two_generations_back_are_forgotten() -> None:
    rec = fresh()
    for _ in range(RECURRING_AFTER):
        rec.observe(PROMPT, 10.0)  # generation 0
    # a generation with other traffic rolls generation 0 out
    rec.observe(0xFFFF_FFFF_FFFF_FFFF, GEN + 10.0)
    assert rec.observe(PROMPT, 2 * GEN + 10.0) == []


def test_a_jump_over_a_whole_generation_forgets_everything() -> None:
    rec = fresh()
    for _ in range(RECURRING_AFTER + 3):
        rec.observe(PROMPT, 10.0)
    assert rec.observe(PROMPT, 3 * GEN + 10.0) == []  # generations 1 and 2 saw nothing
    assert sightings_until_recurring(rec, PROMPT, 3 * GEN + 20.0) == RECURRING_AFTER


# --- memory -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bands", [4, 8, 16])
def test_memory_is_constant_whatever_the_traffic(bands: int) -> None:
    rec = fresh(bands)
    size = len(rec.current)
    assert len(rec.previous) == size
    assert size == bands * 2 ** (64 // bands)  # one byte per bucket of every band
    rng = random.Random(bands)
    for i in range(20_000):
        rec.observe(rng.getrandbits(64), i * (3 * GEN / 20_000))  # three generations
    assert (len(rec.current), len(rec.previous)) == (size, size)


def test_counts_saturate_instead_of_overflowing() -> None:
    rec = fresh()
    for i in range(600):
        assert rec.observe(PROMPT, 10.0 + i) == (ALL if i >= RECURRING_AFTER else [])
    assert max(rec.current) == 255


def test_the_account_stage_uses_a_generation_of_one_cluster_horizon() -> None:
    cfg = DetectorConfig()
    part = AccountPartition.create(cfg, 0)
    assert part.templates.bands == cfg.simhash_bands
    assert part.templates.generation_s == cfg.cluster_window_s * cfg.cluster_horizon_windows


@pytest.mark.parametrize("bands", [1, 2, 3, 4, 5, 8, 16, 32, 64])
def test_every_usable_band_count_gives_a_partition_of_bounded_memory(bands: int) -> None:
    cfg = DetectorConfig(simhash_bands=bands)
    if cfg.problems():
        # refused up front (1 and 2 bands would need 2^64 and 2 x 2^33 bytes of counts)
        assert bands not in (4, 8, 16)
        return
    part = AccountPartition.create(cfg, 0)
    assert len(part.templates.current) + len(part.templates.previous) <= 1 << 20


def test_one_and_two_bands_are_refused() -> None:
    for bands in (1, 2):
        assert any("simhash_bands" in p for p in DetectorConfig(simhash_bands=bands).problems())


# --- known templates: what the account partitions know of template crowds -------------------

TEMPLATE_A = 0x0123_4567_89AB_CDEF
TEMPLATE_B = 0xFEDC_BA98_7654_3210


def _flip_in_every_byte(simhash: int, bits: int) -> int:
    """A noisy prompt of the template: `bits` bits flipped, one in each of its first bytes."""
    for byte in range(bits):
        simhash ^= 1 << (8 * byte + byte % 8)
    return simhash


def test_a_prompt_within_the_signature_distance_is_recognised_whatever_bits_it_flipped() -> None:
    known = KnownTemplates()
    known.add(TEMPLATE_A, apply_ts=100.0)
    for bits in range(SIGNATURE_BITS):  # up to 7 flips: at least one byte of 8 is untouched
        assert known.match(_flip_in_every_byte(TEMPLATE_A, bits), 100.0) == TEMPLATE_A, bits
    rng = random.Random(4)
    for _ in range(2000):  # any SIGNATURE_BITS flips
        noisy = TEMPLATE_A
        for bit in rng.sample(range(64), rng.randrange(SIGNATURE_BITS + 1)):
            noisy ^= 1 << bit
        found = known.match(noisy, 100.0)
        # (8 flips in 8 distinct bytes share no byte with it: the one miss the index allows)
        assert found == TEMPLATE_A or (noisy ^ TEMPLATE_A).bit_count() == SIGNATURE_BITS
    assert known.match(TEMPLATE_B, 100.0) == 0
    assert known.match(TEMPLATE_A ^ ((1 << (SIGNATURE_BITS + 1)) - 1), 100.0) == 0


def test_a_template_is_known_from_its_time_to_apply_on() -> None:
    known = KnownTemplates()
    known.add(TEMPLATE_A, apply_ts=100.0)
    assert known.match(TEMPLATE_A, 99.9) == 0 and known.match(TEMPLATE_A, 100.0) == TEMPLATE_A


def test_the_buckets_of_one_template_name_it_alike_in_any_order() -> None:
    # each bucket of a template elects its own signature, nearly the same one: the partition
    # takes notices in by their time to apply, whatever order they came in (a live fleet's, a
    # replay's), and names the template by the first
    signatures = (TEMPLATE_A, TEMPLATE_A ^ 0b11, TEMPLATE_A ^ 1 << 40)
    names = set()
    for order in itertools.permutations(range(3)):
        known = KnownTemplates()
        for i in order:
            known.add(signatures[i], 100.0 + i, f"tpl:{i}:x")
        assert known.match(TEMPLATE_A, 99.0) == 0
        template = known.match(TEMPLATE_A, 200.0)
        names.add((template, known.convicted_buckets(template)))
    assert names == {(TEMPLATE_A, ("tpl:0:x", "tpl:1:x", "tpl:2:x"))}
    assert KnownTemplates().convicted_buckets(TEMPLATE_B) == ()


def test_a_notice_that_comes_after_its_time_is_taken_in_at_once() -> None:
    known = KnownTemplates()
    assert known.match(TEMPLATE_B, 500.0) == 0
    known.add(TEMPLATE_A, 100.0)  # a late notice (the fleet lagged): known from now on
    assert known.match(TEMPLATE_A, 500.0) == TEMPLATE_A


def test_known_templates_are_bounded() -> None:
    known = KnownTemplates()
    rng = random.Random(5)
    first = rng.getrandbits(64)
    known.add(first, 1.0)
    assert known.match(first, 1.0) == first
    for i in range(MAX_KNOWN_TEMPLATES + 50):  # a notice a second, each taken in at its time
        known.add(rng.getrandbits(64), 2.0 + i)
        known.match(0, 2.0 + i)
    assert len(known) <= MAX_KNOWN_TEMPLATES
    assert known.match(first, MAX_KNOWN_TEMPLATES + 100.0) == 0  # the earliest known went first
    # and notices that wait are bounded as well
    waiting = KnownTemplates()
    for i in range(MAX_KNOWN_TEMPLATES + 50):
        waiting.add(rng.getrandbits(64), 10.0 + i)
    assert len(waiting.waiting) <= MAX_KNOWN_TEMPLATES
    assert sum(len(v) for table in known.index for v in table.values()) == 8 * len(known)


def test_known_templates_round_trip() -> None:
    known = KnownTemplates()
    known.add(TEMPLATE_A, 100.0, "tpl:0:cdef")
    known.add(TEMPLATE_A ^ 1, 90.0, "tpl:1:89ab")
    known.add(TEMPLATE_B, 200.0)
    assert known.match(TEMPLATE_A, 150.0)  # two taken in, one waiting
    again = KnownTemplates.from_wire(orjson.loads(orjson.dumps(known.to_wire())))
    assert again.entries == known.entries and again.waiting == known.waiting
    assert again.match(TEMPLATE_B, 200.0) == TEMPLATE_B
