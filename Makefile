# Set-up and the two main commands. `make test` and `make demo` work from a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Test files run on this many processes (pytest-xdist; a file's tests share one process, so its
# module fixtures are built once). 2 matches the 2-core CI machine. Files are handed out in
# collection order (--no-loadscope-reorder), which tests/conftest.py sorts longest first.
TEST_WORKERS ?= 2

.PHONY: install test demo lint bench clean

# pip would byte-compile all ~9,400 modules of the dependencies (15 s on 2 cores); importing the
# package and the test tools instead compiles the ~2,400 that are used (8 s, two processes at
# once), also where PYTHONDONTWRITEBYTECODE is set (it would leave every later import uncompiled).
WARM_PACKAGE := import importlib, pkgutil, hwgpt_jax; \
	[importlib.import_module(m.name) for m in pkgutil.walk_packages(hwgpt_jax.__path__, \
	 'hwgpt_jax.') if not m.name.endswith('__main__')]
WARM_TOOLS := import pytest, xdist, hypothesis.strategies, scipy.special, scipy.stats, \
	pymoo.optimize, pymoo.algorithms.moo.nsga2, pymoo.indicators.hv, \
	pymoo.operators.crossover.ux, pymoo.operators.crossover.sbx, pymoo.operators.mutation.pm, \
	pymoo.operators.repair.rounding, pymoo.operators.sampling.rnd

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -e '.[dev]'
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -c "$(WARM_PACKAGE)" & package=$$!; \
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -c "$(WARM_TOOLS)" && wait $$package
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

demo: $(STAMP)
	$(BIN)/hwgpt run --out runs/demo
	@echo "== One query of the packaged published HW-GPT-Bench benchmark (GPT-S space) =="
	$(BIN)/hwgpt query --published s -n 5 --metrics perplexity latency:rtx2080 energy:a6000 \
		--out runs/demo/published_query.csv --overwrite

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis *.egg-info
