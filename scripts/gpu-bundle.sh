#!/usr/bin/env bash
# Assembles the offline GPU check's payload (issue 15): everything bench/gpu/check.sh needs on a
# machine with no network and no Go, under 64 MiB in all:
#
#   bin/shears, bin/gpucheck   stripped x86-64 binaries built here (go build -ldflags "-s -w")
#   .ort/libonnxruntime.so.1   the CPU onnxruntime from "make ort" (it carries the WebGPU provider)
#   lib/vulkan, lib/glvnd      the Vulkan loader and libGLdispatch (Debian 12), for machines without them
#   the repository             its tracked files as they are in the working tree (scripts, peer.py)
#
#   scripts/gpu-bundle.sh [--dir DIR] [--tar FILE | --no-tar]
#
# DIR (default bench/out/gpu-bundle) is rebuilt; FILE (default bench/out/gpu-bundle.tgz) is its
# gzipped tarball, unpacked with: mkdir b && tar xzf gpu-bundle.tgz -C b. Prints the manifest with
# each part's size and the total (bytes and MiB), and fails when the total is 64 MiB or more.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=bench/out/gpu-bundle
tarball=bench/out/gpu-bundle.tgz
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=$2; shift 2 ;;
    --tar) tarball=$2; shift 2 ;;
    --no-tar) tarball=""; shift ;;
    *) echo "gpu-bundle: unknown argument $1 (--dir DIR, --tar FILE, --no-tar)" >&2; exit 2 ;;
  esac
done
limit=$((64 * 1024 * 1024))
lib=${ORT_LIB:-.ort/libonnxruntime.so.1}
[ -f "$lib" ] || { echo "gpu-bundle: $lib is missing (run make ort)" >&2; exit 1; }
[ "$(uname -m)" = x86_64 ] || { echo "gpu-bundle: the GPU machines are x86-64; this is $(uname -m)" >&2; exit 1; }
command -v git >/dev/null && git rev-parse --git-dir >/dev/null 2>&1 || { echo "gpu-bundle: run inside the git checkout" >&2; exit 1; }

rm -rf "$dir"
mkdir -p "$dir/bin" "$dir/.ort"
# The repository: tracked and not-ignored files, working-tree content; links (the worktree's .ort
# and .cache) left out.
files=()
while IFS= read -r -d '' f; do
  if [ -f "$f" ] && [ ! -L "$f" ]; then files+=("$f"); fi
done < <(git ls-files -z --cached --others --exclude-standard)
printf '%s\0' "${files[@]}" | tar --null -T - -cf - | tar -xf - -C "$dir"
# The binaries, stripped (symbol and DWARF tables dropped at link time), for linux/amd64.
export GOOS=linux GOARCH=amd64
"${GO:-go}" build -ldflags "-s -w" -o "$dir/bin/shears" ./cmd/shears
"${GO:-go}" build -ldflags "-s -w" -o "$dir/bin/gpucheck" ./bench/gpu/gpucheck
cp -L "$lib" "$dir/.ort/libonnxruntime.so.1"

