# Two commands do all the set-up: `make demo` runs the demo, `make test` runs the tests.
# Both create the virtualenv (.venv) and install the project into it on first use.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: demo test lint format install

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/llmops demo

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict gateway llmops/config.py llmops/config_review.py llmops/config_server.py llmops/policies.py llmops/pii.py llmops/contract.py llmops/sample.py
	$(BIN)/mypy monitors llmops

test: lint
	$(BIN)/pytest

format: $(BIN)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
