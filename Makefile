# One-command set-up: every target that needs Python creates .venv and installs into it first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.stflib-installed
export PATH := $(abspath $(BIN)):$(PATH)
# where reference data lives (stflib.paths: STFLIB_DATA); in this checkout, ../shared/data when it is there
export STFLIB_DATA ?= $(abspath ../shared/data)
# the results folder every command and book page reads (stflib.paths: STFLIB_RESULTS): `make book RESULTS=<dir>`
# builds the book from any results folder (real runs in it: under <dir>/real/<cohort>/, shown with a banner
# naming the cohort); the repository's committed results/ by default
RESULTS ?= $(abspath results)
export STFLIB_RESULTS := $(abspath $(RESULTS))
# TORCH=cpu (or `make install-cpu`): the CPU build of the same torch/torchvision versions from PyTorch's CPU
# wheel index instead of PyPI's default build with its CUDA wheels; everything else is the same pinned set.
TORCH ?= default
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_VERSION := $(shell sed -n 's/^torch==//p' requirements.txt)
TORCHVISION_VERSION := $(shell sed -n 's/^torchvision==//p' requirements.txt)


.PHONY: install install-cpu test test-lib test-notebooks book sync-notebooks grid grid-worlds collect clean

install: $(STAMP)

## A CPU-only .venv (no CUDA wheels): run it on a fresh clone, or after `rm -rf .venv`.
install-cpu:
	$(MAKE) install TORCH=cpu

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
ifeq ($(TORCH),cpu)
	$(BIN)/python -m pip install --quiet --index-url $(TORCH_CPU_INDEX) \
		torch==$(TORCH_VERSION)+cpu torchvision==$(TORCHVISION_VERSION)+cpu
else ifneq ($(TORCH),default)
	$(error TORCH=$(TORCH): unknown torch build; allowed: default (PyPI, with CUDA), cpu)
endif
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

## The tests: pytest for stflib, then nbval for every notebook (cells must run without error).
test: install test-lib test-notebooks

test-lib: install
	$(BIN)/python -m pytest tests

test-notebooks: install
	$(BIN)/python -m pytest --nbval-lax -p no:cacheprovider $(wildcard notebooks book)

## The book: runs the notebooks, which only read $(RESULTS) (results/chapters/ is written by
## `python -m stflib chapters`; nothing trains at build time), builds _build/html (warnings are errors).
## `make book RESULTS=<dir>`: the same book from another results folder.
book: install
	$(BIN)/jupyter-book build . --all --toc book/_toc.yml --config _config.yml -W -n --keep-going

## Re-pair notebooks after editing either side of a jupytext pair.
sync-notebooks: install
	$(BIN)/jupytext --sync notebooks/*.ipynb book/*.ipynb

## The ablation grid on this machine (a Dask LocalCluster), then the summary the book reads.
grid: install
	$(BIN)/python -m stflib ablate params
	$(BIN)/python -m stflib collect

## The robustness subset in every other simulator world (results/worlds/<world>/), then the summary.
grid-worlds: install
	$(BIN)/python -m stflib ablate --world all
	$(BIN)/python -m stflib collect

clean:
	rm -rf _build
