"""`python -m distillguard ...` is the `distillguard` command."""

import signal
import sys

# The command's module imports part of the compiled core: a Ctrl-C in the middle of a compiled
# module's initialisation would abort the process (streams/cli/main.py,
# `import_core_holding_ctrl_c`), so it is held back until the imports are done.
_ctrl_c: list[int] = []
_previous = signal.signal(signal.SIGINT, lambda signum, _frame: _ctrl_c.append(signum))
try:
    from distillguard.streams.cli.main import main
finally:
    signal.signal(signal.SIGINT, _previous)
if _ctrl_c:
    sys.exit(130)
sys.exit(main())
