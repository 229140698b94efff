package onnx

import (
	"testing"

	"github.com/shears-ml/shears/onnx/onnxpb"
)

// TorchStoriesFixture is testkit.TorchStories' path, set by the external test package
// (shared_test.go): the tests of package onnx cannot import internal/testkit, which imports onnx.
var TorchStoriesFixture func(t testing.TB) string

// coreFixture is the stories260K PyTorch export: ../shared's, or exported by the testkit when
// ../shared is absent (the test skipped, naming why, only when neither can be had).
func coreFixture(t testing.TB) string {
	return TorchStoriesFixture(t)
}

func tcStr(s string) *string { return &s }

func tcNode(op, name string, ins, outs []string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
	return &onnxpb.NodeProto{OpType: tcStr(op), Name: tcStr(name), Input: ins, Output: outs, Attribute: attrs}
}

func tcAttrInt(name string, v int64) *onnxpb.AttributeProto {
	ty := onnxpb.AttributeProto_INT
	return &onnxpb.AttributeProto{Name: tcStr(name), Type: &ty, I: &v}
}

func tcAttrInts(name string, v ...int64) *onnxpb.AttributeProto {
	ty := onnxpb.AttributeProto_INTS
	return &onnxpb.AttributeProto{Name: tcStr(name), Type: &ty, Ints: v}
}

func tcAttrStr(name, v string) *onnxpb.AttributeProto {
	ty := onnxpb.AttributeProto_STRING
	return &onnxpb.AttributeProto{Name: tcStr(name), Type: &ty, S: []byte(v)}
}

func tcAttrT(name string, v *onnxpb.TensorProto) *onnxpb.AttributeProto {
	ty := onnxpb.AttributeProto_TENSOR
	return &onnxpb.AttributeProto{Name: tcStr(name), Type: &ty, T: v}
}

// valueInfo declares a tensor; a dim of -1 becomes a symbolic dim.
func tcVI(name string, elem onnxpb.TensorProto_DataType, dims ...int64) *onnxpb.ValueInfoProto {
	shape := &onnxpb.TensorShapeProto{}
	for i, d := range dims {
		dim := &onnxpb.TensorShapeProto_Dimension{}
		if d >= 0 {
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}
		} else {
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "d" + string(rune('0'+i))}
		}
		shape.Dim = append(shape.Dim, dim)
	}
	e := int32(elem)
	return &onnxpb.ValueInfoProto{Name: tcStr(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: &e, Shape: shape}}}}
}

// newModel wraps a graph in a model importing ai.onnx opset.
func tcModel(g *onnxpb.GraphProto, opset int64) *Model {
	ir := int64(8)
	return &Model{Proto: &onnxpb.ModelProto{
		IrVersion:    &ir,
		ProducerName: tcStr("shears-test"),
		OpsetImport:  []*onnxpb.OperatorSetIdProto{{Domain: tcStr(""), Version: &opset}},
		Graph:        g,
	}}
}

// tinyModel: y = x·W + b with weights in several storages (raw fp32, float_data, fp16, int64).
func tcTiny() *Model {
	w := make([]float32, 32*16)
	for i := range w {
		w[i] = float32(i%37)*0.25 - 3
	}
	b := make([]float32, 16)
	for i := range b {
		b[i] = float32(i) / 8
	}
	bias := &onnxpb.TensorProto{Name: tcStr("b"), DataType: int32Ptr(int32(onnxpb.TensorProto_FLOAT)), Dims: []int64{16}, FloatData: b}
	h := make([]byte, 2*700)
	for i := 0; i < 700; i++ {
		v := Float32ToFloat16(float32(i) / 3)
		h[2*i], h[2*i+1] = byte(v), byte(v>>8)
	}
	half := NewTensor("h", onnxpb.TensorProto_FLOAT16, []int64{700}, h)
	ids := Int64Tensor("shape", []int64{2}, []int64{-1, 16})
	big := &onnxpb.TensorProto{Name: tcStr("typed_big"), DataType: int32Ptr(int32(onnxpb.TensorProto_INT64)), Dims: []int64{200}}
	for i := 0; i < 200; i++ {
		big.Int64Data = append(big.Int64Data, int64(i*i-7))
	}
	g := &onnxpb.GraphProto{
		Name: tcStr("tiny"),
		Node: []*onnxpb.NodeProto{
			tcNode("MatMul", "mm", []string{"x", "W"}, []string{"xw"}),
			tcNode("Add", "add", []string{"xw", "b"}, []string{"y0"}),
			tcNode("Reshape", "rs", []string{"y0", "shape"}, []string{"y"}),
		},
		Initializer: []*onnxpb.TensorProto{Float32Tensor("W", []int64{32, 16}, w), bias, half, ids, big},
		Input:       []*onnxpb.ValueInfoProto{tcVI("x", onnxpb.TensorProto_FLOAT, -1, 32)},
		Output:      []*onnxpb.ValueInfoProto{tcVI("y", onnxpb.TensorProto_FLOAT, -1, 16)},
	}
	return tcModel(g, 17)
}
