# The README's commands. Each creates .venv and installs what it needs on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Everything installed comes from requirements.lock (exact versions with hashes); `make lock` refreshes it.
LOCK := requirements.lock
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | cksum | cut -d' ' -f1)
# The test SMSC (node, npm package smpp) the SMPP tests run against; without npm they skip.
SMSC := tests/smsc
SMSC_STAMP := $(SMSC)/node_modules/.installed-$(shell cksum $(SMSC)/package-lock.json | cut -d' ' -f1)

.PHONY: run test bench lint lock clean sipp

$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

$(SMSC_STAMP): $(SMSC)/package-lock.json
	@if command -v npm >/dev/null; then \
		npm ci --prefix $(SMSC) --no-audit --no-fund && touch $@; \
	else \
		echo "note: npm is not installed, so the SMPP tests against the test SMSC ($(SMSC)) will be skipped"; \
	fi

run: $(STAMP)
	$(BIN)/switchboard serve --data-dir ./data --allow-loopback-callbacks

test: $(STAMP) $(SMSC_STAMP) sipp
	$(BIN)/python -m pytest -q

# sipp (Debian's sip-tester) is the far end of the SIP tests; without it they are skipped.
sipp:
	@command -v sipp >/dev/null || (apt-get update -qq && apt-get install -y -qq sip-tester) >/dev/null 2>&1 \
		|| echo "note: sipp could not be installed, so the SIP tests against it will be skipped"

bench: $(STAMP) $(SMSC_STAMP) sipp
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
	$(BIN)/python -m bench all

lint: $(STAMP)
	$(BIN)/ruff check switchboard tests bench
	$(BIN)/mypy switchboard

# Resolve pyproject.toml's dependencies (runtime, test, tools) again and write them with hashes for every platform.
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml --extra test --group pyproject.toml:tools --universal \
		--python-version 3.11 --generate-hashes --quiet -o $(LOCK)

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
