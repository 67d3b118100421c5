# The two commands of a fresh machine (see README.md):
#   make demo   set up .venv, start the local Kafka broker, run the worker fleet on simulated traffic
#   make test   set up .venv, start the broker if needed, run the whole test suite, stop what it started
.PHONY: demo test unit lint typecheck venv core clean constraints

VENV := .venv
PY := $(VENV)/bin/python

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

# The exact versions every install uses (constraints.txt), taken anew from the newest releases
# pyproject.toml allows, in a scratch environment; review the diff, then run make test.
constraints:
	rm -rf .constraints-venv && python3 -m venv .constraints-venv
	.constraints-venv/bin/pip install --quiet --upgrade pip
	.constraints-venv/bin/pip install --quiet -e ".[dev]"
	{ sed -n '/^#/p' constraints.txt; .constraints-venv/bin/pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt && rm -rf .constraints-venv

# The detection core compiled with mypyc (~1.5x faster, same decisions): ~20 s after each change
# of models/, nothing otherwise. Without it the core runs from its sources
# (DISTILLGUARD_CORE=interpreted skips it; see models/_build.py).
core: venv
	$(PY) deploy/compile_core.py

demo: venv core
	$(VENV)/bin/distillguard demo

test: venv core
	bash deploy/run-tests.sh

# The pure tests only: no broker, a few seconds.
unit: venv
	DGTEST_SKIP_BROKER=1 $(PY) -m pytest tests/unit tests/agents -q

# Style and types, as CI runs them before the tests: ruff over the code, mypy strict over the core.
lint: venv
	$(VENV)/bin/ruff check models streams simulator tests bench deploy distillguard/__init__.py distillguard/__main__.py

typecheck: venv
	$(VENV)/bin/mypy distillguard/models

clean:
	rm -rf $(VENV) .distillguard .pytest_cache
