"""A pool worker that dies is noticed (the pool itself would wait for its run forever)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from multiprocessing.pool import IMapIterator

import pytest

from distillguard.streams.offline.process_pool import WorkerDied, WorkerWatch


def _killed(_: int) -> int:
    os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer would
    return 0


def _fine(x: int) -> int:
    return x * 2


def _wait_for_all(pool_task: IMapIterator[int], watch: WorkerWatch, count: int) -> list[int]:
    results: list[int] = []
    deadline = time.monotonic() + 60
    while len(results) < count:
        assert time.monotonic() < deadline, "the pool hung and the watch said nothing"
        try:
            results.append(pool_task.next(timeout=0.2))
        except multiprocessing.TimeoutError:
            watch.check()
    return results


def test_a_killed_worker_is_reported_instead_of_waited_for() -> None:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        watch = WorkerWatch()
        with pytest.raises(WorkerDied, match=r"worker process killed \(for memory, perhaps\).*the run it held is lost"):
            _wait_for_all(pool.imap_unordered(_killed, [1]), watch, 1)
        pool.terminate()


def test_workers_that_finish_are_not_reported() -> None:
    ctx = multiprocessing.get_context("spawn")
    pool = ctx.Pool(2)
    watch = WorkerWatch()
    try:
        assert sorted(_wait_for_all(pool.imap_unordered(_fine, [1, 2, 3]), watch, 3)) == [2, 4, 6]
        pool.close()
        pool.join()
        watch.check()  # closed: its workers exited with 0
    finally:
        pool.terminate()
