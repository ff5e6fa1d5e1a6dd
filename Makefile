# artforge: two commands a new user needs, `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: env gpu-env perf-analyzer browser lint docs test test-fast demo demo-style demo-real-art studio reliability soak clean

env: $(STAMP)

# torch first, pinned: an open `torch` requirement would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[dev]'
	$(MAKE) --no-print-directory perf-analyzer
	$(MAKE) --no-print-directory browser
	touch $(STAMP)

# Debian's chromium for the studio's browser tests (Playwright drives it by path: no browser download)
browser:
	@command -v chromium > /dev/null || { 		if [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then 			apt-get install -y -qq chromium > /dev/null 2>&1 || 			{ apt-get update -qq > /dev/null && apt-get install -y -qq chromium > /dev/null; } || 			echo "the studio's browser tests need chromium: apt-get install chromium failed"; 		else echo "the studio's browser tests need chromium: sudo apt-get install chromium"; fi; }

# NVIDIA's perf_analyzer (`artforge bench --perf-analyzer`): the binary inside the tritonclient 2.51 wheel
# (Triton 2.51's release, as nvidia-pytriton 0.7.0's server; later wheels need glibc 2.38 or ship none),
# installed without its dependencies: its grpc extra pins protobuf<5, which onnx rules out, and the 2.51
# client runs on the newer protobuf (the test suite uses it). It loads libcudart.so.12 (the CUDA runtime
# wheel; artforge puts it on LD_LIBRARY_PATH) and libb64.so.0d (Debian; installed here when root).
perf-analyzer:
	$(PY) -m pip install --quiet --no-deps tritonclient==2.51.0 nvidia-cuda-runtime-cu12
	@ldconfig -p | grep -q libb64.so.0d || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
			apt-get install -y -qq libb64-0d > /dev/null 2>&1 || \
			{ apt-get update -qq > /dev/null && apt-get install -y -qq libb64-0d > /dev/null; } || \
			echo "perf_analyzer needs libb64.so.0d: apt-get install libb64-0d failed"; \
		else echo "perf_analyzer needs libb64.so.0d: sudo apt-get install libb64-0d"; fi; }

# GPU machines (docs/gpu.md): the CUDA build of PyTorch (CUDA 12, like TensorRT 10.5's cu12 wheels) and
# the gpu extra, whose onnxruntime-gpu replaces onnxruntime (with both installed the CUDA provider is
# hidden). TensorRT's libraries come from NVIDIA's package index. Not runnable on the CPU-only CI.
TORCH_CUDA_INDEX ?= https://download.pytorch.org/whl/cu128
gpu-env:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH) --index-url $(TORCH_CUDA_INDEX)
	$(PY) -m pip uninstall --quiet -y onnxruntime || true
	$(PY) -m pip install --quiet -e '.[gpu,serve,classical]' pytest --extra-index-url https://pypi.nvidia.com
	$(PY) -c "import torch, tensorrt, onnxruntime as o; assert torch.cuda.is_available(), 'PyTorch sees no GPU'; \
		print('GPU', torch.cuda.get_device_name(), '| torch', torch.__version__, '| TensorRT', tensorrt.__version__, \
		'| ONNX Runtime providers', o.get_available_providers())"
	touch $(STAMP)

# ruff's rules, then the layers of pyproject.toml's import contract (a back arrow fails)
lint: env
	$(VENV)/bin/ruff check artforge tests
	$(VENV)/bin/lint-imports

# docs/commands.md from the parsers (tests/test_docs.py fails when it is stale)
docs: env
	$(PY) -m artforge.command_docs > docs/commands.md

test: env lint
	$(PY) -m pytest -q --durations=15

test-fast: env lint
	$(PY) -m pytest -q -m "not slow" --durations=15

# Start Triton on $(DEMO)/repo, wait until it serves, run the commands in $(1), stop the server
# whatever happens. Its ports: make demo GRPC_PORT=9001 HTTP_PORT=9000 METRICS_PORT=9002 where 8000-8002 are taken.
GRPC_PORT ?= 8001
HTTP_PORT ?= 8000
METRICS_PORT ?= 8002
URL = 127.0.0.1:$(GRPC_PORT)
define with_server
	@set -e; \
	$(VENV)/bin/artforge serve --repository $(DEMO)/repo --log-file $(DEMO)/triton.log --grpc-port $(GRPC_PORT) \
		--http-port $(HTTP_PORT) --metrics-port $(METRICS_PORT) > $(DEMO)/serve.out 2>&1 & \
	pid=$$!; trap 'kill -TERM $$pid 2>/dev/null; wait $$pid' EXIT; \
	for i in $$(seq 1 120); do grep -q "Ctrl-C stops it" $(DEMO)/serve.out && break; \
		kill -0 $$pid 2>/dev/null || { cat $(DEMO)/serve.out; exit 1; }; sleep 1; done; \
	cat $(DEMO)/serve.out; \
	$(1)
endef
comma := ,

# The studio (a web page for every served model) over the demo's repository: `make demo` first if there is
# none; the page is at http://127.0.0.1:$(STUDIO_PORT) until Ctrl-C. The page runs in the background and the
# shell waits for it, so a signal to the shell alone (kill PID, a closed terminal) stops the page and the server
# too: a shell waiting on a foreground command would act on it only once that command ended.
STUDIO_PORT ?= 7860
studio: env
	@test -d $(DEMO)/repo || $(MAKE) --no-print-directory demo
	$(call with_server,$(VENV)/bin/artforge studio --url $(URL) --port $(STUDIO_PORT) \
		$$(test -d $(DEMO)/bench && echo --bench $(DEMO)/bench) \
		& page=$$!; trap 'kill -TERM $$page 2>/dev/null; wait $$page; exit 143' INT TERM HUP; wait $$page)

