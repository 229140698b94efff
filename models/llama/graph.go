package llama

import (
	"fmt"
	"math"
	"strconv"

	"github.com/shears-ml/shears/lm"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"google.golang.org/protobuf/proto"
)

// Opset is the ai.onnx opset of the graphs built here.
const Opset = 17

// MaskValue is the causal mask's value above the diagonal. A large finite negative rather
// than -inf: Softmax gives exactly 0 there all the same, and 0·mask or a gradient through
// it can never make NaN.
const MaskValue = -1e9

// Source supplies every float initializer of the graph, called once per tensor in graph
// order. For learned weights computed is nil and the source provides the values in ONNX
// layout (dims); for the tables Build derives from the config (RoPE cos/sin, the causal mask)
// computed holds them, and the source decides where they live (inline or external data) and
// may substitute its own values of the same shape (the llama2.c importer uses the checkpoint's
// freq_cis tables). The returned tensor's name is replaced by name.
type Source func(name string, dims []int64, computed []float32) (*onnxpb.TensorProto, error)

// Weights is a Source over float32 arrays held in memory, keyed by tensor name; computed
// tables not in the map are stored inline.
func Weights(w map[string][]float32) Source {
	return func(name string, dims []int64, computed []float32) (*onnxpb.TensorProto, error) {
		v, ok := w[name]
		if !ok {
			if computed == nil {
				return nil, fmt.Errorf("no weight %q", name)
			}
			v = computed
		}
		n := int64(1)
		for _, d := range dims {
			n *= d
		}
		if int64(len(v)) != n {
			return nil, fmt.Errorf("weight %q has %d values, shape %v needs %d", name, len(v), dims, n)
		}
		return onnx.Float32Tensor(name, dims, v), nil
	}
}

// Tensor names of the tables Build computes.
const (
	CosName = "model.rotary_emb.cos_cached"
	SinName = "model.rotary_emb.sin_cached"
	// LongCosName and LongSinName are LongRoPE's tables for long inputs.
	LongCosName = "model.rotary_emb.long_cos_cached"
	LongSinName = "model.rotary_emb.long_sin_cached"
)

// LayerWeight returns the name of layer i's weight, e.g. LayerWeight(0, "self_attn.q_proj").
func LayerWeight(i int, module string) string {
	return fmt.Sprintf("model.layers.%d.%s.weight", i, module)
}

// RopeTables returns llama2.c's RoPE tables [maxSeq, headDim/2]: angle pos·θ^(−2j/headDim).
func RopeTables(maxSeq, headDim int, theta float64) (cos, sin []float32) {
	half := headDim / 2
	cos = make([]float32, maxSeq*half)
	sin = make([]float32, maxSeq*half)
	for p := 0; p < maxSeq; p++ {
		for j := 0; j < half; j++ {
			a := float64(p) * math.Pow(theta, -float64(2*j)/float64(headDim))
			cos[p*half+j] = float32(math.Cos(a))
			sin[p*half+j] = float32(math.Sin(a))
		}
	}
	return cos, sin
}

// graph carries the builder and the shared constants while Build walks the layers.
type graph struct {
	b      *onnx.Builder
	cfg    Config
	src    Source
	err    error
	consts map[string]string
}

func (g *graph) weight(name string, dims []int64, computed []float32) string {
	if g.err != nil {
		return ""
	}
	t, err := g.src(name, dims, computed)
	if err != nil {
		g.err = fmt.Errorf("llama: weight %s: %w", name, err)
		return ""
	}
	if t == nil {
		g.err = fmt.Errorf("llama: weight %s: source returned nothing", name)
		return ""
	}
	if len(t.Dims) != len(dims) {
		g.err = fmt.Errorf("llama: weight %s: source gave shape %v, want %v", name, t.Dims, dims)
		return ""
	}
	for i := range dims {
		if t.Dims[i] != dims[i] {
			g.err = fmt.Errorf("llama: weight %s: source gave shape %v, want %v", name, t.Dims, dims)
			return ""
		}
	}
	return g.b.Const(name, t)
}

