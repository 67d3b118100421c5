"""`python -m distillguard ...` is the `distillguard` command."""

import sys

from distillguard.streams.cli.main import main

sys.exit(main())
