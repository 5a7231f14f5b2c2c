# The two commands of the README are `make demo` and `make test`; both set up what they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.PHONY: help bootstrap demo test test-fast test-molecule lint sanity build lock

help:
	@echo "make demo       set up, then rehearse FM-003 on the embedded lab"
	@echo "make test       set up, then run the whole suite (lint, sanity, unit, lab, rehearsal)"
	@echo "make test-fast  set up, then lint + unit + lab tests (no containers)"
	@echo "make test-molecule  set up, then every Molecule scenario (make test runs one)"

bootstrap:
	@scripts/bootstrap

demo: bootstrap
	@scripts/demo

test: bootstrap
	@scripts/run-tests all

test-fast: bootstrap
	@scripts/run-tests fast

test-molecule: bootstrap
	@scripts/run-tests molecule

lint: bootstrap
	.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/ansible-lint

sanity: bootstrap
	scripts/sanity

build: bootstrap
	.venv/bin/python scripts/build-collection --output-path dist

lock:
	rm -rf /tmp/firebreak-lock && python3.11 -m venv /tmp/firebreak-lock
	/tmp/firebreak-lock/bin/pip install -q -r requirements/requirements.in
	{ echo "# Full lock of the venv (pip freeze of requirements.in on Python 3.11). Regenerate with: make lock"; \
	  /tmp/firebreak-lock/bin/pip freeze; } > requirements/constraints.txt
