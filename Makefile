# Every target creates .venv when it is missing and installs what it needs,
# so each one works as the first command on a fresh clone.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python

.PHONY: demo test venvs lint typecheck pytest bench test-versions test-all clean

# Installs go through uv when it can be had (parallel downloads, bytecode compiled on every core):
# on one 2-core machine, with nothing cached, the three dev venvs took 62 s with pip and 48 s
# with uv. uv comes from PyPI into .venv by pip; where that fails (no PyPI, only a pip mirror), pip
# does every install itself.
$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "reclaim needs Python 3.11 or newer; run make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --quiet 'uv>=0.4' || echo 'uv could not be installed: pip installs everything (slower)'

# $(call INSTALL,venv,requirement): one requirement into one venv.
INSTALL = if [ -x $(BIN)/uv ]; then $(BIN)/uv pip install --quiet --compile-bytecode --python $(1)/bin/python $(2); \
	else $(1)/bin/python -m pip install --quiet $(2); fi

# One stamp per extra, redone when pyproject.toml changes.
$(VENV)/.installed-base: pyproject.toml | $(PY)
	@$(call INSTALL,$(VENV),-e .)
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	@$(call INSTALL,$(VENV),-e '.[dev]')
	@touch $@

$(VENV)/.installed-bench: pyproject.toml | $(PY)
	@$(call INSTALL,$(VENV),-e '.[bench]')
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

# pytest-xdist workers. CI machines have 2 cores, but a worker spends about half its time
# waiting (on servers, child processes, grace periods, and the lock the database tests take
# turns through, see tests/conftest.py): 4 workers keep 2 cores busy (on one 2-core machine,
# the 3.11 run took 75 s with 4 against 110 s with 2, and 103 s against 140 s under other
# load; sending the database tests to one worker was slower). PYTEST_WORKERS=0 runs
# everything in one process. --dist worksteal: a worker that runs out takes tests queued for
# another, so a long test near the end leaves fewer workers idle (the 3.11 run, two pairs: 90.2 s
# against 91.7 s, and 104.6 s against 123.8 s on a slow spell, with the default --dist load).
PYTEST_WORKERS ?= 4

# Bytecode first (as for bench): under PYTHONDONTWRITEBYTECODE, as CI sets it, every interpreter
# the tests start (pytest runs, reclaim run) would compile reclaim's modules from source again.
pytest: $(VENV)/.installed-dev
	@$(PY) -m compileall -q src
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

test: venvs lint typecheck test-all

# Bytecode first: with PYTHONDONTWRITEBYTECODE set, every import in the timed runs would compile
# reclaim's modules from source (an integration loads when its library is first imported).
bench: $(VENV)/.installed-bench
	@$(PY) -m compileall -q src
	$(PY) benchmarks/run_all.py

# Resource hooks differ between Python versions, so the tests of everything that hooks them
# (leak tracking, scopes, resources, files, sockets, pools) run again under every other
# supported interpreter the machine has (pyenv's 3.12 and 3.13); one that is missing is skipped.
# Tests marked one_python (how pytest loads the plugin, xdist, usage errors: pytest's machinery,
# not the hooks) run under the first only; the plugin's whole file now does (see ONLY_3.11).
VERSION_TESTS := $(sort $(wildcard tests/test_leaks_*.py)) tests/test_scope.py tests/test_scope_async.py \
	tests/test_scope_cpython_parity.py tests/test_resource.py tests/test_files_atomic.py \
	tests/test_files_lock.py tests/test_files_temp.py tests/test_net.py tests/test_pool_basic.py \
	tests/test_pool_async.py tests/test_pool_async_stateful.py

# Where the machine has both 3.12 and 3.13, the tests of what stands on those hooks without being
# one (reclaim run's command line, async runners' frames) and of reclaim's integrations with
# other libraries (each its own module, loaded as its library is imported: Celery's pools,
# gevent, uvloop, the database drivers, HTTP clients ...) run under 3.11 and one of the two,
# chosen so that the two runs take about as long; every hook's own tests run under all three.
# Where one of the two is missing, the other runs them all. dask's run under 3.11 only:
# distributed is installed for the oldest Python only (pyproject.toml says why). So do the pytest
# plugin's: what they test is pytest's machinery and reclaim's blame on top of the hooks, which
# are tested under all three; their second run was 36 s of CPU the 2 cores could not spare.
SECOND_3.12 := tests/test_leaks_cli.py $(foreach name,clients uvloop filelock twisted multiprocess \
	mqtt nats apscheduler psycopg2 zmq django grpc watchdog tornado pyftpdlib,tests/test_leaks_$(name).py)
