# shirg-eval: `make demo` (set up + offline benchmark on the embedded tiny model), `make test` (set up + tests).
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# GPU machines keep PyPI's CUDA torch (+ torchvision). CPU machines pin the CPU torch build and drop
# torchvision/timm afterwards: PyPI's torchvision does not import beside a CPU torch, and breaks transformers.
GPU ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
CONSTRAINTS := $(if $(GPU),constraints/common.txt,constraints/cpu.txt)
PIP_EXTRA ?=
QUIET_PIP := grep -v -e 'is ignored: it is neither' -e '^\s*$$' || true

.PHONY: setup test test-fast demo lint bench gpu-prep gpu-check gpu-dry-run clean

$(VENV)/.installed: pyproject.toml $(wildcard constraints/*.txt)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 2>&1 | { $(QUIET_PIP); }
	$(PY) -m pip install -q -c $(CONSTRAINTS) $(PIP_EXTRA) -e '.[dev]' 2>&1 | { $(QUIET_PIP); }
	@if [ -z "$(GPU)" ]; then $(PY) -m pip uninstall -y -q torchvision timm 2>&1 | { $(QUIET_PIP); }; fi
	cd /tmp && $(CURDIR)/$(PY) -c "import shirg_eval, shirg_eval.tasks, lmms_eval, transformers, peft, deepspeed; print('environment ok: torch', __import__('torch').__version__)" 2>&1 | grep -v 'Setting accelerator'
	touch $@

setup: $(VENV)/.installed

test: setup
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow"

demo: setup
	$(VENV)/bin/shirg-demo

bench: setup
	$(VENV)/bin/shirg-bench --dims tiny

# GPU run kit (docs/BENCHMARKS.md): gpu-prep here (PyPI reachable) fills .gpu/ with wheels + golden fixtures for a
# GPU machine without network; gpu-check runs there (carry .gpu); gpu-dry-run is the same steps on a CPU at tiny dims.
gpu-prep: setup
	$(PY) gpu_kit/gpu_prep.py

gpu-check:
	bash gpu_kit/gpu_check.sh --out $${OUT:-runs/gpu_check}
	@echo "past GPU runs, their figures and how to read them: docs/BENCHMARKS.md"

gpu-dry-run: setup
	bash gpu_kit/gpu_check.sh --dry-run --out runs/gpu_check_dry

lint: setup
	$(VENV)/bin/ruff check shirg_eval train tasks tests bench

clean:
	rm -rf $(VENV) runs/demo
