"""Replay ranges without a broker: time and offset specs, and their resolution to offsets per
partition from what the broker reports (`plan_range`); progress; override files."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from distillguard.models.config import DetectorConfig
from distillguard.streams.edge.settings import SettingsError
from distillguard.streams.offline.replay import Progress, load_override
from distillguard.streams.offline.replay_source import (
    RangeSpec,
    ReplayError,
    parse_offsets,
    parse_time,
    plan_range,
)

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-01-01T00:00:00Z", T0),
    ("2026-01-01T01:00:00+01:00", T0),
    ("2026-01-01 00:30", T0 + 1800),
    ("2026-01-01", T0),
    ("1767225600", T0),
    ("1767225600.25", T0 + 0.25),
    ("now", 5000.0),
    ("-2h", 5000.0 - 7200),
    ("now-90s", 4910.0),
    ("-1d", 5000.0 - 86400),
])
def test_parse_time(text: str, expected: float) -> None:
    assert parse_time(text, now=5000.0) == pytest.approx(expected)


@pytest.mark.parametrize(("text", "match"), [
    ("yesterday", "not ISO 8601"),
    ("1767225600000", "milliseconds"),
    ("-2w", "not ISO 8601"),
])
def test_bad_times_are_errors_that_say_what_is_accepted(text: str, match: str) -> None:
    with pytest.raises(ReplayError, match=match):
        parse_time(text)


def test_parse_offsets() -> None:
    assert parse_offsets("42") == 42
    assert parse_offsets("0:10,11:3") == {0: 10, 11: 3}
    for bad in ("-1", "x", "0:", "0:-5", "1:2:3"):
        with pytest.raises(ReplayError, match="non-negative"):
            parse_offsets(bad)


def test_time_and_offset_ranges_do_not_mix_and_since_precedes_until() -> None:
    with pytest.raises(ReplayError, match="not both"):
        RangeSpec(since=T0, from_offset=3)
    with pytest.raises(ReplayError, match="must be before"):
        RangeSpec(since=T0 + 60, until=T0)


BEGIN = {0: 0, 1: 5, 2: 0}
END = {0: 100, 1: 50, 2: 0}  # partition 2 is empty


def test_whole_topic() -> None:
    r = plan_range("t", RangeSpec(), BEGIN, END)
    assert [(p.partition, p.start, p.end) for p in r.partitions] == [(0, 0, 100), (1, 5, 50),
                                                                       (2, 0, 0)]
    assert r.total == 145 and "145 records on 2 of 3 partitions" in r.describe()


def test_time_range_uses_offsets_for_times_per_partition() -> None:
    # since: first offsets at/after the start; until: first offsets at/after the end
    r = plan_range("t", RangeSpec(since=T0, until=T0 + 600), BEGIN, END,
                   at_since={0: 20, 1: None, 2: None}, at_until={0: 70, 1: None, 2: None})
    # partition 1 has no record at or after the start: nothing from it
    assert [(p.partition, p.start, p.end) for p in r.partitions] == [(0, 20, 70), (1, 50, 50),
                                                                       (2, 0, 0)]
    r = plan_range("t", RangeSpec(since=T0), BEGIN, END, at_since={0: 90, 1: 7, 2: None})
    # no end time: up to the end offsets
    assert [(p.start, p.end) for p in r.partitions] == [(90, 100), (7, 50), (0, 0)]
    r = plan_range("t", RangeSpec(until=T0), BEGIN, END, at_until={0: None, 1: 6, 2: None})
    # no start time: from the earliest retained offsets; no record at/after the end: all
    assert [(p.start, p.end) for p in r.partitions] == [(0, 100), (5, 6), (0, 0)]


def test_offset_range_for_every_partition_or_per_partition() -> None:
    r = plan_range("t", RangeSpec(from_offset=10, to_offset=60), BEGIN, END)
    assert [(p.start, p.end) for p in r.partitions] == [(10, 60), (10, 50), (0, 0)]
    r = plan_range("t", RangeSpec(from_offset={1: 40}), BEGIN, END)
    assert [(p.start, p.end) for p in r.partitions] == [(0, 100), (40, 50), (0, 0)]
    r = plan_range("t", RangeSpec(from_offset={1: 2}), BEGIN, END)
    assert r.partitions[1].start == 5 and "no longer retained" in r.notes[0]


def test_an_empty_range_is_an_error_naming_the_offsets_held() -> None:
    with pytest.raises(ReplayError, match="holds no records") as info:
        plan_range("t", RangeSpec(since=T0), BEGIN, END,
                   at_since={0: None, 1: None, 2: None})
    assert "0:0-100 1:5-50 2:0-0" in str(info.value)
    with pytest.raises(ReplayError, match="is empty"):
        plan_range("t", RangeSpec(), {0: 0}, {0: 0})
    with pytest.raises(ReplayError, match="past its retention"):
        plan_range("t", RangeSpec(), {0: 7}, {0: 7})
    with pytest.raises(ReplayError, match="no partition 9"):
        plan_range("t", RangeSpec(from_offset={9: 1}), BEGIN, END)


def test_progress_shows_events_rate_share_and_time_left() -> None:
    out = io.StringIO()
    now = [0.0]
    progress = Progress(1000, stream=out, clock=lambda: now[0])
    now[0] = 2.0
    progress.update(500, 250)
    line = out.getvalue()
    assert "500 events (25%)" in line and "250 events/s" in line and "6 s left" in line
    now[0] = 2.5
    progress.update(600, 300)  # within a second of the last line: quiet
    assert out.getvalue() == line
    progress.update(1000, 1000, force=True)
    assert out.getvalue().endswith("\n")


def test_override_file_sets_detector_tunables(tmp_path: Path) -> None:
    path = tmp_path / "o.toml"
    path.write_text("[detector]\nblock_score = 0.9\nwindow_s = 180\n")
    cfg = load_override(path, DetectorConfig())
    assert (cfg.block_score, cfg.window_s) == (0.9, 180)
    path.write_text("block_score = 0.95\n")  # top-level keys work too
    assert load_override(path, DetectorConfig()).block_score == 0.95


@pytest.mark.parametrize(("text", "match"), [
    ("[detector]\nblock_scor = 0.9\n", "unknown detector setting 'block_scor'"),
    ("blok = 1\n", "unknown detector setting 'blok'"),
    ("[detector]\nwindow_s = 60\n[other]\nx = 1\n", "only detector tunables"),
    ("window_s = \n", "not valid TOML"),
])
def test_bad_override_files_are_clear_errors(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "o.toml"
    path.write_text(text)
    with pytest.raises((ReplayError, SettingsError), match=match):
        load_override(path, DetectorConfig())
