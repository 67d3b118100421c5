"""Everything of distillguard around the pure core (`models/`), in four rooms:

    streams/edge/      what the others share: settings, the wire formats, the topics, the
                       control topic's records, logging
    streams/worker/    the Faust worker of the README's diagram: its topology (the two stages
                       and the verdicts' way back), outbox, held writes, partition contexts,
                       health
    streams/offline/   the core over recorded traffic: replay and its sources, evaluate,
                       sweep, diff
    streams/cli/       the `distillguard` command: its subcommands, the demo, the live view

Who may import whom (held by tests/unit/test_layout.py): edge imports only the core; worker
and offline import the core and edge, never each other; cli imports any of them.

Importing it chooses the build of the core this process runs, before any module of the core
loads (models/_build.py): every command, worker and pool process starts here.
"""

from distillguard.models._build import select_build

select_build()
