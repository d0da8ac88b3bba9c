# Every target creates .venv when it is missing and installs what it needs,
# so each one works as the first command on a fresh clone.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python

.PHONY: demo test lint typecheck pytest bench test-versions clean

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "reclaim needs Python 3.11 or newer; run make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# One stamp per extra, redone when pyproject.toml changes.
$(VENV)/.installed-base: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

$(VENV)/.installed-bench: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[bench]'
	@touch $@

demo: $(VENV)/.installed-base
	@echo '$$ reclaim run examples/leaky_service.py'
	@$(BIN)/reclaim run examples/leaky_service.py
	@echo; echo 'Its twin with every resource handled right reports no leaks: $(BIN)/reclaim run examples/clean_service.py'
	@echo 'Scope, an ExitStack that loses no error, at work:                 $(PY) examples/scope_demo.py'

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy --strict src/

pytest: $(VENV)/.installed-dev
	$(PY) -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

bench: $(VENV)/.installed-bench
	$(PY) benchmarks/run_all.py

# Run the suite under every other interpreter pyenv has (3.12, 3.13): resource hooks differ between versions.
test-versions: $(VENV)/.installed-dev
	@for v in 3.12 3.13; do \
	  py=$$(ls -d $$HOME/.pyenv/versions/$$v.*/bin/python 2>/dev/null | tail -n 1); \
	  [ -n "$$py" ] || py=$$(command -v python$$v); \
	  if [ -z "$$py" ] || ! "$$py" -c pass 2>/dev/null; then echo "python$$v not found: skipped"; continue; fi; \
	  [ -x .venv-$$v/bin/python ] || $$py -m venv .venv-$$v; \
	  .venv-$$v/bin/python -m pip install --quiet -e '.[dev]' && \
	  .venv-$$v/bin/python -m pytest $(PYTEST_ARGS) || exit 1; \
	done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache build dist
