"""`distillguard worker`: one Faust worker of the consumer fleet.

Before Faust starts, the worker checks what a new user gets wrong most: no broker at the
configured address, or the topics not created. Either is a one-line error with the fix, not a
worker that waits forever.
"""

from __future__ import annotations

import asyncio
import logging

import faust
import structlog

from streams.logs import configure_logging
from streams.settings import Settings
from streams.topics import check_topics_exist, wait_for_broker
from streams.topology import create_app

log = structlog.get_logger("distillguard")


class WorkerError(Exception):
    pass


async def preflight(settings: Settings, timeout_s: float = 30.0) -> None:
    kwargs = settings.aiokafka_kwargs()
    await wait_for_broker(settings.kafka_bootstrap, timeout_s=timeout_s, client_kwargs=kwargs)
    missing = await check_topics_exist(settings.kafka_bootstrap,
                                       [t.name for t in settings.topics.values()],
                                       client_kwargs=kwargs)
    if missing:
        raise WorkerError(f"topics missing on {settings.kafka_bootstrap}: {', '.join(missing)}; "
                          "create them with `distillguard topics create`")


def run_worker(settings: Settings, loglevel: str = "WARNING") -> None:
    configure_logging(settings.log_format)
    asyncio.run(preflight(settings))
    app = create_app(settings)
    log.info("worker_starting", app_id=settings.app_id, bootstrap=settings.kafka_bootstrap,
             model_version=settings.detector.model_version, web_port=settings.web_port,
             shadow=settings.detector.shadow)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False,
                          logging_config=None)
    logging.getLogger("faust").setLevel(loglevel)
    worker.execute_from_commandline()
