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
// read and inlined; m is not changed. Subgraphs are refused. com.microsoft.MatMulNBits has
// float32 kernels only: it keeps computing in float32 (its float initializers stay float32,
// its activation input is cast down, its output cast up), which costs float32 rounding. (A QA
// super-network's kept linears dequantize with standard operators, quant.KeepQuantized, and
// compute in float64 like the rest.) Run the copy with graph optimization "basic":
// onnxruntime's extended fusions (FusedMatMul, QuickGelu) have float32 kernels only.
func ToFloat64(m *onnx.Model) (*onnx.Model, error) {
	if m == nil || m.Graph() == nil {
		return nil, fmt.Errorf("autodiff: to float64: no model graph")
	}
	mp := proto.Clone(m.Proto).(*onnxpb.ModelProto)
	g := mp.GetGraph()
	keep32 := nbitsOnly(g)
	for i, t := range g.Initializer {
		if onnx.DataType(t) != onnxpb.TensorProto_FLOAT || keep32[t.GetName()] {
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
	if err := nbitsInFloat32(mp); err != nil {
		return nil, err
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

// isNBits is com.microsoft.MatMulNBits.
func isNBits(n *onnxpb.NodeProto) bool {
	return n.GetOpType() == "MatMulNBits" && n.GetDomain() == "com.microsoft"
}

// nbitsOnly is the set of tensors read by MatMulNBits nodes at their weight inputs (B,
// scales, zero points, bias) and by nothing else: they stay float32.
func nbitsOnly(g *onnxpb.GraphProto) map[string]bool {
	out := map[string]bool{}
	other := map[string]bool{}
	for _, n := range g.GetNode() {
		for k, in := range n.GetInput() {
			if isNBits(n) && k > 0 {
				out[in] = true
			} else {
				other[in] = true
			}
		}
	}
	for t := range other {
		delete(out, t)
	}
	return out
}

// nbitsInFloat32 casts each MatMulNBits node's activation input down to float32 and its output
// back up to float64 (the float64 graph's type).
func nbitsInFloat32(mp *onnxpb.ModelProto) error {
	g := mp.GetGraph()
	ix := onnx.NewIndex(g)
	var nodes []*onnxpb.NodeProto
	for _, n := range g.GetNode() {
		if !isNBits(n) {
			nodes = append(nodes, n)
			continue
		}
		if len(n.GetInput()) > 5 && n.GetInput()[5] != "" {
			return fmt.Errorf("autodiff: to float64: %s %q has a bias; not supported", n.GetOpType(), n.GetName())
		}
		a, y := n.GetInput()[0], n.GetOutput()[0]
		a32, y32 := ix.UniqueName(a+"/float32"), ix.UniqueName(y+"/float32")
		nodes = append(nodes,
			&onnxpb.NodeProto{Name: proto.String(ix.UniqueName(n.GetName() + "/ToFloat32")), OpType: proto.String("Cast"),
				Input: []string{a}, Output: []string{a32}, Attribute: []*onnxpb.AttributeProto{onnx.AttrInt("to", int64(onnxpb.TensorProto_FLOAT))}},
			n,
			&onnxpb.NodeProto{Name: proto.String(ix.UniqueName(n.GetName() + "/ToFloat64")), OpType: proto.String("Cast"),
				Input: []string{y32}, Output: []string{y}, Attribute: []*onnxpb.AttributeProto{onnx.AttrInt("to", int64(onnxpb.TensorProto_DOUBLE))}})
		n.Input[0], n.Output[0] = a32, y32
	}
	g.Node = nodes
	return nil
}
