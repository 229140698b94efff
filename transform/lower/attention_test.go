package lower_test

import (
	"math/rand/v2"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/transform/lower"
)

// oneOp is a graph of one com.microsoft node over the given float/int inputs.
type oneOp struct {
	op     string
	ins    []string // node inputs ("" = absent)
	feeds  map[string]*runtime.Tensor
	consts map[string]*onnxpb.TensorProto
	outs   [][]any // output dims
	attrs  []*onnxpb.AttributeProto
	padded map[int]bool // query rows (batch·sequence) of output 0 that are padding
}

func (c oneOp) model(t *testing.T) *onnx.Model {
	t.Helper()
	b := onnx.NewBuilder("one", 17)
	for _, name := range c.ins {
		if x, ok := c.feeds[name]; ok {
			dims := make([]any, len(x.Shape))
			for i, d := range x.Shape {
				dims[i] = d
			}
			b.Input(name, onnxpb.TensorProto_DataType(x.DType), dims...)
		} else if k, ok := c.consts[name]; ok {
			b.Const(name, k)
		}
	}
	outs := b.OpN(c.op, "/fused/"+c.op, c.ins, len(c.outs), c.attrs...)
	g := b.Graph()
	ms := onnx.MicrosoftDomain
	g.Node[len(g.Node)-1].Domain = &ms
	for i, o := range outs {
		b.Output(o, onnxpb.TensorProto_FLOAT, c.outs[i]...)
	}
	m, err := b.Model()
	if err != nil {
		t.Fatal(err)
	}
	v := int64(1)
	m.Proto.OpsetImport = append(m.Proto.OpsetImport, &onnxpb.OperatorSetIdProto{Domain: &ms, Version: &v})
	return m
}

// check runs the fused node in onnxruntime, lowers it, runs again and compares every output.
func (c oneOp) check(t *testing.T, name string) {
	t.Helper()
	m := c.model(t)
	want := run(t, m, c.feeds)
	if _, err := lower.Lower(m); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	for _, n := range m.Graph().GetNode() {
		if n.GetDomain() != "" {
			t.Fatalf("%s: %s::%s left", name, n.GetDomain(), n.GetOpType())
		}
	}
	got := run(t, m, c.feeds)
	for o, w := range want {
		d := testkit.MaxDiff(got[o].F32, w.F32)
		if c.padded != nil && o == "/fused/"+c.op+"_output_0" {
			// A padding query's output is never read; onnxruntime leaves it unspecified.
			row := int(w.Shape[len(w.Shape)-1])
			gf, wf := append([]float32{}, got[o].F32...), append([]float32{}, w.F32...)
			for r := range c.padded {
				clear(gf[r*row : (r+1)*row])
				clear(wf[r*row : (r+1)*row])
			}
			d = testkit.MaxDiff(gf, wf)
		}
		if !(d <= 2e-6*max(1, maxAbs(w.F32))) || len(w.F32) == 0 {
			t.Errorf("%s output %s: max |lowered - onnxruntime| = %.3g (max |out| %.3g)", name, o, d, maxAbs(w.F32))
		}
	}
}

func TestRotaryLoweringMatchesOnnxruntime(t *testing.T) {
	testkit.ORT(t)
	rng := rand.New(rand.NewPCG(7, 8))
	const b, s, heads, hd, maxPos = 2, 3, 4, 8, 16
	pos := []int64{0, 1, 2, 5, 9, 15}
	for _, inter := range []int64{0, 1} {
		c := oneOp{
			op:  "RotaryEmbedding",
			ins: []string{"x", "pos", "cos", "sin"},
			feeds: map[string]*runtime.Tensor{
				"x":   runtime.F32([]int64{b, s, heads * hd}, randn(rng, b*s*heads*hd)),
				"pos": runtime.I64([]int64{b, s}, pos),
			},
			consts: map[string]*onnxpb.TensorProto{
				"cos": onnx.Float32Tensor("cos", []int64{maxPos, hd / 2}, randn(rng, maxPos*hd/2)),
				"sin": onnx.Float32Tensor("sin", []int64{maxPos, hd / 2}, randn(rng, maxPos*hd/2)),
			},
			outs:  [][]any{{b, s, heads * hd}},
			attrs: []*onnxpb.AttributeProto{onnx.AttrInt("num_heads", heads), onnx.AttrInt("interleaved", inter)},
		}
		c.check(t, map[int64]string{0: "halves", 1: "interleaved"}[inter])
	}
}

