# Two commands do everything on a fresh machine (see README):
#   make run    set up, train the default model if there is none, serve the web page
#   make test   set up, run the whole test suite (make test-fast: without the slow tests)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Keras looks for ImageNet weights in $KERAS_HOME/models; offline we put the
# copy from ../shared/weights there, online Keras downloads them itself.
export KERAS_HOME ?= $(CURDIR)/.cache/keras
export MAMMO_CACHE_DIR ?= $(CURDIR)/.cache/mammo
WEIGHTS_FILE := mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5
SHARED_WEIGHTS := $(firstword $(wildcard weights/$(WEIGHTS_FILE) ../shared/weights/$(WEIGHTS_FILE)))
DATA  ?= $(firstword $(wildcard data/dphi-sprint31 ../shared/data/dphi-sprint31))
RUN   ?= runs/default
# The first start skips the Keras-head baseline to save time;
# TRAIN_ARGS= (empty) runs the full comparison.
TRAIN_ARGS ?= --no-deep
MODEL ?= $(RUN)/model.joblib
HOST  ?= 127.0.0.1
PORT  ?= 8000
# make test's workers: one per core, at most 4 (each loads TensorFlow); PARALLEL= runs in one process
PARALLEL ?= -n auto --maxprocesses 4 --dist loadfile

.PHONY: setup run train serve test test-fast bench
setup: $(VENV)/.installed $(KERAS_HOME)/models/$(WEIGHTS_FILE)

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	touch $@

$(KERAS_HOME)/models/$(WEIGHTS_FILE):
	@mkdir -p $(KERAS_HOME)/models
	@if [ -n "$(SHARED_WEIGHTS)" ]; then cp "$(SHARED_WEIGHTS)" $@ && echo "weights: copied $(SHARED_WEIGHTS) into $(KERAS_HOME)/models"; \
	else echo "weights: no local copy found; Keras will download them on first use (needs internet)"; fi

$(MODEL):
	@if [ -z "$(DATA)" ]; then echo "no training data in data/dphi-sprint31 or ../shared/data/dphi-sprint31: README.md, section 'Getting data', says where to download DPhi Data Sprint 31, mini-MIAS or RSNA and how to lay it out; then run 'make run DATA=path/to/dataset'" >&2; exit 2; fi
	$(BIN)/mammo train $(DATA) --out $(RUN) $(TRAIN_ARGS)

train: setup $(MODEL)

serve: setup
	$(BIN)/mammo serve --model $(MODEL) --host $(HOST) --port $(PORT)

run: train serve

# Everything (CI runs this); test-fast leaves out the tests marked slow.
test: setup
	$(BIN)/python -m pytest -q -m "slow or not slow" $(PARALLEL)

test-fast: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/bench_pipeline.py
