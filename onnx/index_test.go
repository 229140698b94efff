package onnx

import (
	"strings"
	"testing"

	"github.com/shears-ml/shears/onnx/onnxpb"
)

func TestTopoOrderFixtureKeepsFileOrder(t *testing.T) {
	m, err := Load(coreFixture(t))
	if err != nil {
		t.Fatal(err)
	}
	ix := NewIndex(m.Graph())
	order, err := ix.TopoOrder()
	if err != nil {
		t.Fatal(err)
	}
	if len(order) != 1750 {
		t.Fatalf("%d nodes, want 1750", len(order))
	}
	for i, n := range m.Graph().GetNode() {
		if order[i] != n {
			t.Fatalf("position %d: %s, file has %s", i, nodeLabel(order[i]), nodeLabel(n))
		}
	}
	// the index sees the LM head and its weight
	head := ix.Nodes["/output/MatMul"]
	if head == nil || ix.Producer[head.GetOutput()[0]] != head {
		t.Fatal("no /output/MatMul")
	}
	if w := ix.ConstantValue(head.GetInput()[1]); w == nil || !equalDims(w.GetDims(), []int64{64, 512}) {
		t.Fatalf("LM head weight %v", w)
	}
	if c := ix.Consumers["input_ids"]; len(c) != 1 || c[0].GetOpType() != "Gather" {
		t.Fatalf("input_ids consumers %v", c)
	}
}

func TestTopoOrderSortsAndFindsCycles(t *testing.T) {
	// file order: c (needs b), a, b (needs a), d (independent)
	g := &onnxpb.GraphProto{Node: []*onnxpb.NodeProto{
		tcNode("Relu", "c", []string{"B"}, []string{"C"}),
		tcNode("Relu", "a", []string{"x"}, []string{"A"}),
		tcNode("Relu", "b", []string{"A"}, []string{"B"}),
		tcNode("Relu", "d", []string{"x"}, []string{"D"}),
	}, Input: []*onnxpb.ValueInfoProto{tcVI("x", onnxpb.TensorProto_FLOAT, 1)}}
	order, err := NewIndex(g).TopoOrder()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range order {
		names = append(names, n.GetName())
	}
	if got := strings.Join(names, ","); got != "a,b,c,d" {
		t.Fatalf("order %s, want a,b,c,d (earliest ready node first)", got)
	}

	g.Node[1].Input = []string{"C"} // a now needs c: a → b → c → a
	_, err = NewIndex(g).TopoOrder()
	if err == nil || !strings.Contains(err.Error(), "cycle") ||
		!(strings.Contains(err.Error(), `"a" (Relu)`) || strings.Contains(err.Error(), `"b" (Relu)`) || strings.Contains(err.Error(), `"c" (Relu)`)) {
		t.Fatalf("cycle error %v", err)
	}
	if strings.Contains(err.Error(), `"d"`) {
		t.Fatalf("cycle error names d, which is not on the cycle: %v", err)
	}
}

func TestUniqueNameAndConstantValue(t *testing.T) {
	m := tcTiny()
	ix := NewIndex(m.Graph())
	if n := ix.UniqueName("fresh"); n != "fresh" {
		t.Fatalf("UniqueName(fresh) = %q", n)
	}
	if n := ix.UniqueName("fresh"); n != "fresh_1" {
		t.Fatalf("second UniqueName(fresh) = %q", n)
	}
	for _, taken := range []string{"W", "xw", "mm", "x", "y"} {
		if n := ix.UniqueName(taken); n != taken+"_1" {
			t.Fatalf("UniqueName(%q) = %q", taken, n)
		}
	}
	if n := ix.UniqueName("W"); n != "W_2" {
		t.Fatalf("UniqueName(W) third time = %q", n)
	}
	g := m.Graph()
	g.Node = append(g.Node,
		tcNode("Constant", "k", nil, []string{"K"}, tcAttrT("value", Int64Tensor("", []int64{2}, []int64{4, 5}))),
		tcNode("Constant", "kf", nil, []string{"KF"}, &onnxpb.AttributeProto{Name: tcStr("value_float"), F: func() *float32 { v := float32(2.5); return &v }()}),
	)
	ix = NewIndex(g)
	vals, err := m.Int64s(ix.ConstantValue("K"))
	if err != nil || len(vals) != 2 || vals[1] != 5 {
		t.Fatalf("ConstantValue(K) = %v, %v", vals, err)
	}
	f, err := m.Float32s(ix.ConstantValue("KF"))
	if err != nil || len(f) != 1 || f[0] != 2.5 {
		t.Fatalf("ConstantValue(KF) = %v, %v", f, err)
	}
	if ix.ConstantValue("W") != m.Initializer("W") {
		t.Fatal("ConstantValue of an initializer")
	}
	if ix.ConstantValue("xw") != nil || ix.ConstantValue("x") != nil {
		t.Fatal("ConstantValue of a computed tensor or graph input")
	}
}
