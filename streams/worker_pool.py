"""Notice a worker process of a `multiprocessing.Pool` that died.

The pool starts a replacement, but the run the dead worker held is lost and the pool waits for
its result forever: `evaluate` and `sweep` hung when a worker could not start (every
replacement died the same way) and would hang on a worker killed for memory. A `WorkerWatch`
made right after the pool is checked while waiting for results and raises instead.
"""

from __future__ import annotations

import multiprocessing

from streams.replay_source import ReplayError


class WorkerDied(ReplayError):
    pass


class WorkerWatch:
    """The pool's workers, as started. Without `maxtasksperchild` a pool starts a process only
    in place of one that exited before the pool was closed: so any new child process means a
    worker died. (The pool reaps the dead one within ~0.1 s, often before anyone could read
    its exit code: the replacement is what stays visible.)"""

    def __init__(self) -> None:
        self.started = {p.pid for p in multiprocessing.active_children()}

    def check(self) -> None:
        replacements = [p.pid for p in multiprocessing.active_children()
                        if p.pid not in self.started]
        if replacements:
            raise WorkerDied("a worker process died (killed, for memory perhaps, or crashed): "
                             f"the pool started pid {replacements[0]} in its place; the run it "
                             "held is lost")
