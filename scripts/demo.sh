#!/usr/bin/env bash
# make demo: the main job end to end on the default model (stories260K) and data.
# Today: import → inspect → generate → Wanda 50% prune → held-out perplexity, dense vs pruned.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED:-../shared}
out=${DEMO:-demo-out}
model_dir="$shared/models/stories260K"
data_dir="$shared/data/llm-adapters"
for f in "$model_dir/stories260K.bin" "$model_dir/tok512.bin" "$data_dir/ARC-Easy-train.json" "$data_dir/ARC-Easy-test.json"; do
  [ -f "$f" ] || { echo "demo: $f is missing (the shared stories260K model and LLM-Adapters data)" >&2; exit 1; }
done
mkdir -p "$out"
shears=bin/shears
tok="$model_dir/tok512.bin"
echo "== 1. import the llama2.c checkpoint into ONNX"
$shears import llama2c "$model_dir/stories260K.bin" -o "$out/stories260K.onnx"
echo
echo "== 2. inspect (the head of the table)"
$shears inspect "$out/stories260K.onnx" > "$out/inspect.txt"
head -14 "$out/inspect.txt"; echo "..."; tail -2 "$out/inspect.txt"
echo
echo "== 3. generate a story (greedy)"
$shears generate "$out/stories260K.onnx" --tokenizer "$tok" --max-tokens 60
echo
echo "== 4. prune 50% with Wanda (sequential, 128 × 256-token windows of ARC-Easy-train)"
$shears prune "$out/stories260K.onnx" -o "$out/stories260K-wanda50.onnx" --sparsity 0.5 \
  --calib "$data_dir/ARC-Easy-train.json" --tokenizer "$tok" --samples 128 --seq-len 256 --report "$out/prune-report.json"
echo
echo "== 5. held-out perplexity (ARC-Easy-test prompts, 256-token windows)"
dense=$($shears eval "$out/stories260K.onnx" --task ppl --data "$data_dir/ARC-Easy-test.json" --tokenizer "$tok" --seq-len 256 --json)
sparse=$($shears eval "$out/stories260K-wanda50.onnx" --task ppl --data "$data_dir/ARC-Easy-test.json" --tokenizer "$tok" --seq-len 256 --json)
printf '| model | perplexity |\n|---|---|\n| dense | %s |\n| 50%% Wanda | %s |\n' \
  "$(echo "$dense" | sed 's/.*"ppl":\([0-9.]*\).*/\1/')" "$(echo "$sparse" | sed 's/.*"ppl":\([0-9.]*\).*/\1/')"
echo
echo "== 6. the pruned model still tells a story"
$shears generate "$out/stories260K-wanda50.onnx" --tokenizer "$tok" --max-tokens 60
