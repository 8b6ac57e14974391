# Two commands do everything on a fresh machine with Python >= 3.10:
#   make run  ARGS="data=imagefolder data.root=/tmp/cifar10-jpeg trainer.max_steps=500"
#   make test
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=
# The builds these machines carry on local disk; override for another machine or CUDA version.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
# No GPU (no nvidia-smi on the PATH, no /dev/nvidia0): torch's CPU build from PyTorch's CPU
# wheel index, which leaves out the CUDA libraries (the default Linux build pulls ~4 GB of
# nvidia-* and triton packages), when that index answers; else the default build, with a note.
# `make setup HAS_GPU=yes` forces the default build, `TORCH_CPU_INDEX=<url>` another index.
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
HAS_GPU ?= $(shell { command -v nvidia-smi || test -e /dev/nvidia0; } >/dev/null 2>&1 && echo yes)

.PHONY: run test test-slow bench setup clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if [ -n "$(HAS_GPU)" ]; then index=; \
	elif $(PY) -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=10)" \
	        "$(TORCH_CPU_INDEX)/torch/" >/dev/null 2>&1; then \
	    index="--index-url $(TORCH_CPU_INDEX)"; \
	    echo "residual_lab: no GPU found: installing torch's CPU build from $(TORCH_CPU_INDEX)"; \
	else index=; \
	    echo "residual_lab: no GPU found, but $(TORCH_CPU_INDEX) does not answer: installing the default torch build (with its CUDA libraries)"; \
	fi; \
	echo "$(PY) -m pip install --quiet $(TORCH_SPEC) $$index"; \
	$(PY) -m pip install --quiet $(TORCH_SPEC) $$index
	$(PY) -m pip install --quiet -e ".[dev,sweep,notebook]"
	touch $@

setup: $(VENV)/.installed

run: setup
	$(PY) -m residual_lab.run $(ARGS)

test: setup
	$(PY) -m pytest -q -n auto --dist loadfile $(ARGS)

test-slow: setup
	$(PY) -m pytest -q -m slow $(ARGS)

bench: setup
	$(PY) -m residual_lab.bench $(ARGS)

clean:
	rm -rf $(VENV) logs .pytest_cache build dist
