# The two commands of the README: `make run` and `make test` (and `make docs`, the docs site).
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint format bench docs

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

# The documentation site (mkdocs.yml) into var/site; strict: a broken link or anchor, or a page
# missing from the nav, fails the build.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

test: lint docs
	$(PY) -m pytest
