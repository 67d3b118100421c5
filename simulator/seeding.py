"""Deterministic randomness: every stream is `random.Random` seeded from (seed, names...).

Seeds are derived with BLAKE2b, never with `hash()` (salted per process), so a scenario
produces the same bytes in every process. Each population and each account has its own
stream, so changing one population's knobs does not reshuffle the others.

>>> rng_for(7, "ordinary", 3).random() == rng_for(7, "ordinary", 3).random()
True
"""

from __future__ import annotations

import hashlib
import random


def derive_seed(seed: int, *parts: object) -> int:
    """A 64-bit seed from the scenario seed and a path of names/indices."""
    text = "\x1f".join([str(seed), *map(str, parts)])
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def rng_for(seed: int, *parts: object) -> random.Random:
    return random.Random(derive_seed(seed, *parts))


class IdMint:
    """Unique, group-neutral identifiers: a prefix and 10 random hex digits.

    Each caller passes its own rng, so ids depend only on that caller's stream; collisions
    (about 1 in 10^12 per pair) are redrawn from the same stream.
    """

    def __init__(self) -> None:
        self._used: set[str] = set()

    def new(self, prefix: str, rng: random.Random) -> str:
        while True:
            ident = f"{prefix}{rng.getrandbits(40):010x}"
            if ident not in self._used:
                self._used.add(ident)
                return ident
