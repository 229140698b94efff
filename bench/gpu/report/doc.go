// Package report owns the figures of the offline GPU check (bench/gpu/check.sh, driven by
// bench/gpu/gpucheck): the record each measurement appends to results.jsonl, the table of GPUs'
// dense peaks the achieved TFLOP/s are divided by, the FLOPs of a forward pass and of an NLS
// train step, the ops an execution provider left to the CPU (read from onnxruntime profiles), and
// the results.json + results.md written from the records. It runs nothing itself, so all of it is
// tested on machines without a GPU.
package report
