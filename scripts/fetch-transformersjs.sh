#!/usr/bin/env bash
# Installs transformers.js (npm @huggingface/transformers, Apache-2.0), the JavaScript client
# the deploy tests load exported model folders with, into .cache/transformers-js/ with
# `npm install --ignore-scripts` (no install scripts run; onnxruntime-node ships its CPU
# library in the package). Never committed. Idempotent: an install that finished is kept.
# Tests that need it skip, naming this script, when it is missing (no npm, no registry).
set -euo pipefail
dest=${1:-.cache/transformers-js}
version=4.3.2
if [ -f "$dest/.complete-$version" ]; then exit 0; fi
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
  echo "fetch-transformersjs: node and npm are needed (apt-get install nodejs npm); the transformers.js tests will skip" >&2
  exit 0
fi
mkdir -p "$(dirname "$dest")"
tmp=$(mktemp -d "$(dirname "$dest")/.transformers-js.tmp-XXXXXX")
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
echo '{"private": true, "description": "transformers.js for the shears deploy tests"}' >"$tmp/package.json"
echo "fetch-transformersjs: npm install --ignore-scripts @huggingface/transformers@$version" >&2
if ! (cd "$tmp" && npm install --silent --ignore-scripts --no-audit --no-fund "@huggingface/transformers@$version" >/dev/null); then
  echo "fetch-transformersjs: npm install failed (is the npm registry reachable?); the transformers.js tests will skip" >&2
  exit 0
fi
: >"$tmp/.complete-$version"
rm -rf "$dest"
mv "$tmp" "$dest"
trap - EXIT
echo "fetch-transformersjs: $dest" >&2
