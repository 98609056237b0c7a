# Homeline: `make demo` runs the server on the demo config, `make test` runs every test.
# Both install what is missing first (Debian packages only when absent, then a .venv).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CONFIG ?= config/demo.toml

APT_RUNTIME := libopus0 libportaudio2 ca-certificates espeak-ng sox libtk8.6 fonts-dejavu-core gcc
APT_TEST    := sip-tester baresip-core tshark chromium xvfb
APT_VENV    := python3-venv

.PHONY: demo test deps test-deps prompts bench loopback clean

deps: $(STAMP)

$(STAMP): pyproject.toml setup.cfg scripts/ensure-apt
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || scripts/ensure-apt $(APT_VENV)
	scripts/ensure-apt $(APT_RUNTIME)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $@

test-deps: deps
	scripts/ensure-apt $(APT_TEST)

# espeak-ng speaks the standard prompts once; recorded WAVs of the same names are kept
prompts: deps
	$(BIN)/acd prompts build --config $(CONFIG)

demo: prompts
	$(BIN)/acd serve --config $(CONFIG)

# two workers: tests against real peers run one at a time on one (tests/conftest.py), unit tests on both
PYTEST_ARGS ?= -n 2 --dist loadgroup
test: test-deps prompts
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: test-deps
	$(BIN)/python bench/sip_cps.py

# a loopback against a running server's echo test (make demo in another terminal)
loopback: deps
	$(BIN)/acd loopback sip:echo@127.0.0.1:5060 --calls 20 --rate 2 --concurrency 8 --report loopback.html

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
