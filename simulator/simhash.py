"""64-bit SimHash values as the gateway logs them, and near-duplicates of them.

The simulator never sees prompt text: a prompt *is* its SimHash. Unrelated prompts are random
64-bit values (about 32 bits apart); a templated prompt is a template's value with a few bits
flipped, which is what a SimHash of a near-duplicate text looks like.

>>> import random
>>> rng = random.Random(1)
>>> base = random_simhash(rng)
>>> near = perturb(base, 3, rng)
>>> (base ^ near).bit_count()
3
>>> len(to_hex(near))
16
"""

from __future__ import annotations

import random

BITS = 64
_MASK = (1 << BITS) - 1


def random_simhash(rng: random.Random) -> int:
    """A SimHash of a prompt unrelated to any other: 64 uniform random bits."""
    return rng.getrandbits(BITS)


def perturb(simhash: int, bits: int, rng: random.Random) -> int:
    """Flip exactly `bits` distinct random bits of `simhash` (0 <= bits <= 64)."""
    if not 0 <= bits <= BITS:
        raise ValueError(f"bits must be in 0..{BITS}, got {bits}")
    mask = 0
    # Rejection on a 6-bit draw is faster than rng.sample for the few bits we flip.
    while mask.bit_count() < bits:
        mask |= 1 << rng.getrandbits(6)
    return (simhash ^ mask) & _MASK


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two SimHash values."""
    return (a ^ b).bit_count()


def to_hex(simhash: int) -> str:
    """16 lowercase hex digits, the wire form of `prompt_simhash`."""
    return format(simhash & _MASK, "016x")
