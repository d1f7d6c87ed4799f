# The one place commands live. `make demo` and `make test` set up .venv when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false
export PYTHONHASHSEED := 0

USERS ?= 3000
MONTHS ?= 36
SEED ?= 7
BENCH_SIZES ?= 10000,100000
# The demo world is small: its first fraud model usually fails the gates. The demo lets it decide
# as a recorded governance exception (shown in the summary); a real run never does by default.
DEMO_OVERRIDE ?= make demo: simulated $(USERS)-user world, too few bust-outs for the fraud gates

.PHONY: setup demo test lint bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/creditline demo --users $(USERS) --months $(MONTHS) --seed $(SEED) \
		--bootstrap-gate-override "$(DEMO_OVERRIDE)"

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python -m benchmarks --sizes $(BENCH_SIZES)

clean:
	rm -rf data/raw data/features data/decisions data/explanations data/reports data/quarantine mlruns
