// Package trainstep turns a causal language model graph into a train-step graph: the model's
// forward pass, a causal-LM cross-entropy loss, and the gradients of that loss with respect to
// the chosen trainable tensors (emitted by transform/autodiff in standard ONNX ops), all for a
// fixed [batch, sequence] shape.
//
// What crosses the session boundary. Frozen weights stay initializers (external data stays
// external: the step model keeps the source model's Dir), so onnxruntime keeps them on the
// device. Trainable initializers become graph inputs; together with the batch (input_ids,
// labels) and any other input of the model (for example the LoRA rank masks, which pass
// through unchanged), they are the only host-to-device traffic. The outputs are the scalar loss
// and one gradient per trainable tensor; the model's own outputs (logits) are dropped so the
// [B, T, V] logits are never copied back.
//
// Why the step graph outputs gradients and not updated parameters. NLS training accumulates
// gradients over G micro-batches, each with its own rank masks (loss / G, gradients summed),
// clips the global norm to 1.0 and then takes one AdamW step. The gradients must therefore
// leave the graph whenever G > 1, and the optimizer runs after the accumulation. We measured
// both places for the update (bench/RESULTS.md, "train step"): the same AdamW as a second,
// small onnxruntime graph (BuildAdamW) against a plain Go loop over the host copies of the
// parameters (package train). On the CPU (2 cores) the Go loop is 3–6× faster for
// stories260K-sized adapters (32K–127K parameters: the graph pays per-op dispatch for ~14 nodes
// per tensor plus copying p, m, v back), and the two tie within noise at the 25M model's size
// (1.2M parameters, ~5–8 ms each), in every case under 1% of a train step. Since the host holds
// the gradients anyway, package train applies AdamW in Go; BuildAdamW is kept for a fused GPU
// step with one micro-batch, where p, m and v could stay resident, and for the measurement.
//
// The loss (AddCausalLMLoss): position t predicts labels[:, t+1]. The labels are shifted (Slice +
// Pad with −100), not the logits, so the [B, T, V] logits are never copied. The log-probabilities
// come from LogSoftmax (stable) and each target's is picked with GatherElements, whose gradient
// scatters back (no [B, T, V] one-hot). A label of −100 (or any id outside the vocabulary) is
// masked out of both the sum and the count. The loss is the sum over counted positions divided
// by max(count, 1): a batch with nothing to predict has loss 0, not NaN. This loss head made the
// 25M train step 15% cheaper relative to its forward (2.72× → 2.24–2.38×, bench/RESULTS.md).
//
// Mixed precision. Trainable float16/bfloat16 initializers become float32 inputs read through a
// Cast (float32 master weights, float32 gradients). When the backward runs in float16 (some
// MatMul computes in float16: NeedsLossScale) the step gets a loss_scale input and
// differentiates loss × scale; its gradient outputs are scaled, and package train unscales them
// and handles overflow. The loss itself is computed from float32 logits (a native conversion
// casts them back), so only the backward through the base is in float16.
//
// This package builds graphs only; it never runs a session (package train does).
package trainstep
