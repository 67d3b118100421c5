"""`python -m distillguard ...` is the `distillguard` command."""

import sys

from distillguard.streams.cli.ctrl_c import ctrl_c_held

# The command's module imports part of the compiled core: a Ctrl-C in the middle of a compiled
# module's initialisation would abort the process, so it is held back until the imports are done.
with ctrl_c_held() as _ctrl_c:
    from distillguard.streams.cli.main import main
if _ctrl_c:
    sys.exit(130)
sys.exit(main())
