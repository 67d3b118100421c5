"""The detector's tunables as one frozen value, and the model version derived from it.

The edge (`streams/edge/settings.py`) reads the environment and files once and builds a
`DetectorConfig`; the core only ever sees this plain value. The model version names the
settings it came from, so two runs with the same version made the same decisions.

>>> DetectorConfig().model_version == DetectorConfig().model_version
True
>>> DetectorConfig(window_s=60).model_version != DetectorConfig().model_version
True
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from distillguard.models.behaviour import MACHINE_PACE_PER_MIN, MACHINE_PACE_REQUESTS

# Raise it with every change of the core that changes decisions for the same settings: the
# model version (and so every decision id) must tell two such cores apart. What each version
# changed: docs/tuning.md, "Versions of the core". The package version (pyproject.toml)
# follows it: 0.8.x is core 0.8 (a test holds it).
CORE_VERSION = "0.18"


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    # --- event time ---
    # Tumbling window length for account and cluster aggregates. Five minutes keeps the
    # time to a first action inside the 10-minute target for bursts.
    window_s: int = 300
    # How far behind the partition's newest event an event may arrive and still count as
    # on time. Later events are counted as late (and still aggregated into the open window).
    allowed_lateness_s: int = 120
    # Idle state expires by event time: an account or cluster unseen this long is dropped.
    idle_expiry_s: int = 6 * 3600

    # --- cluster keys ---
    # LSH over the 64-bit prompt SimHash: 4 bands of 16 bits. Two prompts that differ in at most
    # 3 bits agree on at least one band (pigeonhole), so near-duplicates share a bucket.
    simhash_bands: int = 4
    # Per account and window, at most this many prompt-template buckets are fanned out
    # (the most used first), so a chatty user costs a bounded number of messages.
    max_template_keys_per_window: int = 4
    # Per account, at most this many IP prefixes are tracked as cluster keys (IP rotation
    # beyond this is itself evidence and is counted instead).
    max_ip_keys_per_account: int = 4

    # --- clusters ---
    # Clusters aggregate coarser windows than accounts, over a longer horizon: a slow campaign
    # (a few requests per account per hour) needs hours to show as a crowd.
    cluster_window_s: int = 900
    cluster_horizon_windows: int = 8  # two hours of 15-minute windows
    # Suspicious members (harvesting on a young or rotating identity, models/scoring.py) a
    # crowd needs before it is scored: below this a shared key proves nothing.
    cluster_min_accounts: int = 8
    # The same for a prompt template's crowd: fewer, because a template crowd is not a key that
    # strangers share by where they connect from, and its members must agree on the template
    # (a bucket's signature, models/templates.py). Five, not three: in a campus lab where a
    # third of the students are new this term, the first few members of one of the dozens of
    # course template crowds are young by chance, and the weak convictions of such crowds add
    # up against a student sending several course templates (measured on frame_campus at half
    # scale; at four a lab's students were still throttled, at six a thin stealth campaign fell
    # to 28% of its accounts acted on: docs/tuning.md).
    template_min_accounts: int = 5
    cluster_member_cap: int = 5000  # members remembered per cluster, for verdict fan-out
    # ... and at most this many bytes of them on the wire (each at its most: models/cluster.py
    # `member_wire_bytes`), so that a cluster's state fits the worker's max_state_bytes
    # (streams/edge/settings.py checks the two together). 300,000: ~1,700 members with ids of
    # ~15 characters, ~1,000 with the longest (128); a system prompt's cluster, whose members
    # also keep their crowd hours (models/crowd_hours.py), ~1,250 and ~850.
    cluster_member_bytes: int = 300_000
    # The summaries waiting in a cluster's state for their tick to be judged, at most this many
    # bytes on the wire (each at its most: models/cluster.py `summary_wire_bytes`; ~1,250 with
    # the longest ids, ~1,700 with ids of ~15 characters). They wait for the slowest account
    # partition, up to `source_idle_s` when one lags; past this the oldest are judged without
    # it (`ClusterStage.judge_early`, counted), so that the state still fits max_state_bytes.
    # 500,000: the default simulation with ten times the accounts keeps at most 309,000 of
    # them waiting (1,076 summaries, a popular system prompt's crowd), so it never judges early.
    cluster_pending_bytes: int = 500_000
    young_account_age_s: int = 30 * 86400
    cluster_convict_score: float = 0.8
    # The same for a prompt template's crowd: lower, because a campaign spread thinly over many
    # templates makes each crowd small, and its verdicts weigh on an account only together, by
    # the account's own templated harvest (models/policy.py; docs/tuning.md).
    template_convict_score: float = 0.6
    # A conviction in force is confirmed at each refresh while its crowd still scores this: the
    # hysteresis that keeps a campaign outlasting the horizon convicted (docs/tuning.md).
    cluster_keep_score: float = 0.6
    verdict_ttl_s: int = 6 * 3600
    # A conviction still warranted is confirmed (re-issued) this often.
    verdict_refresh_s: int = 3600

    # --- event-time alignment of the stages (live = replay) ---
    # Clusters are judged once per tick of a watermark aligned over every account partition:
    # what a cluster has seen by then, and so its verdict, does not depend on the order in which
    # the partitions' summaries happened to arrive.
    cluster_tick_s: int = 60
    # A verdict applies to its accounts this long (event time) after the tick it was issued at,
    # at the same point of each account partition's event stream in the live fleet and in a
    # replay. It must exceed the fleet's round trip (summary -> cluster -> verdict) measured in
    # event time; a verdict that arrives later is applied on arrival and counted as late.
    verdict_delay_s: int = 60
    # An account partition whose clock trails the most advanced one by more than this stops
    # holding the cluster stage back (an idle or stuck partition must not stop detection);
    # its summaries that arrive after their tick was judged are counted as late.
    source_idle_s: int = 900

    # --- account model ---
    account_model_seed: int = 42
    account_model_trees: int = 10
    account_model_height: int = 8
    account_model_window: int = 250
    # The account model's score counts as evidence only above this level (HST scores in [0,1]).
    account_anomaly_floor: float = 0.85

    # --- policy ---
    throttle_score: float = 0.6
    block_score: float = 0.85
    # Hysteresis: an action is lifted only once the score falls below this.
    release_score: float = 0.4
    throttle_ttl_s: int = 1800
    block_ttl_s: int = 6 * 3600
    throttle_rpm: int = 2
    # Prompt content shared with a convicted crowd (templates, a system prompt) and nothing else
    # blocks an account only once it has harvested known templates for this long in a day
    # (`models.behaviour.harvest_span`); before, it throttles. An exam, a class, a workshop, a
    # tutorial or a day-long bootcamp puts the same prompts in many honest hands for an hour to
    # a working day; a campaign goes on. A day (core 0.10): a harvest adding up to a day, over
    # days that follow each other, blocks on content alone; 3 h was core 0.9's (it blocked a
    # bootcamp's cohort), 0 blocks at once as before 0.9 (docs/tuning.md).
    harvest_session_s: int = 24 * 3600
    # ... unless the account harvests at a machine's pace: this many templated high-value
    # requests in one harvest at this many a minute or faster, on average over it
    # (`models.behaviour.machine_paced`; a person reads the answer before the next question).
    # machine_pace_requests 0: pace never blocks. The defaults are models.behaviour's (60 since
    # core 0.18, 20 before: why there).
    machine_pace_requests: int = MACHINE_PACE_REQUESTS
    machine_pace_per_min: float = MACHINE_PACE_PER_MIN
    # Evidence half-life: cluster evidence against an account decays with event time.
    evidence_half_life_s: int = 2 * 3600
    # An account that has been blocked is remembered this long after its last request, so that
    # waiting out a block does not make it a newcomer (its next action needs less corroboration).
    offender_memory_s: int = 24 * 3600
    shadow: bool = False

    def problems(self) -> list[str]:
        """What makes this configuration unusable; empty when it is fine."""
        out = []
        for name, kind in self.field_types().items():
            value = getattr(self, name)
            if kind == "int" and (not isinstance(value, int) or isinstance(value, bool)):
                out.append(f"{name} must be a whole number, got {value!r}")
            elif kind in ("int", "float") and value < 0:
                out.append(f"{name} must not be negative, got {value!r}")
        if out:
            return out
        positive = ("window_s", "idle_expiry_s", "offender_memory_s", "simhash_bands",
                    "cluster_horizon_windows",
                    "cluster_window_s", "cluster_min_accounts", "template_min_accounts",
                    "cluster_member_cap", "cluster_member_bytes",
                    "cluster_pending_bytes",
                    "account_model_trees", "account_model_height", "account_model_window",
                    "throttle_ttl_s", "block_ttl_s", "evidence_half_life_s", "verdict_ttl_s",
                    "verdict_refresh_s", "cluster_tick_s")
        out += [f"{name} must be positive" for name in positive if getattr(self, name) <= 0]
        if self.simhash_bands > 0 and self.simhash_bands not in (4, 8, 16):
            # bands of 16, 8 or 4 bits: whole hex digits, and a bucket space small enough to
            # count in memory (models/templates.py)
            out.append("simhash_bands must be 4, 8 or 16")
        if self.window_s > 0 and self.cluster_window_s % self.window_s:
            out.append("cluster_window_s must be a multiple of window_s")
        scores = ("cluster_convict_score", "template_convict_score", "cluster_keep_score",
                  "account_anomaly_floor",
                  "throttle_score", "block_score", "release_score")
        out += [f"{name} must be within 0..1" for name in scores
                if not 0.0 <= getattr(self, name) <= 1.0]
        if not self.release_score <= self.throttle_score <= self.block_score:
            out.append("scores must satisfy release_score <= throttle_score <= block_score")
        if self.cluster_keep_score > self.cluster_convict_score:
            out.append("cluster_keep_score must not exceed cluster_convict_score")
        if self.account_anomaly_floor >= 1.0:
            out.append("account_anomaly_floor must be below 1")
        return out

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled by value (evaluate and sweep send it to their worker processes): the compiled
        # core's frozen dataclass cannot be rebuilt attribute by attribute, as pickle would.
        return (DetectorConfig, tuple(getattr(self, f.name) for f in dataclasses.fields(self)))

    @property
    def model_version(self) -> str:
        return _model_version(self)

    @classmethod
    def field_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in dataclasses.fields(cls))

    @classmethod
    def field_types(cls) -> dict[str, str]:
        """Each setting's type: "int", "float" or "bool". (A field's annotation is a string in
        the sources, a class in the compiled core.)"""
        return {f.name: f.type if isinstance(f.type, str) else f.type.__name__
                for f in dataclasses.fields(cls)}


@lru_cache(maxsize=64)
def _model_version(cfg: DetectorConfig) -> str:
    # `shadow` does not change what is computed, only whether it is applied. A float setting
    # given as a whole number stays an int in the sources and becomes a float in the compiled
    # core: written as a float here, both builds name the same version.
    floats = {name for name, kind in cfg.field_types().items() if kind == "float"}
    params = {k: float(v) if k in floats else v
              for k, v in sorted(cfg.to_dict().items()) if k != "shadow"}
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    return f"distillguard-{CORE_VERSION}+{digest}"
