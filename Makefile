# The two commands of a fresh machine (see README.md):
#   make demo   set up .venv, start the local Kafka broker, run the worker fleet on simulated traffic
#   make test   set up .venv, start the broker if needed, run the whole test suite, stop what it started
.PHONY: demo test unit venv clean

VENV := .venv
PY := $(VENV)/bin/python

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e ".[dev]"
	touch $@

demo: venv
	$(VENV)/bin/distillguard demo

test: venv
	bash deploy/run-tests.sh

# The pure tests only: no broker, a few seconds.
unit: venv
	DGTEST_SKIP_BROKER=1 $(PY) -m pytest tests/unit tests/agents -q

clean:
	rm -rf $(VENV) .distillguard .pytest_cache
