package testkit

import (
	"fmt"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"google.golang.org/protobuf/proto"
)

// DynamoOpset is the ai.onnx opset Dynamo writes (torch.onnx.export(..., dynamo=True) starts at 18).
const DynamoOpset = 18

// Dynamo returns a copy of m renamed the way torch.onnx.export(..., dynamo=True) names a graph,
// the fixture for "graphs as people have them" (torch 1.13 cannot write these itself):
//
//   - every node is node_<Op>_<n> and every intermediate value val_<n>; the graph's inputs and
//     outputs keep their names;
//   - with keepWeights, linear weights keep their parameter names (model.layers.0.self_attn.
//     q_proj.weight), stored [out, in] as PyTorch holds them and read through a Transpose node,
//     and other initializers keep theirs; without it every initializer is an anonymous val_<n>
//     too, so only the graph's structure can say what a layer is;
//   - the opset is 18: Reduce* take their axes as an input and Split says num_outputs.
//
// Weights are read into the copy (inline), so m should be small.
func Dynamo(m *onnx.Model, keepWeights bool) (*onnx.Model, error) {
	src := m.Graph()
	g := &onnxpb.GraphProto{Name: proto.String("main_graph")}
	n := 0
	next := func() int { n++; return n }
	rename := map[string]string{}
	for _, v := range src.GetInput() {
		rename[v.GetName()] = v.GetName()
		g.Input = append(g.Input, proto.Clone(v).(*onnxpb.ValueInfoProto))
	}
	for _, v := range src.GetOutput() {
		rename[v.GetName()] = v.GetName()
		g.Output = append(g.Output, proto.Clone(v).(*onnxpb.ValueInfoProto))
	}
	// Which initializers are linear weights (MatMul's B).
	linearW := map[string]bool{}
	for _, nd := range src.GetNode() {
		if nd.GetOpType() == "MatMul" && len(nd.GetInput()) == 2 {
			linearW[nd.GetInput()[1]] = true
		}
	}
	transposed := map[string]string{} // weight → the Transpose output that replaces it
	var pre []*onnxpb.NodeProto
	for _, t := range src.GetInitializer() {
		raw, err := m.RawData(t)
		if err != nil {
			return nil, fmt.Errorf("dynamo fixture: %w", err)
		}
		dt := onnxpb.TensorProto_DataType(t.GetDataType())
		dims := onnx.Dims(t)
		name := fmt.Sprintf("val_%d", next())
		if keepWeights {
			name = t.GetName()
		}
		rename[t.GetName()] = name
		if keepWeights && linearW[t.GetName()] && len(dims) == 2 {
			raw = transpose(raw, dims[0], dims[1], onnx.ElemSize(dt))
			dims = []int64{dims[1], dims[0]}
			out := fmt.Sprintf("val_%d", next())
			pre = append(pre, &onnxpb.NodeProto{
				Name: proto.String(fmt.Sprintf("node_Transpose_%d", next())), OpType: proto.String("Transpose"),
				Input: []string{name}, Output: []string{out},
				Attribute: []*onnxpb.AttributeProto{onnx.AttrInts("perm", 1, 0)},
			})
			transposed[t.GetName()] = out
		}
		g.Initializer = append(g.Initializer, onnx.NewTensor(name, dt, dims, raw))
	}
	g.Node = append(g.Node, pre...)
	name := func(x string) string {
		if x == "" {
			return ""
		}
		if r, ok := rename[x]; ok {
			return r
		}
		r := fmt.Sprintf("val_%d", next())
		rename[x] = r
		return r
	}
	for _, nd := range src.GetNode() {
		c := proto.Clone(nd).(*onnxpb.NodeProto)
		c.Name = proto.String(fmt.Sprintf("node_%s_%d", nd.GetOpType(), next()))
		for i, x := range c.Input {
			if tr, ok := transposed[x]; ok && c.GetOpType() == "MatMul" && i == 1 {
				c.Input[i] = tr
				continue
			}
			c.Input[i] = name(x)
		}
		for i, x := range c.Output {
			c.Output[i] = name(x)
		}
		if c.GetDomain() == "" {
			extra, err := toOpset18(c, func(v []int64) string {
				t := onnx.Int64Tensor(fmt.Sprintf("val_%d", next()), []int64{int64(len(v))}, v)
				g.Initializer = append(g.Initializer, t)
				return t.GetName()
			})
			if err != nil {
				return nil, fmt.Errorf("dynamo fixture: node %s: %w", nd.GetName(), err)
			}
			c.Input = append(c.Input, extra...)
		}
		g.Node = append(g.Node, c)
	}
	for _, v := range src.GetValueInfo() {
		if r, ok := rename[v.GetName()]; ok {
			c := proto.Clone(v).(*onnxpb.ValueInfoProto)
			c.Name = proto.String(r)
			g.ValueInfo = append(g.ValueInfo, c)
		}
	}
	mp := proto.Clone(m.Proto).(*onnxpb.ModelProto)
	mp.Graph = g
	mp.ProducerName = proto.String("pytorch")
	mp.ProducerVersion = proto.String("2.5.0 (dynamo-style fixture)")
	for _, o := range mp.OpsetImport {
		if o.GetDomain() == "" || o.GetDomain() == "ai.onnx" {
			o.Version = proto.Int64(DynamoOpset)
		}
	}
	if mp.GetIrVersion() < 8 {
		mp.IrVersion = proto.Int64(8)
	}
	raw, err := proto.Marshal(mp)
	if err != nil {
		return nil, fmt.Errorf("dynamo fixture: %w", err)
	}
	return onnx.LoadBytes(raw, "")
}

// toOpset18 rewrites what changed for the graphs' operators between opsets 13–17 and 18: the
// Reduce operators other than ReduceSum take axes as an input (returned, to append), and a
// Split without sizes must say num_outputs.
func toOpset18(n *onnxpb.NodeProto, constant func([]int64) string) ([]string, error) {
	switch n.GetOpType() {
	case "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
		"ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare":
		var keep []*onnxpb.AttributeProto
		var axes []int64
		found := false
		for _, a := range n.GetAttribute() {
			if a.GetName() == "axes" {
				axes, found = a.GetInts(), true
				continue
			}
			keep = append(keep, a)
		}
		n.Attribute = keep
		if found {
			return []string{constant(axes)}, nil
		}
	case "Split":
		if len(n.GetInput()) < 2 || n.GetInput()[1] == "" {
			n.Attribute = append(n.Attribute, onnx.AttrInt("num_outputs", int64(len(n.GetOutput()))))
		}
	case "Pad", "Resize", "ScatterElements", "ScatterND", "Col2Im", "BitwiseNot":
		return nil, fmt.Errorf("%s is not converted to opset 18 by this fixture", n.GetOpType())
	}
	return nil, nil
}

// transpose returns the [cols, rows] transpose of a row-major [rows, cols] matrix of size-byte
// elements.
func transpose(raw []byte, rows, cols int64, size int) []byte {
	out := make([]byte, len(raw))
	for r := int64(0); r < rows; r++ {
		for c := int64(0); c < cols; c++ {
			copy(out[(c*rows+r)*int64(size):(c*rows+r+1)*int64(size)], raw[(r*cols+c)*int64(size):(r*cols+c+1)*int64(size)])
		}
	}
	return out
}
