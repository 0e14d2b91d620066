# One-command reproduction of the McLaughlin et al. (2014) replication.
#   make reproduce   run every notebook with params/default.yaml (outputs: data/processed, results, figures)
#   make test        unit tests + notebook tests (pytest + nbval)
#   make test-fast   unit tests and doctests only (no notebooks, no slow tests): the edit-test loop
#   make verify      re-run the default pipeline in a temp folder, compare with results/manifest.json
#   make lab         JupyterLab on notebooks/
#   make lock        re-resolve dependencies -> requirements.lock + environment.yml
#   make notebooks   default run, then refresh the committed notebooks/ with its outputs
#   make example     regenerate the shipped example dataset data/raw/example/
#   make benchmark   speed benchmarks (benchmarks/)
#   make clean       remove generated outputs only
#
# Environment: when a virtualenv or conda env is active it is used; otherwise a project-local
# .venv is created. Either way packages are installed from requirements.lock (exact versions).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3

ifneq ($(or $(VIRTUAL_ENV),$(CONDA_PREFIX)),)
  PY := python
  STAMP := $(or $(VIRTUAL_ENV),$(CONDA_PREFIX))/.alliance-replication-installed
else
  PY := .venv/bin/python
  STAMP := .venv/.installed
endif

PYTEST_ARGS ?=
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg

.PHONY: install reproduce test test-fast verify lab lock notebooks example benchmark clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@if [ "$(PY)" = ".venv/bin/python" ] && [ ! -x .venv/bin/python ]; then \
	  echo "creating .venv with $$($(PYTHON) --version)"; $(PYTHON) -m venv .venv; fi
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $@

reproduce: $(STAMP)
	$(PY) -m helpers.pipeline

verify: $(STAMP)
	$(PY) -m helpers.pipeline --verify

test: $(STAMP)
	$(PY) -m pytest tests notebooks src/helpers --doctest-modules $(NBVAL) $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest tests src/helpers --doctest-modules -m "not slow" -q $(PYTEST_ARGS)

# as root (the usual container) Jupyter refuses to start without --allow-root
lab: $(STAMP)
	$(PY) -m jupyter lab notebooks/ $$([ "$$(id -u)" = 0 ] && echo --allow-root)

notebooks: $(STAMP)
	$(PY) -m helpers.pipeline --refresh-notebooks

example: $(STAMP)
	$(PY) -m helpers.example

benchmark: $(STAMP)
	$(PY) benchmarks/bench_ruptures.py
	$(PY) benchmarks/bench_growth.py
	$(PY) benchmarks/bench_power.py
	$(PY) benchmarks/bench_growth_power.py
	$(PY) benchmarks/bench_figures.py
	$(PY) benchmarks/bench_pipeline.py

# Resolve the newest versions allowed by pyproject.toml in a throw-away venv and pin them.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet ".[test]"
	{ echo "# Exact versions of every package, resolved by 'make lock' on $$(.lock-venv/bin/python --version)."; \
	  echo "# Installed by 'make' (pip install -r requirements.lock). Do not edit by hand."; \
	  .lock-venv/bin/python -m pip freeze --all \
	  | grep -v -i -E '^(alliance-rupture-replication|pip|setuptools|wheel)( |==)'; } > requirements.lock.tmp
	mv requirements.lock.tmp requirements.lock
	.lock-venv/bin/python -c "import sys; sys.path.insert(0, 'src'); from helpers import environment as e; e.write_environment_yml()"
	rm -rf .lock-venv build

clean:
	rm -rf data/processed/* results/* figures/* .staging-*
