package hf

import (
	"fmt"

	"github.com/shears-ml/shears/models/llama"
)

// Qwen2: LLaMA with biases on q, k and v (not o). The sliding window exists only when
// use_sliding_window says so, and then applies to the layers layer_types marks
// "sliding_attention" (by default those from max_window_layers on, as Qwen2Config derives them).
func init() {
	register(&Family{Arch: "Qwen2ForCausalLM", Linear: nnLinear,
		Build: buildDecoder(defaults{eps: 1e-6}, func(c *Config, d *llama.Config) error {
			d.AttnBias = true
			if err := qwen2Sliding(c, d); err != nil {
				return err
			}
			return activation(c, "hidden_act", c.HiddenAct, "silu")
		})})
}

// qwen2Sliding reads use_sliding_window, sliding_window, max_window_layers and layer_types.
func qwen2Sliding(c *Config, d *llama.Config) error {
	window := 0
	if c.UseSlidingWindow != nil && *c.UseSlidingWindow {
		var err error
		if window, err = c.window(4096); err != nil { // Qwen2Config's default when absent
			return err
		}
	}
	types := c.LayerTypes
	if types == nil {
		if window == 0 {
			return nil
		}
		first := 28 // Qwen2Config's max_window_layers default
		if c.MaxWindowLayers != nil {
			first = *c.MaxWindowLayers
		}
		for i := 0; i < c.NumHiddenLayers; i++ {
			types = append(types, map[bool]string{true: "sliding_attention", false: "full_attention"}[i >= first])
		}
	}
	if len(types) != c.NumHiddenLayers {
		return c.errorf("layer_types has %d entries for %d layers", len(types), c.NumHiddenLayers)
	}
	d.SlidingLayers = make([]bool, len(types))
	any := false
	for i, t := range types {
		switch t {
		case "full_attention":
		case "sliding_attention":
			if window == 0 {
				return c.errorf("layer_types[%d] is \"sliding_attention\" but there is no window (use_sliding_window false or sliding_window null)", i)
			}
			d.SlidingLayers[i], any = true, true
		default:
			return c.errorf("layer_types[%d] = %q is not supported (want %s)", i, t, fmt.Sprintf("%q or %q", "full_attention", "sliding_attention"))
		}
	}
	if !any {
		d.SlidingLayers = nil
		return nil
	}
	d.SlidingWindow = window
	return nil
}
