# `make demo` and `make test` do the whole set-up on a fresh machine, then run.
# A second run reinstalls nothing: the venv is rebuilt only when pyproject.toml changes.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
FMNIST  := /usr/share/datasets/fashion-mnist

.PHONY: setup data demo test bench lint clean

setup: $(STAMP) data

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: this version resolves to the local CPU build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

# Debian's Fashion-MNIST, when missing and apt-get is usable; otherwise the
# demo falls back to scikit-learn's bundled digits.
data:
	@if [ ! -d $(FMNIST) ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
		 (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1)) \
		|| echo "note: could not install dataset-fashion-mnist; using digits"; \
	fi

demo: setup
	$(BIN)/edgewise demo

test: setup
	$(BIN)/python -m pytest

# The settings of the committed results in benchmarks/results/ (each script's --help has more;
# --quick gives a smoke run, --device cuda trains on a GPU).
BASELINE_ARGS ?= --epochs 5 --limit 12000 --threads 1
EXITS_ARGS ?= --epochs 5 --limit 12000 --threads 1 --cache runs/exits-bench
PRUNE_ARGS ?= --cache runs/prune-bench
ONDEVICE_ARGS ?=

bench: setup
	$(BIN)/python benchmarks/baseline.py $(BASELINE_ARGS)
	$(BIN)/python benchmarks/exits.py $(EXITS_ARGS)
	$(BIN)/python benchmarks/prune.py $(PRUNE_ARGS)
	$(BIN)/python benchmarks/ondevice.py $(ONDEVICE_ARGS)

lint: setup
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs
