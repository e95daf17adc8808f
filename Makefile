# The two commands of the README:
#   make run    set everything up from nothing and run the workflow on the bundled sample (data/sample)
#   make test   set everything up from nothing and run the whole test suite
#   make test-browser   the browser page (web/) in headless Chromium against onnxruntime in Python
#   make test-cluster   the workflow on a real single-node Slurm cluster (root, Debian; installs Slurm with apt-get)
#   make test-pythons   the mxnet and optimizer test suites on the other CPython builds this machine carries (pyenv)
#   make test-fresh-machine   the first command as a newcomer on Debian 13 runs it (root; debootstrap, a chroot)
# Stage environments are built on first use by workflow/orchestrator/envs.py (in .venvs/, keyed by each lock's hash,
# each on a Python its lock is made for); this file only builds the orchestrator (.venv: snakemake, uv, pytest) that
# drives them, with the first python3 of at least 3.11 (Snakemake 9's minimum) unless PYTHON names one.

PYTHON ?= $(firstword $(foreach python,python3 python3.13 python3.12 python3.11,\
	$(shell $(python) -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null && echo $(python))))
CORES ?= $(shell nproc)
VENV := .venv
ORCHESTRATOR := $(VENV)/.lock-$(shell sha256sum envs/orchestrator.txt | cut -c1-12)
RUN_ENVS := mxnet optimizer mxnet012 litert

.PHONY: run test test-cluster test-pythons test-fresh-machine test-browser envs lint

# `envs check` finds a Python for every environment the run needs before Snakemake builds any of them.
run: $(ORCHESTRATOR)
	$(VENV)/bin/python -m workflow.orchestrator.envs check $(RUN_ENVS)
	$(VENV)/bin/snakemake --cores $(CORES) deeplens_artifacts

test: envs lint
	$(VENV)/bin/python -m workflow.orchestrator.envs exec mxnet -- python -m pytest -q tests/mxnet
	$(VENV)/bin/python -m workflow.orchestrator.envs exec optimizer -- python -m pytest -q tests/optimizer
	$(VENV)/bin/python -m pytest -q tests/workflow

# tests/cluster/slurm.sh installs Slurm if needed; the tests start the cluster and stop it; the stop here catches
# a pytest that died before its own clean-up (it stops nothing when nothing runs).
test-cluster: envs
	tests/cluster/slurm.sh install
	$(VENV)/bin/python -m pytest -q tests/cluster; status=$$?; tests/cluster/slurm.sh stop; exit $$status

# Debian's chromium (apt-get, as root, when missing) driven by playwright-core (tests/browser/package-lock.json);
# a tiny run to export_web, then the page against onnxruntime in Python (tests/browser/page_check.py).
CHROMIUM ?= $(firstword $(shell command -v chromium chromium-browser 2>/dev/null))
test-browser: $(ORCHESTRATOR)
	@if [ -z "$(CHROMIUM)" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else echo "ERROR: no chromium on PATH: install it (Debian/Ubuntu: sudo apt-get install chromium)" \
	    "or name one: make test-browser CHROMIUM=/path/to/chromium"; exit 1; fi; fi
	@command -v npm >/dev/null || { echo "ERROR: test-browser needs node 20+ and npm (Debian: apt-get install npm)"; exit 1; }
	cd tests/browser && npm ci --no-audit --no-fund
	CHROMIUM="$(or $(CHROMIUM),$$(command -v chromium chromium-browser | head -1))" $(VENV)/bin/python -m pytest -q tests/browser

# Snakemake's own linter, snakefmt, and ruff's linter (pycodestyle and pyflakes) and formatter, all at line length
# 120; fails if any reports something. `ruff format workflow tests benchmarks envs` (line length 120) fixes the format.
PYTHON_CODE := workflow tests benchmarks envs
lint: $(ORCHESTRATOR)
	$(VENV)/bin/snakemake --lint; lint=$$?; \
	$(VENV)/bin/snakefmt --check --line-length 120 Snakefile rules; format=$$?; \
	$(VENV)/bin/ruff check --line-length 120 --select E,F,W $(PYTHON_CODE); ruff=$$?; \
	$(VENV)/bin/ruff format --check --line-length 120 $(PYTHON_CODE); ruff_format=$$?; \
	test $$lint -eq 0 && test $$format -eq 0 && test $$ruff -eq 0 && test $$ruff_format -eq 0

test-pythons: $(ORCHESTRATOR)
	tests/other_pythons.sh

test-fresh-machine:
	tests/fresh_machine/debian13.sh

envs: $(ORCHESTRATOR)
	$(VENV)/bin/python -m workflow.orchestrator.envs build $(RUN_ENVS) labelimg readers

$(ORCHESTRATOR): envs/orchestrator.txt
	@test -n "$(PYTHON)" || { echo "ERROR: Snakemake 9 needs Python 3.11 or newer, and this machine's python3 is" \
	  "$$(python3 --version 2>&1 | tail -1). Install one with its venv module (Ubuntu 22.04:" \
	  "sudo apt install python3.11-venv), then run make again, or name it: make PYTHON=/path/to/python3.11"; exit 1; }
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { echo "ERROR: $(PYTHON) has no venv module with pip" \
	  "(ensurepip). Debian and Ubuntu: sudo apt install python3-venv (for python3.X: python3.X-venv)"; exit 1; }
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r envs/orchestrator.txt
	touch $@
