// Package quant is weight-only blockwise quantization of linear layers into onnxruntime's
// com.microsoft.MatMulNBits operator: the packing the operator defines, round-to-nearest (RTN)
// and GPTQ (Frantar et al. 2022) as pure functions from a float weight (and, for GPTQ, a
// Hessian) to codes, scales and zero points, and the plan/apply graph rewrite that replaces each
// target MatMul by a MatMulNBits node while keeping the model's interface.
//
// Layout. ONNX MatMul weights are W[in, out] = W[K, N]. MatMulNBits quantizes each output n
// along K in blocks of block_size: B is uint8 [N, k_blocks, blob_size] with blob_size =
// block_size·bits/8, codes packed low bits first; scales are [N, k_blocks] in A's float type;
// zero points, when present, are uint8 [N, ceil(k_blocks·bits/8)] packed the same way, and
// default to 2^(bits−1) when absent. The dequantized weight is (code − zero_point)·scale. When
// block_size does not divide K, the last block is padded with the code 2^(bits−1) (the
// operator defines k_blocks = ceil(K/block_size) and never reads the padding).
//
// Zeros are kept. A sparse base's zeros dequantize to exactly 0:
//   - symmetric: scale = max|w|/(2^(bits−1)−1), zero point 2^(bits−1) (the operator's
//     default, so no zero-point tensor is written); 0 rounds to the zero point.
//   - asymmetric: the block's range is widened to include 0 (lo = min(0, min w), hi = max(0,
//     max w)), scale = (hi−lo)/(2^bits−1) and the zero point round(−lo/scale) is an integer
//     code in [0, 2^bits−1]; 0 rounds to exactly that code, so (code − zero_point)·scale = 0.
//
// Weights that were zero are also forced to the zero point by GPTQ (pruned weights are held at
// zero during error compensation, as SparseGPT and SQFT do). A nonzero weight may still round
// to zero; sparsity can only grow.
//
// Training on a quantized base (SQFT QA-SparsePEFT). MatMulNBits has no gradient rule, so Lower
// turns each one into a MatMul by its dequantized float32 weight and keeps its grid (scales and
// zero points) as float32 tensors beside it, recorded under MetaKey; transform/lora builds the
// fake-quantized adapter path on those. Raise is the inverse on an export: each recorded linear's
// weight (the base's, or a merged one) is put back on its recorded grid (Requantize) as a
// MatMulNBits node, byte-identical when the weight was not changed. A block whose merged
// weights left the base's range (by more than half a step: they would be clamped) gets a grid
// refit to it instead, 0 kept exact (refit.go); the QA train graph applies the same rule, so the
// merged export is what was trained and every merged weight is within half a step of the
// unmerged W'. In a QA super-network the linears that got no adapter go back to the base's
// packed integers (KeepQuantized: the MatMul reads W dequantized from B, scales and zero points
// by standard operators, off every gradient path, which onnxruntime folds into a float
// constant at load and FoldKept folds before a session opens; dequant.go), so the file holds
// no float copy and no unused grid of them.
// DequantReads serves an unmerged export's sparse-adapter mask from the MatMulNBits tensors
// themselves (MatMulNBits(I_K), which runs on every forward: see maskDequantOp).
package quant
