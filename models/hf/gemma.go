package hf

import "github.com/shears-ml/shears/models/llama"

// Gemma: embeddings scaled by √hidden, RMSNorm by (1 + weight), a tanh-GELU gated MLP, an
// explicit head_dim, a head tied to the embeddings by default, and q, k, v, o biases when
// attention_bias says so. (transformers runs every
// Gemma config with the tanh approximation, whatever hidden_act says.)
func init() {
	register(&Family{Arch: "GemmaForCausalLM", Linear: nnLinear,
		Build: buildDecoder(defaults{eps: 1e-6, tied: true}, func(c *Config, d *llama.Config) error {
			d.EmbedScale, d.NormPlusOne, d.GeluTanh = true, true, true
			d.AttnBias, d.OBias = c.AttentionBias, c.AttentionBias
			return activation(c, "hidden_activation", c.HiddenActivation, "gelu_pytorch_tanh", "gelu_tanh")
		})})
}
