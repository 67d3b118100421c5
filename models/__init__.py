"""distillguard's pure detection core.

Event types, event-time windows, aggregates, features, detectors and policy. No I/O, no
environment, no wall clock, and nothing from Kafka, Faust or asyncio: the Faust agents in
`streams/` and offline replay drive the same code.

The one exception is `models/_build.py`, run here before any other module loads: it puts the
compiled build of these modules first when one matches the sources (`make core`).
"""

from models._build import activate

# "compiled" or "interpreted": which build of the core this process runs (said in logs and
# benchmark output).
CORE_BUILD = activate(__path__)
