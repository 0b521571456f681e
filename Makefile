# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Both create or refresh .venv themselves; a second run with nothing changed is quick.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
EXTRAS ?= runtime,train,dev
DEMO_DIR ?= demo

.PHONY: demo demo-train model test check lint format system-deps demo-deps venv bench clean

# Creates .venv or adds the extras this target needs (scripts/venv.sh records what is in).
venv:
	@bash scripts/venv.sh "$(PYTHON)" "$(VENV)" "$(EXTRAS)"

system-deps:
	@bash scripts/system-deps.sh test

demo-deps:
	@bash scripts/system-deps.sh demo

check: venv
	$(VENV)/bin/ruff check monitor train engines tests bench
	$(VENV)/bin/ruff format --check monitor train engines tests bench
	$(VENV)/bin/mypy

format: venv
	$(VENV)/bin/ruff check --fix monitor train engines tests bench
	$(VENV)/bin/ruff format monitor train engines tests bench

test: venv system-deps check
	$(PY) -m pytest

# The demo needs the runtime, the clip generator and the face model's installer: no torch,
# so set-up stays short.
demo: EXTRAS = runtime,demo
demo: venv demo-deps
	$(PY) -m monitor.cli demo --dir $(DEMO_DIR) $(if $(DEMO_SECONDS),--seconds $(DEMO_SECONDS))

# The same demo with a small model trained here on the CPU (~10 min) instead of the shipped one.
demo-train: venv demo-deps
	$(PY) -m monitor.cli demo --dir $(DEMO_DIR)-train --train $(if $(DEMO_SECONDS),--seconds $(DEMO_SECONDS))

# Rebuild the shipped detector (monitor/models/default/) with the project's own commands:
# about 1.5 h on 2 cores; not part of `make test`. See train/default_model.py.
model: venv system-deps
	$(PY) -m train.default_model

# Benchmarks print markdown tables; record them in BENCHMARKS.md with the machine.
bench: venv
	$(PY) bench/synth_speed.py
	$(PY) bench/faces_speed.py
	$(PY) bench/backends.py --threads 1
	$(PY) bench/offline_throughput.py
	$(PY) bench/train_step.py
	$(PY) bench/live_latency.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
