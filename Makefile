# Every target bootstraps .venv itself (idempotent: re-installs only when pyproject.toml changes).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv demo test lint bench sync clean browser

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(VENV)/bin/memgang demo

lint: venv
	$(PY) tools/gen_sync.py --check
	$(VENV)/bin/ruff check memgang tests benchmarks tools
	$(VENV)/bin/mypy

# headless Chromium for the dashboard's browser tests (Debian's package; idempotent)
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)

test: lint browser
	$(VENV)/bin/pytest -q

# every benchmark prints its table of ratios; the lock and demo figures also become the
# README's charts (docs/img/*.png)
bench: venv
	mkdir -p bench-results docs/img
	$(PY) -m benchmarks.throughput
	$(PY) -m benchmarks.events
	$(PY) -m benchmarks.locks --save-json bench-results/locks.json
	$(PY) -m benchmarks.demo --save-json bench-results/demo.json
	$(PY) -m benchmarks.charts --locks bench-results/locks.json \
		--demo bench-results/demo.json --out docs/img

sync: venv
	$(PY) tools/gen_sync.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
