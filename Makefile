# dropkit: the two set-up commands are `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch==2.13.0 is a CPU build on this kind of machine; pinning it first keeps pip from
# resolving `torch>=2.4` to a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: demo test lint bench clean

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e ".[cpu,lab]"
	touch $@

$(VENV)/.dev: $(VENV)/.base
	$(PIP) install -q -e ".[dev]"
	touch $@

demo: $(VENV)/.base
	$(VENV)/bin/dropkit lab --quick

test: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(PY) -m pytest -n 2 -q

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests benchmarks examples

bench: $(VENV)/.dev
	$(PY) benchmarks/kernels.py
	$(PY) benchmarks/per_call.py
	$(PY) benchmarks/sample_keys.py
	$(PY) benchmarks/backward_policy.py
	$(PY) benchmarks/step.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
