"""`distillguard status`: a status page of the fleet, for a person, in a browser.

One small aiohttp service (aiohttp comes with Faust) that
- reads the enforcement and dead-letter topics from their start, without a consumer group (the
  reader of `distillguard watch`, streams/cli/watch.py), into a `StatusBoard` of bounded
  aggregates (streams/cli/status_board.py);
- polls the workers' `GET /health` (streams/worker/health.py) for the fleet table;
- serves one self-contained HTML page at `/` (streams/cli/status_page.py: its plots are drawn
  by its own script, nothing is fetched from the internet) and the JSON it polls at
  `/api/status`.

It never stops on a broker or a worker that does not answer: the problem is a banner on the
page and one log line when it starts and when it ends, and the service retries.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import structlog
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition

from distillguard.streams.cli.status_board import StatusBoard
from distillguard.streams.cli.status_page import PAGE
from distillguard.streams.cli.watch import decode_json, read_records, topic_reader
from distillguard.streams.edge.http_service import start_site, stop_on_signals
from distillguard.streams.edge.settings import Settings

log = structlog.get_logger("distillguard")

DEFAULT_PORT = 8088


@dataclass
class StatusOptions:
    port: int = DEFAULT_PORT
    bind: str = "127.0.0.1"
    workers: list[str] = field(default_factory=list)  # /health URLs
    poll_s: float = 2.0
    from_beginning: bool = True
    retry_s: float = 5.0  # wait before reconnecting to a broker that did not answer
    startup_grace_s: float = 30.0  # a worker not answering yet is "waiting", not a problem


def health_url(worker: str) -> str:
    """`host:port`, `http://host:port` or a full URL: the worker's /health URL."""
    url = worker if "://" in worker else f"http://{worker}"
    scheme, _, rest = url.partition("://")
    return url if "/" in rest else f"{scheme}://{rest}/health"


