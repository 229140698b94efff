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
	// Llama3Rope rescales the rotary frequencies (rope_scaling of type "llama3").
	Llama3Rope *Llama3Rope
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

// Llama3Rope is rope_scaling of type "llama3" (Llama 3.1+): low frequencies divided by
// Factor, high ones kept, a smooth blend between.
type Llama3Rope struct {
	Factor, LowFreqFactor, HighFreqFactor float64
	OriginalMaxPositions                  int
}

func (r *Llama3Rope) validate() error {
	if r == nil {
		return nil
	}
	if !(r.Factor > 0) || !(r.LowFreqFactor > 0) || !(r.HighFreqFactor > r.LowFreqFactor) || r.OriginalMaxPositions <= 0 {
		return fmt.Errorf("llama3 rope scaling %+v: want factor > 0, 0 < low_freq_factor < high_freq_factor, original_max_position_embeddings > 0", *r)
	}
	return nil
}

// InvFreq returns the rotary inverse frequencies θ^(−2j/hd), j < hd/2, rescaled when r is set
// (transformers' _compute_llama3_parameters).
func InvFreq(headDim int, theta float64, r *Llama3Rope) []float64 {
	f := make([]float64, headDim/2)
	for j := range f {
		f[j] = math.Pow(theta, -float64(2*j)/float64(headDim))
	}
	if r == nil {
		return f
	}
	old := float64(r.OriginalMaxPositions)
	lowWave, highWave := old/r.LowFreqFactor, old/r.HighFreqFactor
	for j, x := range f {
		wave := 2 * math.Pi / x
		switch {
		case wave < highWave: // high frequency: kept
		case wave > lowWave: // low frequency: divided
			f[j] = x / r.Factor
		default:
			s := (old/wave - r.LowFreqFactor) / (r.HighFreqFactor - r.LowFreqFactor)
			f[j] = (1-s)*x/r.Factor + s*x
		}
	}
	return f
}
