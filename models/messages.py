"""The records the stages pass to each other, as plain values with a wire form.

- `ClusterSummary`: account stage -> cluster stage (key: cluster key). What one account did
  under one cluster key in one window, or that it just joined the key (`kind="join"`).
- `SourceTick`: account stage -> every cluster partition. "Account partition `source` has
  reached tick `tick`: every summary it stamped with an earlier tick has been sent." The
  cluster stage judges a tick once every source has passed it (the aligned watermark).
- `AccountVerdict`: cluster stage -> account stage (key: account id). A convicted cluster's
  verdict, re-keyed to each member account.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from distillguard.models.account import Verdict


class ClusterSummary(NamedTuple):
    """An immutable record. A named tuple rather than a frozen dataclass: two or three are made
    per event, and a frozen dataclass's constructor sets each of its 13 fields through
    `object.__setattr__` (2.5 times the cost). (Unlike a plain tuple, a named tuple stays
    tracked by the garbage collector.) Change a field with `_replace`."""

    cluster_key: str
    account_id: str
    kind: str  # "join" (first sight of the key, sent at once) or "window" (a closed window)
    window_start: int
    event_ts: float  # newest event time the summary rests on
    requests: int
    reasoning: int
    high_value: int
    completion_tokens: int
    young: bool
    account_first_ts: float
    # The sending account partition's tick (its newest event time // cluster_tick_s) when the
    # summary was made: the cluster stage folds it in once every partition has passed it.
    tick: int = 0
    # For a template bucket, one prompt (SimHash) the account sent in it: the cluster's
    # signature is made of them. 0 for other keys.
    simhash: int = 0
    # The account's own behaviour so far (models/behaviour.py), so the cluster judges its crowd
    # by its accounts: how much it harvests, how much it rotates its network and client.
    harvest: float = 0.0
    rotation: float = 0.0
    # How much history the account had (models/behaviour.py `history`): too new to judge (0),
    # judged (1), harvesting known templates for longer than a tutorial lasts (2).
    history: int = 0
    # Who stands behind the account (models/crowd_hours.py `org_identity`, `card_identity`): its
    # organisation and its payment instrument, each a 32-bit hash, its own account's when it has
    # none. A system prompt's crowd of established harvesters from many organisations and cards
    # is a campaign's; an honest team shares one organisation and card.
    org: int = 0
    card: int = 0
    # For a system prompt's window summary: the account's high-value requests with reasoning
    # sent with that prompt in the window, 0 unless half of them or more are of known templates
    # (models/crowd_hours.py `window_harvest`; the counters above are the whole window's).
    key_harvest: int = 0

    def to_wire(self) -> list[Any]:
        return list(self)

    @classmethod
    def from_wire(cls, w: Any) -> ClusterSummary:
        # (12, 13, 15 or 16 fields: a summary from a core before template signatures, member
        # behaviour or crowd hours.) `w` is typed Any so the check below, not the compiled
        # core's argument check, refuses a non-list.
        if not isinstance(w, list) or len(w) not in (12, 13, 15, 16, 19):
            raise ValueError("cluster summary must be a list of 12, 13, 15, 16 or 19 fields")
        return cls(*w)


@dataclass(frozen=True, slots=True)
class SourceTick:
    source: int  # the account partition
    tick: int

    def to_wire(self) -> list[Any]:
        return ["tick", self.source, self.tick]

    @classmethod
    def from_wire(cls, w: Any) -> SourceTick:
        if (not isinstance(w, list) or len(w) != 3 or w[0] != "tick"
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in w[1:])):
            raise ValueError('source tick must be ["tick", partition, tick]')
        return cls(w[1], w[2])


@dataclass(frozen=True, slots=True)
class SourceIdle:
    """An account partition with nothing to read for a while (the edge's wall clock): the
    cluster stage stops waiting for it until its next tick (the stated failure of event-time
    alignment: its summaries may then come behind)."""

    source: int

    def to_wire(self) -> list[Any]:
        return ["idle", self.source]

    @classmethod
    def from_wire(cls, w: Any) -> SourceIdle:
        if (not isinstance(w, list) or len(w) != 2 or w[0] != "idle"
                or not isinstance(w[1], int) or isinstance(w[1], bool)):
            raise ValueError('source idle must be ["idle", partition]')
        return cls(w[1])


@dataclass(frozen=True, slots=True)
class JudgedTick:
    """A cluster partition's judged mark (`ClusterPartition.judged_before`), told to the account
    partitions after the verdicts it produced: every verdict it sends later is told at or after
    the end of tick `judged_before`, so an account partition whose event time stays at or below
    judged_before * cluster_tick_s + verdict_delay_s (the lowest over the cluster partitions)
    cannot have a verdict arrive late (event-time alignment, streams/worker/topology.py)."""

    partition: int  # the cluster partition
    judged_before: int

    def to_wire(self) -> list[Any]:
        return ["judged", self.partition, self.judged_before]

    @classmethod
    def from_wire(cls, w: Any) -> JudgedTick:
        if (not isinstance(w, list) or len(w) != 3 or w[0] != "judged"
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in w[1:])):
            raise ValueError('judged tick must be ["judged", partition, judged_before]')
        return cls(w[1], w[2])


def is_judged_tick_wire(w: Any) -> bool:
    """A verdicts-topic item that is a `JudgedTick` (an `AccountVerdict`'s second field is a
    list, a judged tick's an int)."""
    return isinstance(w, list) and len(w) == 3 and w[0] == "judged" and isinstance(w[1], int)


def cluster_record_from_wire(w: Any) -> ClusterSummary | SourceTick | SourceIdle:
    """A record of the cluster stage's input topic: a summary, a source tick or a source idle."""
    if isinstance(w, list) and w[:1] == ["tick"]:
        return SourceTick.from_wire(w)
    if isinstance(w, list) and w[:1] == ["idle"]:
        return SourceIdle.from_wire(w)
    return ClusterSummary.from_wire(w)


# The account id of a verdict broadcast to every account partition (models/convicted.py).
BROADCAST = "*"


@dataclass(frozen=True, slots=True)
class AccountVerdict:
    account_id: str
    verdict: Verdict
    # The end of the tick at which the cluster stage told this account (the verdict's issue
    # time, or later for a member that joined a convicted cluster): it applies at
    # told_ts + verdict_delay_s.
    told_ts: float

    def to_wire(self) -> list[Any]:
        return [self.account_id, self.verdict.to_wire(), self.told_ts]

    @classmethod
    def from_wire(cls, w: Any) -> AccountVerdict:
        if not isinstance(w, list) or len(w) != 3:
            raise ValueError("account verdict must be a list of 3 fields")
        return cls(w[0], Verdict.from_wire(w[1]), w[2])
