# Two entry points, both idempotent: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup demo test preflight clean

setup: $(STAMP)
	@bash scripts/install-timescaledb.sh

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e .
	@touch $(STAMP)

# A throwaway TimescaleDB seeded like a real MS5.0 site, then every suite against it.
demo: setup
	@$(PY) -m pytest suites --demo $(ARGS)

# The project's own tests.
test: setup
	@$(PY) -m pytest tests $(ARGS)

clean:
	rm -rf $(VENV) reports/*.html reports/*.json reports/*.xml
