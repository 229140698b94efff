package llama

import (
	"fmt"
	"sort"
)

// Config is a LLaMA architecture's shape.
type Config struct {
	Dim, HiddenDim, Layers, Heads, KVHeads, Vocab, MaxSeq int
	NormEps                                               float32
	RopeTheta                                             float64
	// TiedEmbeddings records that the checkpoint's classifier is the embedding; the graph
	// still stores lm_head.weight as its own [dim, vocab] initializer.
	TiedEmbeddings bool
	// Variant holds the Hugging Face families' departures from llama2.c's LLaMA (zero: none).
	Variant
}

// HeadDim is Dim / Heads unless HeadDimOverride says otherwise.
func (c Config) HeadDim() int {
	if c.HeadDimOverride > 0 {
		return c.HeadDimOverride
	}
	return c.Dim / c.Heads
}

// QDim is the width of the query projection and the attention output, Heads × HeadDim (Dim
// unless the head size is overridden).
func (c Config) QDim() int { return c.Heads * c.HeadDim() }

// KVDim is the width of the key and value projections, KVHeads × HeadDim.
func (c Config) KVDim() int { return c.KVHeads * c.HeadDim() }

// Validate checks the shape is buildable.
func (c Config) Validate() error {
	switch {
	case c.Dim <= 0 || c.HiddenDim <= 0 || c.Layers <= 0 || c.Heads <= 0 || c.KVHeads <= 0 || c.Vocab <= 0 || c.MaxSeq <= 0:
		return fmt.Errorf("llama config: sizes must be positive: %+v", c)
	case c.HeadDimOverride < 0:
		return fmt.Errorf("llama config: head dim %d must be positive", c.HeadDimOverride)
	case c.HeadDimOverride == 0 && c.Dim%c.Heads != 0:
		return fmt.Errorf("llama config: dim %d is not a multiple of heads %d", c.Dim, c.Heads)
	case c.HeadDim()%2 != 0:
		return fmt.Errorf("llama config: head dim %d is odd (RoPE rotates pairs)", c.HeadDim())
	case c.Heads%c.KVHeads != 0:
		return fmt.Errorf("llama config: heads %d is not a multiple of kv heads %d", c.Heads, c.KVHeads)
	case !(c.NormEps > 0):
		return fmt.Errorf("llama config: norm eps %v must be positive", c.NormEps)
	case !(c.RopeTheta > 0):
		return fmt.Errorf("llama config: rope theta %v must be positive", c.RopeTheta)
	case c.FusedQKV && c.AttnBias:
		return fmt.Errorf("llama config: a fused qkv projection with biases is not supported")
	}
	if err := c.Rope.validate(c.HeadDim(), c.RotateHalf); err != nil {
		return fmt.Errorf("llama config: %w", err)
	}
	if c.SlidingWindow < 0 || (c.SlidingLayers != nil && len(c.SlidingLayers) != c.Layers) {
		return fmt.Errorf("llama config: sliding window %d over %d of %d layers: want a window >= 0 and one flag per layer", c.SlidingWindow, len(c.SlidingLayers), c.Layers)
	}
	return nil
}

// Params counts the learned parameters; a tied head counts once.
func (c Config) Params() int64 {
	d, h, kv, v, q := int64(c.Dim), int64(c.HiddenDim), int64(c.KVDim()), int64(c.Vocab), int64(c.QDim())
	layer := 2*d*q + 2*d*kv + 3*d*h + 2*d
	if c.AttnBias {
		layer += q + 2*kv
	}
	if c.OBias {
		layer += d
	}
	if c.MLPBias {
		layer += 2*h + d
	}
	n := v*d + int64(c.Layers)*layer + d
	if !c.TiedEmbeddings {
		n += d * v
	}
	return n
}

var presets = map[string]Config{
	// tiny: stories260K's shape with two layers and a short context, for tests.
	"tiny": {Dim: 64, HiddenDim: 172, Layers: 2, Heads: 8, KVHeads: 4, Vocab: 512, MaxSeq: 128},
	// 25m: about 25.6M parameters, small enough for CPU training benchmarks.
	"25m": {Dim: 512, HiddenDim: 1376, Layers: 6, Heads: 8, KVHeads: 4, Vocab: 8000, MaxSeq: 512},
	// 1b: TinyLlama-1.1B's shape.
	"1b": {Dim: 2048, HiddenDim: 5632, Layers: 22, Heads: 32, KVHeads: 4, Vocab: 32000, MaxSeq: 2048},
	// 7b: LLaMA-2-7B's shape.
	"7b": {Dim: 4096, HiddenDim: 11008, Layers: 32, Heads: 32, KVHeads: 32, Vocab: 32000, MaxSeq: 4096},
}

// Preset returns a named shape: "tiny", "25m", "1b" or "7b" (RMSNorm eps 1e-5, RoPE θ 10000,
// untied head).
func Preset(name string) (Config, error) {
	c, ok := presets[name]
	if !ok {
		return Config{}, fmt.Errorf("llama: unknown preset %q (have %v)", name, PresetNames())
	}
	c.NormEps, c.RopeTheta = 1e-5, 10000
	return c, nil
}

// PresetNames lists the presets, sorted.
func PresetNames() []string {
	var n []string
	for k := range presets {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}
