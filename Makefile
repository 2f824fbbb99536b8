# Two entry points: `make demo` (main job on embedded defaults) and `make test` (ruff + pytest).
# Both create .venv on first use; the CPU wheel of torch is pinned here (not in the package metadata)
# so that a fresh machine never pulls the multi-GB CUDA build.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.deepprop-installed
TORCH  ?= torch==2.13.0
EXTRAS ?= dev

.PHONY: demo test test-slow setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/deepprop reproduce --tier quick --out results/

# `make test` excludes tests marked slow (pyproject addopts); `make test-slow` runs only those.
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -q

test-slow: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) results .pytest_cache
