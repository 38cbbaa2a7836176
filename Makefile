# Everything a fresh machine needs: `make run` (the demo) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: run test lint venv clean server

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/exoprov demo

server: $(STAMP)
	mkdir -p run
	$(BIN)/exoprov admin add-vendor example --db run/exoprov.db --if-missing
	$(BIN)/exoprov server --db run/exoprov.db

test: $(STAMP)
	$(BIN)/ruff check agent boards tools host_tests
	$(BIN)/python -m pytest host_tests

lint: $(STAMP)
	$(BIN)/ruff check agent boards tools host_tests
	$(BIN)/ruff format --check agent boards tools host_tests

clean:
	rm -rf $(VENV) build run .pytest_cache

# Faults, power cuts, fuzzing, load and benchmarks (full runs; `make test` runs
# bounded samples of the first four).
.PHONY: powercut faults fuzz load rollout bench

powercut: $(STAMP)
	$(BIN)/python -m tools.harness.powercut
	$(BIN)/python -m tools.harness.rp2emu.powercut

faults: $(STAMP)
	$(BIN)/python -m tools.harness.faults.scenarios

fuzz: $(STAMP)
	$(BIN)/python -m tools.harness.fuzz_server --requests 100000

load: $(STAMP)
	$(BIN)/python -m tools.harness.loadtest

rollout: $(STAMP)
	$(BIN)/python -m tools.harness.rollout

bench: $(STAMP)
	$(BIN)/python -m tools.harness.bench
	$(BIN)/python -m tools.harness.sigbench --flow