// i64 returns a shared int64 constant [len(v)].
func (g *graph) i64(name string, v ...int64) string {
	key := "i64/" + name
	if n, ok := g.consts[key]; ok {
		return n
	}
	n := g.b.Const("/model/constants/"+name, onnx.Int64Tensor("", []int64{int64(len(v))}, v))
	g.consts[key] = n
	return n
}

// f32 returns a shared float scalar constant.
func (g *graph) f32(name string, v float32) string {
	key := "f32/" + name
	if n, ok := g.consts[key]; ok {
		return n
	}
	n := g.b.Const("/model/constants/"+name, onnx.Float32Tensor("", nil, []float32{v}))
	g.consts[key] = n
	return n
}

// Build returns the LLaMA graph for cfg with weights from src.
func Build(cfg Config, src Source) (*onnx.Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if src == nil {
		return nil, fmt.Errorf("llama: nil weight source")
	}
	g := &graph{b: onnx.NewBuilder("llama", Opset), cfg: cfg, src: src, consts: map[string]string{}}
	g.forward()
	if g.err != nil {
		return nil, g.err
	}
	m, err := g.b.Model()
	if err != nil {
		return nil, fmt.Errorf("llama: %w", err)
	}
	m.Proto.MetadataProps = metadata(cfg)
	return m, nil
}

// metadata records the config under Hugging Face config.json names, so tools (context
// length, reports) need not infer it from tensor shapes.
func metadata(c Config) []*onnxpb.StringStringEntryProto {
	kv := [][2]string{
		{"model_type", "llama"},
		{"hidden_size", strconv.Itoa(c.Dim)},
		{"intermediate_size", strconv.Itoa(c.HiddenDim)},
		{"num_hidden_layers", strconv.Itoa(c.Layers)},
		{"num_attention_heads", strconv.Itoa(c.Heads)},
		{"num_key_value_heads", strconv.Itoa(c.KVHeads)},
		{"vocab_size", strconv.Itoa(c.Vocab)},
		{"max_position_embeddings", strconv.Itoa(c.MaxSeq)},
		{"rms_norm_eps", strconv.FormatFloat(float64(c.NormEps), 'g', -1, 32)},
		{"rope_theta", strconv.FormatFloat(c.RopeTheta, 'g', -1, 64)},
		{"tie_word_embeddings", strconv.FormatBool(c.TiedEmbeddings)},
	}
	if c.HeadDimOverride > 0 {
		kv = append(kv, [2]string{"head_dim", strconv.Itoa(c.HeadDim())})
	}
	out := make([]*onnxpb.StringStringEntryProto, len(kv))
	for i, p := range kv {
		out[i] = &onnxpb.StringStringEntryProto{Key: proto.String(p[0]), Value: proto.String(p[1])}
	}
	return out
}

// forward writes the with-past graph: the inputs, the layers, and the outputs logits then
// present.{i}.key, present.{i}.value (optimum's order).
func (g *graph) forward() {
	b, c := g.b, g.cfg
	d, hd, v := int64(c.Dim), int64(c.HeadDim()), int64(c.Vocab)
	nkv := int64(c.KVHeads)
	in := lm.Declare(b, c.Layers, nkv, hd)
	ids, am, pos, past := in.IDs, in.Mask, in.Positions, in.Past

	emb := g.weight("model.embed_tokens.weight", []int64{v, d}, nil)
	x := g.embed(emb, ids)

	cos, sin := g.rotary(pos)
	full, sliding := g.masks(ids, am)

	presents := make([][2]string, c.Layers)
	for i := 0; i < c.Layers && g.err == nil; i++ {
		mask := full
		if sliding != "" && (c.SlidingLayers == nil || c.SlidingLayers[i]) {
			mask = sliding
		}
		x, presents[i] = g.layer(i, x, cos, sin, mask, past[i])
	}
	h := g.rmsnorm("/model/norm", "model.norm.weight", x)
	head := g.head(emb)
	if g.err != nil {
		return
	}
	lm.Head(b, h, head, v, nkv, hd, presents)
}

