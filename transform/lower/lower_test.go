package lower_test

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/transform/lower"
)

func randn(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

func run(t *testing.T, m *onnx.Model, feeds map[string]*runtime.Tensor) map[string]*runtime.Tensor {
	t.Helper()
	raw, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s, err := runtime.OpenBytes(raw, "", runtime.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.Run(feeds, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Each lowering against onnxruntime's own kernel on the same inputs, at opsets 17 and 18
// (ReduceMean's axes move from an attribute to an input), every output compared.
func TestLoweringsMatchOnnxruntime(t *testing.T) {
	testkit.ORT(t)
	rng := rand.New(rand.NewPCG(1, 2))
	const d = 16
	x := runtime.F32([]int64{2, 3, d}, randn(rng, 2*3*d))
	skip := runtime.F32([]int64{2, 3, d}, randn(rng, 2*3*d))
	cases := []struct {
		name   string
		op     string
		domain string
		inputs []string
		outs   int
		attrs  []*onnxpb.AttributeProto
	}{
		{"simplified", "SimplifiedLayerNormalization", "", []string{"x", "scale"}, 2, []*onnxpb.AttributeProto{onnx.AttrFloat("epsilon", 1e-5), onnx.AttrInt("axis", -1)}},
		{"simplified-eps", "SimplifiedLayerNormalization", "", []string{"x", "scale"}, 1, []*onnxpb.AttributeProto{onnx.AttrFloat("epsilon", 0.3)}},
		{"skip", "SkipSimplifiedLayerNormalization", onnx.MicrosoftDomain, []string{"x", "skip", "scale"}, 4, []*onnxpb.AttributeProto{onnx.AttrFloat("epsilon", 1e-6)}},
		{"skip-bias", "SkipSimplifiedLayerNormalization", onnx.MicrosoftDomain, []string{"x", "skip", "scale", "bias"}, 4, nil},
	}
	for _, opset := range []int64{17, 18} {
		for _, c := range cases {
			b := onnx.NewBuilder("one", opset)
			for _, in := range c.inputs[:1] {
				b.Input(in, onnxpb.TensorProto_FLOAT, 2, 3, d)
			}
			if len(c.inputs) > 2 && c.inputs[1] == "skip" {
				b.Input("skip", onnxpb.TensorProto_FLOAT, 2, 3, d)
			}
			b.Const("scale", onnx.Float32Tensor("scale", []int64{d}, randn(rng, d)))
			b.Const("bias", onnx.Float32Tensor("bias", []int64{d}, randn(rng, d)))
			outs := b.OpN(c.op, "/fused/"+c.op, c.inputs, c.outs, c.attrs...)
			g := b.Graph()
			if c.domain != "" {
				g.Node[len(g.Node)-1].Domain = &c.domain
			}
			var names []string
			for i, o := range outs {
				if c.op == "SkipSimplifiedLayerNormalization" && (i == 1 || i == 2) {
					continue // mean and inv_std_var: onnxruntime's CPU kernel does not produce them
				}
				last := any(int64(d))
				if (c.op == "SimplifiedLayerNormalization" && i == 1) || (c.op != "SimplifiedLayerNormalization" && i == 2) {
					last = int64(1) // inv_std_var
				}
				b.Output(o, onnxpb.TensorProto_FLOAT, 2, 3, last)
				names = append(names, o)
			}
			m, err := b.Model()
			if err != nil {
				t.Fatal(err)
			}
			if c.domain != "" {
				dom, v := c.domain, int64(1)
				m.Proto.OpsetImport = append(m.Proto.OpsetImport, &onnxpb.OperatorSetIdProto{Domain: &dom, Version: &v})
			}
			feeds := map[string]*runtime.Tensor{"x": x}
			if len(c.inputs) > 2 {
				feeds["skip"] = skip
			}
			want := run(t, m, feeds)
			rep, err := lower.Lower(m)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Lowered[c.op] != 1 {
				t.Fatalf("%s: report %v", c.name, rep)
			}
			for _, n := range m.Graph().GetNode() {
				if n.GetDomain() != "" || n.GetOpType() == c.op {
					t.Fatalf("%s: node %s (%s::%s) left", c.name, n.GetName(), n.GetDomain(), n.GetOpType())
				}
			}
			got := run(t, m, feeds)
			for _, o := range names {
				// float32 rounding: onnxruntime's kernel accumulates the mean of squares in its
				// own order, so allow a few ulps of the largest output.
				d := testkit.MaxDiff(got[o].F32, want[o].F32)
				if !(d <= 4e-7*maxAbs(want[o].F32)) || len(got[o].F32) == 0 {
					t.Errorf("opset %d %s output %s: max |lowered - onnxruntime| = %.3g (max |out| %.3g)", opset, c.name, o, d, maxAbs(want[o].F32))
				}
			}
		}
	}
}

// GenAI-style graphs lower whole: no com.microsoft node is left and the logits are the fused
// graph's.
func TestLowerFusedModels(t *testing.T) {
	testkit.ORT(t)
	for _, attn := range testkit.FusedAttentions {
		m, _, _ := testkit.FusedTiny(t, attn, 6)
		ids := []int64{1, 5, 9, 300, 2, 7, 7, 100, 11, 3}
		_, want := testkit.RunLogits(t, m, 2, ids, nil)
		rep, err := lower.Lower(m)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Lowered[attn] != 2 || rep.Lowered["RotaryEmbedding"] != 4 || rep.Lowered["SkipSimplifiedLayerNormalization"] != 4 {
			t.Errorf("%s: lowered %v", attn, rep)
		}
		for _, n := range m.Graph().GetNode() {
			if n.GetDomain() != "" || n.GetOpType() == "SimplifiedLayerNormalization" {
				t.Fatalf("%s: node %s (%s::%s) left", attn, n.GetName(), n.GetDomain(), n.GetOpType())
			}
		}
		if err := onnx.Validate(m); err != nil {
			t.Fatal(err)
		}
		_, got := testkit.RunLogits(t, m, 2, ids, nil)
		if d := testkit.MaxDiff(got, want); !(d <= 1e-5) {
			t.Errorf("%s: max |lowered - fused| = %.3g", attn, d)
		}
	}
}

// A form without a lowering (rotary inside the attention) is refused, naming the node, the
// attribute and what to do, and the graph is left as it was.
func TestRefusesUnloweredForms(t *testing.T) {
	m, _, _ := testkit.FusedTiny(t, testkit.GQA, 6)
	var node string
	for _, n := range m.Graph().GetNode() {
		if n.GetOpType() == "GroupQueryAttention" {
			n.Attribute = append(n.Attribute, onnx.AttrInt("do_rotary", 1))
			node = n.GetName()
			break
		}
	}
	before, _ := m.Marshal()
	_, err := lower.Lower(m)
	if !errors.Is(err, lower.ErrFused) {
		t.Fatalf("error %v, want ErrFused", err)
	}
	for _, want := range []string{node, "do_rotary", "without onnxruntime's fusions"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if after, _ := m.Marshal(); string(before) != string(after) {
		t.Error("the refused graph was changed")
	}
	// An operator with no lowering at all.
	b := onnx.NewBuilder("g", 17)
	x := b.Input("x", onnxpb.TensorProto_FLOAT, 2)
	y := b.Op("FastGelu", "/fast_gelu", []string{x})
	b.Output(y, onnxpb.TensorProto_FLOAT, 2)
	ms := onnx.MicrosoftDomain
	b.Graph().Node[0].Domain = &ms
	g, _ := b.Model()
	if _, err := lower.Lower(g); !errors.Is(err, lower.ErrFused) || !strings.Contains(err.Error(), "/fast_gelu") {
		t.Errorf("FastGelu: error %v", err)
	}
}

func maxAbs(v []float32) float64 {
	m := 0.0
	for _, x := range v {
		if a := float64(x); a > m {
			m = a
		} else if -a > m {
			m = -a
		}
	}
	return m
}
