# The two commands a new user needs:
#   make run   - set up and serve the product on embedded defaults (SQLite, no Redis)
#   make test  - set up and run the whole test suite (local PostgreSQL and Redis)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

# The suite runs against real services; override these to point elsewhere.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/privacy_portal
TEST_BROKER_URL ?= redis://127.0.0.1:6379/0

.PHONY: run test install install-dev

run: install
	$(PY) scripts/run_dev.py

test: install-dev
	scripts/ensure_system_packages.sh
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} \
	CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$(TEST_BROKER_URL)} \
	PRIVACY_PORTAL_REQUIRE_SERVICES=1 \
	$(PY) -m pytest $(PYTEST_ARGS)

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt $(VENV)/bin/python
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@