// rmsnorm is y = w · x / sqrt(mean(x²) + eps), as Pow → ReduceMean → Add → Sqrt → Div(1,·)
// → Mul x → Mul w, the chain torch exports and llama2.c computes.
func (g *graph) rmsnorm(prefix, weight, x string) string {
	b := g.b
	w := g.weight(weight, []int64{int64(g.cfg.Dim)}, nil)
	p := b.Op("Pow", prefix+"/Pow", []string{x, g.f32("two", 2)})
	m := b.Op("ReduceMean", prefix+"/ReduceMean", []string{p}, onnx.AttrInts("axes", -1), onnx.AttrInt("keepdims", 1))
	a := b.Op("Add", prefix+"/Add", []string{m, g.f32("norm_eps", g.cfg.NormEps)})
	s := b.Op("Sqrt", prefix+"/Sqrt", []string{a})
	r := b.Op("Div", prefix+"/Div", []string{g.f32("one", 1), s})
	y := b.Op("Mul", prefix+"/Mul", []string{x, r})
	return g.normScale(prefix, y, w)
}

// rope rotates x [B, T, n, hd] by the position angles: the interleaved pairs (2j, 2j+1) as
// llama2.c does, or the halves (j, j + rd/2) as Hugging Face's rotate_half does (RotateHalf).
// A partial rotary embedding rotates the first rd entries of each head and passes the rest.
func (g *graph) rope(prefix, x string, n int64, cos, sin string) string {
	b := g.b
	hd, rd := int64(g.cfg.HeadDim()), int64(g.cfg.rotaryDim())
	if rd == hd {
		return g.rotate(prefix, x, n, cos, sin, g.i64(fmt.Sprintf("heads_%d", n), 0, 0, n, hd))
	}
	parts := g.split(prefix+"/Split_1", x, rd, hd-rd)
	r := g.rotate(prefix, parts[0], n, cos, sin, g.i64(fmt.Sprintf("rotary_%d_%d", n, rd), 0, 0, n, rd))
	return b.Op("Concat", prefix+"/Concat_1", []string{r, parts[1]}, onnx.AttrInt("axis", -1))
}

// rotate is rope's rotation of x [B, T, n, rd], reshaped back by shape.
func (g *graph) rotate(prefix, x string, n int64, cos, sin, shape string) string {
	b := g.b
	split, axis, _ := g.cfg.ropeSplit()
	r := b.Op("Reshape", prefix+"/Reshape", []string{x, g.i64(fmt.Sprintf("rope_%d_%d_%d", n, split[0], split[1]), 0, 0, n, split[0], split[1])})
	xs := b.OpN("Split", prefix+"/Split", []string{r}, 2, onnx.AttrInt("axis", axis))
	if xs == nil {
		return ""
	}
	x0, x1 := xs[0], xs[1]
	a := b.Op("Mul", prefix+"/Mul", []string{x0, cos})
	bb := b.Op("Mul", prefix+"/Mul_1", []string{x1, sin})
	o0 := b.Op("Sub", prefix+"/Sub", []string{a, bb})
	cc := b.Op("Mul", prefix+"/Mul_2", []string{x0, sin})
	dd := b.Op("Mul", prefix+"/Mul_3", []string{x1, cos})
	o1 := b.Op("Add", prefix+"/Add", []string{cc, dd})
	o := b.Op("Concat", prefix+"/Concat", []string{o0, o1}, onnx.AttrInt("axis", axis))
	return b.Op("Reshape", prefix+"/Reshape_1", []string{o, shape})
}

