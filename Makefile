# The verbs people expect. Each target installs what it needs first.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
export DVC_NO_ANALYTICS := 1
export DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
EXECUTOR ?= local
# test processes: one per core of the 2-core machines the suite is sized for; TEST_WORKERS=0 runs serially
TEST_WORKERS ?= 2

.PHONY: install demo test lint format bench lock clean stack stack-down airflow

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install  ## run the whole flow on sample data in .demo/
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/mainstem demo

airflow: install  ## Airflow UI on 127.0.0.1:8080 for the demo workspace; Ctrl-C stops it
	PATH="$(abspath $(BIN)):$$PATH" $(PY) -m mainstem.local.airflow_launcher --workspace .demo/workspace

test: install  ## unit (pure, fast), func (git, DVC, processes), e2e (servers), one file per worker
	PATH="$(abspath $(BIN)):$$PATH" $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile tests/unit tests/func tests/e2e

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install  ## timings, written to benchmarks/results/
	PATH="$(abspath $(BIN)):$$PATH" $(PY) -m benchmarks

lock: install  ## refresh dvc.lock from an empty pipeline run
	PATH="$(abspath $(BIN)):$$PATH" $(PY) -m mainstem.flow.workspace --refresh-lock .

stack: install  ## PostgreSQL, MLflow server and Airflow on 127.0.0.1 for .demo/workspace (EXECUTOR=celery: + Redis, 2 Celery workers)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/mainstem stack up --executor $(EXECUTOR)

stack-down:  ## stop what `make stack` started
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/mainstem stack down

clean:
	rm -rf .demo .tmp
