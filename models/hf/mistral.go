package hf

import "github.com/shears-ml/shears/models/llama"

// Mistral: LLaMA's graph. Its sliding window only matters past sliding_window tokens, so the
// graph's context is capped there (attention within it is exact).
func init() {
	register(&Family{Arch: "MistralForCausalLM", Linear: nnLinear,
		Build: buildDecoder(1e-6, false, func(c *Config, d *llama.Config) error {
			if w := c.SlidingWindow; w != nil && *w > 0 && *w < d.MaxSeq {
				d.MaxSeq = *w
			}
			return activation(c, "hidden_act", c.HiddenAct, "silu")
		})})
}
