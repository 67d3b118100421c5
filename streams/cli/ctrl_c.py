"""Ctrl-C held back while the compiled core's modules are imported.

A KeyboardInterrupt raised while a compiled (mypyc) module initialises makes it abort the
process ("fatal: out of memory", SIGABRT) instead of raising: seen in CI, a `replay` sent Ctrl-C
while it was still starting on a loaded machine. Inside `ctrl_c_held()` a Ctrl-C is only
recorded; the caller then ends with 130 like any other interrupted command. This module imports
nothing of the core, so `python -m distillguard` can hold Ctrl-C over its own imports with it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def ctrl_c_held() -> Iterator[list[int]]:
    """Yield a list that gets an entry for each Ctrl-C that came while inside (off the main
    thread, where no signal arrives, it stays empty and nothing is changed)."""
    came: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield came
        return
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: came.append(signum))
    try:
        yield came
    finally:
        signal.signal(signal.SIGINT, previous)
