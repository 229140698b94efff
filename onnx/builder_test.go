package onnx

import (
	"strings"
	"testing"

	"github.com/shears-ml/shears/onnx/onnxpb"
	"google.golang.org/protobuf/proto"
)

func TestBuilderTinyGraph(t *testing.T) {
	b := NewBuilder("tiny", 17)
	x := b.Input("x", onnxpb.TensorProto_FLOAT, "batch", 3)
	w := b.Const("w", Float32Tensor("", []int64{3, 2}, []float32{1, 2, 3, 4, 5, 6}))
	y := b.Op("MatMul", "/lin/MatMul", []string{x, w})
	parts := b.OpN("Split", "/split", []string{y}, 2, AttrInt("axis", -1))
	s := b.Op("Softmax", "/sm", []string{parts[0]}, AttrInt("axis", -1))
	b.OpOut("Add", "/out/Add", []string{s, parts[1]}, []string{"z"})
	b.Output("z", onnxpb.TensorProto_FLOAT, "batch", 1)
	m, err := b.Model()
	if err != nil {
		t.Fatal(err)
	}
	p := m.Proto
	if p.GetIrVersion() != 8 || len(p.OpsetImport) != 1 || p.OpsetImport[0].GetVersion() != 17 || p.OpsetImport[0].GetDomain() != "" {
		t.Fatalf("header: ir %d opset %v", p.GetIrVersion(), p.OpsetImport)
	}
	g := p.Graph
	if g.GetName() != "tiny" {
		t.Errorf("graph name %q", g.GetName())
	}
	if y != "/lin/MatMul_output_0" || parts[1] != "/split_output_1" || s != "/sm_output_0" {
		t.Errorf("output names %q %q %q", y, parts[1], s)
	}
	var ops []string
	for _, n := range g.Node {
		ops = append(ops, n.GetName()+"="+n.GetOpType()+"("+strings.Join(n.Input, ",")+")->"+strings.Join(n.Output, ","))
	}
	want := []string{
		"/lin/MatMul=MatMul(x,w)->/lin/MatMul_output_0",
		"/split=Split(/lin/MatMul_output_0)->/split_output_0,/split_output_1",
		"/sm=Softmax(/split_output_0)->/sm_output_0",
		"/out/Add=Add(/sm_output_0,/split_output_1)->z",
	}
	if strings.Join(ops, "\n") != strings.Join(want, "\n") {
		t.Errorf("nodes:\n%s\nwant:\n%s", strings.Join(ops, "\n"), strings.Join(want, "\n"))
	}
	in := g.Input[0].GetType().GetTensorType()
	if in.GetElemType() != int32(onnxpb.TensorProto_FLOAT) || in.Shape.Dim[0].GetDimParam() != "batch" || in.Shape.Dim[1].GetDimValue() != 3 {
		t.Errorf("input type %v", in)
	}
	if len(g.Initializer) != 1 || g.Initializer[0].GetName() != "w" || len(g.Initializer[0].RawData) != 24 {
		t.Errorf("initializers %v", g.Initializer)
	}
	a := g.Node[1].Attribute[0]
	if a.GetName() != "axis" || a.GetType() != onnxpb.AttributeProto_INT || a.GetI() != -1 {
		t.Errorf("attribute %v", a)
	}
	// The proto must survive a round trip through the wire format.
	raw, err := proto.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var back onnxpb.ModelProto
	if err := proto.Unmarshal(raw, &back); err != nil || !proto.Equal(&back, p) {
		t.Fatalf("round trip: %v", err)
	}
}

func TestBuilderForAvoidsCollisions(t *testing.T) {
	b := NewBuilder("g", 17)
	x := b.Input("x", onnxpb.TensorProto_FLOAT, 2)
	b.Op("Neg", "/n", []string{x})
	b.Const("c", Float32Tensor("", []int64{2}, []float32{1, 2}))
	m, err := b.Model()
	if err != nil {
		t.Fatal(err)
	}
	b2 := BuilderFor(m)
	if got := b2.Op("Neg", "/n", []string{"/n_output_0"}); got != "/n_1_output_0" {
		t.Errorf("second /n output %q", got)
	}
	if got := b2.Const("c", Float32Tensor("", []int64{1}, []float32{3})); got != "c_1" {
		t.Errorf("second const %q", got)
	}
	// A requested node name equal to an existing tensor name is suffixed too.
	if got := b2.Op("Neg", "x", []string{"x"}); got != "x_1_output_0" {
		t.Errorf("node named like an input: %q", got)
	}
	if b2.Err() != nil {
		t.Fatal(b2.Err())
	}
	if n := len(m.Proto.Graph.Node); n != 3 {
		t.Errorf("nodes %d, want 3 (appended in place)", n)
	}
}

func TestBuilderKeepsFirstError(t *testing.T) {
	b := NewBuilder("g", 17)
	x := b.Input("x", onnxpb.TensorProto_FLOAT, 2)
	b.Op("Add", "/a", []string{x, "missing"})
	b.Input("x", onnxpb.TensorProto_FLOAT, 2) // would be a second error
	if got := b.Op("Neg", "/n", []string{x}); got != "" {
		t.Errorf("op after error returned %q", got)
	}
	_, err := b.Model()
	if err == nil || !strings.Contains(err.Error(), `"/a"`) || !strings.Contains(err.Error(), `"missing"`) {
		t.Fatalf("error %v, want one naming node /a and input missing", err)
	}
	if n := len(b.Graph().Node); n != 0 {
		t.Errorf("%d nodes added after the error", n)
	}
	b = NewBuilder("g", 17)
	b.Input("x", onnxpb.TensorProto_FLOAT, 1.5)
	if b.Err() == nil || !strings.Contains(b.Err().Error(), "float64") {
		t.Errorf("bad dim type: %v", b.Err())
	}
	b = NewBuilder("g", 17)
	b.Output("nope", onnxpb.TensorProto_FLOAT)
	if b.Err() == nil {
		t.Error("output of unknown tensor accepted")
	}
}

func TestAttrConstructors(t *testing.T) {
	if a := AttrInts("perm", 0, 2, 1); a.GetType() != onnxpb.AttributeProto_INTS || len(a.Ints) != 3 || a.Ints[2] != 1 {
		t.Errorf("ints %v", a)
	}
	if a := AttrFloat("alpha", 0.5); a.GetType() != onnxpb.AttributeProto_FLOAT || a.GetF() != 0.5 {
		t.Errorf("float %v", a)
	}
	if a := AttrFloats("s", 1, 2); a.GetType() != onnxpb.AttributeProto_FLOATS || a.Floats[1] != 2 {
		t.Errorf("floats %v", a)
	}
	if a := AttrString("mode", "constant"); a.GetType() != onnxpb.AttributeProto_STRING || string(a.S) != "constant" {
		t.Errorf("string %v", a)
	}
	tt := Float32Tensor("v", []int64{1}, []float32{0})
	if a := AttrTensor("value", tt); a.GetType() != onnxpb.AttributeProto_TENSOR || a.T != tt {
		t.Errorf("tensor %v", a)
	}
}
