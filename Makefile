# Two entry points, both idempotent: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint preflight clean browser sweep soak bench

setup: $(STAMP)
	@bash scripts/install-timescaledb.sh

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

# A throwaway TimescaleDB seeded like a real MS5.0 site, then every suite against it.
demo: setup
	@$(PY) -m pytest suites --demo $(ARGS)

# The project's own tests, after the lint.
test: setup browser lint
	@$(PY) -m pytest tests $(ARGS)

# ruff (lint and format) over the code, and mypy over the packages (pyproject.toml holds their settings).
LINTED := tsmigrate tsmigrate_tools fixtures suites tests conftest.py
lint: setup
	@$(VENV)/bin/ruff check $(LINTED)
	@$(VENV)/bin/ruff format --check $(LINTED)
	@$(VENV)/bin/mypy

# Kill sweep: SIGKILL a full run at N moments (default 10) on fresh legacy copies; each rerun must end
# SUCCESS with every legacy row intact. `make sweep N=5 ARGS='--scale tiny'`.
sweep: setup
	@$(VENV)/bin/tsmigrate sweep --points $(or $(N),10) $(ARGS)

# A full run while the application inserts every 100 ms (`make soak ROWS=2500000 ARGS='--fence off --fail'`).
soak: setup
	@$(VENV)/bin/tsmigrate soak --rows $(or $(ROWS),2500000) $(ARGS)

# Conversions (offline and online, with a writer) at each density, backup, inserts and equality pass, each beside
# its limit measured in the same run (`make bench ROWS=2500000 ARGS='--tenfold --readme README.md'`: also at 10x
# the rows, and the README's table rewritten).
bench: setup
	@$(VENV)/bin/tsmigrate bench --rows $(or $(ROWS),2500000) $(ARGS)

# Debian's chromium, for the test that renders a report in a headless browser. Part of `make test`
# only (not the demo); where it cannot be installed the test skips and says why.
browser:
	@test -x /usr/bin/chromium || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  { $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "make browser: chromium could not be installed; the browser test will skip"; }

clean:
	rm -rf $(VENV) reports/*.html reports/*.json reports/*.xml
