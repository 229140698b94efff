package gpt2

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/shears-ml/shears/lm"
	"github.com/shears-ml/shears/models"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// Opset is the ai.onnx opset of the graphs built here (no Gelu op: gelu is spelled out).
const Opset = 17

// MaskValue fills the scores above the diagonal: large, finite (no NaN in 0·mask or gradients).
const MaskValue = -1e9

// Config is the shape of a GPT-2 model.
type Config struct {
	Vocab, Dim, Heads, Layers, MaxSeq int
	Eps                               float32 // LayerNormalization epsilon (GPT-2: 1e-5)
	Inner                             int     // the MLP's width (n_inner); 0 means 4 × Dim
}

// inner is the MLP's width.
func (c Config) inner() int64 {
	if c.Inner > 0 {
		return int64(c.Inner)
	}
	return 4 * int64(c.Dim)
}

// Tiny is a 2-layer, 64-wide model whose 512-token vocabulary fits tok512 ids.
var Tiny = Config{Vocab: 512, Dim: 64, Heads: 4, Layers: 2, MaxSeq: 128, Eps: 1e-5}

// Validate checks the shape.
func (c Config) Validate() error {
	switch {
	case c.Vocab < 1 || c.Dim < 1 || c.Heads < 1 || c.Layers < 1 || c.MaxSeq < 1 || c.Inner < 0:
		return fmt.Errorf("gpt2: config %+v: every size must be positive", c)
	case c.Dim%c.Heads != 0:
		return fmt.Errorf("gpt2: dim %d is not a multiple of heads %d", c.Dim, c.Heads)
	case !(c.Eps > 0):
		return fmt.Errorf("gpt2: eps %v must be positive", c.Eps)
	}
	return nil
}

// Weight names of block i, e.g. LayerWeight(0, "attn.c_attn.weight").
func LayerWeight(i int, name string) string { return fmt.Sprintf("transformer.h.%d.%s", i, name) }

// Build returns the model of shape cfg with random weights drawn from seed: linears
// N(0, 0.02²)·(their GPT-2 init), biases N(0, 0.01²), LayerNorm scales 1 + N(0, 0.1²) and
// shifts N(0, 0.1²) (non-trivial, so a test sees them), embeddings N(0, 0.1²). Each tensor has
// its own generator seeded by (seed, name), so values do not depend on graph order.
func Build(cfg Config, seed uint64) (*onnx.Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return build(&graph{c: cfg, seed: seed})
}

// Source supplies a learned tensor by name in the graph's layout (Conv1D weights [in, out]),
// for building the graph of a checkpoint (models/hf) instead of random weights.
type Source func(name string, dims []int64) (*onnxpb.TensorProto, error)

// BuildFrom returns the model of shape cfg with weights from src.
func BuildFrom(cfg Config, src Source) (*onnx.Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if src == nil {
		return nil, fmt.Errorf("gpt2: nil weight source")
	}
	return build(&graph{c: cfg, src: src})
}

func build(g *graph) (*onnx.Model, error) {
	g.b, g.consts = onnx.NewBuilder("gpt2", Opset), map[string]string{}
	g.forward()
	if g.err != nil {
		return nil, g.err
	}
	m, err := g.b.Model()
	if err != nil {
		return nil, fmt.Errorf("gpt2: %w", err)
	}
	return m, nil
}

type graph struct {
	b      *onnx.Builder
	c      Config
	seed   uint64
	src    Source // nil: random weights from seed
	err    error  // the source's first error
	consts map[string]string
}

// rand returns n values mean + std·N(0,1) from the generator of (seed, name).
func (g *graph) rand(name string, n int64, mean, std float64) []float32 {
	h := fnv.New64a()
	h.Write([]byte(name))
	r := rand.New(rand.NewPCG(g.seed, h.Sum64()))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(mean + std*r.NormFloat64())
	}
	return v
}

func (g *graph) param(name string, mean, std float64, dims ...int64) string {
	if g.src == nil {
		return g.b.Const(name, onnx.Float32Tensor("", dims, g.rand(name, onnx.NumElements(dims), mean, std)))
	}
	if g.err != nil {
		return ""
	}
	t, err := g.src(name, dims)
	if err == nil && (t == nil || !slices.Equal(t.GetDims(), dims)) {
		err = fmt.Errorf("source gave shape %v, want %v", t.GetDims(), dims)
	}
	if err != nil {
		g.err = fmt.Errorf("gpt2: weight %s: %w", name, err)
		return ""
	}
	return g.b.Const(name, t)
}

