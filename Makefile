# Two entry points for a fresh machine: `make up` runs the example swarm, `make test` passes the tests.
PY ?= python3
VENV ?= .venv
MIND ?= sim:branch=3,depth=2
WORKERS ?= 4
PURPOSE ?= examples/purpose.md

.PHONY: up test setup lint bench

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

up: setup
	$(VENV)/bin/swarm up $(PURPOSE) --workers $(WORKERS) --mind $(MIND)

test:
	scripts/test.sh

lint: setup
	$(VENV)/bin/ruff check swarm tests scripts
	$(VENV)/bin/mypy swarm

bench: setup
	$(VENV)/bin/python scripts/bench_board.py --quick
