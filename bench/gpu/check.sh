#!/usr/bin/env bash
# The offline GPU check (issues 7 and 15). On the GPU machine, from the unpacked bundle
# (make gpu-bundle):
#
#   ./bench/gpu/check.sh --device webgpu --out "$OUT"
#
# It generates LLaMA-shaped synthetic models there (25m, 1b, 7b; fp16, or fp32 where the provider
# fails on fp16), and measures, per shape: shears' forward pass and NLS train step on the provider
# (tokens/s, achieved TFLOP/s and the fraction of the GPU's dense peak, peak GPU memory from
# nvidia-smi), the same forward and step in PyTorch (bench/peer/peer.py; CUDA, fp16 autocast), and,
# on the first shape, the ops the provider left to the CPU (from onnxruntime's profile). Anything
# that fails is recorded by name and the check goes on. Results: OUT/results.md (tables),
# OUT/results.json, OUT/results.jsonl (one record per measurement, written as they come), and
# OUT/check.log. Every flag of "gpucheck run" passes through (gpucheck run --help), e.g.
#
#   ./bench/gpu/check.sh --device webgpu --out /tmp/r --shapes 25m,1b --budget 6m
#   ./bench/gpu/check.sh --device cpu --shapes tiny --out /tmp/r --steps 2 --train-steps 2   # the CPU path (make test)
#   ONNXRUNTIME_LIB=.ort-gpu/libonnxruntime.so.1 ./bench/gpu/check.sh --device cuda --out /tmp/r
#
# Binaries: the bundle's bin/gpucheck and bin/shears (bin/PREBUILT), otherwise built with Go first. The library: $ONNXRUNTIME_LIB, else .ort/libonnxruntime.so.1. The peer's
# python: $PYTHON, else python3 (it needs torch; the check records the peer as skipped without it).
# The environment variables DEVICE, SHAPES and OUT are read when the flags are not given.
set -euo pipefail
cd "$(dirname "$0")/../.."
# bin/PREBUILT marks the bundle's binaries (make gpu-bundle): used even where Go exists, since the
# GPU machines have no network to fetch modules with.
if [ -x bin/gpucheck ] && [ -x bin/shears ] && { [ -f bin/PREBUILT ] || [ -n "${PREBUILT:-}" ] || ! command -v "${GO:-go}" >/dev/null; }; then
  echo "== prebuilt bin/gpucheck, bin/shears" >&2
else
  echo "== build bin/gpucheck, bin/shears" >&2
  mkdir -p bin
  "${GO:-go}" build -o bin/shears ./cmd/shears
  "${GO:-go}" build -o bin/gpucheck ./bench/gpu/gpucheck
fi
# The binaries link against the glibc they were built with (cgo); say so plainly where it is older.
if ! err=$(./bin/gpucheck help 2>&1 >/dev/null); then
  echo "check.sh: bin/gpucheck does not start here: $err" >&2
  if [[ $err == *GLIBC* ]]; then
    echo "check.sh: the binaries need the glibc of the machine that built them ($(cat bin/PREBUILT 2>/dev/null || echo 'see make gpu-bundle')); this one has $(ldd --version 2>/dev/null | head -n1)" >&2
  fi
  exit 1
fi
export ONNXRUNTIME_LIB=${ONNXRUNTIME_LIB:-$PWD/.ort/libonnxruntime.so.1}
# WebGPU runs on Vulkan: where the system has no loader (or no libGLdispatch, which NVIDIA's
# driver library needs) the bundle's own go on the library path, and where no ICD file names
# NVIDIA's driver in the loader's usual folders, the driver's own mount is named.
notes=()
has_lib() { ldconfig -p 2>/dev/null | grep -q " $1 "; }
for l in vulkan:libvulkan.so.1 glvnd:libGLdispatch.so.0; do
  if ! has_lib "${l#*:}" && [ -f "lib/${l%%:*}/${l#*:}" ]; then
    export LD_LIBRARY_PATH="$PWD/lib/${l%%:*}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    notes+=("bundled ${l#*:}")
  fi
done
nv_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ] && [ -f "$nv_icd" ] &&
   ! ls /usr/share/vulkan/icd.d/nvidia* /etc/vulkan/icd.d/nvidia* >/dev/null 2>&1; then
  export VK_DRIVER_FILES=$nv_icd VK_ICD_FILENAMES=$nv_icd
  notes+=("VK_DRIVER_FILES=$nv_icd")
fi
[ ${#notes[@]} -eq 0 ] || echo "== vulkan: ${notes[*]}" >&2
args=("$@")
has() { local f; for f in "${args[@]}"; do [[ $f == "$1" || $f == "$1="* ]] && return 0; done; return 1; }
has --device || args+=(--device "${DEVICE:-webgpu}")
has --out || args+=(--out "${OUT:-bench/out/gpu-check}")
if ! has --shapes && [ -n "${SHAPES:-}" ]; then args+=(--shapes "$SHAPES"); fi
has --python || args+=(--python "${PYTHON:-python3}")
has --command || args+=(--command "bench/gpu/check.sh $*")
[ ${#notes[@]} -eq 0 ] || args+=(--note "vulkan: ${notes[*]}")
exec ./bin/gpucheck run "${args[@]}"
