# The two commands of the README. Each creates .venv on a fresh machine when it is missing.
VENV ?= .venv
PYTHON ?= python3
MIX := $(VENV)/bin/mixopt

.PHONY: install search test test-slow lint bench

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -c constraints.txt -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# The main job: build the default corpus (a no-op when it is up to date), search it with RegMix on
# 64 xs proxies, validate the proposal and the baselines with 3 seeds, write mixture.json.
# 12-15 minutes on 2 quiet cores (15 min 9 s on an Intel Xeon, 2026-12-03).
search: install
	$(MIX) corpus build default
	$(MIX) search --corpus default --method regmix --rung xs --budget 64 --validate 3 --out mixture.json

test: install
	$(VENV)/bin/ruff check mixopt tests
	$(VENV)/bin/pytest

test-slow: install
	$(VENV)/bin/pytest -m slow

bench: install
	$(MIX) bench proxy
