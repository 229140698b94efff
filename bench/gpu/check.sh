#!/usr/bin/env bash
# The prepared GPU check (issue 7): builds shears and bench/gpu/gpucheck, generates LLaMA-shaped
# synthetic models on this machine (models/llama, fp16, computed natively), and measures forward
# throughput on the execution provider: tokens/s, achieved TFLOP/s, the fraction of the GPU's
# dense fp16 peak (looked up by the name nvidia-smi reports) and peak GPU memory (nvidia-smi
# polled in the background). Then it trains: a super-network from "shears adapt", STEPS NLS
# steps of BATCH × SEQ on pre-tokenized random ids generated here (or TRAIN_DATA, with
# TRAIN_TOKENIZER when it is text), and prints train tokens/s. TRAIN=0 skips training.
#
#   bench/gpu/check.sh                               # SHAPES="1b", DEVICE=cuda
#   SHAPES="1b 7b" STEPS=10 bench/gpu/check.sh
#   DEVICE=cpu SHAPES=tiny bench/gpu/check.sh         # the CPU path (what the test runs)
#
# Environment: DEVICE (cuda), SHAPES (1b; tiny 25m 1b 7b), DTYPE (fp16), COMPUTE (native), BATCH
# (1), SEQ (512), STEPS (5), WORK (a temp folder; models are reused there), ONNXRUNTIME_LIB (for
# cuda: a CUDA-enabled onnxruntime with its providers beside it, see scripts/fetch-ort-gpu.sh),
# PEAK_TFLOPS (overrides the table), TRAIN (1), TRAIN_DATA, TRAIN_TOKENIZER, TRAIN_FLAGS.
set -euo pipefail
cd "$(dirname "$0")/../.."
DEVICE=${DEVICE:-cuda}
SHAPES=${SHAPES:-${SHAPE:-1b}}
DTYPE=${DTYPE:-fp16}
COMPUTE=${COMPUTE:-native}
BATCH=${BATCH:-1}
SEQ=${SEQ:-512}
STEPS=${STEPS:-5}
WORK=${WORK:-${TMPDIR:-/tmp}/shears-gpucheck}
GO=${GO:-go}
mkdir -p "$WORK" bin
echo "== build" >&2
$GO build -o bin/shears ./cmd/shears
$GO build -o bin/gpucheck ./bench/gpu/gpucheck

# Dense (no sparsity) fp16/bf16 tensor-core peak in TFLOP/s, by GPU name.
peak_for() {
  case "$1" in
    *H200*|*H100*SXM*|*"H100 80GB HBM3"*) echo 989 ;;
    *H100*PCIe*|*H100*) echo 756 ;;
    *GH200*) echo 989 ;;
    *B200*) echo 2250 ;;
    *A100*) echo 312 ;;
    *A10G*) echo 70 ;;
    *A10*) echo 125 ;;
    *L40S*) echo 362 ;;
    *L4*) echo 121 ;;
    *V100*) echo 125 ;;
    *T4*) echo 65 ;;
    *RTX\ 4090*) echo 165 ;;
    *) echo 0 ;;
  esac
}
peak=${PEAK_TFLOPS:-0}
gpu="none"
mon=""
if [ "$DEVICE" != cpu ] && command -v nvidia-smi >/dev/null; then
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n1)
  [ "$peak" != 0 ] || peak=$(peak_for "$gpu")
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$WORK/mem.log" 2>/dev/null &
  mon=$!
  trap '[ -n "$mon" ] && kill "$mon" 2>/dev/null || true' EXIT
fi
echo "== device $DEVICE, gpu: $gpu, dense $DTYPE peak ${peak} TFLOP/s" >&2

for shape in $SHAPES; do
  echo "== $shape forward ($DTYPE, compute $COMPUTE, batch $BATCH × seq $SEQ, $STEPS steps)" >&2
  [ -f "$WORK/mem.log" ] && : > "$WORK/mem.log"
  ./bin/gpucheck -preset "$shape" -dtype "$DTYPE" -compute "$COMPUTE" -device "$DEVICE" \
    -batch "$BATCH" -seq "$SEQ" -steps "$STEPS" -dir "$WORK" -peak-tflops "$peak"
  if [ -n "$mon" ]; then
    sleep 0.5
    echo "peak_gpu_memory_mib=$(sort -n "$WORK/mem.log" | tail -n1) shape=$shape"
  fi
  if [ "${TRAIN:-1}" != 0 ]; then
    # NLS train steps on the same model. Without TRAIN_DATA the data is generated here: random
    # pre-tokenized {"ids": [...]} records of SEQ tokens (no tokenizer, nothing from ../shared).
    model="$WORK/llama-$shape-$DTYPE-$COMPUTE.onnx"
    data=${TRAIN_DATA:-}
    if [ -z "$data" ]; then
      case "$shape" in tiny) vocab=512 ;; 25m) vocab=8000 ;; *) vocab=32000 ;; esac
      data="$WORK/ids-$shape-$SEQ.jsonl"
      awk -v n="$((BATCH * STEPS))" -v len="$SEQ" -v vocab="$vocab" 'BEGIN { srand(7);
        for (i = 0; i < n; i++) { s = "{\"ids\": [1"; for (k = 1; k < len; k++) s = s ", " int(3 + rand() * (vocab - 3)); print s "]}" } }' > "$data"
    fi
    tok=()
    [ -n "${TRAIN_TOKENIZER:-}" ] && tok=(--tokenizer "$TRAIN_TOKENIZER")
    echo "== $shape NLS train ($STEPS steps of batch $BATCH × seq $SEQ)" >&2
    ./bin/shears adapt "$model" -o "$WORK/super-$shape.onnx" >&2
    rm -rf "$WORK/run-$shape"
    ./bin/shears train "$WORK/super-$shape.onnx" --data "$data" "${tok[@]}" --out "$WORK/run-$shape" \
      --device "$DEVICE" --epochs 1 --batch "$BATCH" --micro-batch "$BATCH" --cutoff "$SEQ" \
      --max-steps "$STEPS" --no-progress --json ${TRAIN_FLAGS:-} > "$WORK/train-$shape.json"
    tps=$(sed -n 's/.*"tokens_per_s": *\([0-9.e+-]*\).*/\1/p' "$WORK/train-$shape.json" | head -n1)
    steps=$(sed -n 's/.*"steps": *\([0-9]*\).*/\1/p' "$WORK/train-$shape.json" | head -n1)
    echo "train_result preset=$shape dtype=$DTYPE compute=$COMPUTE device=$DEVICE batch=$BATCH seq=$SEQ steps=$steps train_tokens_per_s=$tps"
  fi
done