func TestAttentionLoweringsMatchOnnxruntime(t *testing.T) {
	testkit.ORT(t)
	rng := rand.New(rand.NewPCG(9, 10))
	const heads, kv, hd = 4, 2, 8
	f := func(dims ...int64) *runtime.Tensor {
		n := int64(1)
		for _, d := range dims {
			n *= d
		}
		return runtime.F32(dims, randn(rng, int(n)))
	}
	i32 := func(dims []int64, v ...int32) *runtime.Tensor {
		raw := make([]byte, 0, 4*len(v))
		for _, x := range v {
			raw = append(raw, byte(x), byte(x>>8), byte(x>>16), byte(x>>24))
		}
		return runtime.RawTensor(runtime.Int32, dims, raw)
	}
	gqaAttrs := []*onnxpb.AttributeProto{onnx.AttrInt("num_heads", heads), onnx.AttrInt("kv_num_heads", kv)}
	// No past (prefill, two rows, the second shorter: its last token is padding).
	oneOp{op: "GroupQueryAttention", ins: []string{"q", "k", "v", "", "", "seqlens", "total"},
		feeds: map[string]*runtime.Tensor{"q": f(2, 3, heads*hd), "k": f(2, 3, kv*hd), "v": f(2, 3, kv*hd),
			"seqlens": i32([]int64{2}, 2, 1), "total": i32(nil, 3)},
		outs: [][]any{{2, 3, heads * hd}, {2, kv, 3, hd}, {2, kv, 3, hd}}, attrs: gqaAttrs, padded: map[int]bool{5: true}}.check(t, "gqa prefill")
	// With a past of 4, three new tokens (onnxruntime takes several new tokens after a past for batch 1).
	oneOp{op: "GroupQueryAttention", ins: []string{"q", "k", "v", "pk", "pv", "seqlens", "total"},
		feeds: map[string]*runtime.Tensor{"q": f(1, 3, heads*hd), "k": f(1, 3, kv*hd), "v": f(1, 3, kv*hd),
			"pk": f(1, kv, 4, hd), "pv": f(1, kv, 4, hd), "seqlens": i32([]int64{1}, 6), "total": i32(nil, 7)},
		outs: [][]any{{1, 3, heads * hd}, {1, kv, 7, hd}, {1, kv, 7, hd}}, attrs: gqaAttrs}.check(t, "gqa with past")
	// One token per row after a past of 5 (generation).
	oneOp{op: "GroupQueryAttention", ins: []string{"q", "k", "v", "pk", "pv", "seqlens", "total"},
		feeds: map[string]*runtime.Tensor{"q": f(2, 1, heads*hd), "k": f(2, 1, kv*hd), "v": f(2, 1, kv*hd),
			"pk": f(2, kv, 5, hd), "pv": f(2, kv, 5, hd), "seqlens": i32([]int64{2}, 5, 5), "total": i32(nil, 6)},
		outs: [][]any{{2, 1, heads * hd}, {2, kv, 6, hd}, {2, kv, 6, hd}}, attrs: append(gqaAttrs, onnx.AttrFloat("scale", 0.2))}.check(t, "gqa step")
	// MultiHeadAttention: causal, a past of 2, a key padding mask.
	oneOp{op: "MultiHeadAttention", ins: []string{"q", "k", "v", "", "mask", "", "pk", "pv"},
		feeds: map[string]*runtime.Tensor{"q": f(2, 3, heads*hd), "k": f(2, 3, heads*hd), "v": f(2, 3, heads*hd),
			"mask": i32([]int64{2, 5}, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1), "pk": f(2, heads, 2, hd), "pv": f(2, heads, 2, hd)},
		outs:  [][]any{{2, 3, heads * hd}, {2, heads, 5, hd}, {2, heads, 5, hd}},
		attrs: []*onnxpb.AttributeProto{onnx.AttrInt("num_heads", heads), onnx.AttrInt("unidirectional", 1)}}.check(t, "mha")
}
