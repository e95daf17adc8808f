# The two commands of the README:
#   make run    set everything up from nothing and run the workflow on the bundled sample (data/sample)
#   make test   set everything up from nothing and run the whole test suite
#   make test-cluster   the workflow on a real single-node Slurm cluster (root, Debian; installs Slurm with apt-get)
# Stage environments are built on first use by workflow/orchestrator/envs.py (in .venvs/, keyed by each lock's hash);
# this file only builds the orchestrator (.venv: snakemake + pytest) that drives them.

PYTHON ?= python3
CORES ?= $(shell nproc)
VENV := .venv
ORCHESTRATOR := $(VENV)/.lock-$(shell sha256sum envs/orchestrator.txt | cut -c1-12)

.PHONY: run test test-cluster envs lint

run: $(ORCHESTRATOR)
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

# Snakemake's own linter, snakefmt, and ruff's linter (pycodestyle and pyflakes) and formatter, all at line length
# 120; fails if any reports something. `ruff format workflow tests benchmarks` (line length 120) fixes the format.
PYTHON_CODE := workflow tests benchmarks
lint: $(ORCHESTRATOR)
	$(VENV)/bin/snakemake --lint; lint=$$?; \
	$(VENV)/bin/snakefmt --check --line-length 120 Snakefile rules; format=$$?; \
	$(VENV)/bin/ruff check --line-length 120 --select E,F,W $(PYTHON_CODE); ruff=$$?; \
	$(VENV)/bin/ruff format --check --line-length 120 $(PYTHON_CODE); ruff_format=$$?; \
	test $$lint -eq 0 && test $$format -eq 0 && test $$ruff -eq 0 && test $$ruff_format -eq 0

envs: $(ORCHESTRATOR)
	$(VENV)/bin/python -m workflow.orchestrator.envs build mxnet optimizer deeplens-mxnet labelimg

$(ORCHESTRATOR): envs/orchestrator.txt
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r envs/orchestrator.txt
	touch $@
