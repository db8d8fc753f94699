# Set-up and everyday commands. Every target creates .venv and installs on first use (idempotent).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test lint demo benchmark gpu-check clean

$(STAMP): requirements.txt requirements-no-deps.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-no-deps.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

DEV_STAMP := $(VENV)/.dev-installed

$(DEV_STAMP): requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(DEV_STAMP)

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: $(STAMP)
	$(PY) -m pytest -q tests

demo: $(STAMP)
	$(PY) scripts/demo.py

benchmark: $(STAMP)
	$(PY) benchmarks/extraction.py
	$(PY) benchmarks/wsi_reading.py
	$(PY) benchmarks/training.py
	$(PY) benchmarks/heatmaps.py
	$(PY) benchmarks/pretraining.py
	$(PY) benchmarks/patch_encoders.py
	$(PY) benchmarks/aggregators.py
	$(PY) benchmarks/contributions.py

gpu-check: $(STAMP)
	$(PY) benchmarks/gpu_check.py

clean:
	rm -rf demo/output benchmarks/results .pytest_cache
