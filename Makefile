# The two commands of a fresh machine (see README.md):
#   make demo   set up .venv, start the local Kafka broker, run the worker fleet on simulated traffic
#   make test   set up .venv, start the broker if needed, run the whole test suite, stop what it started
.PHONY: demo test unit lint typecheck venv core clean constraints k8s-tools

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

# What tests/unit/test_k8s.py needs beside .venv to check deploy/k8s/ (no cluster runs here):
# kustomize, built from the Go module proxy (needs go), to render the overlays as
# `kubectl apply -k` would; and KEDA's CRDs, from KEDA's Go module, for the schema of the
# ScaledObject and TriggerAuthentication kinds (Kubernetes' own kinds are checked against the
# schemas of the kubernetes-validate package, in the dev extra). Into .tools/, once per version.
KUSTOMIZE_VERSION := v5.8.2
KEDA_VERSION := v2.16.1
TOOLS := $(CURDIR)/.tools
# Go: the machine's own when it is 1.22 or newer (kustomize $(KUSTOMIZE_VERSION) builds with it;
# its v5.8.3 would want a newer toolchain, which the go command would otherwise try to fetch);
# else Go $(GO_VERSION) as the Go module proxy serves it (golang.org/toolchain, what `go` itself
# fetches when it switches toolchains), unpacked into .tools/: a fresh machine without Go, or
# with Debian's 1.19, needs nothing but the proxy (deploy/fetch-go.py).
GO_VERSION := 1.26.8
GO := $(shell go version 2>/dev/null | grep -Eq ' go1[.](2[2-9]|[3-9][0-9])' && command -v go \
        || echo $(TOOLS)/go$(GO_VERSION)/bin/go)
K8S_GO := GOTOOLCHAIN=local GOFLAGS=-mod=mod

k8s-tools: $(TOOLS)/kustomize-$(KUSTOMIZE_VERSION)/kustomize $(TOOLS)/keda-$(KEDA_VERSION)/.crds

$(TOOLS)/go$(GO_VERSION)/bin/go:
	python3 deploy/fetch-go.py $(GO_VERSION) $(TOOLS)/go$(GO_VERSION)

$(TOOLS)/kustomize-$(KUSTOMIZE_VERSION)/kustomize: | $(GO)
	$(K8S_GO) GOBIN=$(@D) $(GO) install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)

$(TOOLS)/keda-$(KEDA_VERSION)/.crds: | $(GO)
	mkdir -p $(@D)
	cd $(@D) && dir=$$($(K8S_GO) $(GO) mod download -json github.com/kedacore/keda/v2@$(KEDA_VERSION) \
	    | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])') \
	  && cp "$$dir"/config/crd/bases/keda.sh_*.yaml . && chmod u+w keda.sh_*.yaml
	touch $@

clean:
	rm -rf $(VENV) .distillguard .pytest_cache
