// Package llama builds LLaMA-architecture decoder graphs in ONNX (opset 17, IR 8) from a
// Config and a weight Source, and writes synthetic random-weight models for benchmarks.
//
// Conventions of the graph (importers of other checkpoints reuse it):
//   - input "input_ids" int64 [batch, sequence], output "logits" float32 [batch, sequence, vocab];
//     no attention-mask or KV-cache inputs: the causal mask is a constant sliced to T×T.
//   - Node and tensor names follow Hugging Face LLaMA / optimum exports, so one naming rule
//     labels both: nodes /model/layers.{i}/self_attn/q_proj/MatMul, .../mlp/gate_proj/MatMul,
//     /lm_head/MatMul; weights model.layers.{i}.self_attn.q_proj.weight and so on.
//   - Linear weights are stored in ONNX layout [in, out] (the transpose of the Hugging Face
//     nn.Linear [out, in] tensors), so each linear is MatMul(x, W). model.embed_tokens.weight
//     is [vocab, dim]; lm_head.weight is [dim, vocab] and is its own initializer even when the
//     embeddings are tied (pruning and LoRA treat the head separately).
//   - RoPE rotates interleaved pairs (2i, 2i+1) as llama2.c does (Reshape to [..., hd/2, 2],
//     Split, rotate, Concat, Reshape), never as a MatMul with a constant matrix, which would look
//     like a linear layer. Its cos/sin tables [MaxSeq, hd/2] are sliced to the sequence length.
//   - Only the ops Gather, MatMul, Mul, Add, Sub, Div, Pow, Sqrt, ReduceMean, Reshape,
//     Transpose, Softmax, Sigmoid, Slice, Concat, Split, Unsqueeze, Shape and Expand appear (and
//     Cast in fp16/bf16 synthetic models, written through transform/convert), all of which
//     transform/autodiff differentiates; there is no If or Loop.
package llama