func (g *graph) i64(name string, v ...int64) string {
	if n, ok := g.consts["i/"+name]; ok {
		return n
	}
	n := g.b.Const("/transformer/constants/"+name, onnx.Int64Tensor("", []int64{int64(len(v))}, v))
	g.consts["i/"+name] = n
	return n
}

func (g *graph) f32(name string, v float32) string {
	if n, ok := g.consts["f/"+name]; ok {
		return n
	}
	n := g.b.Const("/transformer/constants/"+name, onnx.Float32Tensor("", nil, []float32{v}))
	g.consts["f/"+name] = n
	return n
}

// forward writes the with-past graph (optimum's GPT-2 interface): inputs input_ids,
// attention_mask, position_ids, past_key_values.{i}.key|value [B, heads, P, hd]; outputs logits
// then present.{i}.key|value [B, heads, P+T, hd].
func (g *graph) forward() {
	b, c := g.b, g.c
	d, v, p := int64(c.Dim), int64(c.Vocab), int64(c.MaxSeq)
	nh := int64(c.Heads)
	hd := d / nh
	in := lm.Declare(b, c.Layers, nh, hd)
	ids, am, pos, past := in.IDs, in.Mask, in.Positions, in.Past
	wte := g.param("transformer.wte.weight", 0, 0.1, v, d)
	wpe := g.param("transformer.wpe.weight", 0, 0.1, p, d)

	x := b.Op("Gather", "/transformer/wte/Gather", []string{wte, ids})
	pe := b.Op("Gather", "/transformer/wpe/Gather", []string{wpe, pos}) // [B, T, d]
	x = b.Op("Add", "/transformer/Add", []string{x, pe})

	// The mask [B, 1, T, P+T]: rows P…P+T−1 of a constant boolean lower triangle (HF's
	// attn.bias), and-ed with the keys attention_mask keeps. T is input_ids' length and P+T
	// attention_mask's.
	tri := make([]byte, p*p)
	for i := int64(0); i < p; i++ {
		for j := int64(0); j <= i; j++ {
			tri[i*p+j] = 1
		}
	}
	maskW := b.Const("transformer.causal_mask", onnx.NewTensor("", onnxpb.TensorProto_BOOL, []int64{p, p}, tri))
	one := g.i64("one", 1)
	t := b.Op("Gather", "/transformer/Gather", []string{b.Op("Shape", "/transformer/Shape", []string{ids}), one}, onnx.AttrInt("axis", 0))
	total := b.Op("Gather", "/transformer/Gather_1", []string{b.Op("Shape", "/transformer/Shape_1", []string{am}), one}, onnx.AttrInt("axis", 0))
	pl := b.Op("Sub", "/transformer/mask/Sub", []string{total, t})
	starts := b.Op("Concat", "/transformer/mask/Concat", []string{pl, g.i64("zero", 0)}, onnx.AttrInt("axis", 0))
	ends := b.Op("Concat", "/transformer/mask/Concat_1", []string{total, total}, onnx.AttrInt("axis", 0))
	causal := b.Op("Slice", "/transformer/mask/Slice", []string{maskW, starts, ends, g.i64("zero_one", 0, 1)})
	keep := b.Op("Cast", "/transformer/mask/Cast", []string{am}, onnx.AttrInt("to", int64(onnxpb.TensorProto_BOOL)))
	keep = b.Op("Unsqueeze", "/transformer/mask/Unsqueeze", []string{keep, g.i64("mask_axes", 1, 2)})
	mask := b.Op("And", "/transformer/mask/And", []string{causal, keep})

	presents := make([][2]string, c.Layers)
	for i := 0; i < c.Layers; i++ {
		x, presents[i] = g.block(i, x, mask, past[i])
	}
	h := g.layerNorm("/transformer/ln_f", "transformer.ln_f", x)
	// Tied head: the embedding read through Transpose, as an un-folded export keeps it.
	wt := b.Op("Transpose", "/lm_head/Transpose", []string{wte}, onnx.AttrInts("perm", 1, 0))
	lm.Head(b, h, wt, v, nh, hd, presents)
}

func (g *graph) layerNorm(prefix, weight, x string) string {
	d := int64(g.c.Dim)
	s := g.param(weight+".weight", 1, 0.1, d)
	bias := g.param(weight+".bias", 0, 0.1, d)
	return g.b.Op("LayerNormalization", prefix+"/LayerNormalization", []string{x, s, bias},
		onnx.AttrInt("axis", -1), onnx.AttrFloat("epsilon", g.c.Eps))
}

