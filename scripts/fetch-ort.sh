#!/usr/bin/env bash
# Fetches the onnxruntime CPU library (ORT 1.24.1, the version onnxruntime_go v1.27.0's C API 24 needs)
# into .ort/ with `npm pack` — never `npm install`, whose postinstall tries to download CUDA packages.
set -euo pipefail
version=${ORT_VERSION:-1.24.1}
dest=${1:-.ort}
lib="$dest/libonnxruntime.so.1"
if [ -f "$lib" ]; then exit 0; fi
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) arch=x64 ;;
  Linux-aarch64) arch=arm64 ;;
  *) echo "fetch-ort: no prebuilt onnxruntime for $(uname -s)-$(uname -m) in onnxruntime-node; pass --ort-lib" >&2; exit 1 ;;
esac
command -v npm >/dev/null || { echo "fetch-ort: npm is needed to fetch onnxruntime (apt-get install npm)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch-ort: npm pack onnxruntime-node@$version (~86 MB)" >&2
(cd "$tmp" && npm pack --silent "onnxruntime-node@$version" >/dev/null)
tar -xzf "$tmp/onnxruntime-node-$version.tgz" -C "$tmp" "package/bin/napi-v6/linux/$arch/libonnxruntime.so.1"
mkdir -p "$dest"
mv "$tmp/package/bin/napi-v6/linux/$arch/libonnxruntime.so.1" "$lib.tmp"
mv "$lib.tmp" "$lib"
echo "fetch-ort: $lib" >&2
