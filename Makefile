# cnnlab: `make demo` and `make test` work on a fresh clone (only the package registries needed).
VENV    ?= .venv
PYTHON  ?= python3
BIN     := $(VENV)/bin
# torch is pinned to the release this project is developed and tested with; override for yours,
# e.g. `make test TORCH="torch torchvision"`.
TORCH   ?= torch==2.14.1 torchvision==0.29.1

.PHONY: demo test test-slow lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	touch $@

$(VENV)/.base: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test: pyproject.toml $(VENV)/.base
	$(BIN)/pip install -q -e ".[test]"
	touch $@

# The main job: lenet5 on the bundled digits (no network), into runs/<name>/; prints the folder.
demo: $(VENV)/.base
	$(BIN)/cnnlab train

test: $(VENV)/.test
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: $(VENV)/.test
	$(BIN)/python -m pytest -q -m slow

lint: $(VENV)/.test
	$(BIN)/ruff check --fix src tests
	$(BIN)/ruff format src tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache src/*.egg-info
