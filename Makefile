# The two commands of the README: `make run` and `make test`. Everything else is a helper.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
# python3.12 from PATH or pyenv (django-cfg needs >= 3.12; the system python3 may be older).
PYTHON ?= $(shell for p in $$(ls -d "$$(pyenv root 2>/dev/null || echo $$HOME/.pyenv)"/versions/3.12*/bin/python3.12 2>/dev/null | sort -V | tail -n 1) $$(command -v python3.12); do "$$p" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && echo "$$p" && break; done)
# `make run` is a development server; production settings come from the environment.
export DJANGO_ENV ?= development

.PHONY: run test lint demo stop db shell migrate venv clean

run: $(VENV)/.installed ## site + worker + scheduler on 127.0.0.1:8000 (Ctrl-C stops all)
	$(BIN)/python manage.py runstack

test: $(VENV)/.installed ## the whole test suite (first starts Redis and installs Chromium if missing)
	scripts/test-prerequisites
	DJANGO_ENV=test $(BIN)/pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed ## ruff (lint and format) over the tree, mypy over apps/ and config/
	$(BIN)/ruff check apps config tests bench
	$(BIN)/ruff format --check apps config tests bench
	@# The settings need no database for type checking: a placeholder URL keeps the embedded server off.
	DJANGO_ENV=test DATABASE_URL=postgresql://typecheck@localhost/typecheck $(BIN)/mypy

demo: $(VENV)/.installed ## simulated LLM traffic for the dashboards (loopback simulator: no keys, no cost)
	$(BIN)/python manage.py llm_demo $(DEMO_ARGS)

stop: ## stop the embedded database
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m config stop; fi

db: $(VENV)/.installed ## start the embedded database and print its URL
	$(BIN)/python -m config start

migrate: $(VENV)/.installed
	$(BIN)/python manage.py migrate

shell: $(VENV)/.installed
	$(BIN)/python manage.py shell

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -n "$(PYTHON)" || { echo "Python 3.12 not found: install it (pyenv install 3.12) or set PYTHON=/path/to/python3.12" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

clean: stop
	rm -rf $(VENV) var