# The Vulkan loader (and libGLdispatch, which NVIDIA's Vulkan driver library needs): WebGPU's Dawn
# dlopens libvulkan.so.1, which GPU machine images do not always have. check.sh puts these on
# LD_LIBRARY_PATH only where the system lacks them. Debian 12's packages, fetched once with apt and
# cached; without apt (or offline) the bundle goes without them and says so.
vkcache=${XDG_CACHE_HOME:-$HOME/.cache}/shears-gpu-bundle
vulkan=""
apt=(apt-get -o Acquire::Retries=0 -o Acquire::http::Timeout=10 -o Acquire::https::Timeout=10)
if command -v dpkg-deb >/dev/null && mkdir -p "$vkcache" && (cd "$vkcache" && { ls libvulkan1_*.deb libglvnd0_*.deb >/dev/null 2>&1 ||
    "${apt[@]}" download libvulkan1 libglvnd0 >/dev/null 2>&1 ||
    { "${apt[@]}" update -q >/dev/null 2>&1 && "${apt[@]}" download libvulkan1 libglvnd0 >/dev/null 2>&1; }; }); then
  x=$(mktemp -d)
  for d in "$vkcache"/libvulkan1_*.deb "$vkcache"/libglvnd0_*.deb; do dpkg-deb -x "$d" "$x"; done
  mkdir -p "$dir/lib/vulkan" "$dir/lib/glvnd"
  cp -L "$x/usr/lib/x86_64-linux-gnu/libvulkan.so.1" "$dir/lib/vulkan/"
  cp -L "$x/usr/lib/x86_64-linux-gnu/libGLdispatch.so.0" "$dir/lib/glvnd/"
  rm -rf "$x"
  vulkan="$(basename "$vkcache"/libvulkan1_*.deb .deb), $(basename "$vkcache"/libglvnd0_*.deb .deb)"
else
  echo "gpu-bundle: warning: could not fetch libvulkan1/libglvnd0 with apt (Debian/Ubuntu only); the bundle relies on the machine's Vulkan loader" >&2
fi
# The newest glibc symbol version the binaries need: the oldest glibc the GPU machine may have.
glibc=$(objdump -T "$dir/bin/shears" "$dir/bin/gpucheck" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n1 || true)
echo "built $(date -u '+%Y-%m-%d %H:%M UTC') from $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' (with local changes)'); needs ${glibc:-an unknown glibc} or newer" > "$dir/bin/PREBUILT"

size() { du -sb --apparent-size "$@" | awk '{s += $1} END {print s}'; }
repo=$(printf "$dir/%s\0" "${files[@]}" | xargs -0 du -b --apparent-size | awk '{s += $1} END {print s}')
total=$(find "$dir" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
mib() { awk -v b="$1" 'BEGIN {printf "%.2f MiB", b / 1048576}'; }
echo "gpu-bundle: $dir"
printf '  %-28s %10d bytes  %s\n' "bin/shears" "$(size "$dir/bin/shears")" "$(mib "$(size "$dir/bin/shears")")"
printf '  %-28s %10d bytes  %s\n' "bin/gpucheck" "$(size "$dir/bin/gpucheck")" "$(mib "$(size "$dir/bin/gpucheck")")"
printf '  %-28s %10d bytes  %s\n' ".ort/libonnxruntime.so.1" "$(size "$dir/.ort/libonnxruntime.so.1")" "$(mib "$(size "$dir/.ort/libonnxruntime.so.1")")"
if [ -n "$vulkan" ]; then
  vk=$(size "$dir/lib")
  printf '  %-28s %10d bytes  %s (%s)\n' "lib/ (Vulkan loader)" "$vk" "$(mib "$vk")" "$vulkan"
fi
printf '  %-28s %10d bytes  %s\n' "repository (${#files[@]} files)" "$repo" "$(mib "$repo")"
printf '  %-28s %10d bytes  %s (limit 64 MiB)\n' "total" "$total" "$(mib "$total")"
echo "  binaries need ${glibc:-an unknown glibc} or newer on the GPU machine (cgo links the build machine's glibc)"
if [ "$total" -ge "$limit" ]; then
  echo "gpu-bundle: the payload is $(mib "$total"), over the 64 MiB the GPU machines accept" >&2
  exit 1
fi
if [ -n "$tarball" ]; then
  tmp="$tarball.tmp"
  tar -C "$dir" -czf "$tmp" .
  mv "$tmp" "$tarball"
  printf '  %-28s %10d bytes  %s\n' "$tarball" "$(size "$tarball")" "$(mib "$(size "$tarball")")"
fi
echo "on the machine: mkdir b && tar xzf $(basename "${tarball:-gpu-bundle.tgz}") -C b && b/bench/gpu/check.sh --device webgpu --out \$OUT"
