# The two commands of the README: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CONFIG ?= configs/fmnist_demo.yaml
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
export WANDB_MODE ?= offline

.PHONY: setup data demo test clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[onnx,remote,test,ray]'
	touch $@

setup: $(VENV)/.installed

# Real Fashion-MNIST from Debian's package (root needed; a user without it sets data.root or data.download)
data:
	@if [ ! -f $(FMNIST) ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	  else echo "Fashion-MNIST missing: run 'sudo apt-get install dataset-fashion-mnist', or set data.root / data.download in $(CONFIG)"; fi; \
	fi

# zoo (prints its table) -> UAPs -> key -> fingerprints -> encoder (fit), then the report and the bundle (test)
demo: setup data
	$(VENV)/bin/fpenc zoo --config $(CONFIG)
	$(VENV)/bin/fpenc fit --config $(CONFIG)
	$(VENV)/bin/fpenc test --config $(CONFIG) --ckpt_path best

test: setup data
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q

clean:
	rm -rf runs .pytest_cache
