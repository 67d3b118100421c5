"""When each key next needs attention in event time: a window to close, idle state to expire.

One `DueIndex` per partition of a stage. Entries are hints: a key may be registered several
times, and whoever pops it checks the key's state before acting, so stale entries cost a pop
and nothing else. The index is in memory; after a restart the edge re-registers every state
it recovers (`register`), which is what makes it safe to lose.

>>> due = DueIndex()
>>> due.register("b", 20.0); due.register("a", 10.0); due.register("c", 30.0)
>>> due.pop_due(25.0)
['a', 'b']
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Final

# How many due keys a driver works through before it may flush (`Pipeline.between_slices`, the
# worker's account and cluster stages). Windows close on aligned boundaries, so one event can
# make every account its partition saw in the window due at once (~145 per partition in the
# default simulation, 83,000 at a million accounts a window over 12 partitions); each is an
# object until the next flush lets it go back to its bytes. Flushing every SLICE keeps what a
# window close holds at once bounded (bench/idle_memory.py: at 100,000 accounts the peak RSS
# fell from 1,219 MB to 602 MB); the keys are still all worked through in the same step, in the
# same order, so the decisions are the same.
SLICE: Final = 1_000


@dataclass(slots=True)
class DueIndex:
    # The keys registered at each due time, and a heap of those due times. Many keys share a
    # due time (windows close on aligned boundaries, ticks are whole numbers): registering one
    # is then a list append, not a push onto a heap of (time, key) pairs that compares key
    # strings at every tie.
    keys_at: dict[float, list[str]] = field(default_factory=dict)
    times: list[float] = field(default_factory=list)

    def register(self, key: str, due_ts: float) -> None:
        keys = self.keys_at.get(due_ts)
        if keys is None:
            self.keys_at[due_ts] = [key]
            heapq.heappush(self.times, due_ts)
        else:
            keys.append(key)

    def next_due(self) -> float | None:
        return self.times[0] if self.times else None

    def pop_due(self, now_ts: float) -> list[str]:
        """Keys due at or before `now_ts`, each once, in due order (ties by key)."""
        times = self.times
        if not times or times[0] > now_ts:
            return []  # the common case (asked at every event): nothing due yet
        out: list[str] = []
        seen: set[str] = set()
        keys_at = self.keys_at
        while times and times[0] <= now_ts:
            for key in sorted(keys_at.pop(heapq.heappop(times))):
                if key not in seen:
                    seen.add(key)
                    out.append(key)
        return out

    def __len__(self) -> int:
        return sum(len(keys) for keys in self.keys_at.values())