// linear is MatMul + bias Add with Conv1D weights [in, out].
func (g *graph) linear(i int, module, x string, in, out int64) string {
	p := fmt.Sprintf("/transformer/h.%d/%s", i, module)
	w := g.param(LayerWeight(i, dotted(module)+".weight"), 0, 1/math.Sqrt(float64(in)), in, out)
	bias := g.param(LayerWeight(i, dotted(module)+".bias"), 0, 0.01, out)
	y := g.b.Op("MatMul", p+"/MatMul", []string{x, w})
	return g.b.Op("Add", p+"/Add", []string{y, bias})
}

func dotted(module string) string {
	out := []byte(module)
	for k, ch := range out {
		if ch == '/' {
			out[k] = '.'
		}
	}
	return string(out)
}

// block appends block i and returns its output and its present key and value.
func (g *graph) block(i int, x, mask string, past [2]string) (string, [2]string) {
	b, c := g.b, g.c
	d, nh := int64(c.Dim), int64(c.Heads)
	hd := d / nh
	p := fmt.Sprintf("/transformer/h.%d", i)
	a := p + "/attn"

	h := g.layerNorm(p+"/ln_1", LayerWeight(i, "ln_1"), x)
	qkv := g.linear(i, "attn/c_attn", h, d, 3*d)
	var present [2]string
	parts := b.OpN("Split", a+"/Split", []string{qkv, g.i64("qkv_split", d, d, d)}, 3, onnx.AttrInt("axis", -1))
	if parts == nil {
		return "", present
	}
	heads := g.i64("heads", 0, 0, nh, hd)
	q := b.Op("Reshape", a+"/Reshape", []string{parts[0], heads})
	k := b.Op("Reshape", a+"/Reshape_1", []string{parts[1], heads})
	v := b.Op("Reshape", a+"/Reshape_2", []string{parts[2], heads})
	q = b.Op("Transpose", a+"/Transpose", []string{q}, onnx.AttrInts("perm", 0, 2, 1, 3))   // [B, H, T, hd]
	k = b.Op("Transpose", a+"/Transpose_1", []string{k}, onnx.AttrInts("perm", 0, 2, 1, 3)) // [B, H, T, hd]
	v = b.Op("Transpose", a+"/Transpose_2", []string{v}, onnx.AttrInts("perm", 0, 2, 1, 3))
	for j, kind := range []lm.Kind{lm.Key, lm.Value} {
		in := []*string{&k, &v}[j]
		out := b.OpOut("Concat", fmt.Sprintf("%s/Concat_%s", a, kind), []string{past[j], *in}, []string{lm.Present(i, kind)}, onnx.AttrInt("axis", 2))
		if out == nil {
			return "", present
		}
		present[j], *in = out[0], out[0] // [B, H, P+T, hd]
	}
	k = b.Op("Transpose", a+"/Transpose_4", []string{k}, onnx.AttrInts("perm", 0, 1, 3, 2)) // [B, H, hd, P+T]
	s := b.Op("MatMul", a+"/MatMul", []string{q, k})
	s = b.Op("Div", a+"/Div", []string{s, g.f32("sqrt_head_dim", float32(math.Sqrt(float64(hd))))})
	s = b.Op("Where", a+"/Where", []string{mask, s, g.f32("mask_value", MaskValue)})
	s = b.Op("Softmax", a+"/Softmax", []string{s}, onnx.AttrInt("axis", -1))
	o := b.Op("MatMul", a+"/MatMul_1", []string{s, v})
	o = b.Op("Transpose", a+"/Transpose_3", []string{o}, onnx.AttrInts("perm", 0, 2, 1, 3))
	o = b.Op("Reshape", a+"/Reshape_3", []string{o, g.i64("model_dim", 0, 0, d)})
	o = g.linear(i, "attn/c_proj", o, d, d)
	x = b.Op("Add", p+"/Add", []string{x, o})

	h = g.layerNorm(p+"/ln_2", LayerWeight(i, "ln_2"), x)
	u := g.linear(i, "mlp/c_fc", h, d, c.inner())
	u = models.GeluTanh(b, p+"/mlp/act", u, g.f32)
	y := g.linear(i, "mlp/c_proj", u, c.inner(), d)
	return b.Op("Add", p+"/Add_1", []string{x, y}), present
}
