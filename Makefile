# The two commands of the README: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test reference clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/langspec run specs/demo.yaml

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

# docs/reference/*.md, generated from the code (tests/langspec/test_reference_pages.py checks them)
reference: $(BIN)/.installed
	$(BIN)/python -m langspec.reference

clean:
	rm -rf results .pytest_cache
