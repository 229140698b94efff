package hf

import "github.com/shears-ml/shears/models/llama"

// LLaMA (Llama 2, Llama 3 with rope_scaling "llama3"): the base decoder; attention_bias and
// mlp_bias add biases where transformers' LlamaConfig does (q, k, v and o; gate, up and down).
func init() {
	register(&Family{Arch: "LlamaForCausalLM", Linear: nnLinear,
		Build: buildDecoder(defaults{eps: 1e-6}, func(c *Config, d *llama.Config) error {
			d.AttnBias, d.OBias, d.MLPBias = c.AttentionBias, c.AttentionBias, c.MLPBias
			return activation(c, "hidden_act", c.HiddenAct, "silu")
		})})
}
