// Package hf imports Hugging Face checkpoints — config.json with model.safetensors, or shards
// with model.safetensors.index.json; F32, F16 and BF16 tensors — into ONNX graphs built by the
// model builders (models/llama for the LLaMA-style decoders, models/gpt2 for GPT-2).
//
// One file per family (llama.go, mistral.go, qwen2.go, phi3.go, gemma.go, gpt2.go), the shape
// of ollama's convert/: each registers a Family that reads its config.json fields into the
// builder's config and says which tensors are nn.Linear weights. decoder.go holds what the
// LLaMA-style families share (sizes, head_dim, num_key_value_heads, rms_norm_eps,
// tie_word_embeddings, sliding_window); rope.go the rotary embedding (rope_theta, one registry
// of rope_scaling types: linear, dynamic, llama3, longrope/su; partial_rotary_factor; v5's
// rope_parameters). A field that would change the math and that the graph does not compute is
// refused, naming config.json and the field; an architecture not registered is an error that
// lists the supported ones.
//
// Conventions:
//   - Initializers are named after the checkpoint's tensors and hold their values: linears are
//     transposed from [out, in] to the graph's [in, out] while they stream; Gemma's norm offsets
//     and embedding scale are graph ops, not baked into the weights; a tied head reads the
//     embedding through a Transpose (no duplicate tensor).
//   - Streaming: Checkpoint.Build reads only headers and makes float32 placeholders, so a dtype
//     plan (transform/convert, applied by pipeline.Import) can decide each tensor's output type;
//     Graph.Bind then points every placeholder at its bytes in the safetensors files as ONNX
//     external data, and onnx.Model.Save streams them into the output one tensor at a time
//     (untouched tensors are copied file to file). models/ never imports transform/.
//   - The model records config.json verbatim (metadata MetaConfig) and the checkpoint's absolute
//     folder (MetaSourceDir), where tokenizer and generation configs are found later.
//   - WriteRandom and WriteCheckpoint write checkpoints with shears' own safetensors writer, for
//     tests (each family against the plain-Go reference forward in reference_test.go) and
//     benchmarks.
package hf
