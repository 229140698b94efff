// Package runtime runs ONNX models on onnxruntime. It is the only package of shears that uses cgo
// (through github.com/yalue/onnxruntime_go); no onnxruntime_go type appears in its API, so every
// other package builds and tests without the library.
//
// # Finding and loading the library
//
// FindLibrary looks, in order, at the --ort-lib flag value, $ONNXRUNTIME_LIB, and
// .ort/libonnxruntime.so.1 (what "make ort" installs) in the executable's folder or a parent, then
// in the working directory or a parent. A flag or variable naming a missing file is an error, not
// skipped. Every not-found error wraps ErrNoLibrary and is one line saying what to do. Init loads
// the library once per process (onnxruntime has one global environment) and any onnxruntime
// >= 1.24 works. Version reports the loaded version.
//
// # Devices
//
// Options.Device selects the execution provider: cpu, cuda, tensorrt or webgpu. GPU providers come
// from provider libraries that must sit next to libonnxruntime and match its version exactly; the
// CPU build carries only the bridge. Any failure to attach one, or to create a session with it,
// wraps ErrProvider and says so, and never panics.
//
// # Weight pre-packing
//
// Options.Prepack decides, for every session whatever the command, whether onnxruntime's CPU
// provider keeps a pre-packed copy of the constant weights. Its zero value, PrepackAuto, follows
// from the model: on when the graph or a subgraph holds a com.microsoft MatMulNBits node (whose
// kernel re-packs its weights on every run otherwise), off for float models (whose copy doubles
// the weight memory). The node scan is part of the wire-format walk below: op types only, no
// weights. PrepackOn and PrepackOff are the caller's explicit choice; Session.Prepacked reports
// the outcome, read back from onnxruntime's session options.
//
// Options.Profile (or $SHEARS_ORT_PROFILE when it is empty) turns on onnxruntime's profiler: each
// session writes a trace naming, per node, the op type and the provider that ran it, which is how
// bench/gpu lists the ops a GPU provider left to the CPU.
//
// # Ownership
//
//   - A Session owns its onnxruntime session. Close it (Close is idempotent); closing it also
//     releases every Bound made from it.
//   - Run creates onnxruntime values for the inputs and preallocated outputs and destroys them
//     before returning. The returned Tensors are plain Go memory, owned by the caller.
//   - RunInto writes the outputs it is given in place (views of reused buffers, made with
//     Tensor.View): onnxruntime neither allocates them nor has them copied into new Go memory,
//     which is how a decoder's KV cache stays in the same buffers from step to step.
//   - Input Tensors are only read, and only during the call.
//   - A Bound shares the caller's Tensor slices with onnxruntime until it is closed: change their
//     contents between runs, never replace the slices (Run reports a replaced slice). Rank-0
//     tensors are copied in and out on each run instead, as onnxruntime_go scalars own their
//     memory.
//   - OpenBytes does not keep the model bytes.
//
// # Outputs and the fp16 limitation
//
// onnxruntime_go v1.27 copies an output it allocated itself element-count bytes long, which
// truncates fp16 and bf16 outputs ("not enough space: expected 12, got 6"), and it cannot allocate
// rank-0 outputs at all. Such outputs are therefore always preallocated: from the model's declared
// shape when it is static, from the shapes passed to RunWithShapes, or as the Tensors given to
// RunInto or Bind.
// An fp16/bf16 output with a symbolic dimension that is not given a shape is an error naming it.
// float32, float64, int64, int32, bool, int8 and uint8 outputs are allocated by onnxruntime.
//
// onnxruntime_go also fixes a session's input and output lists when it is created, so every run
// computes all of the model's outputs and returns those asked for. Build a model with only the
// outputs a loop needs when the others are costly.
//
// # Inputs and outputs
//
// Inputs and Outputs come from reading the model's graph inputs and outputs straight from the
// protobuf wire format (tensor payloads are skipped, never read), because onnxruntime_go can only
// report them by loading the model a second time. Initializers listed as graph inputs are left
// out, as onnxruntime does.
package runtime
