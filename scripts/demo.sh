#!/usr/bin/env bash
# make demo: the main job end to end on the default model (stories260K) and data.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED:-../shared}
out=${DEMO:-demo-out}
model_dir="$shared/models/stories260K"
if [ ! -f "$model_dir/stories260K.bin" ]; then
  echo "demo: $model_dir/stories260K.bin is missing (the shared stories260K model)" >&2
  exit 1
fi
mkdir -p "$out"
shears=bin/shears
echo "== import the llama2.c checkpoint into ONNX"
$shears import llama2c "$model_dir/stories260K.bin" -o "$out/stories260K.onnx"
echo "== inspect"
$shears inspect "$out/stories260K.onnx"
echo "== generate a story (greedy)"
$shears generate "$out/stories260K.onnx" --tokenizer "$model_dir/tok512.bin" --max-tokens 120
