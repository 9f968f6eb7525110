# The two commands a newcomer needs: `make up` and `make test`. Both bootstrap .venv.
ifndef PYTHON
PYTHON := $(shell for p in python3.13 python3.12 python3.11 python3; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 \
	&& echo $$p && break; done)
endif
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The AsyncAPI 3.0 JSON schema the tests validate the events' document against, from npm.
ASYNCAPI_SPECS_VERSION := 6.11.1
ASYNCAPI_SPECS := $(VENV)/share/asyncapi-specs

.PHONY: install system-packages up test lint format clean load

install: $(STAMP)  ## idempotent bootstrap: .venv with the platform and its dev tools

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11+ is required"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,local]"
	@touch $@

$(ASYNCAPI_SPECS)/package.json: $(STAMP) Makefile
	@deploy/dev/system-packages.sh
	mkdir -p $(ASYNCAPI_SPECS)
	cd $(ASYNCAPI_SPECS) && npm pack --silent @asyncapi/specs@$(ASYNCAPI_SPECS_VERSION) >/dev/null \
		&& tar xzf asyncapi-specs-$(ASYNCAPI_SPECS_VERSION).tgz --strip-components=1 \
		   package/package.json package/LICENSE 'package/schemas/3.0.0-without-$$id.json' \
		&& rm asyncapi-specs-$(ASYNCAPI_SPECS_VERSION).tgz && touch package.json

up: install  ## start the whole platform in the foreground (Ctrl-C stops it)
	$(BIN)/nocode up

system-packages:  ## Chromium, its CJK fonts and npm from Debian when missing (the tests need them)
	@deploy/dev/system-packages.sh

test: install system-packages $(ASYNCAPI_SPECS)/package.json  ## run the test suite (unit and connected)
	$(BIN)/pytest

load: install  ## the seed's siege run through the gateway, pass/fail by thresholds (bench/loadtest.py; ARGS=...)
	@deploy/dev/system-packages.sh siege
	$(BIN)/python -m bench.loadtest $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:  ## remove the virtualenv and the local data directory
	rm -rf $(VENV) .nocode
