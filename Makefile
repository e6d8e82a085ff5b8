# The README's two commands: `make run` and `make test`.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint format bench

$(STAMP): requirements.txt requirements-api.txt requirements-worker.txt requirements-dev.txt constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install -r requirements-dev.txt -c constraints.txt
	touch $@

install: $(STAMP)

# Start the API (gunicorn) and one worker, supervised; Ctrl-C stops both.
run: $(STAMP)
	$(PY) -m launcher

# The benchmark against RabbitMQ + Redis on 127.0.0.1 (demo voices if present); prints a table.
bench: $(STAMP)
	$(PY) -m bench --output var/bench.md

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

test: lint
	$(PY) -m pytest
