// Package onnx is shears' ONNX IR: loading and saving models with external data, typed tensor
// access (float32, float16, bfloat16, int64), a graph index, shape inference for the ops of
// transformer exports, validation, and a small graph builder.
//
// Conventions:
//   - A *Model owns the protobuf and the handles on its external-data files; Close releases them.
//   - Tensors stored externally are never read at Load time; RawData reads one tensor on demand,
//     so a model larger than memory can be inspected and streamed through Save.
//   - Errors name the file, the tensor or the node involved. Nothing here panics on bad input.
//   - This package knows nothing of pruning, LoRA or onnxruntime.
package onnx
