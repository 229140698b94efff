package hf

import "github.com/shears-ml/shears/models/llama"

// Qwen2: LLaMA with biases on q, k and v (not o). The sliding window is off unless
// use_sliding_window says so, in which case the context is capped at the window.
func init() {
	register(&Family{Arch: "Qwen2ForCausalLM", Linear: nnLinear,
		Build: buildDecoder(1e-6, false, func(c *Config, d *llama.Config) error {
			d.AttnBias = true
			if c.UseSlidingWindow != nil && *c.UseSlidingWindow && c.SlidingWindow != nil && *c.SlidingWindow > 0 && *c.SlidingWindow < d.MaxSeq {
				d.MaxSeq = *c.SlidingWindow
			}
			return activation(c, "hidden_act", c.HiddenAct, "silu")
		})})
}
