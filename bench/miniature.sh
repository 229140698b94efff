#!/usr/bin/env bash
# "Shears in miniature" (bench/RESULTS.md): the Shears paper's comparison rows on stories260K,
# twice — SOTU held-out perplexity (examples/stories260K.yaml, the make demo recipe) and
# math_data.json → gsm8k-test answer-token loss (bench/miniature-math.yaml). Resumable: a
# second run skips the finished stages. Summaries: bench/out/miniature-*/summary.md.
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED:-../shared}
data_dir="$shared/data/llm-adapters"
[ -f "$data_dir/math_data.json" ] && [ -f "$data_dir/gsm8k-test.json" ] ||
  { echo "miniature: $data_dir/math_data.json or gsm8k-test.json is missing (the shared LLM-Adapters data)" >&2; exit 1; }
make -s build
scripts/demo.sh --data
mkdir -p .cache/math bench/out
if [ ! -f .cache/math/val.json ]; then
  node - "$data_dir/math_data.json" .cache/math <<'JS'
const fs = require('fs'), path = require('path');
const all = JSON.parse(fs.readFileSync(process.argv[2], 'utf8')), dir = process.argv[3];
const train = all.filter((_, i) => i % 5 === 0), val = all.filter((_, i) => i % 5 === 2).slice(0, 100);
for (const [k, v] of [['train', train], ['val', val]]) {
  fs.writeFileSync(path.join(dir, k + '.json.tmp'), JSON.stringify(v));
  fs.renameSync(path.join(dir, k + '.json.tmp'), path.join(dir, k + '.json'));
  console.error(`miniature: .cache/math/${k}.json: ${v.length} math_data.json records`);
}
JS
fi
model=bench/out/stories260K.onnx
[ -f "$model" ] || bin/shears import llama2c "$shared/models/stories260K/stories260K.bin" -o "$model"
export SHEARS_MODEL=$(realpath "$model") SHEARS_TOKENIZER=$(realpath "$shared/models/stories260K/tok512.bin")
export SHEARS_DATA=$(realpath "$data_dir")
echo "miniature: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
bin/shears run examples/stories260K.yaml --work bench/out/miniature-sotu --no-progress
bin/shears run bench/miniature-math.yaml --no-progress
