"""Notice a worker process of a `multiprocessing.Pool` that died.

The pool starts a replacement, but the run the dead worker held is lost and the pool waits for
its result forever: `evaluate` and `sweep` hung when a worker could not start (every
replacement died the same way) and would hang on a worker killed for memory. A `WorkerWatch`
made right after the pool is checked while waiting for results and raises instead.
"""

from __future__ import annotations

import multiprocessing

from distillguard.streams.offline.replay_source import ReplayError


class WorkerDied(ReplayError):
    pass


class WorkerWatch:
    """The pool's workers, as started. Without `maxtasksperchild` a pool starts a process only
    in place of one that exited before the pool was closed: so any new child process means a
    worker died. (It watches every child of this process: evaluate and sweep start none but
    their pool's.)"""

    def __init__(self) -> None:
        self.started = {p.pid: p for p in multiprocessing.active_children()}

    def check(self) -> None:
        replacements = [p.pid for p in multiprocessing.active_children()
                        if p.pid not in self.started]
        if not replacements:
            return
        codes = [p.exitcode for p in self.started.values() if p.exitcode not in (None, 0)]
        how = ("killed (for memory, perhaps)" if -9 in codes
               else f"exited with code {codes[0]}" if codes else "died")
        raise WorkerDied(f"a worker process {how}: the pool started pid {replacements[0]} in "
                         "its place; the run it held is lost")