// masks returns the additive attention masks [B, 1, T, P+T]: 0 where a query may attend,
// MaskValue elsewhere. The query i of this run sits at position P+i and sees the keys j ≤ P+i
// that attention_mask does not pad; the sliding mask (only when the config has a window W that
// the context can exceed; "" otherwise) also hides the keys j ≤ P+i−W. Positions come from T
// (input_ids' length) and P+T (attention_mask's): the past's length is never read from the
// cache itself (the train form drops the cache), and no [MaxSeq, MaxSeq] table is stored.
func (g *graph) masks(ids, am string) (full, sliding string) {
	b, c := g.b, g.cfg
	p := "/model/causal_mask"
	scalar := func(name string, v int64) string {
		key := "s64/" + name
		if n, ok := g.consts[key]; ok {
			return n
		}
		n := b.Const("/model/constants/"+name, onnx.Int64Tensor("", nil, []int64{v}))
		g.consts[key] = n
		return n
	}
	t := b.Op("Gather", "/model/Gather", []string{b.Op("Shape", "/model/Shape", []string{ids}), scalar("one_scalar", 1)}, onnx.AttrInt("axis", 0))
	total := b.Op("Gather", "/model/Gather_1", []string{b.Op("Shape", "/model/Shape_1", []string{am}), scalar("one_scalar", 1)}, onnx.AttrInt("axis", 0))
	past := b.Op("Sub", p+"/Sub", []string{total, t})
	keys := b.Op("Range", p+"/Range", []string{scalar("zero_scalar", 0), total, scalar("one_scalar", 1)}) // [P+T]
	queries := b.Op("Range", p+"/Range_1", []string{past, total, scalar("one_scalar", 1)})                // [T]
	queries = b.Op("Unsqueeze", p+"/Unsqueeze", []string{queries, g.i64("one", 1)})                       // [T, 1]
	causal := b.Op("LessOrEqual", p+"/LessOrEqual", []string{keys, queries})                              // [T, P+T]
	keep := b.Op("Cast", "/model/attention_mask/Cast", []string{am}, onnx.AttrInt("to", int64(onnxpb.TensorProto_BOOL)))
	keep = b.Op("Unsqueeze", "/model/attention_mask/Unsqueeze", []string{keep, g.i64("mask_axes", 1, 2)}) // [B, 1, 1, P+T]
	visible := b.Op("And", p+"/And", []string{causal, keep})                                              // [B, 1, T, P+T]
	full = b.Op("Where", p+"/Where", []string{visible, g.f32("zero", 0), g.f32("mask_value", MaskValue)})
	if c.SlidingWindow <= 0 || c.SlidingWindow >= c.MaxSeq {
		return full, ""
	}
	p = "/model/sliding_window_mask"
	oldest := b.Op("Sub", p+"/Sub", []string{queries, scalar("sliding_window", int64(c.SlidingWindow))}) // [T, 1]
	recent := b.Op("Greater", p+"/Greater", []string{keys, oldest})                                      // [T, P+T]
	visible = b.Op("And", p+"/And", []string{visible, recent})
	sliding = b.Op("Where", p+"/Where", []string{visible, g.f32("zero", 0), g.f32("mask_value", MaskValue)})
	return full, sliding
}

// repeatKV repeats each of the kvh heads of x [B, kvh, a, b] rep times along the head
// axis (head h of the queries reads kv head h / rep, as llama2.c and HF's repeat_kv do),
// giving shape (one of whose dims is -1 for the sequence length).
func (g *graph) repeatKV(prefix, x string, rep int64, shape []int64) string {
	if rep == 1 {
		return x
	}
	b := g.b
	u := b.Op("Unsqueeze", prefix+"/Unsqueeze", []string{x, g.i64("two_axis", 2)})
	e := b.Op("Expand", prefix+"/Expand", []string{u, g.i64(fmt.Sprintf("repeat_%d", rep), 1, 1, rep, 1, 1)})
	return b.Op("Reshape", prefix+"/Reshape", []string{e, g.i64(fmt.Sprintf("repeat_shape_%d_%d_%d", shape[1], shape[2], shape[3]), shape...)})
}

