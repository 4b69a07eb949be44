# Two entry points a fresh machine needs: `make demo` and `make test`.
# Both create (or reuse) the virtual environment in $(VENV).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench-ops clean-venv

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# CPU build of torch first, pinned, so nothing pulls the CUDA builds.
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/jaxprune demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2 tests

bench-ops: $(STAMP)
	$(PY) benchmarks/ops.py

clean-venv:
	rm -rf $(VENV)
