# The set-up commands of README.md. Each creates .venv with the project's own
# requirements, so they work on a fresh machine with Python 3.11.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --quiet
# torch before the `models` extra, pinned: `torch==2.13.0` is the CPU build on this
# machine's disk, while a plain `torch` requirement (sentence-transformers') downloads a
# multi-GB CUDA build. torch wants setuptools>=77 and Towhee 1.x needs pkg_resources,
# which setuptools 81 removed: both bounds go in the same command.
TORCH := 'torch==2.13.0' 'setuptools>=77.0.3,<81'

.PHONY: demo test bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --quiet --upgrade pip

demo: $(BIN)/python
	$(PIP) $(TORCH)
	$(PIP) -e '.[models,milvus]'
	HF_HUB_OFFLINE=1 $(BIN)/python examples/semantic_search.py $(ARGS)

test: $(BIN)/python
	$(PIP) $(TORCH)
	$(PIP) -e '.[test,models,milvus,milvus-server,parquet,faiss,docs]'
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

bench: $(BIN)/python
	$(PIP) $(TORCH)
	$(PIP) -e '.[bench,models,milvus,milvus-server]'
	$(BIN)/python benchmarks/run.py $(ARGS)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/w5_model.py $(ARGS)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/w7_ingest.py $(ARGS)

# The manual, into site/ (open site/index.html); a warning is an error, as in tests/test_docs.py.
docs: $(BIN)/python
	$(PIP) -e '.[docs]'
	$(BIN)/python -m mkdocs build --strict

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
