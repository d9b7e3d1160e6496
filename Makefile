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

demo: $(VENV)/.base
	$(BIN)/cnnlab models
	$(BIN)/cnnlab summary basic_cnn
	$(BIN)/cnnlab summary resnet34_lab
	$(BIN)/cnnlab summary examples/specs/squeezenet_flowers.yaml
	$(BIN)/cnnlab data stats digits
	$(BIN)/cnnlab data show digits --out runs/digits_samples.png

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
