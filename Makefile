# The two commands of the README, and the benchmarks.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint soak bench bench-quick clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The client is its own distribution (clients/python); authz.client re-exports it, and the server
# imports its decision index (authz_client.decisions: one implementation for both), so both are installed.
$(STAMP): pyproject.toml clients/python/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e './clients/python[fastapi]' -e '.[test]'
	touch $(STAMP)

# Development secrets, created once: `authz dev-token` and `authz serve` agree, and console
# sign-ins survive a restart.
.env:
	@echo "AUTHZ_JWT_SECRET=$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(32))')" > .env
	@echo "AUTHZ_SESSION_SECRET=$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(32))')" >> .env
	@echo "created .env with a development JWT secret and console session secret"

## run: set up and serve on SQLite at http://127.0.0.1:8000 (API and console), with the
## development sign-in and mailbox on; the user "admin" sees the policy pages.
run: $(STAMP) .env
	$(BIN)/authz db upgrade
	AUTHZ_DEV_LOGIN=true AUTHZ_ADMIN_USERS="$${AUTHZ_ADMIN_USERS:-admin}" \
		$(BIN)/authz serve --host 127.0.0.1 --port 8000

# Tests run on TEST_WORKERS processes (pytest-xdist; 0 runs them in this process): each worker has its
# own PostgreSQL database and temporary files, and tests sharing a module-wide fixture stay on one worker
# (tests/conftest.py). More workers than cores pays off: `test`'s end-to-end tests mostly wait, and so do
# test-fast's long polls and races (3 workers on 2 cores: 20.7-20.9 s against 22-23 s for 2).
TEST_WORKERS ?= 4
FAST_WORKERS ?= 3
# Tests keep Python's bytecode caches (pytest's rewritten test modules too) even where the environment
# says not to write them (PYTHONDONTWRITEBYTECODE): otherwise every worker and every `authz serve` a test
# starts compiles the project again, 2-3 s of a `make test-fast` run.
test test-fast soak: export PYTHONDONTWRITEBYTECODE :=

## test: set up and run the whole test suite (PostgreSQL tests too when reachable, always when CI=true)
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

## test-fast: the edit-test loop: no PostgreSQL, no browser, no processes, a fifth of the property
## tests' examples (tests/hypothesis_budget.py; `make test` and CI draw them all)
test-fast: $(STAMP)
	AUTHZ_TEST_EXAMPLE_SHARE=$${AUTHZ_TEST_EXAMPLE_SHARE:-0.2} $(BIN)/python -m pytest -q -p no:cacheprovider -n $(FAST_WORKERS) --dist loadgroup -m "not postgres and not e2e" $(PYTEST_ARGS)

## lint: ruff and mypy --strict over authz, api, the client package, tests and bench (configured in
## pyproject.toml); .ci/run runs it before the tests, .pre-commit-config.yaml on each commit
lint: $(STAMP)
	@status=0; $(BIN)/ruff check || status=1; $(BIN)/mypy || status=1; exit $$status

## soak: the history checker for SOAK_SECONDS (default 600) on PostgreSQL; prints its figures
SOAK_SECONDS ?= 600
soak: $(STAMP)
	HISTORY_SECONDS=$(SOAK_SECONDS) AUTHZ_REQUIRE_POSTGRES=1 $(BIN)/python -m pytest -p no:cacheprovider -q -s tests/history

bench: $(STAMP)
	$(BIN)/python -m bench.run

bench-quick: $(STAMP)
	$(BIN)/python -m bench.run --quick

clean:
	rm -rf $(VENV) authz.db authz.db-* .pytest_cache
