// Package lower rewrites onnxruntime's fused transformer operators into standard ONNX
// operators, for the passes that need standard operators only: training (transform/autodiff
// differentiates ai.onnx operators) and anything that must run outside onnxruntime.
//
// Inference never needs it: inspect, prune, eval and generate run fused graphs as they are,
// since onnxruntime has the kernels. Lower is one pass over the main graph with one registry
// entry per operator: the two RMSNorms (SimplifiedLayerNormalization, com.microsoft
// SkipSimplifiedLayerNormalization) lower to the Mul → ReduceMean → Add → Sqrt → Reciprocal →
// Mul chain; com.microsoft RotaryEmbedding (full rotation, interleaved or halves) to Gather of
// the caches and the rotation; GroupQueryAttention and MultiHeadAttention (separate q, k, v)
// to reshapes, the past concatenated, kv heads repeated, a causal and padding mask (Where),
// Softmax and two MatMuls. Forms outside those (packed qkv, rotary inside the attention,
// biases, soft caps, sliding windows) and the other fused operators are refused with an error
// (ErrFused) that names the node and says what to do instead (export without onnxruntime's
// fusions). Each lowering is tested against onnxruntime's own kernel on the same inputs.
package lower
