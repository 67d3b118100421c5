"""Replay: the core over recorded traffic, for tuning and evaluation.

    events.jsonl ─┐                                  ┌─▶ decisions.jsonl          (--output)
    topic range ──┴─▶ decode ─▶ models.pipeline ─────┼─▶ shadow topic, mode shadow (--shadow-topic)
                        │        .Pipeline           └─▶ live enforcement topic   (only with
                        └─▶ bad records: counted,                   --to-enforcement-topic --i-mean-it)
                            <output>.dead-letter.jsonl
    labels (file or topic) ─▶ models.evaluation.Evaluation (same events, same decisions) ─▶ table

Sources are in `streams/offline/replay_source.py` (file, topic time range, topic offset range). By
default a replay writes nothing to Kafka: decisions go to a file or nowhere.

The allow-list (`replay_allow_list`): the settings' allowances, as the live fleet holds them from
its start, so a replay with the live settings gives the live decisions for those accounts. The
control topic's allowances (streams/edge/control.py) are not replayed unless asked for
(`from_control_topic`, `--allow-from-control-topic`): then the topic's current state is read
once and holds from the first event, where the live fleet applied each grant from when it was
written; decisions made before a grant differ.

Progress (events, rate, time left) goes to stderr once a second; Ctrl-C stops cleanly with
what has been written so far flushed (the result says `interrupted`).
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol, Self

import orjson

from distillguard.models.allowlist import AllowList
from distillguard.models.baselines import Baselines
from distillguard.models.config import DetectorConfig
from distillguard.models.decision import Decision
from distillguard.models.evaluation import Evaluation, Report
from distillguard.models.pipeline import Pipeline
from distillguard.streams.edge.codec import encode_decision
from distillguard.streams.edge.gc_tuning import fewer_collections
from distillguard.streams.edge.settings import Settings
from distillguard.streams.offline.replay_source import (
    FileSource,
    KafkaBridge,
    ReplayError,
    read_topic_values,
)

__all__ = ["FileSink", "Progress", "ReplayError", "ReplayResult", "TopicSink",
           "check_labels_match", "load_labels",
           "load_override", "parse_labels", "replay", "replay_allow_list", "replay_file"]

Labels = dict[str, tuple[str, str]]


@dataclass
class ReplayResult:
    events: int = 0
    bad_lines: int = 0  # records that are not valid events (lines of a file, records of a topic)
    decisions: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    report: Report | None = None
    # The same figures for the baselines on the same traffic (with labels, when asked for).
    baselines: dict[str, Report] = field(default_factory=dict)
    interrupted: bool = False

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


# --------------------------------------------------------------------------- labels


def parse_labels(lines: Iterable[tuple[str, bytes | None]], source: str) -> Labels:
    """account id -> (label, group) from account-label.schema.json records.

    `lines` are (position, bytes) pairs; the position names a bad record in the error.
    """
    labels: Labels = {}
    for where, line in lines:
        if not line or not line.strip():
            continue
        try:
            obj = orjson.loads(line)
            label = obj["label"]
            if label not in ("attack", "benign"):
                raise ValueError(f"label must be attack or benign, got {label!r}")
            labels[str(obj["account_id"])] = (label, str(obj.get("group") or label))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ReplayError(f"{where}: not a valid account label ({exc})") from None
    if not labels:
        raise ReplayError(f"{source} has no labels")
    return labels


def load_labels(path: Path) -> Labels:
    """Labels from a JSONL file (one account label per line)."""
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        raise ReplayError(f"labels file {path} does not exist") from None
    return parse_labels(((f"{path}:{n}", line) for n, line in enumerate(lines, 1)),
                        f"labels file {path}")


def labels_from_topic(bridge: KafkaBridge, topic: str) -> Labels:
    """Labels from every record of a topic (values as in a labels file)."""
    return parse_labels(read_topic_values(bridge, topic), f"labels topic {topic}")


def check_labels_match(input_path: Path, labels: Labels) -> None:
    """Fail fast (before a long run) when the labels name none of the input's accounts."""
    if not input_path.is_file():
        return  # a pipe is read once, by the replay itself
    with input_path.open("rb") as f:
        for line in f:
            try:
                if orjson.loads(line).get("account_id") in labels:
                    return
            except (orjson.JSONDecodeError, AttributeError):
                continue
    raise ReplayError(f"the labels match no account of {input_path}: wrong labels file? "
                      f"({len(labels):,} labels)")


# --------------------------------------------------------------------------- settings


