# Two commands matter: `make demo` and `make test`. Each sets up what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint unit integration bench clean help

help:
	@echo "make demo   - embedded PostgreSQL + sample data + a timeline (see README)"
	@echo "make test   - the whole test suite on a real PostgreSQL, and lint beside it"
	@echo "make lint   - ruff + mypy --strict"
	@echo "make bench  - benchmarks that print numbers"

# The environment may forbid bytecode files (PYTHONDONTWRITEBYTECODE); every test process
# would then compile the whole dependency tree again, and pytest could not cache its
# rewritten test modules. The venv is ours: let Python cache there.
unexport PYTHONDONTWRITEBYTECODE

# setup.py and the C extensions: an editable install builds them in place. uv resolves and
# installs the ~150 packages in a fraction of pip's time (measured: 94 s of CPU against 18 s);
# it is itself installed from the registry by the venv's pip.
$(STAMP): pyproject.toml setup.py $(wildcard auditor/*/_*.c)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "auditor needs Python 3.11 or newer; set PYTHON=python3.x")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet uv
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN)/uv pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/auditor demo

lint: $(STAMP)
	$(BIN)/ruff check auditor web tests bench migrations
	$(BIN)/ruff format --check auditor web tests bench migrations
	$(BIN)/mypy auditor web

# Files run in parallel (-n): the suite mostly waits on servers and subprocesses, not the CPU.
# Whole files go to one process each (module fixtures are shared), the longest first
# (tests/conftest.py orders them; xdist's reorder by number of tests would undo that).
TEST_PROCESSES ?= 3

# Lint runs beside the suite, niced: the test processes mostly wait on servers, and lint (mypy
# on a cold cache above all) fills those waits instead of adding a minute before them. Its
# output follows the tests'; either failing fails the target.
test: $(STAMP) tests/js/node_modules
	@nice -n 10 $(MAKE) --no-print-directory lint >$(VENV)/lint.log 2>&1 & lint=$$!; \
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) --dist loadfile --no-loadscope-reorder; tests=$$?; \
	wait $$lint; linted=$$?; \
	echo "--- make lint, run beside the tests (exit $$linted) ---"; cat $(VENV)/lint.log; \
	test $$tests -eq 0 && test $$linted -eq 0

# The official CometD JavaScript client for the simulator conformance test (node >= 18).
tests/js/node_modules: $(STAMP) tests/js/package.json tests/js/package-lock.json
	cd tests/js && PATH="$(CURDIR)/$(BIN):$$PATH" npm ci --no-audit --no-fund
	touch tests/js/node_modules

bench: $(STAMP)
	$(BIN)/python bench/store.py
	$(BIN)/python bench/simulator.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/pages_live.py

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache
