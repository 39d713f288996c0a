# Two commands do all set-up on a fresh clone:  `make demo`  and  `make test`.
# Each creates .venv and installs on first use. torch is pinned here (not in pyproject) so a CPU
# machine gets the 2.13.0 CPU wheel and a GPU machine the matching CUDA build, never a surprise upgrade.
PY      ?= python3
# Extra flags for the demo (e.g. DEMO_FLAGS="--steps 100") and pytest (PYTEST_ARGS="-k data").
DEMO_FLAGS  ?=
PYTEST_ARGS ?=
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TORCH   := torch==2.13.0

.PHONY: demo test lint install clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ganforge train dcgan --data mnist5k --preset demo --out runs/demo --overwrite $(DEMO_FLAGS)

test: $(STAMP)
	$(BIN)/ruff check src tests $(wildcard benchmarks)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests $(wildcard benchmarks)
	$(BIN)/ruff format --check src tests $(wildcard benchmarks)

clean:
	rm -rf $(VENV) runs .pytest_cache
