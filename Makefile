# Two entry points for a fresh machine: `make up` runs the example swarm, `make test` passes the tests.
PY ?= python3
VENV ?= .venv
MIND ?= sim:branch=3,depth=2
WORKERS ?= 4
PURPOSE ?= examples/purpose.md

.PHONY: up test setup dev lint bench dist
DIST ?= dist

$(VENV)/bin/pip:
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip

# What running a swarm needs (the model runtime and E2B included, no test tooling).
$(VENV)/.runtime: pyproject.toml | $(VENV)/bin/pip
	$(VENV)/bin/pip install -q -e '.[all]'
	touch $@

# Everything the tests need, the tiny-model builder's torch (CPU) included.
$(VENV)/.dev: pyproject.toml | $(VENV)/bin/pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@ $(VENV)/.runtime

setup: $(VENV)/.runtime

dev: $(VENV)/.dev

up: setup
	$(VENV)/bin/swarm up $(PURPOSE) --workers $(WORKERS) --mind $(MIND)

test:
	scripts/test.sh

lint: dev
	$(VENV)/bin/ruff check swarm tests scripts
	$(VENV)/bin/mypy swarm

bench: setup
	$(VENV)/bin/python scripts/bench_board.py --quick

# A wheel to install on other machines (docs/compose.md, "Add machines"): the distribution is
# swarm-blackboard (PyPI's `swarm` is another project); the import package and command: swarm.
dist: | $(VENV)/bin/pip
	rm -f $(DIST)/swarm_blackboard-*.whl
	$(VENV)/bin/pip wheel -q --no-deps --wheel-dir $(DIST) .
	@ls $(DIST)/swarm_blackboard-*.whl
