# The two commands: `make run` serves the backoffice, `make test` runs the tests.
# Both create the virtualenv and install what they need on first use.

VENV := .venv
PY := $(VENV)/bin/python
# Tests use the local PostgreSQL (a test_backoffice database is created and dropped).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/backoffice
# ... and the local Redis, database 15 (flushed by the tests).
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

TIMESCALEDB_CHECK := usage/tests/timescaledb
BROWSER_TESTS := tests/browser

.PHONY: run manage test system-packages

run: $(VENV)/.installed
	$(PY) -m backoffice.run

# One management command against make run's database: make manage ARGS="changepassword demo@example.com"
manage: $(VENV)/.installed
	@$(PY) -m backoffice.run manage $(ARGS)

# Lint and format first (ruff, pyproject.toml): seconds, before minutes of tests.
test: $(VENV)/.installed system-packages $(TIMESCALEDB_CHECK)/node_modules $(BROWSER_TESTS)/node_modules
	$(VENV)/bin/ruff check --quiet .
	$(VENV)/bin/ruff format --check --quiet .
	DEBUG=1 DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(VENV)/bin/pytest $(PYTEST_ARGS)

$(VENV)/.installed: requirements.txt requirements-test.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $@

# Debian packages the tests drive: Chromium (browser tests). The benchmarks install their own (wrk, Go).
SYSTEM_PACKAGES := chromium
# Installed when missing if we are root (CI); anyone else is told the command to run.
system-packages:
	@command -v chromium >/dev/null || \
		if [ "$$(id -u)" -eq 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES); \
		else \
			printf 'make test needs Debian packages that are missing. Install them, then run it again:\n  %s\n' \
				"sudo apt-get update && sudo apt-get install -y $(SYSTEM_PACKAGES)" >&2; \
			exit 1; \
		fi

# The WASM TimescaleDB that the store's TimescaleDB SQL is checked against (Node.js, npm).
$(TIMESCALEDB_CHECK)/node_modules: $(TIMESCALEDB_CHECK)/package-lock.json
	npm ci --prefix $(TIMESCALEDB_CHECK) --no-audit --no-fund --silent
	touch $@

# axe-core, which the browser tests inject into each page to check its accessibility.
$(BROWSER_TESTS)/node_modules: $(BROWSER_TESTS)/package-lock.json
	npm ci --prefix $(BROWSER_TESTS) --no-audit --no-fund --silent
	touch $@
