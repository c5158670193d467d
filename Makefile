# The two commands a fresh machine needs (see README.md):
#   make demo   - local control plane + operator + an autoscaled InferenceService under load
#   make test   - lint, then every test: unit tier, then the e2e suite on a real control plane
# Both create .venv and build the Kubernetes binaries once (cached in ~/.cache/tritonop).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test unit e2e lint setup binaries clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,triton]'
	touch $(STAMP)

setup: $(STAMP)

binaries: $(STAMP)
	$(PY) e2e/cluster/build

demo: setup binaries
	$(PY) -m e2e.demo

# Lint first: a type error or an unformatted file fails in seconds, before the binaries build.
test: lint binaries
	$(PY) -m pytest tests e2e -q -p no:cacheprovider --durations=20

# The unit tier needs no Kubernetes binaries (the chart tests that run helm are in e2e/).
unit: setup
	$(PY) -m pytest tests -q

e2e: setup binaries
	$(PY) -m pytest e2e -q -p no:cacheprovider

# Style, complexity (C901), formatting and mypy --strict over the package, the tests and e2e/.
lint: setup
	$(PY) -m ruff check operator tests e2e
	$(PY) -m ruff format --check operator tests e2e
	$(PY) -m mypy operator/tritonop tests e2e

clean:
	rm -rf $(VENV)
