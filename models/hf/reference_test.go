package hf_test

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/safetensors"
	"github.com/shears-ml/shears/models/hf"
)

// This file is the independent truth the imported graphs are checked against: each family's
// forward pass written from Hugging Face's modeling code (modeling_llama.py, modeling_mistral.py,
// modeling_qwen2.py, modeling_phi3.py, modeling_gemma.py, modeling_gpt2.py) in plain float64 Go,
// one sequence, no cache. It reads the checkpoint's tensors by their Hugging Face names and
// layouts and shares no code with the graph builders.

// mat is a row-major float64 tensor as stored in the checkpoint.
type mat struct {
	shape []int64
	v     []float64
}

// loadRef reads every tensor of the checkpoint in dir, widened to float64.
func loadRef(t *testing.T, dir string) map[string]mat {
	t.Helper()
	s, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out := map[string]mat{}
	for _, name := range s.Names() {
		info, r, _ := s.Info(name)
		b, err := r.Read(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := hf.Decode(info.DType, b)
		if err != nil {
			t.Fatal(err)
		}
		v := make([]float64, len(f))
		for i, x := range f {
			v[i] = float64(x)
		}
		out[name] = mat{info.Shape, v}
	}
	return out
}

type refNet struct {
	t *testing.T
	w map[string]mat
}

func (r refNet) get(name string) mat {
	m, ok := r.w[name]
	if !ok {
		r.t.Fatalf("reference: the checkpoint has no %q", name)
	}
	return m
}

// linear is x·Wᵀ (+b) for an nn.Linear weight [out, in].
func (r refNet) linear(x []float64, name string, bias bool) []float64 {
	w := r.get(name + ".weight")
	out, in := int(w.shape[0]), int(w.shape[1])
	y := make([]float64, out)
	for o := 0; o < out; o++ {
		s := 0.0
		for i := 0; i < in; i++ {
			s += x[i] * w.v[o*in+i]
		}
		y[o] = s
	}
	if bias {
		b := r.get(name + ".bias")
		for o := range y {
			y[o] += b.v[o]
		}
	}
	return y
}

// conv1d is x·W + b for GPT-2's Conv1D weight [in, out].
func (r refNet) conv1d(x []float64, name string) []float64 {
	w, b := r.get(name+".weight"), r.get(name+".bias")
	in, out := int(w.shape[0]), int(w.shape[1])
	y := make([]float64, out)
	for o := 0; o < out; o++ {
		s := b.v[o]
		for i := 0; i < in; i++ {
			s += x[i] * w.v[i*out+o]
		}
		y[o] = s
	}
	return y
}

func rmsNorm(x, w []float64, eps float64, plusOne bool) []float64 {
	ms := 0.0
	for _, v := range x {
		ms += v * v
	}
	inv := 1 / math.Sqrt(ms/float64(len(x))+eps)
	y := make([]float64, len(x))
	for i := range x {
		g := w[i]
		if plusOne {
			g += 1
		}
		y[i] = x[i] * inv * g
	}
	return y
}

func layerNorm(x, w, b []float64, eps float64) []float64 {
	mean, vr := 0.0, 0.0
	for _, v := range x {
		mean += v
	}
	mean /= float64(len(x))
	for _, v := range x {
		vr += (v - mean) * (v - mean)
	}
	vr /= float64(len(x))
	y := make([]float64, len(x))
	for i := range x {
		y[i] = (x[i]-mean)/math.Sqrt(vr+eps)*w[i] + b[i]
	}
	return y
}

func silu(x float64) float64 { return x / (1 + math.Exp(-x)) }
func geluTanh(x float64) float64 {
	return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
}

// refRope is HF's rotary embedding for a forward whose largest position id is maxPos: the
// inverse frequencies of the rotated width (partial_rotary_factor · head_dim) and the scale
// on cos and sin, with rope_scaling applied as modeling_rope_utils does (linear, llama3,
// longrope/su, yarn with its default betas; dynamic changes nothing within
// max_position_embeddings). It reads rope_theta,
// rope_scaling and partial_rotary_factor, or v5's rope_parameters holding them.
func refRope(c *hf.Config, hd, maxPos int) (inv []float64, scale float64) {
	theta, s, prf := c.RopeTheta, c.RopeScaling, 1.0
	if c.PartialRotary != nil {
		prf = *c.PartialRotary
	}
	if p := c.RopeParameters; p != nil {
		s = p
		if p.RopeTheta != 0 {
			theta = p.RopeTheta
		}
		if p.PartialRotary != nil {
			prf = *p.PartialRotary
		}
	}
	if theta == 0 {
		theta = 10000
	}
	dim := int(float64(hd) * prf)
	inv = make([]float64, dim/2)
	for j := range inv {
		inv[j] = 1 / math.Pow(theta, float64(2*j)/float64(dim))
	}
	scale = 1
	if s == nil {
		return inv, scale
	}
	switch s.Kind() {
	case "linear":
		for j := range inv {
			inv[j] /= s.Factor
		}
	case "llama3":
		old := float64(s.OriginalMaxPositional)
		lowWave, highWave := old/s.LowFreqFactor, old/s.HighFreqFactor
		for j, x := range inv {
			wave := 2 * math.Pi / x
			v := x
			if wave > lowWave {
				v = x / s.Factor
			}
			if !(wave < highWave) && !(wave > lowWave) {
				sm := (old/wave - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor)
				v = (1-sm)*v/s.Factor + sm*v
			}
			inv[j] = v
		}
	case "yarn":
		// The correction range: dims d with d·ln(orig / (2π·rotations)) / (2·ln θ) between
		// beta_fast = 32 and beta_slow = 1 rotations, floored and ceiled.
		orig := float64(c.MaxPositions)
		lo := math.Floor(float64(dim) * math.Log(orig/(32*2*math.Pi)) / (2 * math.Log(theta)))
		hi := math.Ceil(float64(dim) * math.Log(orig/(1*2*math.Pi)) / (2 * math.Log(theta)))
		lo, hi = math.Max(lo, 0), math.Min(hi, float64(dim-1))
		for j := range inv {
			t := (float64(j) - lo) / (hi - lo)
			t = math.Min(1, math.Max(0, t)) // 0: original frequency, 1: divided by factor
			inv[j] = inv[j]*(1-t) + inv[j]/s.Factor*t
		}
		scale = 1 + 0.1*math.Log(s.Factor)
	case "longrope", "su":
		orig := c.OriginalMaxPositions
		if orig == 0 {
			orig = s.OriginalMaxPositional
		}
		factor := s.Factor
		if factor == 0 {
			factor = float64(c.MaxPositions) / float64(orig)
		}
		if s.AttentionFactor != nil {
			scale = *s.AttentionFactor
		} else if factor > 1 {
			scale = math.Sqrt(1 + math.Log(factor)/math.Log(float64(orig)))
		}
		ext := s.ShortFactor
		if maxPos+1 > orig {
			ext = s.LongFactor
		}
		for j := range inv {
			inv[j] = 1 / (ext[j] * math.Pow(theta, float64(2*j)/float64(dim)))
		}
	}
	return inv, scale
}

// refWindow is the sliding window of layer l (0: full attention): Mistral and Phi-3 use
// sliding_window in every layer when it is not null (absent: 4096 for Mistral); Qwen2 only
// with use_sliding_window, in the layers layer_types marks, by default those from
// max_window_layers (28) on.
func refWindow(c *hf.Config, l int) int {
	if !strings.Contains(c.Raw, `"sliding_window"`) && c.Architectures[0] != "Phi3ForCausalLM" {
		w := 4096 // MistralConfig's and Qwen2Config's default when the field is absent
		c.SlidingWindow = &w
	}
	if c.SlidingWindow == nil {
		return 0
	}
	switch c.Architectures[0] {
	case "MistralForCausalLM", "Phi3ForCausalLM":
		return *c.SlidingWindow
	case "Qwen2ForCausalLM":
		if c.UseSlidingWindow == nil || !*c.UseSlidingWindow {
			return 0
		}
		if c.LayerTypes != nil {
			if c.LayerTypes[l] == "sliding_attention" {
				return *c.SlidingWindow
			}
			return 0
		}
		first := 28
		if c.MaxWindowLayers != nil {
			first = *c.MaxWindowLayers
		}
		if l >= first {
			return *c.SlidingWindow
		}
	}
	return 0
}

// rotateHalf applies HF's RoPE to the first 2·len(inv) entries of one head x at position pos:
// x·cos + rotate_half(x)·sin with emb = cat(freqs, freqs), rotate_half(x) = cat(−x₂, x₁), cos
// and sin scaled by scale; the rest of the head passes through.
func rotateHalf(x []float64, pos int, inv []float64, scale float64) {
	h := len(inv)
	for j := 0; j < h; j++ {
		a := float64(pos) * inv[j]
		c, s := math.Cos(a)*scale, math.Sin(a)*scale
		x0, x1 := x[j], x[j+h]
		x[j] = x0*c - x1*s
		x[j+h] = x1*c + x0*s
	}
}

// attend is causal multi-head attention over q [T][nh·hd], k, v [T][nkv·hd] (GQA: query head h
// reads kv head h / (nh/nkv)), scaled by 1/√hd; with a window w > 0 the query t sees only the
// keys t − w < s ≤ t (transformers' sliding_window_overlay: kv_idx > q_idx − sliding_window).
func attend(q, k, v [][]float64, nh, nkv, hd, w int) [][]float64 {
	T := len(q)
	out := make([][]float64, T)
	rep := nh / nkv
	for t := 0; t < T; t++ {
		out[t] = make([]float64, nh*hd)
		first := 0
		if w > 0 {
			first = max(0, t-w+1)
		}
		for h := 0; h < nh; h++ {
			kh := h / rep
			sc := make([]float64, t+1)
			mx := math.Inf(-1)
			for s := first; s <= t; s++ {
				d := 0.0
				for i := 0; i < hd; i++ {
					d += q[t][h*hd+i] * k[s][kh*hd+i]
				}
				sc[s] = d / math.Sqrt(float64(hd))
				mx = math.Max(mx, sc[s])
			}
			z := 0.0
			for s := first; s <= t; s++ {
				sc[s] = math.Exp(sc[s] - mx)
				z += sc[s]
			}
			for s := first; s <= t; s++ {
				for i := 0; i < hd; i++ {
					out[t][h*hd+i] += sc[s] / z * v[s][kh*hd+i]
				}
			}
		}
	}
	return out
}

// refForward returns the logits [T][vocab] of ids under the checkpoint's architecture.
func refForward(t *testing.T, c *hf.Config, w map[string]mat, ids []int64) [][]float64 {
	r := refNet{t, w}
	if c.Architectures[0] == "GPT2LMHeadModel" {
		return r.gpt2(c, ids)
	}
	arch := c.Architectures[0]
	gemma, phi3 := arch == "GemmaForCausalLM", arch == "Phi3ForCausalLM"
	// attention_bias gives q, k, v and o biases in LLaMA and Gemma (Mistral and Phi-3 have none);
	// Qwen2 always has q, k and v biases and no o bias.
	oBias := c.AttentionBias && (arch == "LlamaForCausalLM" || gemma)
	bias := arch == "Qwen2ForCausalLM" || oBias
	mlpBias := c.MLPBias && arch == "LlamaForCausalLM" // only LlamaConfig has mlp_bias
	d, nh := c.HiddenSize, c.NumAttentionHeads
	nkv := c.NumKeyValueHeads
	if nkv == 0 {
		nkv = nh
	}
	hd := c.HeadDim
	if hd == 0 {
		hd = d / nh
	}
	eps := c.RMSNormEps
	inv, scale := refRope(c, hd, len(ids)-1)
	emb := r.get("model.embed_tokens.weight")
	T := len(ids)
	x := make([][]float64, T)
	for i, id := range ids {
		x[i] = append([]float64(nil), emb.v[int(id)*d:(int(id)+1)*d]...)
		if gemma {
			for j := range x[i] {
				x[i][j] *= math.Sqrt(float64(d))
			}
		}
	}
	for l := 0; l < c.NumHiddenLayers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		q, k, v := make([][]float64, T), make([][]float64, T), make([][]float64, T)
		for i := range x {
			h := rmsNorm(x[i], r.get(p+"input_layernorm.weight").v, eps, gemma)
			if phi3 {
				qkv := r.linear(h, p+"self_attn.qkv_proj", false)
				q[i], k[i], v[i] = qkv[:nh*hd], qkv[nh*hd:(nh+nkv)*hd], qkv[(nh+nkv)*hd:]
			} else {
				q[i] = r.linear(h, p+"self_attn.q_proj", bias)
				k[i] = r.linear(h, p+"self_attn.k_proj", bias)
				v[i] = r.linear(h, p+"self_attn.v_proj", bias)
			}
			for hh := 0; hh < nh; hh++ {
				rotateHalf(q[i][hh*hd:(hh+1)*hd], i, inv, scale)
			}
			for hh := 0; hh < nkv; hh++ {
				rotateHalf(k[i][hh*hd:(hh+1)*hd], i, inv, scale)
			}
		}
		o := attend(q, k, v, nh, nkv, hd, refWindow(c, l))
		for i := range x {
			a := r.linear(o[i], p+"self_attn.o_proj", oBias)
			for j := range x[i] {
				x[i][j] += a[j]
			}
			h := rmsNorm(x[i], r.get(p+"post_attention_layernorm.weight").v, eps, gemma)
			var gate, up []float64
			if phi3 {
				gu := r.linear(h, p+"mlp.gate_up_proj", false)
				gate, up = gu[:len(gu)/2], gu[len(gu)/2:]
			} else {
				gate = r.linear(h, p+"mlp.gate_proj", mlpBias)
				up = r.linear(h, p+"mlp.up_proj", mlpBias)
			}
			for j := range gate {
				if gemma {
					gate[j] = geluTanh(gate[j]) * up[j]
				} else {
					gate[j] = silu(gate[j]) * up[j]
				}
			}
			m := r.linear(gate, p+"mlp.down_proj", mlpBias)
			for j := range x[i] {
				x[i][j] += m[j]
			}
		}
	}
	head := "lm_head"
	if _, ok := w["lm_head.weight"]; !ok {
		head = "model.embed_tokens" // tied: the embedding [vocab, d] is the head's [out, in]
	}
	out := make([][]float64, T)
	for i := range x {
		h := rmsNorm(x[i], r.get("model.norm.weight").v, eps, gemma)
		out[i] = r.linear(h, head, false)
	}
	return out
}

