#!/usr/bin/env bash
# Fetches a CUDA-capable onnxruntime into .ort-gpu/ (or $1) from what npm offers, with `npm pack`
# (never `npm install`): the ORT 1.29.0 core (onnxruntime-node@1.29.0, libonnxruntime.so.1) and its
# provider libraries (com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9, ORT 1.29.0, providers only:
# libonnxruntime_providers_shared.so, libonnxruntime_providers_cuda.so ~230 MB, ..._tensorrt.so).
# Bridge providers are version-locked to the core and loaded from its folder, so all land together.
#
# Not fetched (no registry reachable from here offers them): the CUDA 13 user-space libraries the
# CUDA provider links against (libcublasLt.so.13, libcublas.so.13, libcurand.so.10, libcudart.so.13;
# cuDNN 9, cuFFT, libnvrtc.so.13 at run time). Install them from NVIDIA's pip wheels (nvidia-cublas,
# nvidia-cuda-runtime, nvidia-cudnn-cu13, nvidia-curand, nvidia-cufft, nvidia-cuda-nvrtc) or the CUDA
# 13 toolkit, and put their lib folders on LD_LIBRARY_PATH. libcuda.so.1 comes with the driver.
# Then: ONNXRUNTIME_LIB=$PWD/.ort-gpu/libonnxruntime.so.1 shears ... --device cuda
set -euo pipefail
core_version=${ORT_GPU_CORE_VERSION:-1.29.0}
prov_pkg=${ORT_GPU_PROVIDERS:-com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9}
dest=${1:-.ort-gpu}
lib="$dest/libonnxruntime.so.1"
if [ -f "$lib" ] && [ -f "$dest/libonnxruntime_providers_cuda.so" ]; then exit 0; fi
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) echo "fetch-ort-gpu: the CUDA providers on npm are for Linux x86-64 only, not $(uname -s)-$(uname -m)" >&2; exit 1 ;;
esac
command -v npm >/dev/null || { echo "fetch-ort-gpu: npm is needed (apt-get install npm)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The core: the same npm package as the CPU library, at the version the providers are built for.
ORT_VERSION=$core_version "$(dirname "$0")/fetch-ort.sh" "$tmp/core"
echo "fetch-ort-gpu: npm pack $prov_pkg (~230 MB)" >&2
(cd "$tmp" && npm pack --silent "$prov_pkg" >/dev/null)
tgz=$(ls "$tmp"/*.tgz | grep -v "onnxruntime-node-" | head -n1)
members=$(tar -tzf "$tgz" | grep -E 'libonnxruntime_providers_[a-z_]+\.so$' | grep -i 'linux' | grep -iE 'x64|x86_64|amd64' || true)
[ -n "$members" ] || members=$(tar -tzf "$tgz" | grep -E 'libonnxruntime_providers_[a-z_]+\.so$' || true)
echo "$members" | grep -q 'libonnxruntime_providers_cuda.so' || { echo "fetch-ort-gpu: $prov_pkg holds no libonnxruntime_providers_cuda.so" >&2; exit 1; }
echo "$members" | grep -q 'libonnxruntime_providers_shared.so' || { echo "fetch-ort-gpu: $prov_pkg holds no libonnxruntime_providers_shared.so" >&2; exit 1; }
mkdir -p "$tmp/x"
# shellcheck disable=SC2086
tar -xzf "$tgz" -C "$tmp/x" $members
for m in $members; do mv "$tmp/x/$m" "$tmp/core/"; done
mkdir -p "$dest"
for f in "$tmp"/core/*; do mv "$f" "$dest/$(basename "$f").tmp"; done
for f in "$dest"/*.tmp; do mv "$f" "${f%.tmp}"; done
ls -l "$dest" >&2
echo "fetch-ort-gpu: $lib (+ providers). CUDA 13 + cuDNN 9 libraries must be on LD_LIBRARY_PATH (see this script's header)" >&2
