package hf

import "github.com/shears-ml/shears/models/llama"

// Mistral: LLaMA's graph; a sliding_window that is not null (4096 when absent, as MistralConfig
// defaults it) limits every layer's attention to that many most recent positions.
func init() {
	register(&Family{Arch: "MistralForCausalLM", Linear: nnLinear,
		Build: buildDecoder(defaults{eps: 1e-6}, func(c *Config, d *llama.Config) error {
			if err := slidingWindow(c, d, 4096); err != nil {
				return err
			}
			return activation(c, "hidden_act", c.HiddenAct, "silu")
		})})
}
