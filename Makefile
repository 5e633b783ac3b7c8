# carnb: `make lab` opens JupyterLab on the demo notebooks, `make test` runs `make lint`, then
# every test.
# Both create .venv with the Python found as $(PYTHON) (3.11 or newer) and install what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=
LAB_ARGS ?=

.PHONY: lab test bench bench-quick fuzz lint chromium postgresql phoenix clean screenshots

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "carnb needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,dev,lab]'
	touch $@

$(VENV)/.installed-lab: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[lab]'
	touch $@

# Chromium for the browser slot: the one carnb finds, else Debian's package, else Playwright's
# own download, else a message naming the options (tools/ensure-chromium).
chromium: | $(BIN)/python
	@tools/ensure-chromium $(BIN)/python

# PostgreSQL's server binaries for the PostgreSQL store tests and benchmarks (the tests start a
# throw-away server of their own): found, else Debian's package (tools/ensure-postgresql).
postgresql:
	@tools/ensure-postgresql

# A Phoenix server for the OpenTelemetry export tests (tests/observe start it themselves), in a
# virtualenv of its own: its ~110 packages would otherwise pin the project's (about 700 MB).
PHOENIX_VENV ?= .venv-phoenix
phoenix: $(PHOENIX_VENV)/.installed
$(PHOENIX_VENV)/.installed:
	$(PYTHON) -m venv $(PHOENIX_VENV)
	$(PHOENIX_VENV)/bin/python -m pip install --quiet 'arize-phoenix>=12'
	touch $@

# The demo Lab's settings (tools/lab_settings.py, also Binder's): it saves widget state with a
# notebook, so a saved notebook reopens showing the panel's last state instead of "Error
# displaying widget: model not found"; completion comes from the kernel only and shows the
# documentation panel (each %car completion item's help).
lab: $(VENV)/.installed-lab chromium postgresql
	@$(BIN)/python tools/lab_settings.py
	$(BIN)/jupyter lab --notebook-dir=notebooks $(LAB_ARGS) $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

test: lint chromium postgresql phoenix
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed-test chromium postgresql
	$(BIN)/python bench/run.py

bench-quick: $(VENV)/.installed-test chromium postgresql
	$(BIN)/python bench/run.py --quick

# A longer fuzz of a live server with a fresh random seed (printed; CARNB_FUZZ_SEED=N replays
# it): 10x the examples `make test` runs with its fixed seed.
FUZZ_EXAMPLES ?= 6000
fuzz: $(VENV)/.installed-test
	CARNB_FUZZ_SEED=$${CARNB_FUZZ_SEED:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')} \
	  CARNB_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) \
	  $(BIN)/python -m pytest tests/reliability/test_fuzz.py -p no:cacheprovider

# Each demo notebook run in JupyterLab (headless Chromium), light and dark theme, into screenshots/.
screenshots: $(VENV)/.installed-test chromium
	PYTHONPATH=$(CURDIR) $(BIN)/python tools/screenshots.py --out screenshots

# Formatting, lint rules, mypy --strict on carnb/ (pyproject [tool.mypy]), and the import
# contracts (pyproject [tool.importlinter]): the layers, and no import circle anywhere in carnb,
# counting imports inside functions and under TYPE_CHECKING.
lint: $(VENV)/.installed-test
	$(BIN)/ruff format --check carnb tests bench tools
	$(BIN)/ruff check carnb tests bench tools
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

clean:
	rm -rf $(VENV) $(PHOENIX_VENV) .pytest_cache bench/results
