# The two commands: `make demo` (every demo pipeline end to end) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export ML_PIPELINES_HOME ?= $(CURDIR)/.ml_pipelines
export BENTOML_DO_NOT_TRACK := True
export GX_ANALYTICS_ENABLED := False
export DAGSTER_DISABLE_TELEMETRY := 1

.PHONY: setup demo test dev bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# the CPU wheel on disk; any other torch request pulls CUDA packages
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/ml-pipelines demo

# tests make their own homes; two workers, one test module per worker at a time, slowest first (conftest.py)
test: setup
	env -u ML_PIPELINES_HOME -u DAGSTER_HOME $(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder \
		--durations=25

dev: setup
	mkdir -p $(DAGSTER_HOME) && cp -n dagster.yaml $(DAGSTER_HOME)/ 2>/dev/null || true
	# the report server the UI's model card and Data Docs links open (ML_PIPELINES_REPORTS_URL, port 3002)
	$(BIN)/ml-pipelines reports & reports=$$!; trap 'kill $$reports' EXIT INT TERM; \
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

bench: setup
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) .dagster_home .ml_pipelines
