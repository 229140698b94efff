#!/bin/bash
# The PyTorch peer benchmark of NLS training (issue 5, "Measure"; bench/RESULTS.md, "PyTorch peer").
#
#   bench/peer/run.sh [WORK]        (default WORK: /tmp/shears-peer; REPS=2 STEPS=4 in the environment)
#
# Installs Debian's python3-torch and libopenblas0-pthread (the benchmark's own dependencies, not
# the tests'), builds shears and bench/peer/gen, prepares the two super-networks and the data, then
# runs bench/peer/report.py, which measures shears and the peer in one run and prints the table.
# Needs root for apt-get, the shared inputs in ../shared and the onnxruntime library
# ($ONNXRUNTIME_LIB, default .ort/libonnxruntime.so.1).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-/tmp/shears-peer}
steps=${STEPS:-4}
shared=$root/../shared
S=$shared/models/stories260K
for f in "$S/stories260K.bin" "$S/tok512.bin" "$shared/data/llm-adapters/ARC-Easy-train.json"; do
	[ -f "$f" ] || { echo "run.sh: missing shared input $f" >&2; exit 1; }
done
export ONNXRUNTIME_LIB=${ONNXRUNTIME_LIB:-$root/.ort/libonnxruntime.so.1}
[ -f "$ONNXRUNTIME_LIB" ] || { echo "run.sh: onnxruntime library $ONNXRUNTIME_LIB not found (set ONNXRUNTIME_LIB)" >&2; exit 1; }
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE

if ! /usr/bin/python3 -c 'import torch' 2>/dev/null || ! dpkg -s libopenblas0-pthread >/dev/null 2>&1; then
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-torch libopenblas0-pthread
fi

mkdir -p "$work"
(cd "$root" && go build -o "$work/shears" ./cmd/shears && go build -o "$work/gen" ./bench/peer/gen)
cd "$work"
cp "$S/tok512.bin" tok512.bin
sh=./shears
# 16 × STEPS records of exactly 256 tokens (no padding, no EOS: the cutoff is 256); ids16 for the loss check.
./gen ids -tokenizer tok512.bin -data "$shared/data/llm-adapters/ARC-Easy-train.json" -n $((16 * steps)) -len 256 ids.jsonl
head -16 ids.jsonl > ids16.jsonl
if [ ! -f super-stories.onnx ]; then
	$sh import llama2c "$S/stories260K.bin" -o stories-dense.onnx
	$sh prune stories-dense.onnx -o stories-50.onnx --method wanda --sparsity 0.5 --calib ids16.jsonl \
		--tokenizer tok512.bin --samples 16 --seq-len 256 >/dev/null
	$sh adapt stories-50.onnx -o super-stories.onnx --ranks 8,6,4 --alpha 16 --train >/dev/null
fi
if [ ! -f super-25m.onnx ]; then
	./gen synth -preset 25m -seed 0 25m.onnx
	$sh adapt 25m.onnx -o super-25m.onnx --ranks 32,24,16 --alpha 64 --train >/dev/null
fi
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
/usr/bin/python3 "$root/bench/peer/report.py" "$work" | tee "$work/table.md"
