# The README's two commands: `make run` and `make test`.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= $(or $(MOKSORI_HOST),127.0.0.1)
PORT ?= $(or $(MOKSORI_PORT),8000)

.PHONY: install run test lint format worker api

$(STAMP): requirements.txt requirements-api.txt requirements-worker.txt requirements-dev.txt constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install -r requirements-dev.txt -c constraints.txt
	touch $@

install: $(STAMP)

# Start the API (gunicorn) and one worker; Ctrl-C stops both.
run: $(STAMP)
	@echo "moksori: API on http://$(HOST):$(PORT)  (voices from $${MOKSORI_VOICE_DIR:-voice_model/})"
	@echo "try: curl -s -X POST 'http://$(HOST):$(PORT)/api/texts?wait=30' -H 'Content-Type: application/json' -d '{\"member_id\": 1, \"text\": \"안녕하세요!\"}'"
	@trap 'kill 0' INT TERM; \
	$(MAKE) --no-print-directory worker & \
	$(MAKE) --no-print-directory api & \
	wait

worker: $(STAMP)
	$(PY) -m celery -A worker.celery_app worker --pool prefork --concurrency 1 --loglevel INFO

api: $(STAMP)
	$(PY) -m gunicorn api.wsgi:app --bind $(HOST):$(PORT) --worker-class gthread --workers 2 --threads 16 --access-logfile -

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

test: lint
	$(PY) -m pytest
