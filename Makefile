# Two commands: `make run` (set up .venv, build, print an optimised SD 2.1 schedule) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.hso-installed
SOURCES := pyproject.toml CMakeLists.txt $(wildcard csrc/*.cpp csrc/*/*.cpp csrc/*/*.h csrc/*/*.cu)

.PHONY: run test install bench clean info

run: $(STAMP)
	$(BIN)/hso optimize

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

bench: $(STAMP)
	$(BIN)/python -m pytest -q benchmarks --benchmark-enable --benchmark-only
	$(BIN)/python -m benchmarks.report

info: $(STAMP)
	$(BIN)/hso info

install: $(STAMP)

$(STAMP): $(SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

clean:
	rm -rf build $(VENV) .pytest_cache .hypothesis .benchmarks hso/_C*.so
