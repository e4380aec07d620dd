# Anvil's everyday commands. `make run` starts the service with its embedded defaults;
# `make test` runs the whole suite against PostgreSQL and Redis.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
BACKEND_PORT ?= 8001

# Test settings: the production path (PostgreSQL, Redis, DEBUG off).
TEST_ENV := DATABASE_URL=$${TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/anvil} \
	REDIS_URL=$${TEST_REDIS_URL:-redis://127.0.0.1:6379/1} \
	DEBUG=false \
	SECRET_KEY=test-secret-key-not-for-production-0123456789 \
	API_KEY_PEPPER=test-pepper-not-for-production-0123456789

.PHONY: run test lint format services clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

## run: migrate, load the demo catalog, seed demo data, start the development backend and Anvil
run: $(VENV)/.installed
	@export DEBUG=$${DEBUG:-true}; \
	$(PY) manage.py migrate --noinput -v 0 && \
	$(PY) manage.py load_catalog demo/catalog.yaml && \
	$(PY) manage.py seed_demo && \
	{ $(PY) -m devbackend --host 127.0.0.1 --port $(BACKEND_PORT) & backend=$$!; \
	  trap 'kill $$backend 2>/dev/null' EXIT INT TERM; \
	  echo ""; \
	  echo "  Anvil is starting: open http://127.0.0.1:$(PORT)/ and sign in as demo-user / demo-user-password"; \
	  echo "  (or demo-admin / demo-admin-password, the demo team's manager). Stop with Ctrl+C."; \
	  echo ""; \
	  $(PY) -m uvicorn portal.asgi:application --host 127.0.0.1 --port $(PORT) --log-level warning; }

## test: the whole suite on PostgreSQL and Redis (started here when they are down)
test: $(VENV)/.installed-dev
	bash .ci/services
	$(TEST_ENV) $(VENV)/bin/pytest $(PYTEST_ARGS)

## bench: the gateway benchmark, direct to the development backend vs through Anvil (bench/README.md)
.PHONY: bench
bench: $(VENV)/.installed
	bash .ci/services
	$(PY) -m bench.gateway $(BENCH_ARGS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) anvil.sqlite3 staticfiles
