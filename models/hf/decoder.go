package hf

import (
	"github.com/shears-ml/shears/models/llama"
	"github.com/shears-ml/shears/onnx"
)

// defaults are transformers' values for the config.json fields a LLaMA-style family's config
// may omit, and what its attention allows.
type defaults struct {
	eps           float64
	tied          bool
	partialRotary bool // the attention rotates the first partial_rotary_factor of each head (Phi-3)
}

// decoder reads the config.json fields every LLaMA-style family shares (sizes, head_dim,
// num_key_value_heads, rms_norm_eps, tie_word_embeddings, and the rotary embedding: rope.go)
// into the llama builder's Config. The graph uses rotate-half RoPE: Hugging Face checkpoints
// store q and k rows in that order.
func decoder(c *Config, def defaults) (llama.Config, error) {
	if err := c.positive("hidden_size", c.HiddenSize, "intermediate_size", c.IntermediateSize,
		"num_hidden_layers", c.NumHiddenLayers, "num_attention_heads", c.NumAttentionHeads,
		"vocab_size", c.VocabSize, "max_position_embeddings", c.MaxPositions); err != nil {
		return llama.Config{}, err
	}
	d := llama.Config{
		Dim: c.HiddenSize, HiddenDim: c.IntermediateSize, Layers: c.NumHiddenLayers,
		Heads: c.NumAttentionHeads, KVHeads: c.NumKeyValueHeads, Vocab: c.VocabSize,
		MaxSeq: c.MaxPositions, NormEps: float32(c.RMSNormEps),
		TiedEmbeddings: c.Tied(def.tied),
	}
	if d.KVHeads == 0 {
		d.KVHeads = d.Heads
	}
	if d.NormEps == 0 {
		d.NormEps = float32(def.eps)
	}
	d.RotateHalf, d.TiedHead = true, d.TiedEmbeddings
	if c.HeadDim > 0 && c.HeadDim*c.NumAttentionHeads != c.HiddenSize {
		d.HeadDimOverride = c.HeadDim
	} else if c.HeadDim == 0 && c.HiddenSize%c.NumAttentionHeads != 0 {
		return d, c.errorf("hidden_size %d is not a multiple of num_attention_heads %d and no head_dim is given", c.HiddenSize, c.NumAttentionHeads)
	}
	if err := rope(c, &d, def.partialRotary); err != nil {
		return d, err
	}
	if err := d.Validate(); err != nil {
		return d, c.errorf("%v", err)
	}
	return d, nil
}

// slidingWindow sets every layer's attention to config.json's sliding_window (Mistral, Phi-3:
// transformers masks with it whenever it is not null); absent, it is the config class's
// default (MistralConfig: 4096, Phi3Config: null).
func slidingWindow(c *Config, d *llama.Config, absent int) error {
	w, err := c.window(absent)
	d.SlidingWindow = w
	return err
}

// window is sliding_window: 0 when null, absent when the field is missing.
func (c *Config) window(absent int) (int, error) {
	switch {
	case !c.has("sliding_window"):
		return absent, nil
	case c.SlidingWindow == nil:
		return 0, nil
	case *c.SlidingWindow <= 0:
		return 0, c.errorf("sliding_window %d must be positive or null", *c.SlidingWindow)
	}
	return *c.SlidingWindow, nil
}

// activation checks that the config's activation is the one the family's graph computes.
func activation(c *Config, field, got string, want ...string) error {
	if got == "" {
		return nil
	}
	for _, w := range want {
		if got == w {
			return nil
		}
	}
	return c.errorf("%s %q is not supported for %s (want %v)", field, got, c.Architectures[0], want)
}

// buildDecoder is a Family.Build for the LLaMA-style families: variant adjusts the shared
// decoder config to the family.
func buildDecoder(def defaults, variant func(c *Config, d *llama.Config) error) func(*Config, Source) (*onnx.Model, error) {
	return func(c *Config, src Source) (*onnx.Model, error) {
		d, err := decoder(c, def)
		if err != nil {
			return nil, err
		}
		if err := variant(c, &d); err != nil {
			return nil, err
		}
		if err := d.Validate(); err != nil {
			return nil, c.errorf("%v", err)
		}
		return llama.Build(d, llama.Source(src))
	}
}
