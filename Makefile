# Entry points for people and CI. Recipes stay one-liners; the logic is Python under scripts/.
# Works on a fresh Debian 12 as root: missing python3-venv, redis-server and influxdb come from apt.

PYTHON ?= python3
VENV_PYTHON := .venv/bin/python
API_HOST ?= 127.0.0.1
API_PORT ?= 8000
export API_HOST API_PORT

.DEFAULT_GOAL := help
.PHONY: help venv dev-venv binaries demo up down status test lint format

help:
	@echo "make demo      start everything, train the PJM EKPC meter, print a forecast, stop"
	@echo "make up        start the stack in the background (pids and logs in run/)"
	@echo "make down      stop what 'make up' started"
	@echo "make status    show what 'make up' started and whether it still runs"
	@echo "make test      the whole test suite (CI=true) and ruff"
	@echo "make lint      ruff check and format check;  make format: apply ruff format"

venv:
	$(PYTHON) -m scripts.bootstrap venv requirements.txt

dev-venv:
	$(PYTHON) -m scripts.bootstrap venv requirements-dev.txt

binaries:
	$(PYTHON) -m scripts.bootstrap binaries

demo: venv
	$(VENV_PYTHON) -m scripts.demo

up: venv
	$(VENV_PYTHON) -m scripts.stack up

down:
	@test -x $(VENV_PYTHON) || { echo "Nothing to stop: there is no .venv, so 'make up' never ran here."; exit 0; }; \
	$(VENV_PYTHON) -m scripts.stack down

status:
	@$(VENV_PYTHON) -m scripts.stack status

test: dev-venv binaries
	CI=true .venv/bin/pytest -q
	.venv/bin/ruff check .

lint: dev-venv
	$(VENV_PYTHON) -m ruff check .
	$(VENV_PYTHON) -m ruff format --check .

format: dev-venv
	$(VENV_PYTHON) -m ruff format .
