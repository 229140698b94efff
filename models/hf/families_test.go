package hf

// Tiny configurations of every family, shaped to exercise what sets each apart: GQA, a llama3
// rope scaling whose three frequency bands are all populated (head_dim 16, original context 16),
// linear and yarn rope scaling (yarn's ramp spans dims 0-3 of 8), biases (LLaMA's attention_bias and mlp_bias, Qwen2's, Gemma's), fused
// projections, a head_dim that is not hidden/heads, tied and untied heads, sliding windows
// shorter than the test sequences (Mistral: every layer; Qwen2: the layers from
// max_window_layers on; Phi-3), and Phi-3's LongRoPE with a partial rotary dim (Phi-4-mini's
// shape: 12 of 16) whose original context (8) the 11-token test sequence exceeds.
var FamilyConfigs = map[string]string{
	"llama": `{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
		"intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
		"vocab_size": 128, "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
		"rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
		"original_max_position_embeddings": 16, "rope_type": "llama3"}, "tie_word_embeddings": false, "hidden_act": "silu"}`,
	"llama-linear": `{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
		"intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
		"vocab_size": 128, "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
		"rope_scaling": {"type": "linear", "factor": 4.0}, "attention_bias": true, "mlp_bias": true,
		"tie_word_embeddings": true, "hidden_act": "silu"}`,
	"mistral": `{"architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_size": 64,
		"intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 2,
		"vocab_size": 128, "max_position_embeddings": 128, "rms_norm_eps": 1e-5, "rope_theta": 1000000.0,
		"sliding_window": 4, "tie_word_embeddings": false, "hidden_act": "silu"}`,
	"qwen2": `{"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 64,
		"intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
		"vocab_size": 128, "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
		"use_sliding_window": true, "sliding_window": 3, "max_window_layers": 1, "tie_word_embeddings": true, "hidden_act": "silu"}`,
	"qwen2-yarn": `{"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 64,
		"intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
		"vocab_size": 128, "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
		"rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64},
		"use_sliding_window": false, "sliding_window": 3, "tie_word_embeddings": false, "hidden_act": "silu"}`,
	"phi3": `{"architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "hidden_size": 64,
		"intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
		"vocab_size": 128, "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
		"rope_scaling": null, "sliding_window": 5, "tie_word_embeddings": false, "hidden_act": "silu"}`,
	"phi3-longrope": `{"architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "hidden_size": 64,
		"intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
		"vocab_size": 128, "max_position_embeddings": 64, "original_max_position_embeddings": 8,
		"rms_norm_eps": 1e-5, "rope_theta": 10000.0, "partial_rotary_factor": 0.75,
		"rope_scaling": {"type": "longrope", "short_factor": [1.0, 1.1, 1.3, 1.6, 2.0, 2.5],
		"long_factor": [1.5, 2.5, 4.0, 6.0, 9.0, 13.0]}, "sliding_window": null, "tie_word_embeddings": true, "hidden_act": "silu"}`,
	"gemma": `{"architectures": ["GemmaForCausalLM"], "model_type": "gemma", "hidden_size": 64,
		"intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1,
		"head_dim": 32, "vocab_size": 128, "max_position_embeddings": 64, "rms_norm_eps": 1e-6,
		"rope_theta": 10000.0, "attention_bias": true, "hidden_activation": "gelu_pytorch_tanh", "hidden_act": "gelu"}`,
	"gpt2": `{"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_embd": 64, "n_layer": 2,
		"n_head": 4, "n_positions": 64, "n_ctx": 64, "vocab_size": 128, "layer_norm_epsilon": 1e-5,
		"activation_function": "gelu_new", "n_inner": null}`,
}
