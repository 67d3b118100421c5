"""The log lines of dead letters, bounded: a flood of bad records must not flood the log.

Every refused record still goes whole to the dead-letter topic (that is where nothing is lost);
the log is for a person watching. Per *kind* of reason (the reason with its numbers taken out,
so "field 'ts' is 86100 s past ..." and "... 86200 s past ..." are one kind) the first `burst`
records of an interval are logged in full, the rest counted, and the count logged once per
kind when the interval ends (`dead_letters_suppressed`), by the next dead letter or the
worker's timer, whichever comes first. Every record is also counted by its source topic and a
short code of its reason (`dead_letter_code`): what /metrics exports, where the free-text
reasons (field names, sizes, cluster keys) would make a label of unbounded values.

>>> lines = []
>>> log = DeadLetterLog(lambda event, **kw: lines.append((event, kw)), interval_s=60, burst=2,
...                     clock=iter([0, 1, 2, 3, 4, 61]).__next__)  # start, 4 records, flush
>>> for offset in range(4):
...     log.record("record value is not JSON: 7", "requests", 0, offset)
>>> log.flush()  # at 61 s: the interval is over
>>> [(event, kw.get("offset", kw.get("suppressed"))) for event, kw in lines]
[('dead_letter', 0), ('dead_letter', 1), ('dead_letters_suppressed', 2)]
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:e[+-]?\d+)?")
KIND_CHARS = 120  # a kind is named by this much of its reason


def reason_kind(reason: str) -> str:
    """The reason with its numbers replaced by N: what a summary line counts.

    >>> reason_kind("field 'ts' is 86100 s past the latest event time accepted (1767226260: ...")
    "field 'ts' is N s past the latest event time accepted (N: ..."
    """
    return _NUMBER.sub("N", reason)[:KIND_CHARS]


# (code, what the reason says when it is that code), tried in order: the first match names it.
# The reasons are written by streams/edge/codec.py, models/events.py, streams/edge/signing.py,
# streams/edge/control.py and the agents (topology.py, "internal error ...").
_CODES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("state_too_large", ("StateTooLarge", "over max_state_bytes")),
    ("internal_error", ("internal error",)),
    ("bad_signature", ("unsigned record", "signed by none")),
    ("too_large", ("over the limit", "internal record of")),
    ("no_value", ("tombstone",)),
    ("bad_key", ("has no key", "record key")),
    ("not_json", ("not UTF-8", "not JSON", "must be a JSON object")),
    ("ahead_of_time", ("past the latest event time",)),
    ("bad_field", ("field '", "must be", "must not")),
)
OTHER_CODE = "other"


def dead_letter_code(reason: str) -> str:
    """A short, machine-readable code for a dead letter's reason (a bounded set of values).

    >>> dead_letter_code("record value is not JSON: unexpected character")
    'not_json'
    >>> dead_letter_code("internal error: KeyError: 'x'")
    'internal_error'
    >>> dead_letter_code("something new")
    'other'
    """
    for code, marks in _CODES:
        if any(mark in reason for mark in marks):
            return code
    return OTHER_CODE


class DeadLetterLog:
    """Per interval and kind of reason: `burst` lines in full, then one line with the count."""

    def __init__(self, emit: Callable[..., Any], interval_s: float = 60.0, burst: int = 5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.emit = emit  # a structlog method (log.warning) or any callable(event, **fields)
        self.interval_s = interval_s
        self.burst = burst
        self.clock = clock
        self.started = clock()
        self.logged: Counter[str] = Counter()
        self.suppressed: Counter[str] = Counter()
        self.total = 0  # every dead letter since start, logged or not
        # every dead letter since start by (source topic, dead_letter_code): for /metrics
        self.by_code: Counter[tuple[str, str]] = Counter()

    def record(self, reason: str, topic: str, partition: int, offset: int) -> None:
        self.total += 1
        self.by_code[(topic, dead_letter_code(reason))] += 1
        self._roll(self.clock())
        kind = reason_kind(reason)
        if self.logged[kind] < self.burst:
            self.logged[kind] += 1
            self.emit("dead_letter", reason=reason, topic=topic, partition=partition,
                      offset=offset)
        else:
            self.suppressed[kind] += 1

    def flush(self) -> None:
        """Called by the worker's timer: ends the interval if it is over."""
        self._roll(self.clock())

    def _roll(self, now: float) -> None:
        if now - self.started < self.interval_s:
            return
        for kind, count in sorted(self.suppressed.items()):
            self.emit("dead_letters_suppressed", reason_kind=kind, suppressed=count,
                      interval_s=self.interval_s,
                      hint="every one is on the dead-letter topic; only the log is sampled")
        self.started = now
        self.logged.clear()
        self.suppressed.clear()
