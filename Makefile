# The two commands a new user needs: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Extras to install, e.g. `make test EXTRAS=dev,crf` (crf builds a C++ extension: needs g++).
EXTRAS ?= dev
comma := ,
# One stamp per choice of extras, so changing EXTRAS (or pyproject.toml) re-runs the install.
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
DEMO_DIR ?= demo_data

.PHONY: setup demo test test-all lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/lesseg data synth $(DEMO_DIR)/textured --images 200 --classes 8 --size 128 --seed 0 --background textured
	$(BIN)/lesseg data check $(DEMO_DIR)/textured
	$(BIN)/lesseg run configs/cam/synthetic.yaml name=demo data.root=$(DEMO_DIR)/textured

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ''

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) demo_data .pytest_cache
