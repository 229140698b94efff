package hf

import (
	"math"
	"sort"
	"strings"

	"github.com/shears-ml/shears/models/llama"
)

// ropeKind makes the rotary embedding of one rope_scaling type for a rotated width dim (head_dim,
// or its partial_rotary_factor share) and base d.RopeTheta, as transformers' modeling_rope_utils
// computes it. A nil Rope means the default frequencies. A kind meant to run past
// max_position_embeddings (yarn) extends d.MaxSeq, the graph's context.
type ropeKind func(c *Config, s *RopeScaling, d *llama.Config, dim int) (*llama.Rope, error)

// ropeKinds is every rope_scaling type the import computes. The others (yarn, ntk, ...) are
// refused with the list of these.
var ropeKinds = map[string]ropeKind{
	"linear":   linearRope,
	"dynamic":  dynamicRope,
	"llama3":   llama3Rope,
	"longrope": longRope,
	"su":       longRope, // Phi-3's first name for LongRoPE
	"yarn":     yarnRope,
}

func ropeKindList() string {
	var k []string
	for n := range ropeKinds {
		k = append(k, n)
	}
	sort.Strings(k)
	return strings.Join(k, ", ")
}

// rope reads rope_theta, rope_scaling and partial_rotary_factor (or transformers v5's
// rope_parameters holding all three) into d.RopeTheta and d.Rope. partial says whether the
// family's attention rotates only part of each head (Phi-3 does; the others would fail in
// transformers, so a partial factor there is refused).
func rope(c *Config, d *llama.Config, partial bool) error {
	s, theta, factor := c.RopeScaling, c.RopeTheta, c.PartialRotary
	if p := c.RopeParameters; p != nil {
		if p.PerLayerType {
			return c.errorf("rope_parameters per layer type is not supported (one rotary embedding for every layer)")
		}
		if p.RopeTheta != 0 {
			theta = p.RopeTheta
		}
		if p.PartialRotary != nil {
			factor = p.PartialRotary
		}
		s = p
	}
	if theta == 0 {
		theta = 10000
	}
	if !(theta > 0) {
		return c.errorf("rope_theta %v must be positive", theta)
	}
	d.RopeTheta = theta
	hd := d.HeadDim()
	dim := hd
	if factor != nil && *factor != 1 {
		if !partial {
			return c.errorf("partial_rotary_factor %v is not supported for %s (its attention rotates whole heads)", *factor, c.Architectures[0])
		}
		dim = int(float64(hd) * *factor) // transformers: int(head_dim * partial_rotary_factor)
		if dim <= 0 || dim > hd || dim%2 != 0 {
			return c.errorf("partial_rotary_factor %v gives a rotary dim of %d for head_dim %d: want an even number in (0, %d]", *factor, dim, hd, hd)
		}
	}
	var r *llama.Rope
	if s != nil && s.Kind() != "" && s.Kind() != "default" {
		kind, ok := ropeKinds[s.Kind()]
		if !ok {
			return c.errorf("rope_scaling of type %q is not supported (supported: %s, or none)", s.Kind(), ropeKindList())
		}
		var err error
		if r, err = kind(c, s, d, dim); err != nil {
			return err
		}
	}
	if dim != hd {
		if r == nil {
			r = &llama.Rope{}
		}
		r.Dim = dim
	}
	d.Rope = r
	return nil
}

// linearRope divides every frequency by factor (positions / factor: position interpolation).
func linearRope(c *Config, s *RopeScaling, d *llama.Config, dim int) (*llama.Rope, error) {
	theta := d.RopeTheta
	if !(s.Factor > 0) {
		return nil, c.errorf("rope_scaling linear: factor %v must be positive", s.Factor)
	}
	f := llama.InvFreq(dim, theta)
	for j := range f {
		f[j] /= s.Factor
	}
	return &llama.Rope{InvFreq: f}, nil
}

// dynamicRope (dynamic NTK) changes the frequencies only once a sequence grows past
// max_position_embeddings, which is the graph's context: within it they are the default ones.
func dynamicRope(c *Config, s *RopeScaling, d *llama.Config, dim int) (*llama.Rope, error) {
	if !(s.Factor > 0) {
		return nil, c.errorf("rope_scaling dynamic: factor %v must be positive", s.Factor)
	}
	return nil, nil
}

// llama3Rope (Llama 3.1+) divides the low frequencies by factor, keeps the high ones and blends
// between (transformers' _compute_llama3_parameters).
func llama3Rope(c *Config, s *RopeScaling, d *llama.Config, dim int) (*llama.Rope, error) {
	theta := d.RopeTheta
	if !(s.Factor > 0) || !(s.LowFreqFactor > 0) || !(s.HighFreqFactor > s.LowFreqFactor) || s.OriginalMaxPositional <= 0 {
		return nil, c.errorf("rope_scaling llama3: factor %v, low_freq_factor %v, high_freq_factor %v, original_max_position_embeddings %d: want factor > 0, 0 < low_freq_factor < high_freq_factor, original_max_position_embeddings > 0",
			s.Factor, s.LowFreqFactor, s.HighFreqFactor, s.OriginalMaxPositional)
	}
	f := llama.InvFreq(dim, theta)
	old := float64(s.OriginalMaxPositional)
	lowWave, highWave := old/s.LowFreqFactor, old/s.HighFreqFactor
	for j, x := range f {
		wave := 2 * math.Pi / x
		switch {
		case wave < highWave: // high frequency: kept
		case wave > lowWave: // low frequency: divided
			f[j] = x / s.Factor
		default:
			sm := (old/wave - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor)
			f[j] = (1-sm)*x/s.Factor + sm*x
		}
	}
	return &llama.Rope{InvFreq: f}, nil
}

