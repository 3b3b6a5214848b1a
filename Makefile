# The two commands of the README: `make run` and `make test`. Everything else is optional.
BUILD_DIR ?= build
BUILD_TYPE ?= Release
JOBS ?= $(shell nproc)
# `MODEL=/path/to/hf-checkpoint make run` serves a real checkpoint; the default is the project's
# own tiny code model (models/demo, docs/demo-model.md).
MODEL ?= models/demo
# `make bench` measures the random model the build creates (its context is 2048 tokens).
BENCH_MODEL ?= $(BUILD_DIR)/models/random
HOST ?= 127.0.0.1
PORT ?= 50051
# The OpenAI-compatible HTTP API beside gRPC (-1: off).
HTTP_PORT ?= 8000
# `make docker` builds deploy/docker/Dockerfile.$(FLAVOR) (cpu or cuda) as iquest-serve:$(FLAVOR).
FLAVOR ?= cpu

.PHONY: all deps build-deps configure build run test eval bench fuzz gpu-check docker format clean

all: build

# `make run` installs only what the build needs; `make test` adds the test peers (Python gRPC,
# Prometheus, npm packages).
deps:
	@bash scripts/install-deps.sh

build-deps:
	@IQUEST_DEPS_BUILD_ONLY=1 bash scripts/install-deps.sh

configure: build-deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) > /dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

# Starts iquest-serve in the foreground; Ctrl-C (SIGINT) or SIGTERM drains and stops it.
run: build
	$(BUILD_DIR)/bin/iquest-serve --model $(MODEL) --host $(HOST) --port $(PORT) \
	  --http-port $(HTTP_PORT)

test: deps build
	cd $(BUILD_DIR) && ctest -LE gpu --output-on-failure -j $(JOBS) --timeout 900

# The model-quality gate (scripts/ci/eval.sh, the pipeline's eval stage): logits parity, tiny
# models' greedy output, and the demo model's held-out bits per byte and stored completions.
eval: build
	BUILD_DIR=$(BUILD_DIR) bash scripts/ci/eval.sh

bench: build
	$(BUILD_DIR)/bin/iquest-bench-engine --model $(BENCH_MODEL)

# libFuzzer targets built with clang-14 + ASan/UBSan in build-fuzz, each run for FUZZ_SECONDS
# (default 60); FUZZERS="gguf_fuzz ..." picks some. Findings land in build-fuzz/fuzz/artifacts.
fuzz: deps
	bash scripts/fuzz.sh

# On a GPU machine (DESIGN.md section 13): builds the CUDA kernels and their check with nvcc alone,
# runs the `gpu` tests carried in gpu-bundle/ if any, and prints the kernels' table.
gpu-check:
	bash scripts/gpu-check.sh

# Needs a Docker engine with BuildKit (not needed for anything else here).
docker:
	DOCKER_BUILDKIT=1 docker build -f deploy/docker/Dockerfile.$(FLAVOR) -t iquest-serve:$(FLAVOR) .

format:
	@git ls-files '*.cc' '*.h' '*.cu' '*.cuh' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR)
