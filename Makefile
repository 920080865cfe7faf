# Helios — two commands: `make run` and `make test`. Both set everything up on a fresh machine.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTHON ?= python3
export KAFKA_LOCAL_PORT ?= 9092

.PHONY: install system-deps run test test-fast lint bench kafka-start kafka-stop clean dashboards

install: $(STAMP)

# Re-installs only when pyproject.toml changed (a no-op otherwise).
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# Debian packages the tests use (Prometheus, promtool, amtool, kcat, Java, Maven); installed when missing.
system-deps:
	@scripts/system-deps

kafka-start: system-deps
	scripts/kafka-local start

kafka-stop:
	scripts/kafka-local stop

# A demo from a clean slate: the local broker is wiped, started, and stopped again by Ctrl-C.
run: install system-deps
	scripts/run-local --own-broker

test: install system-deps
	scripts/test-all

test-fast: install
	$(PY) -m pytest -m "not slow and not kafka and not pubsub and not prometheus" -q

lint: install
	$(VENV)/bin/ruff check pipeline agents models tests scripts/*.py
	$(VENV)/bin/ruff format --check pipeline agents models tests scripts/*.py
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy scripts/*.py
	$(VENV)/bin/lint-imports
	$(VENV)/bin/bandit -q -c pyproject.toml -r pipeline agents models
	$(VENV)/bin/pip-audit --skip-editable --progress-spinner off

bench: install kafka-start
	$(PY) -m pipeline.bench.perf

dashboards: install
	$(PY) grafana/generate.py

clean:
	scripts/kafka-local stop || true
	rm -rf .local .helios-data .pytest_cache .mypy_cache .ruff_cache
