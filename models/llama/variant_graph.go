package llama

import (
	"fmt"
	"math"
	"strings"

	"github.com/shears-ml/shears/models"
	"github.com/shears-ml/shears/onnx"
)

// The pieces of the graph that the Hugging Face families vary (see Variant). Node names follow
// the modules of transformers' implementations, so one naming rule labels every family.

// rotaryDim is the rotated width of each head (HeadDim unless the rotary embedding is partial).
func (c Config) rotaryDim() int { return c.Rope.rotaryDim(c.HeadDim()) }

// invFreq is the rotary inverse frequencies of the config (short ones, for LongRoPE).
func (c Config) invFreq() []float64 {
	if c.Rope != nil && c.Rope.InvFreq != nil {
		return c.Rope.InvFreq
	}
	return InvFreq(c.rotaryDim(), c.RopeTheta)
}

// ropeTables are the cos/sin tables [MaxSeq, len(inv)] of the inverse frequencies inv, scaled
// by the rotary embedding's Scale.
func ropeTables(c Config, inv []float64) (cos, sin []float32) {
	scale := 1.0
	if c.Rope != nil && c.Rope.Scale != 0 {
		scale = c.Rope.Scale
	}
	half := len(inv)
	cos = make([]float32, c.MaxSeq*half)
	sin = make([]float32, c.MaxSeq*half)
	for p := 0; p < c.MaxSeq; p++ {
		for j := 0; j < half; j++ {
			a := float64(p) * inv[j]
			cos[p*half+j] = float32(math.Cos(a) * scale)
			sin[p*half+j] = float32(math.Sin(a) * scale)
		}
	}
	return cos, sin
}

// ropeSplit is how the rotated part of a head [rd] splits into the two rotated parts:
// rotate-half reshapes it to [2, rd/2] (halves), llama2.c to [rd/2, 2] (interleaved pairs). It
// returns the reshape's trailing dims, the split axis of the [B, T, n, ·, ·] view and the axes
// the [B, T, rd/2] angle tables are unsqueezed at to broadcast over it.
func (c Config) ropeSplit() (shape []int64, axis int64, tableAxes []int64) {
	rd := int64(c.rotaryDim())
	if c.RotateHalf {
		return []int64{2, rd / 2}, 3, []int64{2, 3}
	}
	return []int64{rd / 2, 2}, 4, []int64{2, 4}
}

// rotary returns the cos and sin of the position ids, [B, T, 1, ·, ·] to broadcast over the
// rotated pairs of every head: rows of the [MaxSeq, rd/2] tables gathered by position_ids.
// With LongRoPE the long tables are read instead when the run's largest position id reaches
// Rope.LongFrom, as transformers switches per forward call.
func (g *graph) rotary(pos string) (cos, sin string) {
	b, c := g.b, g.cfg
	tab := []int64{int64(c.MaxSeq), int64(c.rotaryDim() / 2)}
	cosT, sinT := ropeTables(c, c.invFreq())
	cos = b.Op("Gather", "/model/rotary_emb/Gather", []string{g.weight(CosName, tab, cosT), pos})
	sin = b.Op("Gather", "/model/rotary_emb/Gather_1", []string{g.weight(SinName, tab, sinT), pos})
	if r := c.Rope; r != nil && r.LongInvFreq != nil {
		lcT, lsT := ropeTables(c, r.LongInvFreq)
		lcos := b.Op("Gather", "/model/rotary_emb/Gather_2", []string{g.weight(LongCosName, tab, lcT), pos})
		lsin := b.Op("Gather", "/model/rotary_emb/Gather_3", []string{g.weight(LongSinName, tab, lsT), pos})
		last := b.Op("ReduceMax", "/model/rotary_emb/ReduceMax", []string{pos}, onnx.AttrInt("keepdims", 0))
		from := b.Const("/model/constants/rope_long_from", onnx.Int64Tensor("", nil, []int64{int64(r.LongFrom)}))
		long := b.Op("GreaterOrEqual", "/model/rotary_emb/GreaterOrEqual", []string{last, from})
		cos = b.Op("Where", "/model/rotary_emb/Where", []string{long, lcos, cos})
		sin = b.Op("Where", "/model/rotary_emb/Where_1", []string{long, lsin, sin})
	}
	_, _, axes := c.ropeSplit()
	ropeAxes := g.i64(fmt.Sprintf("rope_axes_%d_%d", axes[0], axes[1]), axes...)
	cos = b.Op("Unsqueeze", "/model/rotary_emb/Unsqueeze", []string{cos, ropeAxes})
	sin = b.Op("Unsqueeze", "/model/rotary_emb/Unsqueeze_1", []string{sin, ropeAxes})
	return cos, sin
}

