"""`distillguard worker`: one Faust worker of the consumer fleet.

Before Faust starts, the worker checks what a new user gets wrong most: no broker at the
configured address, or the topics not created. Either is a one-line error with the fix, not a
worker that waits forever. It also creates its tables' changelog topics, which Faust would
otherwise declare itself, racing the other workers of a new fleet (`declare_changelogs`).

Then it hardens the process before the app exists: Faust's pickle codecs are removed from its
codec registry (`forbid_pickle`), so no topic or table can be read with pickle even by mistake;
and it installs `streams.worker.health`: `GET /health` on the worker's web port and a watchdog that
exits with code 3 when the worker holds lagging partitions and makes no progress for
`stall_timeout_s`; and `streams.worker.metrics`: `GET /metrics` (Prometheus) on the same port.

Exit codes: 0 after a clean stop (SIGTERM/SIGINT), 1 on a startup error (no broker, missing
topics), 3 when the watchdog finds the worker stalled; anything else is Faust crashing.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import faust
import structlog

from distillguard.models._build import current_build
from distillguard.streams.edge import gc_tuning
from distillguard.streams.edge.logs import configure_logging, stdlib_logging_config
from distillguard.streams.edge.settings import Settings
from distillguard.streams.edge.topics import check_topics, ensure_topics, wait_for_broker
from distillguard.streams.worker.health import install_health
from distillguard.streams.worker.metrics import install_metrics
from distillguard.streams.worker.topology import changelog_topic_specs, create_app

log = structlog.get_logger("distillguard")


class WorkerError(Exception):
    pass


async def preflight(settings: Settings, timeout_s: float = 30.0) -> None:
    kwargs = settings.aiokafka_kwargs()
    await wait_for_broker(settings.kafka_bootstrap, timeout_s=timeout_s, client_kwargs=kwargs)
    # A topic with another partition count than the settings' is TopicMismatchError: a worker
    # would place verdicts and summaries by the wrong count (streams/edge/topics.py).
    missing = await check_topics(settings.kafka_bootstrap, settings.topics.values(),
                                 client_kwargs=kwargs)
    if missing:
        raise WorkerError(f"topics missing on {settings.kafka_bootstrap}: {', '.join(missing)}; "
                          "create them with `distillguard topics create`")


async def declare_changelogs(settings: Settings, app: faust.App) -> list[str]:
    """Create the tables' changelog topics that do not exist yet, before Faust starts, so every
    worker's first metadata already holds them (why: `changelog_topic_specs`). An existing
    changelog with another partition count (an app id first run with another `partitions`
    setting: changelogs are named after the app id) stops the worker with TopicMismatchError."""
    return await ensure_topics(settings.kafka_bootstrap, changelog_topic_specs(app),
                               replication_factor=app.conf.topic_replication_factor,
                               client_kwargs=settings.aiokafka_kwargs())


PICKLE_CODECS = ("pickle", "pickle_restricted", "pickle_fickling")


def forbid_pickle() -> None:
    """Remove every pickle codec from Faust's registry: using one is then a KeyError.

    distillguard serialises everything with orjson (requests, decisions, internal topics, table
    state, model snapshots); nothing needs pickle, and a pickle codec on a topic that others can
    write is remote code execution (reference/faust-pitfalls.md, 22).
    """
    from faust.serializers import codecs

    for name in PICKLE_CODECS:
        codecs.codecs.pop(name, None)


def source_topics(settings: Settings) -> list[str]:
    """The topics the fleet consumes as a group (their lag is the fleet's lag)."""
    topics = settings.topics
    return [topics[n].name for n in ("requests", "cluster_summaries", "account_verdicts")]


def run_worker(settings: Settings, loglevel: str = "WARNING") -> None:
    loglevel = loglevel.upper()  # the standard library knows "INFO", not "info"
    configure_logging(settings.log_format)
    forbid_pickle()
    asyncio.run(preflight(settings))
    # Faust creates only the last level of its data directory; a fresh checkout has none.
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    gc_tuning.for_the_whole_process()
    app = create_app(settings)
    asyncio.run(declare_changelogs(settings, app))
    progress = install_health(app, source_topics(settings), settings.stall_timeout_s)
    install_metrics(app, progress, settings.detector.model_version)
    log.info("worker_starting", app_id=settings.app_id, bootstrap=settings.kafka_bootstrap,
             model_version=settings.detector.model_version, core=current_build(),
             web_port=settings.web_port,
             shadow=settings.detector.shadow, stall_timeout_s=settings.stall_timeout_s)
    # Faust's worker configures the standard library's logging when it starts: with ours, so
    # that Faust's and aiokafka's lines go through the structlog chain (streams/edge/logs.py).
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False,
                          logging_config=stdlib_logging_config(settings.log_format, loglevel))
    # Faust's terminal spinner, kept at our default WARNING level, sets the root logger to
    # DEBUG so that it spins on every record: each aiokafka debug call then built a LogRecord
    # that no handler wanted (~10% of a busy worker's time under py-spy).
    worker.spinner = None
    logging.getLogger("faust").setLevel(loglevel)
    worker.execute_from_commandline()
