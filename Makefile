# DGX Music. Two commands a user needs:
#   make run    - set up (first time) and run the daemon in the foreground
#   make test   - set up (first time) and run the whole test suite, both backends
# Also: make test-main (the main environment only), make test-audiocraft, make bench-protocol.
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

# audiocraft pins torch 2.1 and old xformers: it gets its own environment (docs/engine.md).
AC_VENV ?= .venv-audiocraft
AC_PY   := $(AC_VENV)/bin/python
AC_DEPS := einops julius flashy hydra-core hydra_colorlog num2words sentencepiece transformers \
           huggingface_hub omegaconf tqdm soundfile librosa av spacy torchmetrics lightning-utilities \
           msgpack numpy platformdirs

.PHONY: run demo test test-main tui bench bench-protocol test-audiocraft test-tools clean help
help:
	@sed -n '1,4p' Makefile

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)" $(TORCH_PIP_ARGS)
	$(PY) -m pip install -q -e '.[daemon,test]'
	@touch $@

run: $(VENV)/.installed
	$(VENV)/bin/dgx-music daemon $(ARGS)

# The whole product offline: a tiny random-weight MusicGen (noise, but the real loaders and pipeline)
# and a throwaway library in .demo/, so your real library stays clean.
# `make demo FAMILY=ace-step` does the same with a tiny ACE-Step 1.5 pipeline: songs with lyrics.
FAMILY ?= musicgen
DEMO_MODEL := .demo/tiny-$(subst -,,$(FAMILY))
demo: $(VENV)/.installed
	@test -f $(DEMO_MODEL)/.complete || { $(VENV)/bin/dgx-music make-test-model $(DEMO_MODEL) --family $(FAMILY) \
		&& touch $(DEMO_MODEL)/.complete; }
	$(VENV)/bin/dgx-music daemon --model $(DEMO_MODEL) --data-dir .demo/data $(ARGS)

tui: $(VENV)/.installed
	$(VENV)/bin/dgx-music $(ARGS)

test-tools:
	@scripts/ensure-test-tools

test: test-main test-audiocraft

# Two test processes (pytest-xdist): the suite waits on daemons, workers and subprocesses as much as it
# computes, so two keep a 2-core machine busy (15.5 min instead of ~25). TEST_JOBS=0 runs it in one.
TEST_JOBS ?= 2
test-main: $(VENV)/.installed test-tools
	$(PY) -m pytest -n $(TEST_JOBS) --durations=25 $(PYTEST_ARGS)

$(AC_VENV)/.installed: pyproject.toml
	@test -x $(AC_PY) || $(PYTHON) -m venv $(AC_VENV)
	$(AC_PY) -m pip install -q torch==2.11.0 torchaudio==2.11.0
	$(AC_PY) -m pip install -q --no-deps xformers==0.0.35 audiocraft==1.3.0
	$(AC_PY) -m pip install -q $(AC_DEPS)
	$(AC_PY) -m pip install -q --no-deps -e .
	@touch $@

# The daemon and tests stay in the main environment; the worker runs from the audiocraft one.
ifeq ($(ARCH),x86_64)
test-audiocraft: $(VENV)/.installed $(AC_VENV)/.installed
	DGX_MUSIC_AUDIOCRAFT_PYTHON=$(abspath $(AC_PY)) $(PY) -m pytest tests/engine -m audiocraft $(PYTEST_ARGS)
else
test-audiocraft:
	@echo "test-audiocraft: skipped on $(ARCH): xformers, which audiocraft needs, has no wheels for it"
endif

bench-protocol: $(VENV)/.installed
	$(PY) bench/bench_protocol.py

clean:
	rm -rf $(VENV) $(AC_VENV) build *.egg-info
