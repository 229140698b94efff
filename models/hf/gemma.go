package hf

import "github.com/shears-ml/shears/models/llama"

// Gemma: embeddings scaled by √hidden, RMSNorm by (1 + weight), a tanh-GELU gated MLP, an
// explicit head_dim and a head tied to the embeddings by default. (transformers runs every
// Gemma config with the tanh approximation, whatever hidden_act says.)
func init() {
	register(&Family{Arch: "GemmaForCausalLM", Linear: nnLinear,
		Build: buildDecoder(1e-6, true, func(c *Config, d *llama.Config) error {
			d.EmbedScale, d.NormPlusOne, d.GeluTanh = true, true, true
			return activation(c, "hidden_activation", c.HiddenActivation, "gelu_pytorch_tanh", "gelu_tanh")
		})})
}
