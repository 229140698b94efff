// Package autodiff builds reverse-mode gradients of ONNX graphs out of standard ONNX ops, so a
// training step runs on inference builds of onnxruntime, which have neither the training API
// nor its gradient kernels (ONNX-NOTES §6).
//
// Backward appends the backward pass to a model's main graph and returns the name of each
// requested gradient. What is differentiated: a tensor gets a gradient iff it is a float type
// (float32, float64, float16, bfloat16), it is forward-reachable from one of the wrt tensors, and the loss is reachable from
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
// Mixed precision: a gradient has its tensor's type. Rules work per dtype (constants are made in
// the type of the tensor they combine with), and Cast's VJP casts the gradient back to the
// input's type, so a float16 base with float32 adapters (x16 → Cast → fp32 adapter → Cast → +)
// gets float32 adapter gradients and a float16 backward through the base. Loss scaling, which a
// float16 backward needs, is the caller's (transform/trainstep scales the loss in the graph).
//
// Shapes are static: Backward runs onnx.InferShapes with Options.InputDims, so undoing
// broadcasting is a ReduceSum over constant axes plus a Reshape to a constant shape, with no
// Shape/Gather plumbing at run time. The emitted graph is therefore valid for those dims only.
//
// ToFloat64 makes a float64 copy of a model for finite-difference checks; train/gradcheck
// compares Backward with central differences through onnxruntime (transform runs no sessions).
package autodiff
