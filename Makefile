# Two commands for a user: `make demo` and `make test`. Everything else is here for developers.
# Each target installs what it needs into .venv first (Python 3.11, pinned requirements.txt).

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
UV_VERSION := 0.13.9
export PYTHONPATH := $(CURDIR)/include:$(PYTHONPATH)

.PHONY: demo demo-ui demo-reset test chaos lint typecheck system-deps sandbox sandbox-reset bench lock clean console-ui

$(STAMP): requirements.txt pyproject.toml
	@echo ">> creating $(VENV) with $$(command -v $(PYTHON) || command -v python3)"
	@command -v $(PYTHON) >/dev/null 2>&1 || command -v python3 >/dev/null 2>&1 || { echo "Python 3.11 is required"; exit 1; }
	@test -x $(BIN)/python || $$(command -v $(PYTHON) || command -v python3) -m venv $(VENV)
	@echo ">> installing pinned requirements (requirements.txt) with uv $(UV_VERSION)"
	@$(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"
	@$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.txt
	@$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

# Dovecot (IMAP/POP3) and mbsync from Debian for the mailbox counterparts; a no-op when present.
system-deps:
	@sh include/scripts/install_system_deps.sh

## The main job on the embedded defaults: embedded Postgres, the sandbox, the CRONUS demo data.
demo: $(STAMP) system-deps
	@$(BIN)/python include/scripts/demo.py

## The operator console: airflow standalone with the plugin and the demo's state; prints URL and credentials.
demo-ui: $(STAMP) system-deps
	@$(BIN)/python include/scripts/demo_ui.py

## Wipe the demo's state (state store, sandbox data, Airflow metadata).
demo-reset: $(STAMP)
	@$(BIN)/python include/scripts/demo.py --reset

## The whole test suite, with lint, format and type checks first.
test: $(STAMP) system-deps lint typecheck
	@echo ">> pytest (real Postgres, real HTTP to the sandbox, Airflow DAG runs)"
	@$(BIN)/pytest tests

## The sync's stateful property test, run long (issue 10): CHAOS_SEQUENCES sequences (default 500) of up to
## CHAOS_STEPS steps (edits and creates on both sides, clean and full runs, runs killed at named crash points,
## faulty APIs) on the CRONUS data, then CHAOS_LARGE_SEQUENCES sequences (default 5) with CHAOS_RECORDS more
## customers (default 20000); each prints what it tried (sequences, steps, runs, kills per point, faults injected,
## records) and what it found.
chaos: $(STAMP)
	@echo ">> sync chaos: $${CHAOS_SEQUENCES:-500} sequences of up to $${CHAOS_STEPS:-10} steps on the CRONUS data"
	@SYNC_PROPERTY_PROGRESS=1 SYNC_PROPERTY_EXAMPLES=$${CHAOS_SEQUENCES:-500} SYNC_PROPERTY_STEPS=$${CHAOS_STEPS:-10} \
		$(BIN)/pytest tests/integration/sync/test_sync_property.py -q -s -p no:cacheprovider
	@echo ">> sync chaos: $${CHAOS_LARGE_SEQUENCES:-5} sequences of up to $${CHAOS_STEPS:-10} steps with $${CHAOS_RECORDS:-20000} more customers"
	@SYNC_PROPERTY_PROGRESS=1 SYNC_PROPERTY_EXAMPLES=$${CHAOS_LARGE_SEQUENCES:-5} SYNC_PROPERTY_STEPS=$${CHAOS_STEPS:-10} \
		SYNC_PROPERTY_RECORDS=$${CHAOS_RECORDS:-20000} \
		$(BIN)/pytest tests/integration/sync/test_sync_property.py -q -s -p no:cacheprovider

lint: $(STAMP)
	@echo ">> ruff check and ruff format --check"
	@$(BIN)/ruff check dags plugins include tests
	@$(BIN)/ruff format --check dags plugins include tests

typecheck: $(STAMP)
	@echo ">> mypy on the package"
	@$(BIN)/mypy plugins/dynamics_jobqueue dags

## The API sandbox in the foreground (Ctrl-C stops it); SANDBOX_PORT, default 8765.
sandbox: $(STAMP)
	@$(BIN)/python -m sandbox serve

sandbox-reset: $(STAMP)
	@$(BIN)/python -m sandbox reset

## Benchmarks (not tests): prints the figures the issues ask for.
bench: $(STAMP) system-deps
	@$(BIN)/python include/scripts/bench.py

## Re-resolve requirements.in into the pinned requirements.txt.
## The console's React app (ui/console, npm registry packages): rebuilds the bundle the package ships
## (plugins/dynamics_jobqueue/console/static/console.js). Users need no Node.js; developers need Node.js 20+.
console-ui:
	cd ui/console && npm ci --no-audit --no-fund && npm run build

lock:
	@test -x $(BIN)/uv || { $$(command -v $(PYTHON) || command -v python3) -m venv $(VENV) && $(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"; }
	@$(BIN)/uv pip compile --quiet --python-version 3.11 requirements.in -o requirements.txt

clean:
	rm -rf $(VENV) .demo .state .pytest_cache .mypy_cache .ruff_cache
