"""The worker's health verdict (streams/worker/health.py) from what it saw, on a controlled clock."""

from __future__ import annotations

from distillguard.streams.worker.health import Progress


def progress(timeout: float = 60.0) -> Progress:
    p = Progress(source_topics=frozenset({"requests"}), stall_timeout_s=timeout,
                 started_mono=0.0, last_progress_mono=0.0, heartbeat_mono=0.0)
    return p


def lagging(p: Progress, lag: int) -> None:
    p.partitions = {("requests", 0): {"highwater": 100, "committed": 100 - lag, "lag": lag}}


def test_a_fresh_worker_is_starting_then_idle_without_lag() -> None:
    p = progress()
    assert p.evaluate(1.0) == "starting"
    lagging(p, 0)
    p.heartbeat_mono = 100.0
    assert p.evaluate(100.0) == "idle"


def test_commits_are_progress_and_their_absence_with_lag_is_a_stall() -> None:
    p = progress(timeout=60.0)
    lagging(p, 50)
    p.heartbeat_mono = 10.0
    assert p.evaluate(10.0) == "ok"
    p.on_commit({("requests", 0): 60})
    assert p.commits == 1 and p.last_commit_wall is not None
    p.heartbeat_mono = 50.0
    p.last_progress_mono = 10.0
    assert p.evaluate(50.0) == "stalling"  # 40 s without progress, over half the timeout
    p.heartbeat_mono = 71.0
    assert p.evaluate(71.0) == "stalled"


def test_the_same_offsets_committed_again_are_not_progress() -> None:
    p = progress()
    p.on_commit({("requests", 0): 60})
    p.last_progress_mono = 0.0
    p.on_commit({("requests", 0): 60})
    assert p.commits == 1 and p.last_progress_mono == 0.0


def test_events_without_commits_are_not_progress() -> None:
    p = progress(timeout=20.0)
    lagging(p, 10)
    for _ in range(100):
        p.on_event_done("requests")
    p.heartbeat_mono = 30.0
    assert p.evaluate(30.0) == "stalled"
    assert p.report()["events_processed"] == {"requests": 100}


def test_an_idle_worker_is_never_stalled() -> None:
    p = progress(timeout=5.0)
    lagging(p, 0)
    p.heartbeat_mono = 1000.0
    assert p.evaluate(1000.0) == "idle"


def test_a_loop_that_stopped_refreshing_is_stalled() -> None:
    p = progress(timeout=5.0)
    lagging(p, 0)
    p.heartbeat_mono = 0.0
    assert p.evaluate(10.0) == "stalled"


def test_recovery_is_reported_and_not_a_stall_while_it_moves() -> None:
    p = progress(timeout=5.0)
    lagging(p, 10)
    p.recovering = True
    p.heartbeat_mono = 3.0
    assert p.evaluate(3.0) == "recovering"


def test_the_report_names_lag_per_partition_and_the_last_commit() -> None:
    p = progress()
    lagging(p, 7)
    p.on_commit({("requests", 0): 93})
    r = p.report()
    assert r["lag_total"] == 7 and r["partitions"][0]["partition"] == 0
    assert r["last_commit_ts"] is not None and r["commits"] == 1


def test_a_recovery_that_stops_moving_is_a_stall() -> None:
    p = progress(timeout=5.0)
    lagging(p, 10)
    p.recovering = True
    p.heartbeat_mono = 9.0
    assert p.evaluate(9.0) == "stalled"


def test_a_stall_report_says_where_each_task_waits() -> None:
    """The watchdog thread reads the loop's tasks through the loop, down their await chains."""
    import asyncio
    import threading

    from distillguard.streams.worker.health import where_it_waits

    report: dict = {}

    async def waits_for_ever(gate: asyncio.Event) -> None:
        await gate.wait()

    async def outer(gate: asyncio.Event) -> None:
        await waits_for_ever(gate)

    async def main() -> None:
        gate = asyncio.Event()
        task = asyncio.create_task(outer(gate), name="stuck-agent")
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        watcher = threading.Thread(target=lambda: report.update(where_it_waits(loop)))
        watcher.start()
        while watcher.is_alive():
            await asyncio.sleep(0.01)
        gate.set()
        await task

    asyncio.run(main())
    stuck = next(t for t in report["tasks"] if t["task"] == "stuck-agent")
    assert [w.rsplit(" ", 1)[1] for w in stuck["waits"][:3]] == ["outer", "waits_for_ever", "wait"]
    assert "MainThread" in report["threads"]


# ---- readiness (GET /ready): what a Kubernetes readiness probe asks (deploy/k8s/) -------------


def test_ready_only_while_the_worker_moves_its_partitions_forward() -> None:
    from distillguard.streams.worker.health import readiness

    expected = {"starting": 503, "recovering": 503, "ok": 200, "idle": 200, "stalling": 503,
                "stalled": 503}
    for status, code in expected.items():
        p = progress()
        p.status = status
        body, got = readiness(p)
        assert (got, body) == (code, {"status": status, "ready": code == 200}), status


def test_a_recovering_worker_is_alive_but_not_ready_over_http() -> None:
    """/health answers 200 through a recovery (a liveness probe must not restart it), /ready 503
    (a rolling update must not take the next worker down meanwhile); both once it caught up."""
    import asyncio
    from typing import Any

    import faust
    from aiohttp.test_utils import TestClient, TestServer

    from distillguard.streams.worker.health import install_health

    async def main() -> list[tuple[str, int, str]]:
        app = faust.App("readiness-test", broker="kafka://127.0.0.1:1")
        p = install_health(app, ["requests"], stall_timeout_s=60.0, watchdog=False)
        seen = []

        def refresh(_: Any) -> None:  # what the sensors would have seen, on a fixed clock
            p.heartbeat_mono = 10.0
            p.status = p.evaluate(10.0)

        p.refresh = refresh  # type: ignore[method-assign]
        async with TestClient(TestServer(app.web.web_app)) as client:
            for recovering, lag in ((True, 10), (False, 0)):
                p.recovering = recovering
                lagging(p, lag)
                for path in ("/health", "/ready"):
                    response = await client.get(path)
                    seen.append((path, response.status, (await response.json())["status"]))
        return seen

    assert asyncio.run(main()) == [("/health", 200, "recovering"), ("/ready", 503, "recovering"),
                                   ("/health", 200, "idle"), ("/ready", 200, "idle")]
