# Two commands matter: `make demo` and `make test`. Each sets up what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint unit integration bench clean help

help:
	@echo "make demo   - embedded PostgreSQL + sample data + a timeline (see README)"
	@echo "make test   - lint, then the whole test suite on a real PostgreSQL"
	@echo "make lint   - ruff + mypy --strict"
	@echo "make bench  - benchmarks that print numbers"

# setup.py and the C leaf encoder: an editable install builds the extension in place.
$(STAMP): pyproject.toml setup.py auditor/evidence/_leafc.c
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "auditor needs Python 3.11 or newer; set PYTHON=python3.x")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
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

test: lint tests/js/node_modules
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) --dist loadfile --no-loadscope-reorder

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
