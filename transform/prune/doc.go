// Package prune sparsifies linear layers: Wanda (|W|·‖X_j‖₂) and magnitude scores, unstructured
// (exactly floor(in·s) zeros per output) and N:M patterns, plus the graph rewrites that collect
// Wanda's input statistics in onnxruntime (sum-of-squares taps) block by block.
//
// Plan, then apply: the statistics are small per-layer vectors, and the pruned weight is a pure
// function of (weight, statistics, sparsity, pattern), so a caller keeps only the statistics and
// applies the function to each weight as it streams through onnx.Model.Save — a 7B model is
// never held in memory twice. This package does not run sessions; see package calibrate.
//
// Layout: ONNX MatMul weights are [in, out]; an "output row" of the reference (PyTorch [out, in])
// is a column here. Linears whose stored weight is [out, in] (Transpose or Gemm transB) are handled.
package prune
