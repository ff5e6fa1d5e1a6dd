# artforge: two commands a new user needs, `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: env test test-fast demo clean

env: $(STAMP)

# torch first, pinned: an open `torch` requirement would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: env
	$(PY) -m pytest -q

test-fast: env
	$(PY) -m pytest -q -m "not slow"

demo: env
	$(VENV)/bin/artforge data synth --out demo/data --size 32 --per-style 400
	$(VENV)/bin/artforge train dcgan --data demo/data --out demo/run --size 32 --steps 1500 --sample-every 250
	@echo "samples: demo/run/samples/  checkpoints: demo/run/checkpoints/  losses: demo/run/log.jsonl"

clean:
	rm -rf demo .pytest_cache
