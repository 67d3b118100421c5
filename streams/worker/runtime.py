"""What a worker keeps beside Faust's tables, in one typed place.

`create_app` (topology.py) builds the agents and, with them, the things the rest of the worker
must reach: what is held until the next commit, the counters of where live processing strays
from a replay, the dead-letter log, the allow-list and its control-topic reader. They travel on
the app as one `WorkerRuntime` (`app.runtime`), read by /health (health.py), /metrics
(metrics.py), by the commit hook and by tests, instead of as loose attributes of Faust's App.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import faust

from distillguard.models.allowlist import AllowList
from distillguard.models.operator import OperatorDecisions
from distillguard.streams.edge.control import ControlReader
from distillguard.streams.worker.dead_letter_log import DeadLetterLog
from distillguard.streams.worker.idle_states import IdleStates
from distillguard.streams.worker.metrics import WorkerTallies


@dataclass(frozen=True)
class WorkerRuntime:
    send_held: Callable[[], Awaitable[None]]
    """Send everything held: the records between the stages and the tables' changelog records."""
    held: Callable[[], dict[str, int]]
    """How many records of each kind are held right now (shown by /health)."""
    core_counts: Counter[str]
    """Where this worker strayed from what a replay computes: late verdicts, behind summaries."""
    dead_letters: DeadLetterLog
    allow: AllowList
    control: ControlReader
    tallies: WorkerTallies
    """What /metrics counts as it happens: decisions, their latency, processing times."""
    operator: OperatorDecisions
    """Operators' manual decisions from the control topic (models/operator.py)."""
    states: dict[str, IdleStates] = field(default_factory=dict)
    """The tables whose idle states are held encoded (idle_states.py), by table name: read a
    state through these (`get`), never the table, which may hold its bytes."""


class WorkerApp(faust.App):
    """Faust's App with the worker's runtime attached once the agents are built."""

    runtime: WorkerRuntime | None = None
