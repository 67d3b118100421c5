"""One hostile request must not change what the detector decides for anyone else.

An event time only moves its partition's watermark forward, so before these bounds one record
stamped in milliseconds, at 1e300 or a day ahead (a gateway's clock gone wrong, a forged record)
made every honest event after it late, for every account of its partition: not one of the small
scenario's 65 decisions was made. An integral 1e300 token count is a JSON integer, and summed
into its crowds' windows it made their figures meaningless and their states unencodable. Now
such a record is refused with its reason (the worker dead-letters it, a replay writes it beside
its output), and nothing else moves: the decisions are the clean replay's, ids included.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from distillguard.models.config import DetectorConfig
from distillguard.models.events import MAX_EVENT_TS, InvalidEvent
from distillguard.simulator import Scenario, write_files
from distillguard.streams.edge.codec import decode_request, decode_request_line, event_time_limit
from distillguard.streams.offline.replay import dead_letter_path, replay_file


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clean")
    write_files(Scenario.small(), out)
    return out / "events.jsonl"


def decisions(path: Path) -> list[tuple[str, str, str]]:
    return [(d["decision_id"], d["account_id"], d["action"])
            for d in map(orjson.loads, path.read_bytes().splitlines())]


def with_bad_records(clean: Path, out: Path, changes: list[dict[str, float]]) -> Path:
    """The clean events with one changed copy of an early event per entry of `changes`, early
    in the run (where a jump of the watermark would spoil the most)."""
    lines = clean.read_bytes().splitlines()
    at = len(lines) // 10
    bad = []
    for i, change in enumerate(changes):
        ev = {**orjson.loads(lines[at]), **change, "event_id": f"bad-{i}"}
        bad.append(orjson.dumps(ev))
    out.write_bytes(b"\n".join([*lines[:at], *bad, *lines[at:]]) + b"\n")
    return out


MILLISECONDS = {"ts": 1_767_300_000_000.0}
HUGE_TIME = {"ts": 1e300}
DAY_AHEAD = {"ts": time.time() + 86_400}
# Inside every bound of the clock, but hours ahead of the file's own time (a helper's attack):
NOW = {"ts": time.time() - 1.0}
RUN_END = {"ts": 1_767_225_600.0 + 40 * 86_400}
HUGE_TOKENS = {"completion_tokens": 1e300}


@pytest.mark.parametrize("case, changes, field", [
    ("ts in milliseconds", [MILLISECONDS], "'ts'"),
    ("ts 1e300", [HUGE_TIME], "'ts'"),
    ("ts a day ahead of the replay", [DAY_AHEAD], "'ts'"),
    ("completion_tokens 1e300", [HUGE_TOKENS], "'completion_tokens'"),
    ("ts at the replay's own time", [NOW], "past the file's time"),
    ("ts weeks after the file's time", [RUN_END], "past the file's time"),
    ("all six", [MILLISECONDS, HUGE_TIME, DAY_AHEAD, HUGE_TOKENS, NOW, RUN_END], ""),
])
def test_a_hostile_record_is_refused_and_changes_no_decision(
        clean: Path, tmp_path: Path, case: str, changes: list[dict[str, float]],
        field: str) -> None:
    cfg = DetectorConfig()
    base = replay_file(clean, tmp_path / "base.jsonl", cfg)
    hostile = with_bad_records(clean, tmp_path / "hostile-in.jsonl", changes)
    result = replay_file(hostile, tmp_path / "hostile.jsonl", cfg)
    assert base.bad_lines == 0 and result.bad_lines == len(changes)
    assert decisions(tmp_path / "hostile.jsonl") == decisions(tmp_path / "base.jsonl")
    refused = [orjson.loads(x) for x in
               dead_letter_path(tmp_path / "hostile.jsonl").read_bytes().splitlines()]
    assert len(refused) == len(changes)
    assert all(field in r["reason"] for r in refused), refused


def test_the_latest_time_accepted_is_the_record_s_own_plus_the_limit() -> None:
    line = orjson.dumps({"event_id": "e", "ts": 1_000_400.0, "account_id": "a", "ip": "10.0.0.1",
                         "model": "m", "prompt_tokens": 1, "completion_tokens": 1, "status": 200,
                         "prompt_simhash": "0" * 16, "reasoning_requested": False})
    # written at 1,000,000 with a limit of 300 s: 400 s ahead is refused, with its reason
    with pytest.raises(InvalidEvent, match="'ts' is 100 s past"):
        decode_request(line, b"a", not_after=event_time_limit(1_000_000.0, 5e9, 300))
    # with 500 s it is accepted; a record without a timestamp is judged by the clock instead
    assert decode_request(line, b"a", not_after=event_time_limit(1_000_000.0, 5e9, 500)).ts \
        == 1_000_400.0
    assert decode_request_line(line, not_after=event_time_limit(None, 1_000_200.0, 300)).ts \
        == 1_000_400.0
    with pytest.raises(InvalidEvent):
        decode_request_line(line, not_after=event_time_limit(None, 1_000_000.0, 300))


def test_the_contract_bound_holds_whatever_the_clock() -> None:
    line = {"event_id": "e", "account_id": "a", "ip": "10.0.0.1", "model": "m",
            "prompt_tokens": 1, "completion_tokens": 1, "status": 200,
            "prompt_simhash": "0" * 16, "reasoning_requested": False}
    assert decode_request_line(orjson.dumps({**line, "ts": MAX_EVENT_TS})).ts == MAX_EVENT_TS
    with pytest.raises(InvalidEvent, match="milliseconds"):
        decode_request_line(orjson.dumps({**line, "ts": 1_767_300_000_000}))