class StatusService:
    def __init__(self, settings: Settings, opts: StatusOptions,
                 board: StatusBoard | None = None) -> None:
        self.settings = settings
        self.opts = opts
        self.board = board or StatusBoard()
        self.roles = {settings.topics["enforcement"].name: "enforcement",
                      settings.topics["dead_letter"].name: "dead_letter"}
        self.read: dict[str, int] = dict.fromkeys(self.roles.values(), 0)
        self.board.topics = {role: {"name": name, "read": 0}
                             for name, role in self.roles.items()}
        self.stopping = False
        self.url = ""
        self.started_mono = time.monotonic()
        self.answered: set[str] = set()  # workers that answered once

    # ---- reading the topics ----------------------------------------------------------------
    def on_record(self, rec: Any) -> None:
        role = self.roles.get(rec.topic, "")
        self.read[role] = self.read.get(role, 0) + 1
        try:
            value = decode_json(rec.value)
        except ValueError:
            self.board.add_unreadable(role)
            return
        if role == "enforcement":
            self.board.add_decision(value)
        else:
            self.board.add_dead_letter(value)

    def report(self, source: str, message: str | None) -> None:
        """A problem on the page's banner; logged once when it starts and once when it ends."""
        if self.board.problem(source, message):
            if message is None:
                log.info("status_problem_resolved", source=source)
            else:
                log.warning("status_problem", source=source, problem=message)

    async def follow_topics(self) -> None:
        """Read both topics for as long as the service runs; reconnect after a failure."""
        bootstrap = self.settings.kafka_bootstrap
        while not self.stopping:
            consumer = topic_reader(
                bootstrap, list(self.roles), self.opts.from_beginning,
                self.settings.aiokafka_kwargs(),
                # a topic created after the start is found within seconds, not 5 minutes
                metadata_max_age_ms=5000, request_timeout_ms=10000)
            try:
                await asyncio.wait_for(consumer.start(), timeout=30)
            except Exception as exc:  # noqa: BLE001 - any failure to connect is the banner's
                self.report("broker", f"Kafka at {bootstrap} does not answer: "
                                      f"{describe(exc)}")
                await _stop_quietly(consumer)
                await asyncio.sleep(self.opts.retry_s)
                continue
            probe = asyncio.create_task(self.probe(consumer))
            try:
                await read_records(consumer, self.on_record, lambda: self.stopping)
            except Exception as exc:  # noqa: BLE001 - shown, then read again from a new reader
                self.report("broker", f"reading {', '.join(self.roles)} failed: "
                                      f"{describe(exc)}")
                if not self.stopping:
                    await asyncio.sleep(self.opts.retry_s)
            finally:
                probe.cancel()
                await _stop_quietly(consumer)
            # A new reader starts over from the topics' start, so the board starts over too
            # (else every record read twice would be counted twice).
            if not self.stopping:
                self.reset_board()

    def reset_board(self) -> None:
        fresh = StatusBoard(self.board.caps, self.board.clock)
        fresh.fleet, fresh.fleet_lag = self.board.fleet, self.board.fleet_lag
        fresh.problems, fresh.errors = self.board.problems, self.board.errors
        fresh.topics = self.board.topics
        self.board = fresh
        self.read = dict.fromkeys(self.roles.values(), 0)

    async def probe(self, consumer: AIOKafkaConsumer) -> None:
        """Every few seconds: does the broker answer, do the topics exist, how far has the
        page read. aiokafka's reader retries a lost broker silently, so this is what notices."""
        bootstrap = self.settings.kafka_bootstrap
        while True:
            # Only the broker's calls in the try: a failure elsewhere (the log's) is not the
            # broker's, and must not be shown as if it were.
            read = dict(self.read)  # before the ends are asked for: read <= on the topic
            try:
                missing = [n for n in self.roles if not consumer.partitions_for_topic(n)]
                tps = [TopicPartition(n, p) for n in self.roles if n not in missing
                       for p in sorted(consumer.partitions_for_topic(n) or ())]
                ends = await asyncio.wait_for(consumer.end_offsets(tps), 10) if tps else {}
                starts = await asyncio.wait_for(consumer.beginning_offsets(tps), 10) \
                    if tps else {}
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a timeout, a lost connection: the banner
                self.report("broker", f"Kafka at {bootstrap} does not answer: {describe(exc)}")
            else:
                self.report("broker", None)
                self.report("topics", None if not missing else
                            f"topic{'s' * (len(missing) > 1)} {', '.join(missing)} not found on "
                            f"{bootstrap} (not created yet, or another run's names?)")
                for name, role in self.roles.items():
                    held = sum(ends[tp] - starts.get(tp, 0) for tp in ends if tp.topic == name)
                    self.board.topics[role] = {"name": name, "read": read.get(role, 0),
                                               "on_topic": None if name in missing else held}
            await asyncio.sleep(self.opts.poll_s)

    # ---- polling the workers ---------------------------------------------------------------
    async def poll_workers(self) -> None:
        timeout = aiohttp.ClientTimeout(total=max(1.0, self.opts.poll_s))
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not self.stopping:
                await asyncio.gather(*(self.poll_worker(session, u) for u in self.opts.workers))
                await asyncio.sleep(self.opts.poll_s)

    async def poll_worker(self, session: aiohttp.ClientSession, url: str) -> None:
        try:
            async with session.get(url) as resp:
                # 503 is a stalled worker: its body still says why
                body = orjson.loads(await resp.read())
            if not isinstance(body, dict):
                raise TypeError("its /health is not a JSON object")
        except Exception as exc:  # noqa: BLE001 - a worker down is a row of the table
            message = describe(exc)
            if url not in self.answered and \
                    time.monotonic() - self.started_mono < self.opts.startup_grace_s:
                # Started beside its workers (the demo), the page asks before they listen:
                # not yet a problem for the banner.
                self.board.set_worker(url, None, message, status="waiting")
                return
            self.board.set_worker(url, None, message)
            self.report(f"worker {url}", f"does not answer ({message})")
        else:
            self.answered.add(url)
            self.board.set_worker(url, body)
            self.report(f"worker {url}", None)

    # ---- the page --------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()

        async def page(request: web.Request) -> web.Response:
            return web.Response(text=PAGE, content_type="text/html", charset="utf-8",
                                headers={"Cache-Control": "no-store"})

        async def api(request: web.Request) -> web.Response:
            body = self.board.snapshot()
            body["service"] = {"bootstrap": self.settings.kafka_bootstrap,
                               "workers": self.opts.workers, "poll_s": self.opts.poll_s}
            return web.Response(body=orjson.dumps(body), content_type="application/json",
                                headers={"Cache-Control": "no-store"})

        app.router.add_get("/", page)
        app.router.add_get("/api/status", api)
        return app

    async def serve(self, ready: Callable[[str], None] = lambda url: None) -> None:
        """Run until cancelled or SIGTERM/SIGINT; `ready(url)` once the page is served."""
        try:
            runner, self.url = await start_site(self.app(), self.opts.bind, self.opts.port)
        except OSError as exc:
            raise StatusError(f"cannot serve the status page on {self.opts.bind}:"
                              f"{self.opts.port}: {exc.strerror or exc} (--port to choose "
                              "another)") from exc
        stop = stop_on_signals()
        tasks = [asyncio.create_task(self.follow_topics()),
                 asyncio.create_task(self.poll_workers())]
        ready(self.url)
        log.info("status_page_serving", url=self.url, workers=self.opts.workers,
                 topics=list(self.roles))
        try:
            await stop.wait()
        finally:
            self.stopping = True
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await runner.cleanup()


class StatusError(Exception):
    pass


def describe(exc: BaseException) -> str:
    """`Type: message`, once (aiokafka's errors already start with their type's name)."""
    text = str(exc)
    name = type(exc).__name__
    return text if text.startswith(name) else f"{name}: {text}".rstrip(": ")


async def _stop_quietly(consumer: AIOKafkaConsumer) -> None:
    try:
        await consumer.stop()
    except Exception:  # noqa: BLE001, S110 - a reader that never started has nothing to stop
        pass


def run_status(settings: Settings, opts: StatusOptions) -> int:
    def ready(url: str) -> None:
        # The line the demo and a person look for; the log line after it says the same.
        print(f"status page: {url}", flush=True)

    started = time.monotonic()
    try:
        asyncio.run(StatusService(settings, opts).serve(ready))
    except KeyboardInterrupt:
        pass
    log.info("status_page_stopped", ran_s=round(time.monotonic() - started, 1))
    return 0
