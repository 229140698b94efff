#!/usr/bin/env bash
# The prepared GPU check (issue 7): builds shears and bench/gpu/gpucheck, generates LLaMA-shaped
# synthetic models on this machine (models/llama, fp16, computed natively), and measures forward
# throughput on the execution provider: tokens/s, achieved TFLOP/s, the fraction of the GPU's
# dense fp16 peak (looked up by the name nvidia-smi reports) and peak GPU memory (nvidia-smi
# polled in the background). When `shears train` exists and TRAIN_DATA/TRAIN_TOKENIZER are given,
# it also times a few NLS train steps.
#
#   bench/gpu/check.sh                               # SHAPES="1b", DEVICE=cuda
#   SHAPES="1b 7b" STEPS=10 bench/gpu/check.sh
#   DEVICE=cpu SHAPES=tiny bench/gpu/check.sh         # the CPU path (what the test runs)
#
# Environment: DEVICE (cuda), SHAPES (1b; tiny 25m 1b 7b), DTYPE (fp16), COMPUTE (native), BATCH
# (1), SEQ (512), STEPS (5), WORK (a temp folder; models are reused there), ONNXRUNTIME_LIB (for
# cuda: a CUDA-enabled onnxruntime with its providers beside it, see scripts/fetch-ort-gpu.sh),
# PEAK_TFLOPS (overrides the table).
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
  if ./bin/shears train --help >/dev/null 2>&1 && [ -n "${TRAIN_DATA:-}" ] && [ -n "${TRAIN_TOKENIZER:-}" ]; then
    model="$WORK/llama-$shape-$DTYPE-$COMPUTE.onnx"
    echo "== $shape NLS train steps" >&2
    ./bin/shears adapt "$model" -o "$WORK/super-$shape.onnx" >&2
    t0=$(date +%s.%N)
    ./bin/shears train "$WORK/super-$shape.onnx" --data "$TRAIN_DATA" --tokenizer "$TRAIN_TOKENIZER" \
      --out "$WORK/run-$shape" --device "$DEVICE" ${TRAIN_FLAGS:-} >&2
    echo "train_wall_s=$(echo "$(date +%s.%N) - $t0" | bc) shape=$shape"
  fi
done
