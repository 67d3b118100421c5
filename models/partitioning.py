"""Which partition a key lands on: Kafka's default partitioner (murmur2), in pure Python.

Replay uses it to give every account and cluster the same partition-local context (watermark,
online model) that it has in the live fleet, which is what makes replay reproduce live
decisions. A test checks it against the Kafka client's own partitioner.

>>> partition_for("acct-1", 12) == partition_for("acct-1", 12)
True
"""

from __future__ import annotations

from functools import lru_cache

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """MurmurHash2 as in org.apache.kafka.common.utils.Utils.murmur2 (signed 32-bit result)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    for i in range(0, length - length % 4, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    rest = length % 4
    tail = length - rest
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


@lru_cache(maxsize=1 << 17)
def partition_for(key: str, partitions: int) -> int:
    # Cached: replay asks for the same accounts and cluster keys again and again.
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions
