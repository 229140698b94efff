// Package llama builds LLaMA-architecture decoder graphs in ONNX (opset 17, IR 8) from a
// Config and a weight Source, and writes synthetic random-weight models for benchmarks.
//
// Conventions of the graph (importers of other checkpoints reuse it):
//   - the with-past interface in optimum's names, order and layout (package lm): input_ids
//     [batch, sequence_length], attention_mask [batch, total_sequence_length], position_ids
//     [batch, sequence_length], past_key_values.{i}.key|value [batch, kv_heads,
//     past_sequence_length, head_dim] → logits [batch, sequence_length, vocab] and
//     present.{i}.key|value [batch, kv_heads, total_sequence_length, head_dim]. The causal mask
//     is computed from the two lengths (Range over key and query positions, LessOrEqual) and
//     hides the keys attention_mask pads; a sliding window adds a Greater on the oldest visible
//     position. No [MaxSeq, MaxSeq] table is stored. The RoPE tables are gathered by
//     position_ids. The train form (transform/decoder) folds the cache away.
//   - Node and tensor names follow Hugging Face LLaMA / optimum exports, so one naming rule
//     labels both: nodes /model/layers.{i}/self_attn/q_proj/MatMul, .../mlp/gate_proj/MatMul,
//     /lm_head/MatMul; weights model.layers.{i}.self_attn.q_proj.weight and so on.
//   - Linear weights are stored in ONNX layout [in, out] (the transpose of the Hugging Face
//     nn.Linear [out, in] tensors), so each linear is MatMul(x, W). model.embed_tokens.weight
//     is [vocab, dim]; lm_head.weight is [dim, vocab] and is its own initializer even when the
//     embeddings are tied (pruning and LoRA treat the head separately).
//   - RoPE rotates interleaved pairs (2i, 2i+1) as llama2.c does (Reshape to [..., hd/2, 2],
//     Split, rotate, Concat, Reshape), never as a MatMul with a constant matrix, which would look
//     like a linear layer. Its cos/sin tables [MaxSeq, hd/2] are gathered by position_ids.
//     With Variant.RotateHalf (Hugging Face checkpoints) it rotates the halves (j, j + hd/2)
//     instead (Reshape to [..., 2, hd/2]). Variant.Rope carries scaled frequencies (rope_scaling,
//     computed in models/hf), a partial rotary width and LongRoPE's second pair of tables,
//     chosen per run by a Where on the largest position id.
//   - Config.Variant holds the other departures the Hugging Face families make (models/hf):
//     q/k/v (and o, MLP) biases, fused qkv_proj / gate_up_proj split after one MatMul, an explicit
//     head_dim, RMSNorm by (1 + w), embeddings × √Dim, tanh-GELU, sliding-window layers, and a
//     tied head read through a Transpose of the embedding. The zero Variant is the llama2.c
//     graph, unchanged.
//   - On the gradient path only Gather, MatMul, Mul, Add, Sub, Div, Pow, Sqrt, ReduceMean,
//     Reshape, Transpose, Softmax, Sigmoid, Tanh, Concat, Split, Unsqueeze, Expand and Where
//     appear, all of which transform/autodiff differentiates; the mask and the LongRoPE switch
//     (Shape, Range, comparisons, And, Cast, ReduceMax, Where) only read positions and lengths.
//     There is no If or Loop.
package llama
