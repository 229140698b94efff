// Package lm is the causal-LM interface in one place: the names of a decoder's inputs and
// outputs (optimum's, with and without a KV cache), reading which of them a graph has,
// declaring them on a graph builder (Declare, Head: what the importers write), and the feeds of
// a batch as plain Go data. It imports only onnx and never runs a session: callers (eval,
// calibrate, nls) wrap the feeds into runtime tensors.
//
// The with-past interface (what optimum exports for text-generation-with-past and what
// onnxruntime GenAI and transformers.js serve):
//
//	input_ids                 int64 [batch, sequence_length]
//	attention_mask            int64 [batch, total_sequence_length]   1 = a real token, 0 = padding
//	position_ids              int64 [batch, sequence_length]         counts real tokens only
//	past_key_values.{i}.key   T     [batch, kv_heads, past_sequence_length, head_dim]
//	past_key_values.{i}.value T     [batch, kv_heads, past_sequence_length, head_dim]
//	→ logits                  float [batch, sequence_length, vocab]
//	→ present.{i}.key|value   T     [batch, kv_heads, total_sequence_length, head_dim]
//
// with total = past + sequence. Batches are right-padded: a padded position has mask 0, so no
// later token attends to it, and position id 1 (Hugging Face's convention; its output is never
// read).
package lm
