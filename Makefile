# Set-up and everyday commands. Every target creates .venv and installs on first use (idempotent).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install viewer-assets test lint demo benchmark gpu-check clean

$(STAMP): requirements.txt requirements-no-deps.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-no-deps.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory viewer-assets || \
		echo "the viewer's assets were not installed: view_slides.py needs 'make viewer-assets' to succeed"; \
	else echo "npm not found: view_slides.py needs 'make viewer-assets' (OpenSeadragon from the npm registry)"; fi

# OpenSeadragon for view_slides.py, pinned by viewer_assets/package-lock.json, copied into the package (gitignored)
VIEWER_STATIC := source/viewer/static/openseadragon
OSD_BUILD := viewer_assets/node_modules/openseadragon/build/openseadragon

$(VIEWER_STATIC)/openseadragon.min.js: viewer_assets/package.json viewer_assets/package-lock.json
	cd viewer_assets && npm ci --no-audit --no-fund --loglevel=error
	rm -rf $(VIEWER_STATIC).partial
	mkdir -p $(VIEWER_STATIC).partial
	cp -r $(OSD_BUILD)/openseadragon.min.js $(OSD_BUILD)/images viewer_assets/node_modules/openseadragon/LICENSE.txt \
		$(VIEWER_STATIC).partial/
	rm -rf $(VIEWER_STATIC) && mv $(VIEWER_STATIC).partial $(VIEWER_STATIC)

viewer-assets: $(VIEWER_STATIC)/openseadragon.min.js

DEV_STAMP := $(VENV)/.dev-installed

$(DEV_STAMP): requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(DEV_STAMP)

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: $(STAMP) viewer-assets
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
