# The two set-up commands of README.md. Each creates .venv with the project's own
# requirements, so they work on a fresh machine with Python 3.11.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --quiet --upgrade pip

demo: $(BIN)/python
	$(BIN)/python -m pip install --quiet --quiet -e .
	$(BIN)/python examples/quickstart.py

test: $(BIN)/python
	$(BIN)/python -m pip install --quiet --quiet -e '.[test]'
	$(BIN)/python -m pytest

bench: $(BIN)/python
	$(BIN)/python -m pip install --quiet --quiet -e '.[bench]'
	$(BIN)/python benchmarks/run.py $(ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
