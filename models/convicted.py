"""Convicted clusters known to an account partition: the hydra response at the first request.

The cluster stage tells the members of a convicted cluster one by one, and a member that joins
later at the end of its tick. To act on a replacement account at its first request, every
convicted verdict is also broadcast to every account partition (`BROADCAST` account), which
keeps it here; an account joining the cluster's key carries the verdict at once.

A broadcast applies from the same event time as any verdict (told + `verdict_delay_s`), so
the first request it is applied to is the same in the live fleet and in a replay. A key keeps
its verdicts until a newer one applies (an upgrade arrives before its time, and until then the
older one stands), and drops them when they expire.

>>> from distillguard.models.account import Verdict
>>> known = ConvictedClusters()
>>> known.add(100.0, Verdict("pay:p", 0.9, 40.0, 5000.0, "cv-1", "why"))
>>> known.applicable("pay:p", 99.0) is None, known.applicable("pay:p", 100.0).verdict_id
(True, 'cv-1')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from distillguard.models.account import Verdict


@dataclass(slots=True)
class ConvictedClusters:
    # cluster key -> [(applies from, verdict)], oldest first, at most a few per key
    by_key: dict[str, list[tuple[float, Verdict]]] = field(default_factory=dict)

    def add(self, apply_ts: float, verdict: Verdict) -> None:
        entries = self.by_key.setdefault(verdict.cluster_key, [])
        if any(v.verdict_id == verdict.verdict_id for _, v in entries):
            return  # told again (a restart re-sent it)
        entries.append((apply_ts, verdict))
        entries.sort(key=lambda e: (e[0], e[1].issued_ts, e[1].verdict_id))

    def applicable(self, key: str, now_ts: float) -> Verdict | None:
        """The newest verdict on `key` in force and applicable at `now_ts`, if any."""
        entries = self.by_key.get(key)
        if not entries:
            return None
        ready = [e for e in entries if e[0] <= now_ts]
        if len(ready) > 1:  # a newer one applies: the older ones are done with
            del entries[:len(ready) - 1]
        verdict = ready[-1][1] if ready else None
        return verdict if verdict is not None and verdict.expires_ts > now_ts else None

    def prune(self, now_ts: float) -> None:
        """Drop the keys whose every verdict has expired."""
        for key in [k for k, es in self.by_key.items()
                    if all(v.expires_ts <= now_ts for _, v in es)]:
            del self.by_key[key]

    def __len__(self) -> int:
        return len(self.by_key)

    def to_wire(self) -> list[Any]:
        return [[at, v.to_wire()] for es in self.by_key.values() for at, v in es]

    @classmethod
    def from_wire(cls, w: list[Any]) -> ConvictedClusters:
        known = cls()
        for at, v in w:
            known.add(float(at), Verdict.from_wire(v))
        return known
