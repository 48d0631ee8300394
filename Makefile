# The two commands of README.md. Each creates .venv (once) and installs the project into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[export,dev]'
	touch $@

## demo: train the CLLNN for 3 epochs on the embedded MNIST digits, then convert it to every format
demo: $(BIN)/.installed
	$(BIN)/cllnn-export train --data embedded --epochs 3 --out runs/demo
	$(BIN)/cllnn-export convert runs/demo/model.keras --out runs/demo/artifacts

## test: run the test suite (pytest's "no tests collected", exit 5, fails the target)
test: $(BIN)/.installed
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs
