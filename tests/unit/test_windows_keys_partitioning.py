"""Event-time windows and watermark, cluster keys, and the Kafka-compatible partitioner."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner

from distillguard.models.config import DetectorConfig
from distillguard.models.keys import infrastructure_keys, ip_prefix, key_kind, template_keys
from distillguard.models.partitioning import partition_for
from distillguard.models.windows import Watermark, window_start
from tests.conftest import make_event

# --- windows ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [60, 300, 3600])
def test_window_start_is_aligned_and_contains_ts(size: int) -> None:
    rng = random.Random(7)
    for _ in range(2000):
        ts = rng.uniform(0, 2_000_000_000)
        start = window_start(ts, size)
        assert start % size == 0
        assert start <= ts < start + size


def test_window_start_boundaries() -> None:
    assert window_start(600.0, 300) == 600  # a window includes its start
    assert window_start(599.999, 300) == 300  # and excludes its end
    assert window_start(0.0, 300) == 0
    # every stage and every replay agrees: two events in one window get the same start
    assert window_start(1_700_000_101.0, 300) == window_start(1_700_000_399.0, 300) == 1_700_000_100


def test_watermark_trails_newest_event_by_lateness() -> None:
    wm = Watermark(allowed_lateness_s=60)
    assert wm.observe(1000.0) is False
    assert wm.value == 940.0
    assert wm.observe(941.0) is False  # within the allowed lateness
    assert wm.observe(940.0) is False  # exactly at the watermark: on time
    assert wm.observe(939.9) is True  # older than the watermark: late
    assert wm.value == 940.0  # late and old events never move it back
    assert wm.observe(1100.0) is False
    assert wm.value == 1040.0
    assert wm.observe(1000.0) is True  # on time before, late now


def test_watermark_only_moves_forward() -> None:
    rng = random.Random(3)
    wm = Watermark(allowed_lateness_s=120)
    newest = 0.0
    for _ in range(1000):
        ts = rng.uniform(0, 10_000)
        before = wm.value
        late = wm.observe(ts)
        assert late is (ts < before)
        newest = max(newest, ts)
        assert wm.value >= before and wm.value == newest - 120


# --- ip prefixes ------------------------------------------------------------------------------


@pytest.mark.parametrize("ip,prefix", [
    ("203.0.113.77", "203.0.113.0/24"),
    ("203.0.113.0", "203.0.113.0/24"),
    ("10.255.255.255", "10.255.255.0/24"),
    ("2001:db8:abcd:12::1", "2001:db8:abcd::/48"),
    ("2001:0DB8:ABCD:0012:0000:0000:0000:0001", "2001:db8:abcd::/48"),  # same net, long form
    ("2001:db8:abcd:ffff:ffff:ffff:ffff:ffff", "2001:db8:abcd::/48"),
    ("::1", "::/48"),
])
def test_ip_prefix(ip: str, prefix: str) -> None:
    assert ip_prefix(ip) == prefix


def test_ip_prefix_groups_one_network() -> None:
    assert ip_prefix("198.51.100.1") == ip_prefix("198.51.100.254")
    assert ip_prefix("198.51.100.1") != ip_prefix("198.51.101.1")
    assert ip_prefix("2001:db8:1:1::1") == ip_prefix("2001:db8:1:ffff::2")
    assert ip_prefix("2001:db8:1::1") != ip_prefix("2001:db8:2::1")


@pytest.mark.parametrize("ip", [
    "not-an-ip", "1.2.3", "256.1.1.1", "1.2.3.4.5", "gggg::1", "::ffff::1", "  ",
    "001.2.3.4", "1.2.3.00", "1.2.3.\u00b2", "\u0661.\u0662.\u0663.\u0664",
])
def test_malformed_ip_is_its_own_prefix(ip: str) -> None:
    # the schema allows any text as `ip`: whatever it is, keying it must not fail
    assert ip_prefix(ip) == ip


def test_ipv4_mapped_address_is_keyed_by_its_ipv4_network() -> None:
    assert ip_prefix("::ffff:198.51.100.7") == ip_prefix("198.51.100.7")
    assert ip_prefix("::ffff:198.51.100.7") != ip_prefix("::ffff:203.0.113.7")


# --- cluster keys -----------------------------------------------------------------------------


def test_template_keys_cover_every_band_with_distinct_keys() -> None:
    keys = template_keys(0x0001_0001_0001_0001, bands=4)
    assert len(set(keys)) == 4  # the band index keeps equal band values apart
    assert all(key_kind(k) == "tpl" for k in keys)
    assert template_keys(0x0123_4567_89AB_CDEF, 4) == (
        "tpl:0:cdef", "tpl:1:89ab", "tpl:2:4567", "tpl:3:0123")


def _flip(value: int, bits: int, rng: random.Random) -> int:
    for pos in rng.sample(range(64), bits):
        value ^= 1 << pos
    return value


def test_near_duplicates_share_a_template_key() -> None:
    # The documented guarantee: prompts whose SimHashes differ in at most 3 bits share a bucket.
    bands = DetectorConfig().simhash_bands
    rng = random.Random(2024)
    for _ in range(5000):
        a = rng.getrandbits(64)
        b = _flip(a, rng.randint(0, 3), rng)
        assert set(template_keys(a, bands)) & set(template_keys(b, bands)), (hex(a), hex(b))


def test_near_duplicates_share_a_key_even_with_bits_in_every_band() -> None:
    # 3 flips in 3 distinct bands: the fourth band is untouched.
    a = 0xFFFF_0000_AAAA_5555
    b = a ^ (1 << 3) ^ (1 << 20) ^ (1 << 40)
    assert len(set(template_keys(a, 4)) & set(template_keys(b, 4))) == 1


def test_unrelated_simhashes_rarely_share_a_key() -> None:
    bands = DetectorConfig().simhash_bands
    rng = random.Random(99)
    pairs = 5000
    shared = sum(bool(set(template_keys(rng.getrandbits(64), bands))
                      & set(template_keys(rng.getrandbits(64), bands))) for _ in range(pairs))
    # expected about pairs * bands / 2**16 (0.3 here); a handful means bands are not independent
    assert shared <= 3


def test_infrastructure_keys_in_fixed_order() -> None:
    ev = make_event("a", 1.0, ip="203.0.113.9", payment_fingerprint="pay-1",
                    system_prompt_hash="sys-1", asn=64500, user_agent="sdk/1.0")
    keys = infrastructure_keys(ev)
    assert [key_kind(k) for k in keys] == ["ip", "pay", "sys", "asnua"]
    assert keys[:3] == ("ip:203.0.113.0/24", "pay:pay-1", "sys:sys-1")
    assert keys[3].startswith("asnua:64500:")


def test_infrastructure_keys_skip_absent_attributes() -> None:
    ev = make_event("a", 1.0, payment_fingerprint=None, system_prompt_hash=None, asn=None)
    assert infrastructure_keys(ev) == (f"ip:{ip_prefix(ev.ip)}",)
    no_ua = make_event("a", 1.0, asn=64500, user_agent=None)
    assert [key_kind(k) for k in infrastructure_keys(no_ua)] == ["ip"]


def test_asn_user_agent_key_depends_on_both() -> None:
    def asnua(asn: int, ua: str) -> str:
        return infrastructure_keys(make_event("a", 1.0, asn=asn, user_agent=ua))[-1]
    assert asnua(64500, "sdk/1.0") == asnua(64500, "sdk/1.0")
    assert asnua(64500, "sdk/1.0") != asnua(64500, "sdk/1.1")
    assert asnua(64500, "sdk/1.0") != asnua(64501, "sdk/1.0")
    assert len(asnua(64500, "u" * 512)) < 40  # the user agent is hashed, keys stay short


# --- partitioning -----------------------------------------------------------------------------


def _keys(n: int) -> list[str]:
    rng = random.Random(11)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_:./é漢\U0001F600"
    keys = [f"acct-{i:06d}" for i in range(n // 4)]
    keys += [f"tpl:{rng.randrange(4)}:{rng.getrandbits(16):04x}" for _ in range(n // 4)]
    while len(keys) < n:  # every length 0..40 so all murmur2 tail cases are covered
        keys.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))))
    return keys


@pytest.mark.parametrize("n", [1, 3, 7, 12, 64, 1000])
def test_partition_for_matches_kafka_default_partitioner(n: int) -> None:
    kafka = DefaultPartitioner()
    parts = list(range(n))
    for key in _keys(2000):
        assert partition_for(key, n) == kafka(key.encode(), parts, parts), key


def test_partition_for_spreads_keys() -> None:
    counts = [0] * 12
    for key in _keys(2000):
        counts[partition_for(key, 12)] += 1
    assert min(counts) > 2000 / 12 / 2
