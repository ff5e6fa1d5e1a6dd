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

# The whole road on a laptop CPU in about 10 minutes: data, training, export, a live Triton
# server, images over gRPC, a short benchmark; the server is stopped whatever happens.
DEMO ?= demo
demo: env
	$(VENV)/bin/artforge data synth --out $(DEMO)/data --size 32 --per-style 2000
	$(VENV)/bin/artforge train dcgan --data $(DEMO)/data --out $(DEMO)/run --size 32 --steps 3000 \
		--g-width 32 --d-width 32 --sample-every 500
	$(VENV)/bin/artforge export $(DEMO)/run --repository $(DEMO)/repo --name dcgan
	@set -e; \
	$(VENV)/bin/artforge serve --repository $(DEMO)/repo --log-file $(DEMO)/triton.log > $(DEMO)/serve.out 2>&1 & \
	pid=$$!; trap 'kill -TERM $$pid 2>/dev/null; wait $$pid' EXIT; \
	for i in $$(seq 1 120); do grep -q "Ctrl-C stops it" $(DEMO)/serve.out && break; \
		kill -0 $$pid 2>/dev/null || { cat $(DEMO)/serve.out; exit 1; }; sleep 1; done; \
	cat $(DEMO)/serve.out; \
	$(VENV)/bin/artforge generate --model dcgan --count 40 --seed 7 --columns 5 --out $(DEMO)/grid.png
	$(VENV)/bin/artforge bench $(DEMO)/run --out $(DEMO)/bench --requests 100 --baseline-seconds 1
	@echo; echo "demo finished:"; \
	echo "  data            $(DEMO)/data/"; \
	echo "  training run    $(DEMO)/run/ (samples/, checkpoints/, log.jsonl)"; \
	echo "  Triton repo     $(DEMO)/repo/ (server log: $(DEMO)/triton.log)"; \
	echo "  gRPC grid       $(DEMO)/grid.png"; \
	echo "  benchmark       $(DEMO)/bench/bench.md, bench.json, bench.png"

clean:
	rm -rf demo .pytest_cache