func (r refNet) gpt2(c *hf.Config, ids []int64) [][]float64 {
	d, nh := c.NEmbd, c.NHead
	eps := c.LayerNormEpsilon
	wte, wpe := r.get("transformer.wte.weight"), r.get("transformer.wpe.weight")
	T := len(ids)
	x := make([][]float64, T)
	for i, id := range ids {
		x[i] = make([]float64, d)
		for j := 0; j < d; j++ {
			x[i][j] = wte.v[int(id)*d+j] + wpe.v[i*d+j]
		}
	}
	ln := func(v []float64, name string) []float64 {
		return layerNorm(v, r.get(name+".weight").v, r.get(name+".bias").v, eps)
	}
	for l := 0; l < c.NLayer; l++ {
		p := fmt.Sprintf("transformer.h.%d.", l)
		q, k, v := make([][]float64, T), make([][]float64, T), make([][]float64, T)
		for i := range x {
			qkv := r.conv1d(ln(x[i], p+"ln_1"), p+"attn.c_attn")
			q[i], k[i], v[i] = qkv[:d], qkv[d:2*d], qkv[2*d:]
		}
		o := attend(q, k, v, nh, nh, d/nh, 0)
		for i := range x {
			a := r.conv1d(o[i], p+"attn.c_proj")
			for j := range x[i] {
				x[i][j] += a[j]
			}
			u := r.conv1d(ln(x[i], p+"ln_2"), p+"mlp.c_fc")
			for j := range u {
				u[j] = geluTanh(u[j])
			}
			m := r.conv1d(u, p+"mlp.c_proj")
			for j := range x[i] {
				x[i][j] += m[j]
			}
		}
	}
	out := make([][]float64, T)
	for i := range x {
		out[i] = r.linear(ln(x[i], "transformer.ln_f"), "transformer.wte", false)
	}
	return out
}

// relDiff is max |got − want| / max |want| over all logits (NaN-aware: a NaN gives +Inf).
func relDiff(got []float32, want [][]float64) float64 {
	var num, den float64
	k := 0
	for _, row := range want {
		for _, w := range row {
			g := float64(got[k])
			k++
			d := math.Abs(g - w)
			if !(d <= num) {
				num = d
				if math.IsNaN(d) {
					return math.Inf(1)
				}
			}
			den = math.Max(den, math.Abs(w))
		}
	}
	if k != len(got) {
		return math.Inf(1)
	}
	return num / den
}

var _ = strings.Contains
