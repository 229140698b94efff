package hf

import "github.com/shears-ml/shears/models/llama"

// Phi-3: LLaMA with q, k, v fused in self_attn.qkv_proj and gate, up in mlp.gate_up_proj;
// each is one MatMul whose output is split, so pruning and adapters see the fused linear.
// Phi-3's long-context rope scaling (su/longrope) is refused by the shared decoder.
func init() {
	register(&Family{Arch: "Phi3ForCausalLM", Linear: nnLinear,
		Build: buildDecoder(1e-5, false, func(c *Config, d *llama.Config) error {
			d.FusedQKV, d.FusedGateUp = true, true
			if w := c.SlidingWindow; w != nil && *w > 0 && *w < d.MaxSeq {
				d.MaxSeq = *w
			}
			return activation(c, "hidden_act", c.HiddenAct, "silu")
		})})
}
