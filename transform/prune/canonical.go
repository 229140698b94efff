package prune

import (
	"fmt"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"google.golang.org/protobuf/proto"
)

// Canonical is a stage graph rewritten so that one onnxruntime session can serve every stage
// of the same shape: tensors and nodes are renamed by position, and the float initializers of
// the blocks the stage runs become graph inputs ("weights"), fed per stage. In a transformer
// whose decoder blocks are alike, stages 2…L−1 then have byte-identical graphs (Key), so
// calibration creates three sessions per run (stage 0; stage 1, which also recomputes the
// embedding for block 0; the rest) instead of one per block;
// a model whose blocks differ simply gets a new session where the key changes.
type Canonical struct {
	Model *onnx.Model
	// Key is the canonical graph's serialization (weights excluded): equal keys, same session.
	Key string
	// Name maps a stage-graph tensor (model input, cut tensor, output) to its canonical name.
	Name map[string]string
	// Weights are the canonical weight inputs and the initializers that feed them.
	Weights []WeightInput
}

// WeightInput is one weight the canonical graph takes as an input.
type WeightInput struct {
	Name   string
	Tensor *onnxpb.TensorProto // the stage graph's initializer (the model's, or a pruned copy)
}

// Canonical rewrites stage graph sg (built by p.StageGraph) into its canonical form. The model
// inputs keep their names (callers feed them by name); sg and the model are not modified.
func (p *Plan) Canonical(sg *StageGraph) (*Canonical, error) {
	g := sg.Model.Graph()
	c := &Canonical{Name: map[string]string{}}
	inits := map[string]*onnxpb.TensorProto{}
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = t
	}
	modelInput := map[string]bool{}
	for _, in := range p.m.Graph().GetInput() {
		modelInput[in.GetName()] = true
	}
	// A weight is a float initializer read by a node of a block (stage ≥ 0); tables of the
	// free part (embeddings, position tables, masks) and integer constants stay initializers.
	weight := map[string]bool{}
	for _, n := range g.GetNode() {
		if st, ok := p.stage[n]; !ok || st < 0 {
			continue
		}
		for _, in := range n.GetInput() {
			if t, ok := inits[in]; ok && isFloatTensor(t) {
				weight[in] = true
			}
		}
	}
	counter := map[string]int{}
	rename := func(name, kind string) string {
		if name == "" {
			return ""
		}
		if r, ok := c.Name[name]; ok {
			return r
		}
		r := fmt.Sprintf("%s_%d", kind, counter[kind])
		counter[kind]++
		c.Name[name] = r
		return r
	}
	out := &onnxpb.GraphProto{Name: proto.String("shears_calibration_stage")}
	for _, in := range g.GetInput() {
		vi := proto.Clone(in).(*onnxpb.ValueInfoProto)
		if modelInput[in.GetName()] {
			c.Name[in.GetName()] = in.GetName()
		} else {
			vi.Name = proto.String(rename(in.GetName(), "cut"))
		}
		out.Input = append(out.Input, vi)
	}
	for k, n := range g.GetNode() {
		cn := &onnxpb.NodeProto{Name: proto.String(fmt.Sprintf("node_%d", k)), OpType: n.OpType, Domain: n.Domain, Attribute: n.GetAttribute()}
		for _, in := range n.GetInput() {
			t, isInit := inits[in]
			switch {
			case in == "" || c.Name[in] != "":
			case isInit && weight[in]:
				name := rename(in, "weight")
				c.Weights = append(c.Weights, WeightInput{Name: name, Tensor: t})
				out.Input = append(out.Input, &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{
					Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{ElemType: t.DataType, Shape: shapeOf(t.GetDims())}}}})
			case isInit:
				ct := &onnxpb.TensorProto{}
				shallowCopy(ct, t)
				ct.Name = proto.String(rename(in, "const"))
				out.Initializer = append(out.Initializer, ct)
			default:
				return nil, fmt.Errorf("canonical stage graph: node %s reads %s, which nothing produces", n.GetName(), in)
			}
			cn.Input = append(cn.Input, c.Name[in])
		}
		for _, o := range n.GetOutput() {
			cn.Output = append(cn.Output, rename(o, "t"))
		}
		out.Node = append(out.Node, cn)
	}
	for _, o := range g.GetOutput() {
		vi := proto.Clone(o).(*onnxpb.ValueInfoProto)
		r, ok := c.Name[o.GetName()]
		if !ok {
			return nil, fmt.Errorf("canonical stage graph: output %s is not produced", o.GetName())
		}
		vi.Name = proto.String(r)
		out.Output = append(out.Output, vi)
	}
	mp := &onnxpb.ModelProto{IrVersion: sg.Model.Proto.IrVersion, OpsetImport: sg.Model.Proto.GetOpsetImport(), Graph: out,
		ProducerName: proto.String("shears")}
	c.Model = &onnx.Model{Proto: mp, Dir: sg.Model.Dir}
	key, err := c.Model.Marshal()
	if err != nil {
		return nil, err
	}
	c.Key = string(key)
	return c, nil
}

func isFloatTensor(t *onnxpb.TensorProto) bool {
	switch onnxpb.TensorProto_DataType(t.GetDataType()) {
	case onnxpb.TensorProto_FLOAT, onnxpb.TensorProto_FLOAT16, onnxpb.TensorProto_BFLOAT16, onnxpb.TensorProto_DOUBLE:
		return len(t.GetDims()) > 0
	}
	return false
}

func shapeOf(dims []int64) *onnxpb.TensorShapeProto {
	s := &onnxpb.TensorShapeProto{}
	for _, d := range dims {
		s.Dim = append(s.Dim, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}})
	}
	return s
}

// shallowCopy copies t's fields into dst without copying the data they point to.
func shallowCopy(dst, t *onnxpb.TensorProto) {
	dst.Dims, dst.DataType, dst.Segment = t.Dims, t.DataType, t.Segment
	dst.FloatData, dst.Int32Data, dst.StringData, dst.Int64Data = t.FloatData, t.Int32Data, t.StringData, t.Int64Data
	dst.RawData, dst.DoubleData, dst.Uint64Data = t.RawData, t.DoubleData, t.Uint64Data
	dst.DocString, dst.ExternalData, dst.DataLocation = t.DocString, t.ExternalData, t.DataLocation
}