// longRope (Phi-3-128k, Phi-3.5, Phi-4-mini) divides frequency j by short_factor[j], or by
// long_factor[j] in a run whose largest position id reaches original_max_position_embeddings,
// and scales cos and sin by attention_factor, by default √(1 + ln s / ln original) with
// s = factor, or max_position_embeddings / original (transformers' _compute_longrope_parameters
// and its per-call switch in dynamic_rope_update).
func longRope(c *Config, s *RopeScaling, d *llama.Config, dim int) (*llama.Rope, error) {
	theta := d.RopeTheta
	if len(s.ShortFactor) != dim/2 || len(s.LongFactor) != dim/2 {
		return nil, c.errorf("rope_scaling longrope: short_factor has %d values and long_factor %d; the rotary dim %d needs %d each", len(s.ShortFactor), len(s.LongFactor), dim, dim/2)
	}
	orig := c.OriginalMaxPositions
	if orig == 0 {
		orig = s.OriginalMaxPositional
	}
	if orig == 0 {
		orig = c.MaxPositions
	}
	if orig <= 0 {
		return nil, c.errorf("rope_scaling longrope: original_max_position_embeddings %d must be positive", orig)
	}
	factor := s.Factor
	if factor == 0 {
		factor = float64(c.MaxPositions) / float64(orig)
	}
	scale := 1.0
	switch {
	case s.AttentionFactor != nil:
		scale = *s.AttentionFactor
	case factor > 1:
		scale = math.Sqrt(1 + math.Log(factor)/math.Log(float64(orig)))
	}
	if !(scale > 0) || math.IsInf(scale, 0) {
		return nil, c.errorf("rope_scaling longrope: attention factor %v must be positive", scale)
	}
	scaled := func(name string, ext []float64) ([]float64, error) {
		f := llama.InvFreq(dim, theta)
		for j := range f {
			if !(ext[j] > 0) || math.IsInf(ext[j], 0) {
				return nil, c.errorf("rope_scaling longrope: %s[%d] = %v must be positive", name, j, ext[j])
			}
			f[j] /= ext[j]
		}
		return f, nil
	}
	short, err := scaled("short_factor", s.ShortFactor)
	if err != nil {
		return nil, err
	}
	r := &llama.Rope{InvFreq: short, Scale: scale}
	if orig < c.MaxPositions { // otherwise no position of the context reaches the long regime
		if r.LongInvFreq, err = scaled("long_factor", s.LongFactor); err != nil {
			return nil, err
		}
		r.LongFrom = orig
	}
	return r, nil
}

// yarnRope (YaRN, Qwen2.5's long-context recipe) blends each frequency between its original
// value (extrapolation) and value ÷ factor (interpolation) with a linear ramp between the
// dims that turn beta_fast (32) and beta_slow (1) times over the original context (floored and
// ceiled unless truncate is false), and scales cos and sin by attention_factor, by default
// 0.1·ln(factor) + 1 (transformers' _compute_yarn_parameters). The frequencies are meant for
// factor × the original context, so the graph's context grows to that.
func yarnRope(c *Config, s *RopeScaling, d *llama.Config, dim int) (*llama.Rope, error) {
	theta := d.RopeTheta
	if !(s.Factor >= 1) || math.IsInf(s.Factor, 0) {
		return nil, c.errorf("rope_scaling yarn: factor %v must be >= 1", s.Factor)
	}
	if s.Mscale != nil || s.MscaleAllDim != nil {
		return nil, c.errorf("rope_scaling yarn with mscale / mscale_all_dim (DeepSeek's attention factor) is not supported")
	}
	orig := s.OriginalMaxPositional
	if orig == 0 {
		orig = c.MaxPositions
	}
	if orig != c.MaxPositions {
		// transformers 4.4x takes the correction range from max_position_embeddings and the
		// factor as given; later versions from original_max_position_embeddings, some with the
		// ratio of the two as factor: only the case where they agree is computed.
		return nil, c.errorf("rope_scaling yarn: original_max_position_embeddings %d differs from max_position_embeddings %d, which transformers versions read differently (supported: equal, or absent)", orig, c.MaxPositions)
	}
	fast, slow := s.BetaFast, s.BetaSlow
	if fast == 0 {
		fast = 32
	}
	if slow == 0 {
		slow = 1
	}
	corr := func(rotations float64) float64 {
		return float64(dim) * math.Log(float64(orig)/(rotations*2*math.Pi)) / (2 * math.Log(theta))
	}
	low, high := corr(fast), corr(slow)
	if s.Truncate == nil || *s.Truncate {
		low, high = math.Floor(low), math.Ceil(high)
	}
	low, high = math.Max(low, 0), math.Min(high, float64(dim-1))
	if low == high {
		high += 0.001
	}
	f := llama.InvFreq(dim, theta)
	for j, x := range f {
		ramp := math.Min(math.Max((float64(j)-low)/(high-low), 0), 1)
		keep := 1 - ramp // the share of the original frequency
		f[j] = x/s.Factor*(1-keep) + x*keep
	}
	scale := 1.0
	switch {
	case s.AttentionFactor != nil:
		scale = *s.AttentionFactor
	case s.Factor > 1:
		scale = 0.1*math.Log(s.Factor) + 1
	}
	if !(scale > 0) || math.IsInf(scale, 0) {
		return nil, c.errorf("rope_scaling yarn: attention factor %v must be positive", scale)
	}
	d.MaxSeq = max(d.MaxSeq, int(math.Round(s.Factor*float64(orig))))
	return &llama.Rope{InvFreq: f, Scale: scale}, nil
}
