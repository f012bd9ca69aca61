# Two commands: `make run` (set up .venv, build, print an optimised SD 2.1 schedule) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.hso-installed
# the package folders too: the editable install maps the Python files it saw, so a new module needs a reinstall
SOURCES := pyproject.toml CMakeLists.txt $(wildcard csrc/*.cpp csrc/*/*.cpp csrc/*/*.h csrc/*/*.cu csrc/*/*.cuh) \
           hso $(filter-out %/__pycache__/,$(wildcard hso/*/))

.PHONY: run test install bench quality clean info

# SD 2.1, UniPC, NFE 6 in diffusers' convention (evaluate at every point, then jump to sigma 0); the output says
# what the measured default picked (there: an HSO search)
run: $(STAMP)
	$(BIN)/hso optimize --nfe 6 --convention jump

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

bench: $(STAMP)
	$(BIN)/python -m pytest -q benchmarks --benchmark-enable --benchmark-only
	$(BIN)/python -m benchmarks.report --with-paper
	$(BIN)/python -m benchmarks.throughput

# the committed sample-quality results (benchmarks/quality/) and the README section made from them
quality: $(STAMP)
	$(BIN)/python -m benchmarks.quality.run

info: $(STAMP)
	$(BIN)/hso info

install: $(STAMP)

$(STAMP): $(SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned, in its own command: an unpinned torch resolves to a multi-GB CUDA build (Triton needs it)
	$(BIN)/python -m pip install -q $(if $(wildcard /opt/wheels),--find-links /opt/wheels) torch==2.13.0
	# a failed CUDA build retries without CUDA, a failed C++ build installs the pure-Python reference engine
	$(BIN)/python -m pip install -q -e '.[test,triton,eval]' \
	  || (echo "hso: build failed; retrying with HSO_CUDA=OFF" >&2 && HSO_CUDA=OFF $(BIN)/python -m pip install -q -e '.[test,triton,eval]') \
	  || (echo "hso: C++ build failed; installing without hso._C (reference backend only)" >&2 \
	      && HSO_EXTENSION=OFF $(BIN)/python -m pip install -q -e '.[test,triton,eval]')
	touch $@

clean:
	rm -rf build $(VENV) .pytest_cache .hypothesis .benchmarks hso/_C*.so
