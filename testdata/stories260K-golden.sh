#!/usr/bin/env bash
# The stories260K golden numbers in the tests (runtime, models/llama2c, transform/autodiff) come
# from llama2.c's reference forward, run.c. This script reproduces them:
#
#   testdata/stories260K-golden.sh [LLAMA2C_DIR] [MODEL_DIR]
#
# LLAMA2C_DIR is a checkout of github.com/karpathy/llama2.c (cloned into .cache/llama2.c when
# absent; the figures were made at commit 350e04f); MODEL_DIR holds stories260K.bin and
# tok512.bin (default ../shared/models/stories260K, else .cache/stories260K as fetched by
# scripts/demo.sh). It prints the top-5 logits after BOS and the first 20 greedy ids; expected:
#
#   403 17.023516 / 385 15.406213 / 410 13.108263 / 317 12.769166 / 407 12.418087
#   ids 403 407 261 378 432 383 286 261 376 298 315 421 395 317 426 338 401 396 267 337
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:-.cache/llama2.c}
models=${2:-../shared/models/stories260K}
[ -f "$models/stories260K.bin" ] || models=.cache/stories260K
if [ ! -f "$src/run.c" ]; then
  git clone -q https://github.com/karpathy/llama2.c "$src"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Print the logits of position 0 and every sampled id on stderr (temperature 0 = greedy).
sed -e 's|^\( *\)float\* logits = forward(transformer, token, pos);|&\n\1if (pos == 0) for (int i = 0; i < transformer->config.vocab_size; i++) fprintf(stderr, "LOGIT %d %.6f\\n", i, logits[i]);|' \
    -e 's|^\( *\)pos++;|\1fprintf(stderr, "ID %d\\n", next);\n&|' "$src/run.c" > "$work/run.c"
gcc -O2 -o "$work/run" "$work/run.c" -lm
"$work/run" "$models/stories260K.bin" -z "$models/tok512.bin" -t 0 -n 21 -i "" >/dev/null 2>"$work/out"
grep '^LOGIT' "$work/out" | sort -k3 -g -r | head -5 | awk '{print $2, $3}'
echo "ids $(grep '^ID' "$work/out" | head -20 | awk '{printf "%s ", $2}')"
