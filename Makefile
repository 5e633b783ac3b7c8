# carnb: `make lab` opens JupyterLab on the demo notebooks, `make test` runs every test.
# Both create .venv with the Python found as $(PYTHON) (3.11 or newer) and install what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=
LAB_ARGS ?=

.PHONY: lab test bench bench-quick lint chromium clean

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

lab: $(VENV)/.installed-lab chromium
	$(BIN)/jupyter lab --notebook-dir=notebooks $(LAB_ARGS) $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

test: $(VENV)/.installed-test chromium
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed-test chromium
	$(BIN)/python bench/run.py

bench-quick: $(VENV)/.installed-test chromium
	$(BIN)/python bench/run.py --quick

lint: $(VENV)/.installed-test
	$(BIN)/ruff check carnb tests bench
	$(BIN)/lint-imports --no-cache

clean:
	rm -rf $(VENV) .pytest_cache bench/results
