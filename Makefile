# Everything builds its own virtual environment from pyproject.toml; `make run` and `make test`
# are the only set-up a fresh machine needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit soak bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/botd run $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check botd tests strategies bench
	$(BIN)/ruff format --check botd tests strategies bench

typecheck: $(STAMP)
	$(BIN)/mypy botd

unit: $(STAMP)
	$(BIN)/pytest -m "not soak" $(PYTEST_ARGS)

test: lint typecheck unit

soak: $(STAMP)
	$(BIN)/pytest -m soak $(PYTEST_ARGS)

bench: $(STAMP)
	@for b in bench/bench_*.py; do $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build *.egg-info
