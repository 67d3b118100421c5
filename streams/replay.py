"""Offline replay: the core over an events file, no broker, for tuning and evaluation.

    events.jsonl ─▶ decode ─▶ models.pipeline.Pipeline ─▶ decisions.jsonl
                       └─▶ bad lines: counted, written to <output>.dead-letter.jsonl
    labels.jsonl ─▶ models.evaluation.Evaluation (fed the same events and decisions) ─▶ table

Progress (events, rate, time left) goes to stderr once a second; Ctrl-C stops cleanly with
what has been written so far flushed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import orjson

from models.config import DetectorConfig
from models.evaluation import Evaluation, Report
from models.events import InvalidEvent, RequestEvent
from models.pipeline import Pipeline
from streams.codec import decode_request_line


class ReplayError(Exception):
    """A replay that cannot run as asked; the message says what to fix."""


@dataclass
class ReplayResult:
    events: int = 0
    bad_lines: int = 0
    decisions: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    report: Report | None = None
    interrupted: bool = False

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def load_labels(path: Path) -> dict[str, tuple[str, str]]:
    """account id -> (label, group), from a labels JSONL file (account-label.schema.json)."""
    labels: dict[str, tuple[str, str]] = {}
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        raise ReplayError(f"labels file {path} does not exist") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
            label = obj["label"]
            if label not in ("attack", "benign"):
                raise ValueError(f"label must be attack or benign, got {label!r}")
            labels[str(obj["account_id"])] = (label, str(obj.get("group") or label))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ReplayError(f"{path}:{n}: not a valid account label ({exc})") from None
    if not labels:
        raise ReplayError(f"labels file {path} has no labels")
    return labels


class Progress:
    """Events, rate and time left on one refreshed stderr line, at most once a second."""

    def __init__(self, total_bytes: int, stream: IO[str] = sys.stderr,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total_bytes = total_bytes
        self.stream = stream
        self.clock = clock
        self.started = clock()
        self.last = self.started
        self.enabled = stream.isatty() or total_bytes > 0

    def update(self, events: int, done_bytes: int, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self.last < 1.0:
            return
        self.last = now
        elapsed = max(1e-9, now - self.started)
        rate = events / elapsed
        left = ""
        if self.total_bytes and done_bytes:
            remaining = elapsed * (self.total_bytes - done_bytes) / done_bytes
            left = f", {remaining:,.0f} s left"
        pct = f" ({done_bytes / self.total_bytes:.0%})" if self.total_bytes else ""
        end = "\n" if force else "\r"
        self.stream.write(f"replay: {events:,} events{pct}, {rate:,.0f} events/s{left}   {end}")
        self.stream.flush()


def read_events(path: Path, bad: IO[bytes] | None,
                counters: ReplayResult) -> Iterator[tuple[RequestEvent, int]]:
    """Events of a JSONL file with the bytes read so far; bad lines go to `bad`."""
    done = 0
    with path.open("rb") as f:
        for n, line in enumerate(f, 1):
            done += len(line)
            if not line.strip():
                continue
            try:
                yield decode_request_line(line.rstrip(b"\n")), done
            except InvalidEvent as exc:
                counters.bad_lines += 1
                if bad is not None:
                    bad.write(orjson.dumps({"reason": exc.reason, "source": str(path),
                                            "line": n, "value": line.decode("utf-8", "replace")})
                              + b"\n")


def replay_file(input_path: Path, output_path: Path | None, cfg: DetectorConfig,
                labels: dict[str, tuple[str, str]] | None = None, partitions: int = 12,
                progress: Progress | None = None) -> ReplayResult:
    if not input_path.is_file():
        raise ReplayError(f"input file {input_path} does not exist")
    result = ReplayResult()
    pipeline = Pipeline(cfg, partitions=partitions)
    evaluation = Evaluation(labels) if labels else None
    out = output_path.open("wb") if output_path else None
    bad_path = output_path.with_suffix(".dead-letter.jsonl") if output_path else None
    bad = bad_path.open("wb") if bad_path else None
    started = time.monotonic()
    done = 0
    try:
        for ev, done in read_events(input_path, bad, result):
            result.events += 1
            if evaluation is not None:
                evaluation.observe_event(ev.account_id, ev.ts)
            for d in pipeline.process(ev):
                result.decisions += 1
                result.actions[d.action] = result.actions.get(d.action, 0) + 1
                if out is not None:
                    out.write(orjson.dumps(d.to_record(time.time())) + b"\n")
                if evaluation is not None:
                    evaluation.observe_decision(d.account_id, d.action, d.event_ts, d.ttl_s,
                                                d.rate_limit_rpm)
            if progress is not None and result.events % 2048 == 0:
                progress.update(result.events, done)
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        result.seconds = time.monotonic() - started
        if out is not None:
            out.close()
        if bad is not None:
            bad.close()
            if bad_path is not None and result.bad_lines == 0:
                bad_path.unlink()
    if progress is not None:
        progress.update(result.events, done, force=True)
    if result.events == 0 and not result.interrupted:
        raise ReplayError(f"input file {input_path} has no valid events "
                          f"({result.bad_lines} bad lines)")
    if evaluation is not None:
        result.report = evaluation.report()
        if not result.report.rows:
            raise ReplayError("the labels match no account of the events: wrong labels file?")
    return result
