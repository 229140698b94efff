package quant

import (
	"bytes"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/transform/layers"
	"google.golang.org/protobuf/proto"
)

// quantizedTiny is the tiny synthetic LLaMA with every target linear RTN-quantized on c.
func quantizedTiny(t *testing.T, c Config) *onnx.Model {
	t.Helper()
	m := testkit.LoadSynthetic(t, "tiny")
	all, err := layers.Find(m)
	if err != nil {
		t.Fatal(err)
	}
	targets, _ := layers.Select(all, "", "")
	p, err := NewPlan(m, targets, c)
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range p.Targets {
		w, err := Weight(m, tg.Linear)
		if err != nil {
			t.Fatal(err)
		}
		l, err := RTN(w, tg.K, tg.N, c)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.ApplyTarget(m, tg, l); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// TestLowerRaiseRoundTrip: the lowered model (MatMul by the dequantized weight, or for the
// linears KeepQuantized put back, by MatMulNBits' own dequantization) computes the quantized
// model's logits, and raising it back gives byte-identical MatMulNBits tensors.
func TestLowerRaiseRoundTrip(t *testing.T) {
	testkit.ORT(t)
	for _, c := range []Config{{4, 32, false}, {8, 64, true}} {
		q := quantizedTiny(t, c)
		low, err := Lower(q)
		if err != nil {
			t.Fatal(err)
		}
		if has, _ := HasQuantized(low); has {
			t.Fatal("lowered model still has MatMulNBits nodes")
		}
		recs, err := ReadLowered(low)
		if err != nil || len(recs) != 14 {
			t.Fatalf("%d lowered linears recorded (%v), want 14", len(recs), err)
		}
		// Half of the linears go back to their packed integers (as a QA super-network's
		// linears without adapters do): no float weight, no grid tensor left for them.
		var kept []string
		for _, r := range recs[:7] {
			kept = append(kept, r.Node)
		}
		if err := KeepQuantized(low, kept); err != nil {
			t.Fatal(err)
		}
		for _, r := range recs[:7] {
			for _, name := range []string{r.Weight, r.Scales, r.Zeros} {
				if low.Initializer(name) != nil {
					t.Fatalf("%s: %s still in the graph", r.Node, name)
				}
			}
		}
		ids := []int64{3, 1, 4, 1, 5, 9, 2, 6}
		_, want := testkit.RunLogits(t, q, 1, ids, nil)
		_, got := testkit.RunLogits(t, low, 1, ids, nil)
		if d := testkit.MaxDiff(got, want); !(d <= 1e-4) {
			t.Fatalf("%+v: lowered logits differ by %g", c, d)
		}
		if _, err := Raise(low, low); err != nil {
			t.Fatal(err)
		}
		_, a, err := Quantized(q)
		if err != nil {
			t.Fatal(err)
		}
		_, b, err := Quantized(low)
		if err != nil {
			t.Fatal(err)
		}
		if len(a) != len(b) {
			t.Fatalf("%d layers raised, want %d", len(b), len(a))
		}
		for name, la := range a {
			lb := b[name]
			if lb == nil || !bytes.Equal(la.PackB(), lb.PackB()) || !bytes.Equal(la.PackZeros(), lb.PackZeros()) {
				t.Fatalf("%+v %s: raised tensors differ from the quantized model's", c, name)
			}
			for i := range la.Scales {
				if la.Scales[i] != lb.Scales[i] {
					t.Fatalf("%s scale %d: %g, want %g", name, i, lb.Scales[i], la.Scales[i])
				}
			}
		}
		if recs, _ := ReadLowered(low); recs != nil {
			t.Fatal("raised model keeps the lowering metadata")
		}
		if _, got = testkit.RunLogits(t, low, 1, ids, nil); testkit.MaxDiff(got, want) != 0 {
			t.Fatalf("raised model's logits differ from the quantized model's")
		}
	}
}

// HasQuantized finds a MatMulNBits inside an If branch (optimum's merged decoder keeps every
// node there), and nothing in a float model of the same shape.
func TestHasQuantizedInSubgraph(t *testing.T) {
	str := proto.String
	merged := func(op, domain string) *onnx.Model {
		then := &onnxpb.GraphProto{Name: str("then"), Node: []*onnxpb.NodeProto{
			{Name: str("/model/layers.0/mlp/down_proj/MatMul_Q4"), OpType: str(op), Domain: str(domain), Input: []string{"x", "w"}, Output: []string{"y_then"}}}}
		els := &onnxpb.GraphProto{Name: str("else"), Node: []*onnxpb.NodeProto{
			{Name: str("id"), OpType: str("Identity"), Input: []string{"x"}, Output: []string{"y_else"}}}}
		g := &onnxpb.GraphProto{Name: str("g"), Node: []*onnxpb.NodeProto{{Name: str("optimum::if"), OpType: str("If"), Input: []string{"use_cache_branch"}, Output: []string{"y"},
			Attribute: []*onnxpb.AttributeProto{
				{Name: str("then_branch"), Type: onnxpb.AttributeProto_GRAPH.Enum(), G: then},
				{Name: str("else_branch"), Type: onnxpb.AttributeProto_GRAPH.Enum(), G: els}}}}}
		return &onnx.Model{Proto: &onnxpb.ModelProto{Graph: g}}
	}
	if has, name := HasQuantized(merged(OpType, Domain)); !has || name != "/model/layers.0/mlp/down_proj/MatMul_Q4" {
		t.Errorf("HasQuantized = %v, %q on a MatMulNBits in an If branch", has, name)
	}
	if has, name := HasQuantized(merged("MatMul", "")); has {
		t.Errorf("HasQuantized = true (%q) on a float model", name)
	}
}
