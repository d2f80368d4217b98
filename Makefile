# Two commands do everything: `make run` trains the default experiment, `make test` runs the suite.
# Both create the virtual environment in .venv the first time (and only then).
#
# TORCH picks the PyTorch build. The default pin installs the CPU build where one is provided
# locally and PyPI's default build elsewhere (CUDA on Linux). For a specific build:
#   make run TORCH_INDEX=https://download.pytorch.org/whl/cpu      # CPU only, small download
#   make run TORCH_INDEX=https://download.pytorch.org/whl/cu128    # CUDA 12.8
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
ARGS ?=
# pytest's worker processes (pytest-xdist): one per core by default; WORKERS=0 runs in one process.
WORKERS ?= auto
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint clean-logs

run: $(STAMP)
	$(PY) -m experiments fit $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -n $(WORKERS) $(ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -n $(WORKERS) -m "not slow" $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

$(PY):
	$(PYTHON) -m venv $(VENV)

# Installing torch on its own first keeps pip from resolving it against PyPI's newest CUDA build.
$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

clean-logs:
	rm -rf lightning_logs
