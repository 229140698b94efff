package hf

import (
	"github.com/shears-ml/shears/models/llama"
	"github.com/shears-ml/shears/onnx"
)

// decoder reads the config.json fields every LLaMA-style family shares (sizes, head_dim,
// num_key_value_heads, rope_theta, rms_norm_eps, tie_word_embeddings, rope_scaling) into the
// llama builder's Config, with transformers' defaults for the fields a config may omit. The
// graph uses rotate-half RoPE: Hugging Face checkpoints store q and k rows in that order.
func decoder(c *Config, defaultEps float64, defaultTied bool) (llama.Config, error) {
	if err := c.positive("hidden_size", c.HiddenSize, "intermediate_size", c.IntermediateSize,
		"num_hidden_layers", c.NumHiddenLayers, "num_attention_heads", c.NumAttentionHeads,
		"vocab_size", c.VocabSize, "max_position_embeddings", c.MaxPositions); err != nil {
		return llama.Config{}, err
	}
	d := llama.Config{
		Dim: c.HiddenSize, HiddenDim: c.IntermediateSize, Layers: c.NumHiddenLayers,
		Heads: c.NumAttentionHeads, KVHeads: c.NumKeyValueHeads, Vocab: c.VocabSize,
		MaxSeq: c.MaxPositions, NormEps: float32(c.RMSNormEps), RopeTheta: c.RopeTheta,
		TiedEmbeddings: c.Tied(defaultTied),
	}
	if d.KVHeads == 0 {
		d.KVHeads = d.Heads
	}
	if d.NormEps == 0 {
		d.NormEps = float32(defaultEps)
	}
	if d.RopeTheta == 0 {
		d.RopeTheta = 10000
	}
	d.RotateHalf, d.TiedHead = true, d.TiedEmbeddings
	if c.HeadDim > 0 && c.HeadDim*c.NumAttentionHeads != c.HiddenSize {
		d.HeadDimOverride = c.HeadDim
	} else if c.HeadDim == 0 && c.HiddenSize%c.NumAttentionHeads != 0 {
		return d, c.errorf("hidden_size %d is not a multiple of num_attention_heads %d and no head_dim is given", c.HiddenSize, c.NumAttentionHeads)
	}
	if s := c.RopeScaling; s != nil {
		if s.Kind() != "llama3" {
			return d, c.errorf("rope_scaling of type %q is not supported (supported: llama3, or none)", s.Kind())
		}
		d.Llama3Rope = &llama.Llama3Rope{Factor: s.Factor, LowFreqFactor: s.LowFreqFactor,
			HighFreqFactor: s.HighFreqFactor, OriginalMaxPositions: s.OriginalMaxPositional}
	}
	if c.PartialRotary != nil && *c.PartialRotary != 1 {
		return d, c.errorf("partial_rotary_factor %v is not supported (only full rotary embeddings)", *c.PartialRotary)
	}
	if err := d.Validate(); err != nil {
		return d, c.errorf("%v", err)
	}
	return d, nil
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
func buildDecoder(defaultEps float64, defaultTied bool, variant func(c *Config, d *llama.Config) error) func(*Config, Source) (*onnx.Model, error) {
	return func(c *Config, src Source) (*onnx.Model, error) {
		d, err := decoder(c, defaultEps, defaultTied)
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
