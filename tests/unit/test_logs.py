"""The libraries' log lines (Faust, aiokafka: the standard library's logging) go through the same
structlog chain as ours (streams/edge/logs.py): JSON when asked, and to a file, not into the
demo's live view, when the demo asks."""

from __future__ import annotations

import json
import logging
import logging.config
from collections.abc import Iterator
from pathlib import Path

import pytest

from distillguard.streams.edge.logs import send_library_logs_to, stdlib_logging_config


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for h in root.handlers:
        if h not in handlers:
            h.close()
    root.handlers[:] = handlers
    root.setLevel(level)


def test_a_library_warning_is_a_json_line_with_level_logger_and_time(capsys) -> None:
    logging.config.dictConfig(stdlib_logging_config("json", "WARNING"))
    fetcher = logging.getLogger("aiokafka.consumer.fetcher")
    fetcher.info("not shown: under the level")
    fetcher.error("Failed fetch offsets from %s: %s", 1, "NotLeaderForPartitionError")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("faust.worker").exception("crashed")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2, lines
    first, second = (json.loads(line) for line in lines)
    assert first["event"] == "Failed fetch offsets from 1: NotLeaderForPartitionError"
    assert first["level"] == "error" and first["logger"] == "aiokafka.consumer.fetcher"
    assert first["timestamp"].endswith("Z")
    assert second["level"] == "error" and "ValueError: boom" in second["exception"]


def test_console_format_renders_key_value_lines(capsys) -> None:
    logging.config.dictConfig(stdlib_logging_config("console", "warning"))  # --loglevel warning
    logging.getLogger("aiokafka").warning("Heartbeat failed")
    out = capsys.readouterr().out
    assert "Heartbeat failed" in out and "aiokafka" in out and "warning" in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out.splitlines()[0])


def test_the_demo_sends_library_lines_to_its_file_and_not_to_the_terminal(
        tmp_path: Path, capsys) -> None:
    log = tmp_path / "demo.log"
    send_library_logs_to(log)
    logging.getLogger("aiokafka.consumer.fetcher").error(
        "Failed fetch offsets from %s: %s", 1, "NotLeaderForPartitionError")
    for h in logging.getLogger().handlers:
        h.flush()
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    (line,) = log.read_text().splitlines()
    assert json.loads(line)["logger"] == "aiokafka.consumer.fetcher"
