# The two commands of README.md. Each creates .venv (once) and installs the project into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[export,dev,tflm]'
	touch $@

## demo: the main job on the embedded MNIST digits: train (the seed's 10 epochs), export every
## format, check parity, benchmark, and write the report to runs/demo/report.html
demo: $(BIN)/.installed
	$(BIN)/cllnn-export run --data embedded --out runs/demo

## test: build docs/ (mkdocs --strict: a broken link fails) and run the test suite (pytest's "no tests
## collected", exit 5, fails the target).
## Debian's chromium is installed first where possible, for the report-rendering test, and qemu-user-static
## with mmdebstrap for the emulated ARM targets' test.
test: $(BIN)/.installed
	./scripts/ensure-chromium
	./scripts/ensure-qemu
	./scripts/ensure-sshd
	$(BIN)/mkdocs build --strict --quiet --site-dir $(VENV)/site
	$(BIN)/python -m pytest --durations=15

## bench: the benchmark suite (about 15 minutes on 2 cores): benchmarks/RESULTS.md and benchmarks/plots/
bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) runs
