# The two set-up commands: `make run` and `make test`. See README.md.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
# Development mode is what these commands say, not what a missing variable
# means: settings refuse to start without DEBUG. An environment's own DEBUG wins.
DEBUG ?= 1
export DEBUG

.PHONY: run test migrate bench clean cluster cluster-stop

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

migrate: $(STAMP)
	$(PY) manage.py migrate --noinput

run: migrate
	$(PY) manage.py seed_demo --print-logins
	$(PY) manage.py runserver $(HOST):$(PORT)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# Benchmarks against PostgreSQL (BENCH_DATABASE_URL); each prints a table and
# writes JSON under bench/results/.
bench: $(STAMP)
	@for script in bench/bench_*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

# Two nodes behind nginx on this machine (deploy/cluster.py; docs/operations.md):
# https://127.0.0.1:8443, node1 on 8001, node2 on 8002, a Celery worker and beat.
# PostgreSQL and Redis from DATABASE_URL / REDIS_URL, else a myhibachi_cluster
# database on 127.0.0.1 and Redis database 12. State and pid files in .cluster/.
cluster: $(STAMP)
	PYTHON=$(PY) deploy/cluster start

cluster-stop:
	PYTHON=$(PY) deploy/cluster stop

clean:
	rm -rf $(VENV) db.sqlite3 staticfiles .pytest_cache
