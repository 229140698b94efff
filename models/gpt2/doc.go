// Package gpt2 builds tiny GPT-2-style decoder graphs (opset 17) with seeded random weights.
//
// Why: the pipeline (layers, Wanda, LoRA, NLS training, merge) must not be LLaMA-only. GPT-2
// differs in every place a LLaMA-shaped assumption could hide: LayerNormalization with bias
// instead of RMSNorm, learned positions (a second Gather), one fused qkv linear with a bias
// followed by Split, a boolean causal mask applied with Where, a tanh-approximated gelu MLP
// without a gate, biased linears, and an LM head tied to the token embedding (a MatMul reading
// the embedding through Transpose, so one initializer feeds both a Gather and a linear).
//
// Names follow Hugging Face / optimum GPT-2 exports: nodes /transformer/h.{i}/attn/c_attn/MatMul,
// .../mlp/c_fc/MatMul, /lm_head/MatMul; weights transformer.h.{i}.attn.c_attn.weight in the
// Conv1D layout [in, out] (which is already ONNX MatMul layout). The interface is optimum's
// with-past one (package lm): input_ids, attention_mask, position_ids and
// past_key_values.{i}.key|value [batch, heads, past, head_dim] → logits and present.{i}.*.
package gpt2
