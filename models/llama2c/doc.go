// Package llama2c imports legacy llama2.c checkpoints (the "v0" export of run.c:
// stories260K, stories15M, ...) into the LLaMA graph of models/llama.
//
// The file is a 7 × int32 header (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab,
// seq_len; a negative vocab means the classifier is stored separately) followed by float32
// arrays in a fixed order. Linear weights are stored [out, in] and are transposed to ONNX
// layout [in, out]; w1 is the gate, w3 the up and w2 the down projection. The checkpoint's
// freq_cis tables become the RoPE cos/sin tables, so the graph uses the trained numbers.
// Import reads the whole checkpoint into memory.
package llama2c
