package hf

import "github.com/shears-ml/shears/models/llama"

// Phi-3: LLaMA with q, k, v fused in self_attn.qkv_proj and gate, up in mlp.gate_up_proj;
// each is one MatMul whose output is split, so pruning and adapters see the fused linear. A
// sliding_window that is not null limits every layer's attention; rope_scaling longrope (or su)
// switches to the long factors past original_max_position_embeddings; partial_rotary_factor
// (Phi-4-mini) rotates only the first part of each head.
func init() {
	register(&Family{Arch: "Phi3ForCausalLM", Linear: nnLinear,
		Build: buildDecoder(defaults{eps: 1e-5, partialRotary: true}, func(c *Config, d *llama.Config) error {
			d.FusedQKV, d.FusedGateUp = true, true
			if err := slidingWindow(c, d, 0); err != nil {
				return err
			}
			return activation(c, "hidden_act", c.HiddenAct, "silu")
		})})
}
