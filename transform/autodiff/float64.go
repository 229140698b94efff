package autodiff

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"google.golang.org/protobuf/proto"
)

// ToFloat64 returns a copy of m computing in float64 instead of float32: float initializers,
// Constant and ConstantOfShape values, Cast(to=FLOAT) targets and the declared types of graph
// inputs, outputs and value_info. Finite differences in float64 have rounding errors around
// 1e-10 instead of 1e-3, which is what makes a tight gradient check possible. External data is
// read and inlined; m is not changed. Subgraphs are refused. Run the copy with graph
// optimization "basic": onnxruntime's extended fusions (FusedMatMul, QuickGelu) have float32
// kernels only.
func ToFloat64(m *onnx.Model) (*onnx.Model, error) {
	if m == nil || m.Graph() == nil {
		return nil, fmt.Errorf("autodiff: to float64: no model graph")
	}
	mp := proto.Clone(m.Proto).(*onnxpb.ModelProto)
	g := mp.GetGraph()
	for i, t := range g.Initializer {
		if onnx.DataType(t) != onnxpb.TensorProto_FLOAT {
			continue
		}
		v, err := m.Float32s(m.Graph().Initializer[i])
		if err != nil {
			return nil, fmt.Errorf("autodiff: to float64: %w", err)
		}
		g.Initializer[i] = doubleTensor(t.GetName(), t.GetDims(), v)
	}
	for _, n := range g.Node {
		if controlFlow(n) {
			return nil, fmt.Errorf("autodiff: to float64: node %q (%s) has a subgraph", n.GetName(), n.GetOpType())
		}
		for k, a := range n.Attribute {
			switch {
			case n.GetOpType() == "Cast" && a.GetName() == "to" && a.GetI() == int64(onnxpb.TensorProto_FLOAT):
				a.I = proto.Int64(int64(onnxpb.TensorProto_DOUBLE))
			case a.GetT() != nil && onnx.DataType(a.GetT()) == onnxpb.TensorProto_FLOAT:
				v, err := (&onnx.Model{Dir: m.Dir}).Float32s(a.GetT())
				if err != nil {
					return nil, fmt.Errorf("autodiff: to float64: node %q: %w", n.GetName(), err)
				}
				a.T = doubleTensor(a.GetT().GetName(), a.GetT().GetDims(), v)
			case n.GetOpType() == "Constant" && a.GetName() == "value_float":
				n.Attribute[k] = onnx.AttrTensor("value", doubleTensor("", nil, []float32{a.GetF()}))
			case n.GetOpType() == "Constant" && a.GetName() == "value_floats":
				fs := a.GetFloats()
				n.Attribute[k] = onnx.AttrTensor("value", doubleTensor("", []int64{int64(len(fs))}, fs))
			}
		}
	}
	for _, vs := range [][]*onnxpb.ValueInfoProto{g.Input, g.Output, g.ValueInfo} {
		for _, v := range vs {
			if tt := v.GetType().GetTensorType(); tt != nil && tt.GetElemType() == int32(onnxpb.TensorProto_FLOAT) {
				tt.ElemType = proto.Int32(int32(onnxpb.TensorProto_DOUBLE))
			}
		}
	}
	return &onnx.Model{Proto: mp, Dir: m.Dir, Path: m.Path}, nil
}

func doubleTensor(name string, dims []int64, v []float32) *onnxpb.TensorProto {
	raw := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(raw[8*i:], math.Float64bits(float64(x)))
	}
	return onnx.NewTensor(name, onnxpb.TensorProto_DOUBLE, dims, raw)
}
