# Front door for the two commands in the README:
#   make run   install dependencies, build, run on the embedded default config
#   make test  install dependencies, build with ASan+UBSan, run every test
# The build itself is CMake; this file only strings the steps together.

JOBS ?= $(shell nproc)
# libconfig leaks a buffer on a syntax error; nothing of ours is suppressed.
export LSAN_OPTIONS = suppressions=$(CURDIR)/tests/lsan.supp
PYTHON ?= /usr/bin/python3

.PHONY: all build run test unit pytest fuzz-smoke deps test-deps clean

all: build

deps:
	scripts/install-deps.sh

test-deps:
	scripts/install-deps.sh --test

build: deps
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFULMAR_TESTS=OFF
	cmake --build build -j$(JOBS)

run: build
	scripts/run-default.sh

build-asan/fulmar: test-deps FORCE
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DFULMAR_SANITIZE=ON
	cmake --build build-asan -j$(JOBS)

unit: build-asan/fulmar
	cd build-asan && ctest --output-on-failure

pytest: build-asan/fulmar
	FULMAR_BIN=$(CURDIR)/build-asan/fulmar $(PYTHON) -m pytest -q tests/

# Every libFuzzer target in fuzz/ (scripts/fuzz.sh), FUZZ_SECONDS each, two
# at a time: 14 targets x 20 s / 2 is about 2.5 minutes of the CI budget.
FUZZ_SECONDS ?= 30
fuzz-smoke: test-deps
	scripts/fuzz.sh --seconds $(FUZZ_SECONDS) --jobs 2

# The README's first command builds the release flavour: keep it compiling.
# The fuzz smoke comes after pytest (make -j keeps that order too).
test: build unit pytest
	$(MAKE) fuzz-smoke

clean:
	rm -rf build build-asan build-fuzz

FORCE:
