package onnx

import (
	"slices"
	"strings"
	"testing"

	"github.com/shears-ml/shears/onnx/onnxpb"
)

func TestInferShapesFixture(t *testing.T) {
	m, err := Load(coreFixture(t))
	if err != nil {
		t.Fatal(err)
	}
	ty, err := InferShapes(m, map[string][]int64{"input_ids": {2, 64}})
	if err != nil {
		t.Fatal(err)
	}
	if l := ty["logits"]; l.Elem != onnxpb.TensorProto_FLOAT || !slices.Equal(l.Shape, []int64{2, 64, 512}) {
		t.Fatalf("logits %v, want FLOAT [2 64 512]", l)
	}
	// every tensor resolves fully once the input dims are fixed
	for name, v := range ty {
		if v.Shape == nil || slices.Contains(v.Shape, -1) {
			t.Errorf("%s: %v not fully inferred", name, v)
		}
	}
	matmuls := 0
	for _, n := range m.Graph().GetNode() {
		if n.GetOpType() != "MatMul" {
			continue
		}
		matmuls++
		a, b, y := ty[n.GetInput()[0]].Shape, ty[n.GetInput()[1]].Shape, ty[n.GetOutput()[0]].Shape
		if a[len(a)-1] != b[len(b)-2] {
			t.Errorf("%s: inner dims %v × %v", n.GetName(), a, b)
		}
		if y[len(y)-1] != b[len(b)-1] || y[len(y)-2] != a[len(a)-2] || len(y) != max(len(a), len(b)) {
			t.Errorf("%s: %v × %v → %v", n.GetName(), a, b, y)
		}
	}
	if matmuls != 46 {
		t.Fatalf("%d MatMuls, want 46", matmuls)
	}
	// spot checks: attention scores [B, heads, T, T], the wk projection, RoPE pair Gather
	if s := ty["/layers.0/wk/MatMul_output_0"].Shape; !slices.Equal(s, []int64{2, 64, 32}) {
		t.Errorf("wk output %v", s)
	}
	if s := ty["/layers.0/MatMul_output_0"].Shape; !slices.Equal(s, []int64{2, 8, 64, 64}) {
		t.Errorf("attention scores %v, want [2 8 64 64]", s)
	}
	// without input dims, batch and sequence stay unknown but the vocabulary is known
	ty2, err := InferShapes(m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l := ty2["logits"].Shape; !slices.Equal(l, []int64{-1, -1, 512}) {
		t.Fatalf("logits without dims %v", l)
	}
}

// infer1 runs inference on a one-node graph over the given inputs and initializers.
func infer1(t *testing.T, opset int64, n *onnxpb.NodeProto, inits []*onnxpb.TensorProto, ins ...*onnxpb.ValueInfoProto) (map[string]TensorType, error) {
	t.Helper()
	g := &onnxpb.GraphProto{Node: []*onnxpb.NodeProto{n}, Initializer: inits, Input: ins}
	return InferShapes(tcModel(g, opset), nil)
}

func TestInferShapesOps(t *testing.T) {
	f := onnxpb.TensorProto_FLOAT
	x := func(dims ...int64) *onnxpb.ValueInfoProto { return tcVI("x", f, dims...) }
	i64 := func(name string, v ...int64) *onnxpb.TensorProto { return Int64Tensor(name, []int64{int64(len(v))}, v) }
	cases := []struct {
		name  string
		opset int64
		node  *onnxpb.NodeProto
		inits []*onnxpb.TensorProto
		ins   []*onnxpb.ValueInfoProto
		want  map[string][]int64
	}{
		{"gemm transB", 17, tcNode("Gemm", "g", []string{"x", "w"}, []string{"y"}, tcAttrInt("transB", 1)),
			[]*onnxpb.TensorProto{Float32Tensor("w", []int64{5, 3}, make([]float32, 15))}, []*onnxpb.ValueInfoProto{x(4, 3)},
			map[string][]int64{"y": {4, 5}}},
		{"split13 sizes", 13, tcNode("Split", "s", []string{"x", "sp"}, []string{"a", "b"}, tcAttrInt("axis", -1)),
			[]*onnxpb.TensorProto{i64("sp", 2, 6)}, []*onnxpb.ValueInfoProto{x(3, 8)},
			map[string][]int64{"a": {3, 2}, "b": {3, 6}}},
		{"split18 num_outputs", 18, tcNode("Split", "s", []string{"x"}, []string{"a", "b", "c"}, tcAttrInt("num_outputs", 3)),
			nil, []*onnxpb.ValueInfoProto{x(7, 2)},
			map[string][]int64{"a": {3, 2}, "b": {3, 2}, "c": {1, 2}}},
		{"split even", 17, tcNode("Split", "s", []string{"x"}, []string{"a", "b"}, tcAttrInt("axis", 1)),
			nil, []*onnxpb.ValueInfoProto{x(2, 6)},
			map[string][]int64{"a": {2, 3}, "b": {2, 3}}},
		{"einsum outer", 17, tcNode("Einsum", "e", []string{"x", "v"}, []string{"y"}, tcAttrStr("equation", "i,j->ij")),
			[]*onnxpb.TensorProto{Float32Tensor("v", []int64{4}, make([]float32, 4))}, []*onnxpb.ValueInfoProto{x(512)},
			map[string][]int64{"y": {512, 4}}},
		{"einsum implicit", 17, tcNode("Einsum", "e", []string{"x", "v"}, []string{"y"}, tcAttrStr("equation", "bij,bjk")),
			[]*onnxpb.TensorProto{Float32Tensor("v", []int64{2, 3, 5}, make([]float32, 30))}, []*onnxpb.ValueInfoProto{x(2, 4, 3)},
			map[string][]int64{"y": {4, 5}}}, // implicit: once-only letters, sorted; b is summed
		{"layernorm", 17, tcNode("LayerNormalization", "ln", []string{"x", "s"}, []string{"y", "mu", "rs"}),
			[]*onnxpb.TensorProto{Float32Tensor("s", []int64{8}, make([]float32, 8))}, []*onnxpb.ValueInfoProto{x(2, 5, 8)},
			map[string][]int64{"y": {2, 5, 8}, "mu": {2, 5, 1}, "rs": {2, 5, 1}}},
		{"flatten", 17, tcNode("Flatten", "fl", []string{"x"}, []string{"y"}, tcAttrInt("axis", 2)),
			nil, []*onnxpb.ValueInfoProto{x(2, 3, 4, 5)}, map[string][]int64{"y": {6, 20}}},
		{"squeeze13", 13, tcNode("Squeeze", "sq", []string{"x", "ax"}, []string{"y"}),
			[]*onnxpb.TensorProto{i64("ax", 0, -1)}, []*onnxpb.ValueInfoProto{x(1, 3, 1)}, map[string][]int64{"y": {3}}},
		{"squeeze all", 11, tcNode("Squeeze", "sq", []string{"x"}, []string{"y"}),
			nil, []*onnxpb.ValueInfoProto{x(1, 3, 1)}, map[string][]int64{"y": {3}}},
		{"unsqueeze11", 11, tcNode("Unsqueeze", "u", []string{"x"}, []string{"y"}, tcAttrInts("axes", 0, 3)),
			nil, []*onnxpb.ValueInfoProto{x(2, 3)}, map[string][]int64{"y": {1, 2, 3, 1}}},
		{"reducesum13 keepdims0", 13, tcNode("ReduceSum", "r", []string{"x", "ax"}, []string{"y"}, tcAttrInt("keepdims", 0)),
			[]*onnxpb.TensorProto{i64("ax", 1)}, []*onnxpb.ValueInfoProto{x(2, 3, 4)}, map[string][]int64{"y": {2, 4}}},
		{"reducemean all", 17, tcNode("ReduceMean", "r", []string{"x"}, []string{"y"}),
			nil, []*onnxpb.ValueInfoProto{x(2, 3, 4)}, map[string][]int64{"y": {1, 1, 1}}},
		{"logsoftmax", 17, tcNode("LogSoftmax", "ls", []string{"x"}, []string{"y"}),
			nil, []*onnxpb.ValueInfoProto{x(2, 9)}, map[string][]int64{"y": {2, 9}}},
		{"trilu", 17, tcNode("Trilu", "tr", []string{"x"}, []string{"y"}),
			nil, []*onnxpb.ValueInfoProto{x(5, 5)}, map[string][]int64{"y": {5, 5}}},
		{"transpose default", 17, tcNode("Transpose", "tp", []string{"x"}, []string{"y"}),
			nil, []*onnxpb.ValueInfoProto{x(2, 3, 4)}, map[string][]int64{"y": {4, 3, 2}}},
		{"matmul vector", 17, tcNode("MatMul", "mv", []string{"x", "v"}, []string{"y"}),
			[]*onnxpb.TensorProto{Float32Tensor("v", []int64{3}, make([]float32, 3))}, []*onnxpb.ValueInfoProto{x(5, 2, 3)},
			map[string][]int64{"y": {5, 2}}},
		{"slice negative step", 17, tcNode("Slice", "sl", []string{"x", "st", "en", "ax", "sp"}, []string{"y"}),
			[]*onnxpb.TensorProto{i64("st", -1), i64("en", -1<<62), i64("ax", 1), i64("sp", -2)}, []*onnxpb.ValueInfoProto{x(2, 7)},
			map[string][]int64{"y": {2, 4}}},
		{"range", 17, tcNode("Range", "rg", []string{"s", "l", "d"}, []string{"y"}),
			[]*onnxpb.TensorProto{Int64Tensor("s", nil, []int64{2}), Int64Tensor("l", nil, []int64{11}), Int64Tensor("d", nil, []int64{3})}, nil,
			map[string][]int64{"y": {3}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ty, err := infer1(t, c.opset, c.node, c.inits, c.ins...)
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range c.want {
				if got := ty[name].Shape; !slices.Equal(got, want) {
					t.Errorf("%s: %v, want %v", name, got, want)
				}
			}
		})
	}
}

// TestInferShapesFolding: a torch-style shape subgraph (Shape → Gather → Unsqueeze → Concat,
// ConstantOfShape/Equal/Where replacing -1, Expand) resolves the Reshape and Expand targets.
func TestInferShapesFolding(t *testing.T) {
	f := onnxpb.TensorProto_FLOAT
	i64 := func(name string, v ...int64) *onnxpb.TensorProto { return Int64Tensor(name, []int64{int64(len(v))}, v) }
	g := &onnxpb.GraphProto{
		Input: []*onnxpb.ValueInfoProto{tcVI("x", f, -1, -1, 12), tcVI("z", f, 1, 1, 5)},
		Initializer: []*onnxpb.TensorProto{Int64Tensor("zero", nil, []int64{0}), Int64Tensor("one", nil, []int64{1}),
			i64("ax0", 0), i64("tail", 3, 4), i64("pattern", -1, 3, 1), Int64Tensor("m1", nil, []int64{-1}), i64("len3", 3)},
		Node: []*onnxpb.NodeProto{
			tcNode("Shape", "sh", []string{"x"}, []string{"s"}),
			tcNode("Gather", "g0", []string{"s", "zero"}, []string{"b"}),
			tcNode("Gather", "g1", []string{"s", "one"}, []string{"t"}),
			tcNode("Unsqueeze", "u0", []string{"b", "ax0"}, []string{"bu"}),
			tcNode("Unsqueeze", "u1", []string{"t", "ax0"}, []string{"tu"}),
			tcNode("Concat", "cat", []string{"bu", "tu", "tail"}, []string{"target"}, tcAttrInt("axis", 0)),
			tcNode("Reshape", "rs", []string{"x", "target"}, []string{"r"}),
			tcNode("ConstantOfShape", "cos", []string{"len3"}, []string{"ones"}, tcAttrT("value", Int64Tensor("", []int64{1}, []int64{1}))),
			tcNode("Mul", "neg", []string{"ones", "m1"}, []string{"negs"}),
			tcNode("Equal", "eq", []string{"pattern", "negs"}, []string{"isneg"}),
			tcNode("Where", "wh", []string{"isneg", "ones", "pattern"}, []string{"exp_shape"}),
			tcNode("Expand", "ex", []string{"z", "exp_shape"}, []string{"e"}),
			tcNode("Cast", "ca", []string{"target"}, []string{"tf"}, tcAttrInt("to", int64(onnxpb.TensorProto_FLOAT))),
		},
	}
	m := tcModel(g, 17)
	ty, err := InferShapes(m, map[string][]int64{"x": {2, 5, 12}})
	if err != nil {
		t.Fatal(err)
	}
	if s := ty["r"].Shape; !slices.Equal(s, []int64{2, 5, 3, 4}) {
		t.Fatalf("reshape target folded to %v, want [2 5 3 4]", s)
	}
	// exp_shape = Where(pattern == -1, 1, pattern) = [1,3,1]; Expand([1,1,5], it) = [1,3,5]
	if s := ty["e"].Shape; !slices.Equal(s, []int64{1, 3, 5}) {
		t.Fatalf("expand %v, want [1 3 5]", s)
	}
	if ty["tf"].Elem != onnxpb.TensorProto_FLOAT || !slices.Equal(ty["tf"].Shape, []int64{4}) {
		t.Fatalf("cast %v", ty["tf"])
	}
}

func TestInferShapesErrors(t *testing.T) {
	f := onnxpb.TensorProto_FLOAT
	_, err := infer1(t, 17, tcNode("FancyOp", "fancy", []string{"x"}, []string{"y"}), nil, tcVI("x", f, 2))
	if err == nil || !strings.Contains(err.Error(), `node "fancy" (FancyOp)`) || !strings.Contains(err.Error(), "not supported") {
		t.Fatalf("unknown op: %v", err)
	}
	_, err = infer1(t, 17, tcNode("MatMul", "mm", []string{"x", "w"}, []string{"y"}),
		[]*onnxpb.TensorProto{Float32Tensor("w", []int64{4, 2}, make([]float32, 8))}, tcVI("x", f, 2, 3))
	if err == nil || !strings.Contains(err.Error(), `node "mm" (MatMul)`) || !strings.Contains(err.Error(), "inner dims") {
		t.Fatalf("matmul mismatch: %v", err)
	}
	n := tcNode("Gelu", "ms", []string{"x"}, []string{"y"})
	n.Domain = tcStr("com.microsoft")
	_, err = infer1(t, 17, n, nil, tcVI("x", f, 2))
	if err == nil || !strings.Contains(err.Error(), `"com.microsoft"`) {
		t.Fatalf("foreign domain: %v", err)
	}
	_, err = InferShapes(tcTiny(), map[string][]int64{"nope": {1}})
	if err == nil || !strings.Contains(err.Error(), `"nope" is not a graph input`) {
		t.Fatalf("unknown input dims: %v", err)
	}
}

func TestShapeMatMulVectorsAndPadScatter(t *testing.T) {
	cases := []struct {
		a, b, want []int64
	}{
		{[]int64{4}, []int64{4}, []int64{}},
		{[]int64{4}, []int64{4, 3}, []int64{3}},
		{[]int64{2, 5, 4}, []int64{4}, []int64{2, 5}},
		{[]int64{2, 5, 4}, []int64{4, 3}, []int64{2, 5, 3}},
	}
	for _, c := range cases {
		got, err := matmulShape(c.a, c.b)
		if err != nil || len(got) != len(c.want) {
			t.Fatalf("%v × %v = %v (%v), want %v", c.a, c.b, got, err, c.want)
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Fatalf("%v × %v = %v, want %v", c.a, c.b, got, c.want)
			}
		}
	}
	b := NewBuilder("p", 17)
	x := b.Input("x", onnxpb.TensorProto_FLOAT, 2, 3)
	p := b.Op("Pad", "/pad", []string{x, b.Const("pads", Int64Tensor("", []int64{4}, []int64{0, 1, 2, 3}))})
	idx := b.Const("idx", Int64Tensor("", []int64{1, 1}, []int64{0}))
	upd := b.Const("upd", Float32Tensor("", []int64{1, 7}, make([]float32, 7)))
	s := b.Op("ScatterND", "/scatter", []string{p, idx, upd})
	b.Output(s, onnxpb.TensorProto_FLOAT, 4, 7)
	m, err := b.Model()
	if err != nil {
		t.Fatal(err)
	}
	types, err := InferShapes(m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := types[s].Shape; len(got) != 2 || got[0] != 4 || got[1] != 7 {
		t.Fatalf("pad+scatter shape %v, want [4 7]", got)
	}
}
