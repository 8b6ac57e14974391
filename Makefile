# Two commands do everything on a fresh machine with Python >= 3.10:
#   make run  ARGS="data=imagefolder data.root=/tmp/cifar10-jpeg trainer.max_steps=500"
#   make test
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=
# The builds these machines carry on local disk; override for another machine or CUDA version.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: run test test-slow bench setup clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_SPEC)
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
