# tfxr: `make demo` and `make test` are the whole set-up on a fresh machine; both install first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tfxr-installed
NP ?= 2
# OpenMPI refuses root and more ranks than cores unless told; harmless otherwise.
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
export OMPI_MCA_rmaps_base_oversubscribe := 1
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONUNBUFFERED := 1

.PHONY: install demo test test-fast benchmark kernel clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml scripts/install.sh
	bash scripts/install.sh
	touch $@

demo: install
	NP=$(NP) PYTHON=$(abspath $(PY)) bash scripts/demo.sh

# The suite on TEST_WORKERS pytest workers (pytest-xdist; one per core of the 2-core CI
# machine): a test file's tests stay in one worker (--dist loadfile: its module fixtures are
# built once), files handed out in the order tests/conftest.py sorts them (the files with the
# most slow tests first). Many tests wait on one subprocess (a command as a user types it)
# and use one core, so two workers keep both cores busy. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)

test: install
	$(PYTEST)

test-fast: install
	$(PYTEST) -m "not slow"

# Register this checkout's .venv as the Jupyter kernel "tfxr", for any Jupyter (OOD's
# included). Per user by default (~/.local/share/jupyter/kernels/tfxr); KERNEL_PREFIX=DIR
# writes DIR/share/jupyter/kernels/tfxr instead (put DIR/share/jupyter on JUPYTER_PATH).
# Re-running replaces the same kernelspec. Needs `make install` first (not run here, so
# an OOD job never starts an install on a compute node).
KERNEL_PREFIX ?=
kernel:
	@test -x "$(PY)" || { echo "make kernel: $(PY) not found: run 'make install' first" >&2; exit 2; }
	"$(PY)" -m ipykernel install --name tfxr --display-name "tfxr (Python 3.11)" \
		$(if $(KERNEL_PREFIX),--prefix "$(KERNEL_PREFIX)",--user) --env TF_CPP_MIN_LOG_LEVEL 2

benchmark: install
	$(PY) -m tfxr.benchmark --out benchmarks/results $(or $(BENCH),suite)

clean:
	rm -rf demo_out .pytest_cache
