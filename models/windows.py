"""Event-time windows and the watermark that closes them.

Windows are tumbling and aligned to the epoch, so every stage and every replay agrees on
where a window starts. The watermark is the newest event time seen on a partition minus the
allowed lateness: a window closes once the watermark passes its end. An event older than
the watermark is late; it is counted, never dropped.

>>> window_start(1000.5, 300)
900
>>> wm = Watermark(allowed_lateness_s=60)
>>> wm.observe(1000.0), wm.value
(False, 940.0)
>>> wm.observe(900.0)  # older than the watermark: late
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def window_start(ts: float, size_s: int) -> int:
    return math.floor(ts / size_s) * size_s


@dataclass(slots=True)
class Watermark:
    """Newest event time seen minus the allowed lateness; only moves forward."""

    allowed_lateness_s: int
    max_ts: float = 0.0

    @property
    def value(self) -> float:
        return self.max_ts - self.allowed_lateness_s

    def observe(self, ts: float) -> bool:
        """Advance with an event's time; return True when that event is late."""
        late = ts < self.value
        self.max_ts = max(self.max_ts, ts)
        return late
