"""The scenario sets of `distillguard evaluate`: the traffic the detector is tuned on, and the
traffic it is judged on. This module is the one place that says which is which.

    tuning    the legacy runs (the default scenario, seeds 7 and 11, and the three robustness
              variants of seed 7, with their own targets and baselines) + every family of
              TUNING_FAMILIES at each of TUNING_SEEDS
    held-out  every family, tuning and held-out families alike, at each of HELD_OUT_SEEDS

The rule (docs/tuning.md, "Held-out evaluation"): the held-out set's results are read for
reports only, never while tuning. Once a held-out result has been looked at and the detector is
then changed because of it, that family moves to TUNING_FAMILIES (or that seed to TUNING_SEEDS)
and a new held-out family or seed takes its place, noted in the doc's change log. The detector
was tuned on exactly the legacy runs and failed on traffic it was not tuned on; a held-out set
that leaks into the tuning would fail the same way, unseen.

No (family, seed) is in both sets: the held-out seeds are never tuning seeds, and every family
of `simulator.families.FAMILIES` is in exactly one of the two family tuples (a test holds both).
"""

from __future__ import annotations

TUNING = "tuning"
HELD_OUT = "held-out"
SETS = (TUNING, HELD_OUT)
# The name of the legacy runs (the default scenario's seeds and robustness variants), which are
# part of the tuning set; `--sets default` runs them alone, as `distillguard evaluate` used to.
LEGACY = "default"

# (frame_tool, frame_campus, frame_class, exam_day, bootcamp, frame_fleet, mooc_deadline and
# eval_harness were held out until 2026-12-06, see docs/tuning.md's change log.)
TUNING_FAMILIES = ("mixed", "launch", "campus", "teams", "aged", "frame_tutorial", "frame_card",
                   "frame_tool", "frame_campus", "frame_class", "exam_day", "bootcamp",
                   "frame_fleet", "mooc_deadline", "eval_harness")
TUNING_SEEDS = (1, 2)
HELD_OUT_FAMILIES = ("classroom", "oss", "egress", "slow", "decoy", "frame_egress",
                     "hackathon", "support", "sleeper", "viral_prompt", "seat_farm",
                     "app_backend")
# (101 and 102 were held out until 2026-12-06: looked at once, then spent.)
HELD_OUT_SEEDS = (201, 202)

# The legacy runs, in `plan_runs` terms: these seeds, these robustness variants of the first.
LEGACY_SEEDS = (7, 11)
LEGACY_VARIANTS = ("accounts", "jitter", "ip")


def set_families(set_name: str) -> tuple[str, ...]:
    """The families a set runs: its own for tuning, every family for held-out."""
    if set_name == TUNING:
        return TUNING_FAMILIES
    if set_name == HELD_OUT:
        return TUNING_FAMILIES + HELD_OUT_FAMILIES
    raise ValueError(f"unknown scenario set {set_name!r} (known: {', '.join(SETS)})")


def set_seeds(set_name: str) -> tuple[int, ...]:
    if set_name == TUNING:
        return TUNING_SEEDS
    if set_name == HELD_OUT:
        return HELD_OUT_SEEDS
    raise ValueError(f"unknown scenario set {set_name!r} (known: {', '.join(SETS)})")


def family_runs(set_name: str) -> list[tuple[str, int]]:
    """The set's (family, seed) runs, family by family, each at every seed of the set."""
    return [(f, s) for f in set_families(set_name) for s in set_seeds(set_name)]


def family_run_key(family: str, seed: int) -> str:
    """A family run's short name in the tables: `launch-s1`, `classroom-s101`."""
    return f"{family}-s{seed}"