// linear is x·W (+ b) for module (e.g. "self_attn.q_proj") of layer i, W [in, out].
func (g *graph) linear(i int, module, x string, in, out int64, bias bool) string {
	p := fmt.Sprintf("/model/layers.%d/%s", i, strings.ReplaceAll(module, ".", "/"))
	w := g.weight(LayerWeight(i, module), []int64{in, out}, nil)
	y := g.b.Op("MatMul", p+"/MatMul", []string{x, w})
	if !bias {
		return y
	}
	bn := g.weight(fmt.Sprintf("model.layers.%d.%s.bias", i, module), []int64{out}, nil)
	return g.b.Op("Add", p+"/Add", []string{y, bn})
}

// split cuts x's last axis into parts of the given sizes.
func (g *graph) split(name, x string, sizes ...int64) []string {
	key := "split"
	for _, s := range sizes {
		key += fmt.Sprintf("_%d", s)
	}
	out := g.b.OpN("Split", name, []string{x, g.i64(key, sizes...)}, len(sizes), onnx.AttrInt("axis", -1))
	if out == nil && g.err == nil {
		g.err = fmt.Errorf("llama: split %s failed", name)
	}
	if out == nil {
		return make([]string, len(sizes))
	}
	return out
}

// normScale multiplies the normalised y by the norm's weight w, or by (1 + w) for Gemma.
func (g *graph) normScale(prefix, y, w string) string {
	if g.cfg.NormPlusOne {
		w = g.b.Op("Add", prefix+"/Add_1", []string{w, g.f32("one", 1)})
	}
	return g.b.Op("Mul", prefix+"/Mul_1", []string{y, w})
}

// act is the gated MLP's activation: SiLU (x·σ(x)), or GELU's tanh approximation
// 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) for Gemma.
func (g *graph) act(p, x string) string {
	b := g.b
	if !g.cfg.GeluTanh {
		s := b.Op("Sigmoid", p+"/Sigmoid", []string{x})
		return b.Op("Mul", p+"/Mul", []string{x, s})
	}
	return models.GeluTanh(b, p, x, g.f32)
}

// embed gathers the token embeddings, scaled by √Dim for Gemma.
func (g *graph) embed(emb, ids string) string {
	x := g.b.Op("Gather", "/model/embed_tokens/Gather", []string{emb, ids})
	if !g.cfg.EmbedScale {
		return x
	}
	return g.b.Op("Mul", "/model/Mul", []string{x, g.f32("sqrt_hidden", float32(math.Sqrt(float64(g.cfg.Dim))))})
}

// head returns the LM head's weight [Dim, Vocab]: lm_head.weight, or the embedding read
// through a Transpose when the head is tied.
func (g *graph) head(emb string) string {
	c := g.cfg
	if c.TiedHead {
		return g.b.Op("Transpose", "/lm_head/Transpose", []string{emb}, onnx.AttrInts("perm", 1, 0))
	}
	return g.weight("lm_head.weight", []int64{int64(c.Dim), int64(c.Vocab)}, nil)
}

// attnProjections returns q [B, T, QDim], k and v [B, T, KVDim] from the normed input h:
// three linears, or one fused qkv_proj split in three (Phi-3).
func (g *graph) attnProjections(i int, h string) (q, k, v string) {
	c := g.cfg
	d, qd, kvd := int64(c.Dim), int64(c.QDim()), int64(c.KVDim())
	if c.FusedQKV {
		qkv := g.linear(i, "self_attn.qkv_proj", h, d, qd+2*kvd, false)
		parts := g.split(fmt.Sprintf("/model/layers.%d/self_attn/Split", i), qkv, qd, kvd, kvd)
		return parts[0], parts[1], parts[2]
	}
	return g.linear(i, "self_attn.q_proj", h, d, qd, c.AttnBias),
		g.linear(i, "self_attn.k_proj", h, d, kvd, c.AttnBias),
		g.linear(i, "self_attn.v_proj", h, d, kvd, c.AttnBias)
}

// mlp is down(act(gate(h)) · up(h)), gate and up from one fused gate_up_proj for Phi-3.
func (g *graph) mlp(i int, h string) string {
	c := g.cfg
	p := fmt.Sprintf("/model/layers.%d/mlp", i)
	d, hid := int64(c.Dim), int64(c.HiddenDim)
	var act, up string
	if c.FusedGateUp {
		gu := g.linear(i, "mlp.gate_up_proj", h, d, 2*hid, false)
		parts := g.split(p+"/Split", gu, hid, hid)
		act, up = g.act(p+"/act_fn", parts[0]), parts[1]
	} else {
		act = g.act(p+"/act_fn", g.linear(i, "mlp.gate_proj", h, d, hid, c.MLPBias))
		up = g.linear(i, "mlp.up_proj", h, d, hid, c.MLPBias)
	}
	m := g.b.Op("Mul", p+"/Mul", []string{act, up})
	return g.linear(i, "mlp.down_proj", m, hid, d, c.MLPBias)
}