# The whole road on a laptop CPU in about 10 minutes: data, training, export, a live Triton
# server, images over gRPC, a short benchmark.
DEMO ?= demo
demo: env
	$(VENV)/bin/artforge data synth --out $(DEMO)/data --size 32 --per-style 2000
	$(VENV)/bin/artforge train dcgan --data $(DEMO)/data --out $(DEMO)/run --size 32 --steps 3000 \
		--g-width 32 --d-width 32 --sample-every 500
	$(VENV)/bin/artforge export $(DEMO)/run --repository $(DEMO)/repo --name dcgan
	$(call with_server,$(VENV)/bin/artforge generate --url $(URL) --model dcgan --count 40 --seed 7 --columns 5 --out $(DEMO)/grid.png)
	$(VENV)/bin/artforge bench $(DEMO)/run --out $(DEMO)/bench --requests 100 --baseline-seconds 1
	@echo; echo "demo finished:"; \
	echo "  data            $(DEMO)/data/"; \
	echo "  training run    $(DEMO)/run/ (samples/, checkpoints/, log.jsonl)"; \
	echo "  Triton repo     $(DEMO)/repo/ (server log: $(DEMO)/triton.log)"; \
	echo "  gRPC grid       $(DEMO)/grid.png"; \
	echo "  benchmark       $(DEMO)/bench/bench.md, bench.json, bench.png"

# Style transfer in about 6 minutes: two procedural paintings as styles, a 1000-step fast model,
# export, and a held-out photo stylised over gRPC in one style and in a half/half blend.
demo-style: env
	$(VENV)/bin/artforge data synth --out $(DEMO)/style-art --size 256 --per-style 1 --styles waves splatter --quiet
	cp $(DEMO)/style-art/waves/00000.png $(DEMO)/waves.png
	cp $(DEMO)/style-art/splatter/00000.png $(DEMO)/splatter.png
	$(PY) -c "from PIL import Image; from artforge.photos import builtin_photo; \
		Image.fromarray(builtin_photo('chelsea')).save('$(DEMO)/cat.png')"
	$(VENV)/bin/artforge train style --style $(DEMO)/waves.png --style $(DEMO)/splatter.png \
		--out $(DEMO)/style-run --size 128 --steps 1000
	$(VENV)/bin/artforge export $(DEMO)/style-run --repository $(DEMO)/repo --name stylize
	$(call with_server,\
		$(VENV)/bin/artforge stylize --url $(URL) --model stylize --input $(DEMO)/cat.png --style waves --out $(DEMO)/cat-waves.png; \
		$(VENV)/bin/artforge stylize --url $(URL) --model stylize --input $(DEMO)/cat.png \
			--blend waves=0.5$(comma)splatter=0.5 --out $(DEMO)/cat-blend.png)
	@echo; echo "style demo finished:"; \
	echo "  training run    $(DEMO)/style-run/ (samples/: held-out photos in each style)"; \
	echo "  over gRPC       $(DEMO)/cat-waves.png, $(DEMO)/cat-blend.png (from $(DEMO)/cat.png)"

# Conditioning on real art (docs/conditioning.md), about 30 minutes on 2 cores: 1,500 public-domain drawings
# in five subjects from Debian's openclipart-png (installed here when root), a critic trained on them, the
# family that follows its class best there (diffusion, sampled with classifier-free guidance 12) at the
# 10-minute budget, and `artforge evaluate` with that critic (each class drawn as asked, FD, KID, precision,
# recall, diversity per class).
REAL ?= runs/real-art
CLIPART ?= /usr/share/openclipart/png
demo-real-art: env
	@test -d $(CLIPART) || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
			apt-get install -y -qq openclipart-png > /dev/null 2>&1 || \
			{ apt-get update -qq > /dev/null && apt-get install -y -qq openclipart-png > /dev/null; }; \
		else echo "the real-art demo needs Debian's drawings: sudo apt-get install openclipart-png"; exit 1; fi; }
	$(VENV)/bin/artforge data clipart --out $(REAL)/data --source $(CLIPART)
	$(VENV)/bin/artforge train critic --data $(REAL)/data --size 32 --out $(REAL)/critic
	$(VENV)/bin/artforge train diffusion --data $(REAL)/data --out $(REAL)/diffusion --size 32 --steps 1900 --bf16
	$(VENV)/bin/artforge evaluate $(REAL)/diffusion --data $(REAL)/data --count 500 --critic $(REAL)/critic \
		--controls guidance=12 --out $(REAL)/evaluation
	@echo; echo "real-art demo finished: $(REAL)/evaluation/evaluate.md (per class), $(REAL)/diffusion/samples/ (a row per class)"

# Faults, bad input and load in full (about 10 minutes on 2 cores): 30 training kills, every
# malformed request 20 times, messy image folders; prints the table of figures.
reliability: env
	$(VENV)/bin/artforge reliability --out runs/reliability --kills 30 --fuzz-rounds 20 --image-copies 5

# A bounded soak: 5 minutes of steady load; errors, latency and server memory at start and end.
soak: env
	$(VENV)/bin/artforge reliability --out runs/soak --kills 0 --fuzz-rounds 0 --image-copies 0 --soak-seconds 300

clean:
	rm -rf demo .pytest_cache