// layer appends decoder layer i and returns its output and its present key and value
// [B, KV, P+T, hd] (the past concatenated with this run's keys and values).
func (g *graph) layer(i int, x, cos, sin, mask string, past [2]string) (string, [2]string) {
	b, c := g.b, g.cfg
	p := fmt.Sprintf("/model/layers.%d", i)
	d, hd, qd := int64(c.Dim), int64(c.HeadDim()), int64(c.QDim())
	nh, nkv := int64(c.Heads), int64(c.KVHeads)

	h := g.rmsnorm(p+"/input_layernorm", LayerWeight(i, "input_layernorm"), x)
	q, k, v := g.attnProjections(i, h)
	a := p + "/self_attn"
	q = b.Op("Reshape", a+"/Reshape", []string{q, g.i64(fmt.Sprintf("heads_%d", nh), 0, 0, nh, hd)})
	k = b.Op("Reshape", a+"/Reshape_1", []string{k, g.i64(fmt.Sprintf("heads_%d", nkv), 0, 0, nkv, hd)})
	v = b.Op("Reshape", a+"/Reshape_2", []string{v, g.i64(fmt.Sprintf("heads_%d", nkv), 0, 0, nkv, hd)})
	q = g.rope(a+"/rotary_q", q, nh, cos, sin)
	k = g.rope(a+"/rotary_k", k, nkv, cos, sin)
	q = b.Op("Transpose", a+"/Transpose", []string{q}, onnx.AttrInts("perm", 0, 2, 1, 3))   // [B, H, T, hd]
	k = b.Op("Transpose", a+"/Transpose_1", []string{k}, onnx.AttrInts("perm", 0, 2, 1, 3)) // [B, KV, T, hd]
	v = b.Op("Transpose", a+"/Transpose_2", []string{v}, onnx.AttrInts("perm", 0, 2, 1, 3)) // [B, KV, T, hd]
	var present [2]string
	for j, kind := range []lm.Kind{lm.Key, lm.Value} {
		in := []*string{&k, &v}[j]
		out := b.OpOut("Concat", fmt.Sprintf("%s/Concat_%s", a, kind), []string{past[j], *in}, []string{lm.Present(i, kind)}, onnx.AttrInt("axis", 2))
		if out == nil {
			return "", present
		}
		present[j], *in = out[0], out[0] // [B, KV, P+T, hd]
	}
	rep := nh / nkv
	k = g.repeatKV(a+"/repeat_kv_k", k, rep, []int64{0, nh, -1, hd})
	v = g.repeatKV(a+"/repeat_kv_v", v, rep, []int64{0, nh, -1, hd})
	k = b.Op("Transpose", a+"/Transpose_4", []string{k}, onnx.AttrInts("perm", 0, 1, 3, 2)) // [B, H, hd, P+T]
	s := b.Op("MatMul", a+"/MatMul", []string{q, k})                                        // [B, H, T, P+T]
	s = b.Op("Div", a+"/Div", []string{s, g.f32("sqrt_head_dim", float32(math.Sqrt(float64(hd))))})
	s = b.Op("Add", a+"/Add", []string{s, mask})
	s = b.Op("Softmax", a+"/Softmax", []string{s}, onnx.AttrInt("axis", -1))
	o := b.Op("MatMul", a+"/MatMul_1", []string{s, v})                                      // [B, H, T, hd]
	o = b.Op("Transpose", a+"/Transpose_3", []string{o}, onnx.AttrInts("perm", 0, 2, 1, 3)) // [B, T, H, hd]
	dimName := "model_dim"
	if qd != d {
		dimName = fmt.Sprintf("attn_dim_%d", qd)
	}
	o = b.Op("Reshape", a+"/Reshape_3", []string{o, g.i64(dimName, 0, 0, qd)})
	o = g.linear(i, "self_attn.o_proj", o, qd, d, c.OBias)
	x = b.Op("Add", p+"/Add", []string{x, o})

	h = g.rmsnorm(p+"/post_attention_layernorm", LayerWeight(i, "post_attention_layernorm"), x)
	return b.Op("Add", p+"/Add_1", []string{x, g.mlp(i, h)}), present
}