def load_override(path: Path, base: DetectorConfig) -> DetectorConfig:
    """Detector tunables from a TOML file over `base`: a `[detector]` table or top-level keys.

    Unknown keys are an error naming the key, the file and the known names.
    """
    from distillguard.streams.edge.settings import (
        _detector,  # the settings loader's own conversion and checks
    )

    if not path.is_file():
        raise ReplayError(f"override file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ReplayError(f"override file {path} is not valid TOML: {exc}") from None
    if "detector" in data:
        extra = sorted(set(data) - {"detector"})
        if extra:
            raise ReplayError(f"override file {path}: only detector tunables may be overridden "
                              f"in a replay; move or drop {', '.join(extra)}")
        data = data["detector"]
        if not isinstance(data, dict):
            raise ReplayError(f"[detector] in {path} must be a table")
    return _detector(data, f"override file {path}", base)


# --------------------------------------------------------------------------- progress


class Progress:
    """Events, rate and time left on one refreshed stderr line, at most once a second.

    `total` is the size of the input in the source's unit (bytes of a file, records of a
    topic range); `done` in `update` counts in the same unit.
    """

    def __init__(self, total: int, stream: IO[str] = sys.stderr,
                 clock: Callable[[], float] = time.monotonic, label: str = "replay") -> None:
        self.total = total
        self.stream = stream
        self.clock = clock
        self.label = label
        self.started = clock()
        self.last = self.started

    def update(self, events: int, done: int, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self.last < 1.0:
            return
        self.last = now
        elapsed = max(1e-9, now - self.started)
        rate = events / elapsed
        left = ""
        if self.total and done:
            remaining = elapsed * max(0, self.total - done) / done
            left = f", {remaining:,.0f} s left"
        pct = f" ({min(1.0, done / self.total):.0%})" if self.total else ""
        end = "\n" if force else "\r"
        self.stream.write(f"{self.label}: {events:,} events{pct}, {rate:,.0f} events/s{left}   "
                          f"{end}")
        self.stream.flush()


# --------------------------------------------------------------------------- sinks


class DecisionSink(Protocol):
    def write(self, decision: Decision) -> None: ...

    def close(self) -> None: ...


class FileSink:
    """Decisions as contract JSON lines (`ts` is the replay's wall clock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.out = path.open("wb")

    def write(self, decision: Decision) -> None:
        self.out.write(orjson.dumps(decision.to_record(time.time())) + b"\n")

    def close(self) -> None:
        self.out.close()


class TopicSink:
    """Decisions to a Kafka topic, keyed by account as the workers publish them."""

    BATCH = 500

    def __init__(self, bridge: KafkaBridge, topic: str) -> None:
        self.bridge = bridge
        self.topic = topic
        self.producer = bridge.producer()
        self.pending: list[Any] = []
        self.sent = 0

    def write(self, decision: Decision) -> None:
        self.pending.append(self.bridge.run(self.producer.send(
            self.topic, encode_decision(decision, time.time()), key=decision.account_id.encode())))
        if len(self.pending) >= self.BATCH:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            import asyncio

            self.bridge.run(asyncio.gather(*self.pending))
            self.sent += len(self.pending)
            self.pending.clear()

    def close(self) -> None:
        self.flush()


# --------------------------------------------------------------------------- the loop


class CoreInterrupts:
    """Ctrl-C held while the core processes an event, raised as soon as it returns.

    A KeyboardInterrupt raised inside the compiled (mypyc) core can abort the process instead
    ("fatal: out of memory", SIGABRT; seen in CI, a replay sent Ctrl-C mid-run on a loaded
    machine), and one raised halfway through an event would leave an account's or a cluster's
    state half-updated. While `holding`, a Ctrl-C is only recorded, and `release()` raises it;
    otherwise it raises at once, so a replay waiting on its input (a pipe, a topic) still stops.
    Off the main thread, where no signal arrives, it changes nothing."""

    def __init__(self) -> None:
        self.holding = False
        self.came = False
        self._previous: Any = None

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_ctrl_c)
        return self

    def __exit__(self, *_: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _on_ctrl_c(self, _signum: int, _frame: object) -> None:
        if not self.holding:
            raise KeyboardInterrupt
        self.came = True

    def release(self) -> None:
        self.holding = False
        if self.came:
            self.came = False
            raise KeyboardInterrupt


class EventSource(Protocol):
    name: str
    total: int

    def events(self, on_bad: Callable[[bytes], None]) -> Iterable[tuple[Any, int]]: ...


def replay(source: EventSource, cfg: DetectorConfig, *, sinks: list[DecisionSink] | None = None,
           labels: Labels | None = None, partitions: int = 12,
           progress: Progress | None = None, dead_letter: Path | None = None,
           pipeline: Pipeline | None = None, baselines: bool = False,
           allow: AllowList | None = None) -> ReplayResult:
    """Run the core over `source`; decisions to `sinks`; bad records to `dead_letter`.

    `pipeline`: a prepared core (tests record what it routes); by default a fresh one, with
    `allow` (`replay_allow_list`; none by default).
    """
    sinks = list(sinks or [])
    result = ReplayResult()
    if pipeline is None:
        pipeline = Pipeline(cfg, partitions=partitions, allow=allow)
    process = pipeline.process
    evaluation = Evaluation(labels) if labels else None
    compared = Baselines(labels, cfg) if labels and baselines else None
    bad = dead_letter.open("wb") if dead_letter is not None else None
    actions = result.actions

    def on_bad(record: bytes) -> None:
        result.bad_lines += 1
        if bad is not None:
            bad.write(record + b"\n")

    started = time.monotonic()
    done = 0
    events = 0
    gc_tuned = fewer_collections()  # left in `finally`, however the loop ends
    gc_tuned.__enter__()
    ctrl_c = CoreInterrupts().__enter__()  # left in `finally` too
    try:
        for ev, done in source.events(on_bad):
            events += 1
            ctrl_c.holding = True
            if evaluation is not None:
                evaluation.observe_event(ev.account_id, ev.ts)
            if compared is not None:
                compared.observe(ev)
            decisions = process(ev)
            if decisions:
                for d in decisions:
                    result.decisions += 1
                    actions[d.action] = actions.get(d.action, 0) + 1
                    for sink in sinks:
                        sink.write(d)
                    if evaluation is not None:
                        evaluation.observe_decision(d.account_id, d.action, d.event_ts, d.ttl_s,
                                                    d.rate_limit_rpm)
            ctrl_c.release()
            if progress is not None and not events & 2047:
                progress.update(events, done)
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        ctrl_c.__exit__()
        gc_tuned.__exit__(None, None, None)
        result.events = events
        result.seconds = time.monotonic() - started
        for sink in sinks:
            sink.close()
        if bad is not None:
            bad.close()
            if dead_letter is not None and result.bad_lines == 0:
                dead_letter.unlink()
    if progress is not None:
        progress.update(result.events, done, force=True)
    if result.events == 0 and not result.interrupted:
        raise ReplayError(f"{source.name} has no valid events ({result.bad_lines} bad "
                          f"{'lines' if isinstance(source, FileSource) else 'records'})")
    if compared is not None:
        result.baselines = compared.reports()
    if evaluation is not None:
        result.report = evaluation.report()
        if not result.report.rows:
            raise ReplayError("the labels match no account of the events: wrong labels file? "
                              f"({len(labels or {}):,} labels, none among the "
                              f"{result.report.unlabelled_accounts:,} accounts replayed)")
    return result


def dead_letter_path(output: Path | None) -> Path | None:
    return output.with_suffix(".dead-letter.jsonl") if output is not None else None


def replay_file(input_path: Path, output_path: Path | None, cfg: DetectorConfig,
                labels: Labels | None = None, partitions: int = 12,
                progress: Progress | None = None,
                allow: AllowList | None = None) -> ReplayResult:
    """The core over an events file; decisions to `output_path` (bad lines beside it)."""
    source = FileSource(input_path)
    sinks: list[DecisionSink] = [FileSink(output_path)] if output_path is not None else []
    return replay(source, cfg, sinks=sinks, labels=labels, partitions=partitions,
                  progress=progress, dead_letter=dead_letter_path(output_path), allow=allow)


def replay_allow_list(settings: Settings, from_control_topic: bool = False,
                      note: IO[str] | None = None) -> AllowList:
    """The allow-list of a replay: the settings', and with `from_control_topic` the control
    topic's current grants too (read once, now; the settings' hold over the topic's, as in a
    worker). A line on `note` (default stderr) says what it holds."""
    import asyncio

    from distillguard.streams.edge.control import FULL, GRANTED, AllowListKeeper, read_control_state

    allow = settings.allow_list()
    if not from_control_topic:
        return allow
    topic = settings.topics["control"].name
    state = asyncio.run(read_control_state(settings))  # ControlTopicError: one line, exit 2
    keeper = AllowListKeeper(allow, settings.allowances())
    outcomes = Counter(keeper.apply(r) for r in state.records.values())
    extra = [f"{outcomes[FULL]} refused (the allow-list is full)" if outcomes[FULL] else "",
             f"{len(state.bad)} bad records skipped" if state.bad else ""]
    (note or sys.stderr).write(
        f"allow-list: {len(settings.allowances())} from the settings, {outcomes[GRANTED]} from "
        f"the control topic {topic} as of now (applied from the first event)"
        + "".join(f", {e}" for e in extra if e) + "\n")
    return allow


def shadow_config(cfg: DetectorConfig) -> DetectorConfig:
    """The same settings with decisions marked `shadow` (the model version does not change)."""
    return dataclasses.replace(cfg, shadow=True)
