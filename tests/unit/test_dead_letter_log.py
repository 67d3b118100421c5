"""The dead-letter log lines are a bounded sample per kind of reason; the count is exact."""

from __future__ import annotations

from typing import Any

from distillguard.streams.worker.dead_letter_log import DeadLetterLog, reason_kind


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def logger() -> tuple[list[tuple[str, dict[str, Any]]], Any]:
    lines: list[tuple[str, dict[str, Any]]] = []
    return lines, lambda event, **fields: lines.append((event, fields))


def test_a_flood_logs_a_burst_per_kind_and_one_count_per_interval() -> None:
    lines, emit = logger()
    clock = Clock()
    log = DeadLetterLog(emit, interval_s=60, burst=5, clock=clock)
    for i in range(10_000):  # a flood of one kind, the numbers in each reason differing
        log.record(f"field 'ts' is {86_000 + i} s past the latest event time accepted",
                   "requests", i % 12, i)
    log.record("record value is not JSON: line 1", "requests", 0, 10_000)
    assert [e for e, _ in lines] == ["dead_letter"] * 6
    clock.now = 61.0
    log.flush()
    summaries = [f for e, f in lines if e == "dead_letters_suppressed"]
    assert [(s["reason_kind"], s["suppressed"]) for s in summaries] == [
        ("field 'ts' is N s past the latest event time accepted", 9_995)]
    assert log.total == 10_001  # the count is exact; every record went to the topic anyway


def test_a_new_interval_logs_in_full_again_and_a_quiet_one_logs_nothing() -> None:
    lines, emit = logger()
    clock = Clock()
    log = DeadLetterLog(emit, interval_s=60, burst=1, clock=clock)
    log.record("no key", "requests", 0, 0)
    log.record("no key", "requests", 0, 1)
    clock.now = 60.0
    log.record("no key", "requests", 0, 2)  # rolls: the count of the last interval, then in full
    assert [(e, f.get("offset", f.get("suppressed"))) for e, f in lines] == [
        ("dead_letter", 0), ("dead_letters_suppressed", 1), ("dead_letter", 2)]
    clock.now = 200.0
    log.flush()  # nothing suppressed since: no line
    assert len(lines) == 3


def test_kinds_differ_by_their_words_not_their_numbers() -> None:
    assert reason_kind("record is 70001 bytes, over the limit of 65536") == \
        reason_kind("record is 99999 bytes, over the limit of 65536")
    assert reason_kind("field 'status' must be 100..599, got 42") != \
        reason_kind("field 'asn' must be 0..4294967295, got -1")
    assert reason_kind("got 1e+300") == "got N"
