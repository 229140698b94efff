// Package lower rewrites onnxruntime's fused transformer operators into standard ONNX
// operators, for the passes that need standard operators only: training (transform/autodiff
// differentiates ai.onnx operators) and anything that must run outside onnxruntime.
//
// Inference never needs it: inspect, prune, eval and generate run fused graphs as they are,
// since onnxruntime has the kernels. Lower is one pass over the main graph with one registry
// entry per operator: the two RMSNorms (SimplifiedLayerNormalization, com.microsoft
// SkipSimplifiedLayerNormalization) lower to the Pow → ReduceMean → Add → Sqrt → Reciprocal →
// Mul chain; RotaryEmbedding, GroupQueryAttention, MultiHeadAttention and the other fused
// operators are refused with an error that names the node and says what to do instead (export
// without onnxruntime's fusions). Each lowering is tested against onnxruntime's own kernel on
// the same inputs.
package lower
