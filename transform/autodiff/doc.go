// Package autodiff builds reverse-mode gradients of ONNX graphs out of standard ONNX ops, so a
// training step runs on inference builds of onnxruntime, which have neither the training API
// nor its gradient kernels (ONNX-NOTES §6).
//
// Backward appends the backward pass to a model's main graph and returns the name of each
// requested gradient. What is differentiated: a tensor gets a gradient iff it is float32 or
// float64, it is forward-reachable from one of the wrt tensors, and the loss is reachable from
// it. Everything else is stop-gradient: integer and bool tensors (ids, indices, masks, shape
// plumbing such as Shape/Gather/Concat/Equal/Where on int64), frozen weights (initializers not
// in wrt: for MatMul(x, W) only dX is emitted), and float tensors that do not depend on wrt
// (RoPE tables, the causal mask). Contributions from several consumers are summed with Sum.
//
// Rules: one registry (rules.go) maps op type → vector-Jacobian product, each rule a few lines
// of standard ops in the model's own opset form (opset 11 and later: ReduceSum axes as an input
// from 13, ReduceMean axes as an attribute up to 17 and an input from 18, Split sizes likewise).
// Gather's data gradient is a constant one-hot MatMul for constant indices and
// ScatterElements(reduction=add) (opset 16+) for run-time ones; Slice's is Pad for unit steps
// and ScatterND otherwise. An op with no rule on the gradient path is an error naming the
// node and op; If/Loop/Scan there are refused; nothing is ever silently treated as zero.
// SupportedOps lists the registry and Required the ops it must cover.
//
// Shapes are static: Backward runs onnx.InferShapes with Options.InputDims, so undoing
// broadcasting is a ReduceSum over constant axes plus a Reshape to a constant shape, with no
// Shape/Gather plumbing at run time. The emitted graph is therefore valid for those dims only.
//
// ToFloat64 makes a float64 copy of a model for finite-difference checks; the gradcheck
// subpackage compares Backward with central differences through onnxruntime.
package autodiff
