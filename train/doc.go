// Package train runs train-step graphs built by transform/trainstep on onnxruntime. A Runner
// owns one step's session, binds its fixed-shape tensors once, holds the trainable parameters
// and the AdamW state on the host, and offers the two halves of an optimizer step so callers
// can accumulate gradients over micro-batches (NLS: each micro-batch with its own rank masks,
// loss / G, gradients summed, global-norm clip, one AdamW step):
//
//	r.Accumulate(batch, 1/G) … G times, then r.Apply(lr)
//
// AdamW runs in Go over the host copies (which are the very slices bound as the session's
// inputs, so nothing is copied to feed the next step): measured faster than a second
// onnxruntime graph on the CPU for both adapter sizes we train (bench/RESULTS.md, package
// transform/trainstep's doc). This package lives apart from nls so the loop can be tested and
// benchmarked with any trainable set (RMSNorm weights, adapters) without NLS's search space;
// nls builds on it. A step with a loss-scale input (a float16 backward) is run with dynamic loss
// scaling (LossScaler): gradients are unscaled in float32 as they are accumulated, and an Apply
// after an overflow skips the update and halves the scale. GradCheck compares the step graph's gradients with finite differences.
package train
