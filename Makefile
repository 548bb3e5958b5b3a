# DGX Music. Two commands a user needs:
#   make run    - set up (first time) and run the daemon in the foreground
#   make test   - set up (first time) and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
ARCH   := $(shell uname -m)
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo yes)

# Torch is most of the install. Without an NVIDIA GPU take the CPU build (~200 MB, not ~3 GB of CUDA).
# A DGX Spark (aarch64, CUDA 13) needs the cu130 wheels from PyTorch's index.
ifeq ($(HAS_GPU),yes)
  ifeq ($(ARCH),aarch64)
    TORCH_SPEC ?= torch>=2.9
    TORCH_PIP_ARGS ?= --index-url https://download.pytorch.org/whl/cu130
  else
    TORCH_SPEC ?= torch>=2.9,<=2.14.1
  endif
else
  TORCH_SPEC ?= torch==2.13.0
  TORCH_PIP_ARGS ?= $(shell scripts/cpu-torch-index)
endif

.PHONY: run test tui bench bench-protocol test-audiocraft test-tools clean help
help:
	@sed -n '1,4p' Makefile

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)" $(TORCH_PIP_ARGS)
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

run: $(VENV)/.installed
	$(VENV)/bin/dgx-music daemon $(ARGS)

tui: $(VENV)/.installed
	$(VENV)/bin/dgx-music $(ARGS)

test-tools:
	@scripts/ensure-test-tools

test: $(VENV)/.installed test-tools
	$(PY) -m pytest $(PYTEST_ARGS)

bench-protocol: $(VENV)/.installed
	$(PY) bench/bench_protocol.py

clean:
	rm -rf $(VENV) build *.egg-info
