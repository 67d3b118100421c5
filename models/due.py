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


@dataclass(slots=True)
class DueIndex:
    heap: list[tuple[float, str]] = field(default_factory=list)

    def register(self, key: str, due_ts: float) -> None:
        heapq.heappush(self.heap, (due_ts, key))

    def next_due(self) -> float | None:
        return self.heap[0][0] if self.heap else None

    def pop_due(self, now_ts: float) -> list[str]:
        """Keys due at or before `now_ts`, each once, in due order (ties by key)."""
        heap = self.heap
        if not heap or heap[0][0] > now_ts:
            return []  # the common case (asked at every event): nothing due yet
        out: list[str] = []
        seen: set[str] = set()
        while heap and heap[0][0] <= now_ts:
            _, key = heapq.heappop(heap)
            if key not in seen:
                seen.add(key)
                out.append(key)
        return out

    def __len__(self) -> int:
        return len(self.heap)
