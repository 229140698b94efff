// Package convert stores a float32 model's weights in float16 or bfloat16, as a plan that can be
// printed and tested, then applied: Rewrite edits the graph and SaveOptions streams the weights
// through onnx.Model.Save, one tensor at a time, so a 7B model is never held twice in memory.
//
// Two ways to compute (Options.Compute):
//
//   - ComputeFP32 ("fp32", weight-only, the default; onnxruntime's CPU provider lacks most fp16 and
//     bf16 kernels): the weights are the linears' weights (every MatMul/Gemm constant found by
//     transform/layers, the LM head included) and the embedding tables (rank-2 data of a Gather).
//     Each is stored in the low-precision type and read through a Cast to float32, so the graph
//     still computes in float32. An embedding's Cast follows its Gather (only the gathered rows are
//     widened, never the whole table). Small tensors (norm weights, biases, RoPE tables, the causal
//     mask, scalars) stay float32: they cost nothing and keep full precision where it matters.
//     Memory: the file's weights halve, the session's do not. Measured on the CPU (ORT 1.24.1,
//     the 25m synthetic model, 97.7 MiB of float32 weights, TestMeasureSessionMemory): at
//     optimization level basic and above, constant folding replaces Cast(fp16 weight) by a float32
//     initializer when the session is created (+99 MiB, as float32's +95 MiB); with level
//     "disable" the session starts at +12 MiB but the first run widens every weight into the
//     arena (+84 MiB). Weight-only conversion is for disk and download size, and for bases that
//     arrive in fp16; native compute is what saves device memory.
//   - ComputeNative ("native", for GPUs): every float32 tensor of the graph becomes the target type:
//     all float initializers, Constant values, Cast-to-float and dtype attributes, value_info.
//     The model's interface does not change: float32 graph inputs are cast in, float32 outputs
//     (the logits) are cast back, integer inputs stay as they are. float16 values beyond its range
//     saturate to ±65504 instead of becoming ±Inf, so the causal mask (−1e9) stays finite.
//
// Conventions: Rewrite changes m's nodes, value_info and the Constant values in place but never
// the initializers' bytes or types, so m keeps reading its float32 weights; after Rewrite, m is
// only fit for Save with the plan's SaveOptions (or Convert, which does both). Models with
// subgraphs (If, Loop, Scan) are refused in native mode.
package convert