SECOND_3.13 := tests/test_leaks_callbacks.py $(foreach name,pooled billiard gevent pexpect \
	jupyter drivers dbpools mysql pika aiormq redis watchfiles pycares eventlet execnet amqpstorm,tests/test_leaks_$(name).py)
ONLY_3.11 := tests/test_leaks_dask.py tests/test_leaks_plugin.py
VERSION_TESTS_3.12 := $(filter-out $(SECOND_3.13) $(ONLY_3.11),$(VERSION_TESTS))
VERSION_TESTS_3.13 := $(filter-out $(SECOND_3.12) $(ONLY_3.11),$(VERSION_TESTS))

# The other supported interpreters' venvs: pyenv's (or PATH's) python3.12 / python3.13; one the
# machine lacks is skipped.
OTHER_PYTHONS := 3.12 3.13

.venv-%/.installed-dev: pyproject.toml | $(PY)
	@py=$$(ls -d $$HOME/.pyenv/versions/$*.*/bin/python 2>/dev/null | tail -n 1); \
	[ -n "$$py" ] || py=$$(command -v python$*); \
	if [ -z "$$py" ] || ! "$$py" -c pass 2>/dev/null; then echo "python$* not found: skipped"; exit 0; fi; \
	if [ ! -x .venv-$*/bin/python ]; then \
	  if [ -x $(BIN)/uv ]; then $(BIN)/uv venv --quiet --seed --python "$$py" .venv-$*; \
	  else "$$py" -m venv .venv-$* && .venv-$*/bin/python -m pip install --quiet --upgrade pip; fi; \
	fi && { $(call INSTALL,.venv-$*,-e '.[dev]'); } && touch $@

# Every interpreter's venv at once, once .venv (which holds uv) is there: their downloads overlap.
venvs: | $(PY)
	@$(MAKE) --no-print-directory $(VENV)/.installed-dev & pids=$$!; \
	for v in $(OTHER_PYTHONS); do $(MAKE) --no-print-directory .venv-$$v/.installed-dev & pids="$$pids $$!"; done; \
	rc=0; for p in $$pids; do wait $$p || rc=1; done; exit $$rc

# One interpreter's run (its version; its xdist workers): skipped when the machine lacks it. Its
# tests: its share where every other interpreter is there (its venv made), all of them otherwise.
VERSION_RUN = $(MAKE) --no-print-directory .venv-$(1)/.installed-dev && \
	if [ -f .venv-$(1)/.installed-dev ]; then \
	  echo "== Python $(1)" && .venv-$(1)/bin/python -m compileall -q src && \
	  .venv-$(1)/bin/python -m pytest -n $(2) --dist worksteal $(or $(PYTEST_ARGS),-m 'not one_python' \
	    $$(if $(foreach v,$(OTHER_PYTHONS),[ -f .venv-$(v)/.installed-dev ] &&) true; \
	       then echo '$(VERSION_TESTS_$(1))'; else echo '$(filter-out $(ONLY_3.11),$(VERSION_TESTS))'; fi)); \
	fi

test-versions: venvs
	@$(foreach v,$(OTHER_PYTHONS),{ $(call VERSION_RUN,$(v),$(PYTEST_WORKERS)); } && ) true

# make test's runs: every interpreter's at once, 3.11 with 3 workers and each other with 1. Each
# xdist worker imports and collects the whole suite (about 8 s of CPU here), so 5 workers in all
# instead of 4 per interpreter, one after the other, leave more of the 2 cores to the tests; the
# other interpreters' runs fill the waits and the tail of 3.11's. On one 2-core machine: 175 s
# against 205-215 s one after the other (3 + 2 + 2 workers at once: 206 s). Since, the suite grew
# to about 425 s of CPU: 230-245 s with 2 workers for 3.11 and the plugin's tests run again under
# 3.13; 205 s with 3 workers and the plugin's under 3.11 only, the three runs ending within 6 s of
# each other. 3.11's output comes as it runs; the others' is kept in .venv/test-3.1x.log and shown
# once each has ended.
test-all: venvs
	@$(PY) -m compileall -q src
	@$(foreach v,$(OTHER_PYTHONS),{ $(call VERSION_RUN,$(v),1); } > $(VENV)/test-$(v).log 2>&1 & \
	  pid_$(subst .,_,$(v))=$$!;) \
	rc=0; echo "== Python $$($(PY) -c 'import sys; print(*sys.version_info[:2], sep=".")') ($(OTHER_PYTHONS) at once)"; \
	$(PY) -m pytest -n 3 --dist worksteal $(PYTEST_ARGS) || rc=1; \
	$(foreach v,$(OTHER_PYTHONS),wait $$pid_$(subst .,_,$(v)) || rc=1; cat $(VENV)/test-$(v).log;) \
	exit $$rc

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache build dist
