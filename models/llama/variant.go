package llama

import (
	"fmt"
	"math"
)

// Variant selects the departures from the llama2.c LLaMA that Hugging Face decoder families
// make; the zero value is the llama2.c graph. The families in models/hf are short descriptions
// that set these fields from config.json.
type Variant struct {
	// HeadDimOverride is head_dim when it is not Dim/Heads (Gemma-7B: 256 with hidden 3072 and
	// 16 heads); the attention then projects to Heads × HeadDim.
	HeadDimOverride int
	// RotateHalf rotates the halves (x[:hd/2], x[hd/2:]) of each head, as Hugging Face's
	// rotate_half does on checkpoints whose q and k rows are stored in that order; otherwise RoPE
	// rotates interleaved pairs (2j, 2j+1), as llama2.c does.
	RotateHalf bool
	// Rope replaces the rotary embedding's default frequencies θ^(−2j/hd) (rope_scaling, a
	// partial rotary dimension); nil keeps them.
	Rope *Rope
	// SlidingWindow, when positive, limits the attention of the layers SlidingLayers marks (all
	// of them when SlidingLayers is nil) to the SlidingWindow most recent positions: the query
	// at position i sees the keys i − SlidingWindow < j ≤ i (Mistral, Qwen2, Phi-3).
	SlidingWindow int
	SlidingLayers []bool
	// AttnBias adds biases to q, k and v (Qwen2; attention_bias also gives o one); MLPBias to
	// the MLP's linears.
	AttnBias, OBias, MLPBias bool
	// FusedQKV reads q, k and v from one self_attn.qkv_proj linear and splits its output;
	// FusedGateUp reads gate and up from one mlp.gate_up_proj (Phi-3).
	FusedQKV, FusedGateUp bool
	// NormPlusOne scales RMSNorm by (1 + weight) (Gemma stores the offset from one).
	NormPlusOne bool
	// EmbedScale multiplies the embeddings by √Dim (Gemma).
	EmbedScale bool
	// GeluTanh replaces SiLU in the gated MLP by tanh-approximated GELU (Gemma).
	GeluTanh bool
	// TiedHead makes the head read model.embed_tokens.weight through a Transpose instead of an
	// lm_head.weight of its own (checkpoints with tie_word_embeddings, which have no head
	// tensor: the graph's initializers are the checkpoint's).
	TiedHead bool
}

// Rope is a rotary embedding other than the default: its inverse frequencies, possibly over
// the first Dim entries of each head only, possibly switched to a second set for long inputs,
// and a scale on cos and sin. models/hf computes them from rope_scaling.
type Rope struct {
	// Dim is the rotated part of each head (partial_rotary_factor · head_dim); the rest passes
	// through unrotated. 0 means the whole head.
	Dim int
	// InvFreq holds the Dim/2 inverse frequencies; nil means θ^(−2j/Dim).
	InvFreq []float64
	// LongInvFreq, when set, replaces InvFreq in a run whose largest position id reaches
	// LongFrom (LongRoPE: long_factor once the sequence is longer than
	// original_max_position_embeddings = LongFrom). The choice is made per run, as
	// transformers makes it per forward call: a cache keeps the keys as they were rotated.
	LongInvFreq []float64
	LongFrom    int
	// Scale multiplies cos and sin (LongRoPE's attention factor); 0 means 1.
	Scale float64
}

// rotaryDim is the rotated width of a head of size hd.
func (r *Rope) rotaryDim(hd int) int {
	if r == nil || r.Dim == 0 {
		return hd
	}
	return r.Dim
}

func (r *Rope) validate(hd int, rotateHalf bool) error {
	if r == nil {
		return nil
	}
	rd := r.rotaryDim(hd)
	switch {
	case rd <= 0 || rd > hd || rd%2 != 0:
		return fmt.Errorf("rotary dim %d: want an even number in (0, %d]", rd, hd)
	case rd != hd && !rotateHalf:
		return fmt.Errorf("a partial rotary dim %d needs rotate-half RoPE", rd)
	case r.InvFreq != nil && len(r.InvFreq) != rd/2:
		return fmt.Errorf("%d rotary inverse frequencies for rotary dim %d (want %d)", len(r.InvFreq), rd, rd/2)
	case r.LongInvFreq != nil && len(r.LongInvFreq) != rd/2:
		return fmt.Errorf("%d long rotary inverse frequencies for rotary dim %d (want %d)", len(r.LongInvFreq), rd, rd/2)
	case r.LongInvFreq != nil && r.LongFrom <= 0:
		return fmt.Errorf("long rotary frequencies need a positive switch position, have %d", r.LongFrom)
	case r.Scale < 0 || math.IsNaN(r.Scale) || math.IsInf(r.Scale, 0):
		return fmt.Errorf("rotary scale %v must be finite and non-negative", r.Scale)
	}
	for _, f := range append(append([]float64(nil), r.InvFreq...), r.LongInvFreq...) {
		if !(f >= 0) || math.IsInf(f, 0) {
			return fmt.Errorf("rotary inverse frequency %v must be finite and non-negative", f)
		}
	}
	return nil
}

// InvFreq returns the default rotary inverse frequencies θ^(−2j/dim), j < dim/2.
func InvFreq(dim int, theta float64) []float64 {
	f := make([]float64, dim/2)
	for j := range f {
		f[j] = math.Pow(theta, -float64(2*j)/float64(dim))
	}
	return f
}
