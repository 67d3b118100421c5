"""Logging: one structlog processor chain, configured once at the entry point.

`console` renders key=value lines for people; `json` renders one JSON object per line for log
shippers. Decisions log exactly one line each (`decision` events) with their evidence.

The libraries under the worker (Faust, mode, aiokafka) log through the standard library's
`logging`; their lines go through the same chain (`stdlib_logging_config`: a root handler with
structlog's ProcessorFormatter), so a worker's output is one format, JSON lines included, and a
library's warning carries its level, logger name and time like ours. Faust configures logging
itself when its worker starts (mode's `setup_logging` replaces the root handlers): the worker
hands it this configuration (streams/worker/process.py).
"""

from __future__ import annotations

import logging
import logging.config
import sys
from pathlib import Path
from typing import IO, Any

import structlog

# What every line gets before it is rendered: ours and the libraries' (for theirs, the level and
# time come from the stdlib record; the logger name says which library).
_SHARED: list[structlog.types.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def _renderer(log_format: str, stream: IO[str]) -> structlog.types.Processor:
    if log_format == "json":
        return structlog.processors.JSONRenderer()
    return structlog.dev.ConsoleRenderer(colors=stream.isatty())


def configure_logging(log_format: str = "console", level: int = logging.INFO) -> None:
    """structlog's chain to stdout, and the standard library's root logger through it."""
    structlog.configure(
        processors=[*_SHARED, structlog.processors.format_exc_info,
                    _renderer(log_format, sys.stdout)],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=True,
    )
    logging.config.dictConfig(stdlib_logging_config(log_format, logging.WARNING))


def library_formatter(log_format: str, stream: IO[str] = sys.stdout) -> logging.Formatter:
    """A stdlib formatter that renders a library's record as our chain renders our lines."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *_SHARED],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, _renderer(log_format, stream)],
    )


def stdlib_logging_config(log_format: str, level: int | str,
                          file: Path | None = None) -> dict[str, Any]:
    """A `logging.config.dictConfig` for the libraries' loggers: one root handler, to stdout
    (beside our lines) or to `file`, rendering through the chain; records under `level` are
    dropped by the root logger."""
    if isinstance(level, str):
        level = level.upper()  # dictConfig knows "WARNING", not "warning"
    handler: dict[str, Any] = {"formatter": "structlog"}
    if file is None:
        handler.update({"class": "logging.StreamHandler", "stream": "ext://sys.stdout"})
    else:
        handler.update({"class": "logging.FileHandler", "filename": str(file),
                        "encoding": "utf-8"})
    return {
        "version": 1,
        # Faust's and aiokafka's loggers exist before this runs: they must keep logging.
        "disable_existing_loggers": False,
        "formatters": {"structlog": {"()": library_formatter, "log_format": log_format}},
        "handlers": {"default": handler},
        "root": {"level": level, "handlers": ["default"]},
    }


def send_library_logs_to(file: Path, level: int = logging.INFO) -> None:
    """The libraries' log lines (aiokafka's) to `file`, as JSON lines, none to the terminal:
    for a command that draws a live view on it (`distillguard demo`). Without this, Python
    prints a library's warnings to stderr (its last-resort handler), in the middle of the view:
    `Failed fetch offsets ... NotLeaderForPartitionError` while a new topic's leaders are
    elected at the start of every demo run."""
    logging.config.dictConfig(stdlib_logging_config("json", level, file))
