# make run   — set everything up and start the bot on http://127.0.0.1:8080/
# make test  — set everything up and run the whole suite
# make chat  — talk to the bot in the terminal
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: setup system-deps run chat test kb-lint bench typecheck clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

# Chromium (browser tests) and redis-server (Redis tests) from Debian; skipped when not root.
system-deps:
	@bash .ci/system-deps.sh

run: setup
	$(PY) -m bot serve

chat: setup
	$(PY) -m bot chat

test: setup system-deps
	$(PY) -m pytest

kb-lint: setup
	$(PY) -m bot kb lint

bench: setup
	$(PY) benchmarks/eval_matcher.py
	$(PY) benchmarks/matcher_speed.py

typecheck: setup
	$(PY) -m mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .hypothesis test-artifacts
