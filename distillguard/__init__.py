"""distillguard: the one import package of the project, so that its names cannot collide.

    distillguard.models      models/      the pure detection core
    distillguard.streams     streams/     the worker, the offline tools and the command
    distillguard.simulator   simulator/   labelled traffic for tests, demos and evaluation

The folders stay at the top of the repository, as the design names them; the links beside this
file (`models`, `streams`, `simulator`, and `topics.toml` from deploy/) make them its
subpackages, in a clone and in an installed wheel alike. Nothing else is installed at the top
level, so another distribution's `models` or `streams` package cannot shadow them (docs/
architecture.md, "Installed names"). Import it by these names only: `import models` from a
clone's root would load the core a second time, as other classes (tests/unit/test_layout.py
refuses such an import).
"""
