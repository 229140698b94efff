package onnx

import (
	"fmt"
	"strconv"

	"github.com/shears-ml/shears/onnx/onnxpb"
	"google.golang.org/protobuf/proto"
)

// Builder appends nodes, initializers, inputs and outputs to a graph. Importers use it to
// write whole models and rewrites (autodiff, LoRA, taps) to extend existing ones.
//
// It keeps the first error and turns every later call into a no-op that returns "", so a
// sequence of calls is checked once, with Err or Model, at the end.
//
// Names: a node called N has its outputs called N_output_0, N_output_1, ...; node and
// initializer names that are already taken get a numeric suffix (N_1, N_2, ...), so new
// names never collide with anything in the graph. Graph input and output names are part of a
// model's interface and are never renamed: a clash is an error.
type Builder struct {
	model *Model
	g     *onnxpb.GraphProto
	used  map[string]bool // every node and tensor name in the graph
	seq   map[string]int  // next suffix to try per requested name
	err   error
}

// DefaultIRVersion is the IR version of models made by NewBuilder: IR 8 is what
// opset 17 exporters (torch 1.13+) write and every onnxruntime since 1.10 reads.
const DefaultIRVersion = 8

// NewBuilder starts an empty model (IR 8) importing the default ai.onnx domain at opset.
func NewBuilder(graphName string, opset int64) *Builder {
	mp := &onnxpb.ModelProto{
		IrVersion:    proto.Int64(DefaultIRVersion),
		ProducerName: proto.String("shears"),
		OpsetImport:  []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(opset)}},
		Graph:        &onnxpb.GraphProto{Name: proto.String(graphName)},
	}
	return &Builder{model: &Model{Proto: mp}, g: mp.Graph, used: map[string]bool{}, seq: map[string]int{}}
}

// BuilderFor appends to m's main graph in place. All names already in the graph (nodes,
// node outputs, inputs, outputs, initializers, value_info) are reserved.
func BuilderFor(m *Model) *Builder {
	b := &Builder{model: m, used: map[string]bool{}, seq: map[string]int{}}
	if m == nil || m.Proto == nil {
		b.err = fmt.Errorf("onnx builder: nil model")
		return b
	}
	if m.Proto.Graph == nil {
		m.Proto.Graph = &onnxpb.GraphProto{}
	}
	b.g = m.Proto.Graph
	for _, n := range b.g.Node {
		b.used[n.GetName()] = true
		for _, o := range n.Output {
			b.used[o] = true
		}
		for _, in := range n.Input {
			b.used[in] = true
		}
	}
	for _, t := range b.g.Initializer {
		b.used[t.GetName()] = true
	}
	for _, vs := range [][]*onnxpb.ValueInfoProto{b.g.Input, b.g.Output, b.g.ValueInfo} {
		for _, v := range vs {
			b.used[v.GetName()] = true
		}
	}
	delete(b.used, "") // "" is the ONNX "absent optional input", never a real name
	return b
}

// Err returns the first error met, or nil.
func (b *Builder) Err() error { return b.err }

// Graph returns the graph being built (for reading; edit it through the builder).
func (b *Builder) Graph() *onnxpb.GraphProto { return b.g }

// Model returns the model built so far, or the first error met.
func (b *Builder) Model() (*Model, error) {
	if b.err != nil {
		return nil, b.err
	}
	return b.model, nil
}

// Has reports whether name is already a node or tensor name in the graph.
func (b *Builder) Has(name string) bool { return b.used[name] }

func (b *Builder) fail(format string, args ...any) {
	if b.err == nil {
		b.err = fmt.Errorf("onnx builder: "+format, args...)
	}
}

// unique returns name, or name_K for the smallest free K, and reserves it.
func (b *Builder) unique(name string) string {
	if !b.used[name] {
		b.used[name] = true
		return name
	}
	for k := b.seq[name] + 1; ; k++ {
		c := name + "_" + strconv.Itoa(k)
		if !b.used[c] {
			b.seq[name] = k
			b.used[c] = true
			return c
		}
	}
}

// tensorValueInfo makes a tensor ValueInfo; dims are int/int64 (fixed) or string (symbolic).
func tensorValueInfo(name string, dt onnxpb.TensorProto_DataType, dims []any) (*onnxpb.ValueInfoProto, error) {
	shape := &onnxpb.TensorShapeProto{Dim: []*onnxpb.TensorShapeProto_Dimension{}}
	for i, d := range dims {
		var dim *onnxpb.TensorShapeProto_Dimension
		switch v := d.(type) {
		case int:
			if v < 0 {
				return nil, fmt.Errorf("%q: dim %d is negative (%d)", name, i, v)
			}
			dim = &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: int64(v)}}
		case int64:
			if v < 0 {
				return nil, fmt.Errorf("%q: dim %d is negative (%d)", name, i, v)
			}
			dim = &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: v}}
		case string:
			dim = &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: v}}
		default:
			return nil, fmt.Errorf("%q: dim %d has type %T, want int, int64 or string", name, i, d)
		}
		shape.Dim = append(shape.Dim, dim)
	}
	tt := &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(dt)), Shape: shape}
	return &onnxpb.ValueInfoProto{
		Name: proto.String(name),
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: tt}},
	}, nil
}

// Input declares a graph input. dims are int/int64 for fixed sizes and strings for
// symbolic ones ("batch"). The name is kept exactly; a clash is an error.
func (b *Builder) Input(name string, dt onnxpb.TensorProto_DataType, dims ...any) string {
	if b.err != nil {
		return ""
	}
	if name == "" || b.used[name] {
		b.fail("input %q: name empty or already used", name)
		return ""
	}
	vi, err := tensorValueInfo(name, dt, dims)
	if err != nil {
		b.fail("input %v", err)
		return ""
	}
	b.used[name] = true
	b.g.Input = append(b.g.Input, vi)
	return name
}

// Output declares the existing tensor name as a graph output with the given type and shape.
func (b *Builder) Output(name string, dt onnxpb.TensorProto_DataType, dims ...any) string {
	if b.err != nil {
		return ""
	}
	if !b.used[name] {
		b.fail("output %q: no such tensor in the graph", name)
		return ""
	}
	for _, o := range b.g.Output {
		if o.GetName() == name {
			b.fail("output %q: declared twice", name)
			return ""
		}
	}
	vi, err := tensorValueInfo(name, dt, dims)
	if err != nil {
		b.fail("output %v", err)
		return ""
	}
	b.g.Output = append(b.g.Output, vi)
	return name
}

// Initializer adds t (kept, not copied) and returns its name, suffixed when taken.
func (b *Builder) Initializer(t *onnxpb.TensorProto) string {
	if b.err != nil {
		return ""
	}
	if t == nil || t.GetName() == "" {
		b.fail("initializer without a name")
		return ""
	}
	name := b.unique(t.GetName())
	t.Name = proto.String(name)
	b.g.Initializer = append(b.g.Initializer, t)
	return name
}

// Const adds t as an initializer called name (suffixed when taken) and returns the name.
func (b *Builder) Const(name string, t *onnxpb.TensorProto) string {
	if b.err != nil {
		return ""
	}
	if t == nil {
		b.fail("constant %q: nil tensor", name)
		return ""
	}
	t.Name = proto.String(name)
	return b.Initializer(t)
}

// Op adds a node with one output, <nodeName>_output_0, and returns that output's name.
func (b *Builder) Op(opType, nodeName string, inputs []string, attrs ...*onnxpb.AttributeProto) string {
	out := b.OpN(opType, nodeName, inputs, 1, attrs...)
	if out == nil {
		return ""
	}
	return out[0]
}

// OpN adds a node with nOut outputs named <nodeName>_output_<k> and returns them.
// An empty nodeName becomes /<opType>.
func (b *Builder) OpN(opType, nodeName string, inputs []string, nOut int, attrs ...*onnxpb.AttributeProto) []string {
	if b.err != nil {
		return nil
	}
	if nOut < 1 {
		b.fail("node %q: %d outputs", nodeName, nOut)
		return nil
	}
	if nodeName == "" {
		nodeName = "/" + opType
	}
	// Pick a node name whose output names are free too.
	name := nodeName
	for k := b.seq[nodeName]; ; k++ {
		if k > 0 {
			name = nodeName + "_" + strconv.Itoa(k)
		}
		if !b.used[name] && !b.anyUsed(name, nOut) {
			b.seq[nodeName] = k
			break
		}
	}
	outs := make([]string, nOut)
	for i := range outs {
		outs[i] = name + "_output_" + strconv.Itoa(i)
	}
	return b.add(opType, name, inputs, outs, attrs)
}

func (b *Builder) anyUsed(node string, n int) bool {
	for i := 0; i < n; i++ {
		if b.used[node+"_output_"+strconv.Itoa(i)] {
			return true
		}
	}
	return false
}

// OpOut adds a node whose outputs have the given names (kept exactly; a clash is an
// error), e.g. the final MatMul writing "logits". The node name is suffixed when taken.
func (b *Builder) OpOut(opType, nodeName string, inputs, outputs []string, attrs ...*onnxpb.AttributeProto) []string {
	if b.err != nil {
		return nil
	}
	if len(outputs) == 0 {
		b.fail("node %q: no outputs", nodeName)
		return nil
	}
	for _, o := range outputs {
		if o == "" || b.used[o] {
			b.fail("node %q: output name %q empty or already used", nodeName, o)
			return nil
		}
	}
	if nodeName == "" {
		nodeName = "/" + opType
	}
	name := b.unique(nodeName)
	return b.add(opType, name, inputs, outputs, attrs)
}

func (b *Builder) add(opType, name string, inputs, outs []string, attrs []*onnxpb.AttributeProto) []string {
	if opType == "" {
		b.fail("node %q: empty op type", name)
		return nil
	}
	for i, in := range inputs {
		if in != "" && !b.used[in] {
			b.fail("node %q (%s): input %d %q is not produced by anything in the graph", name, opType, i, in)
			return nil
		}
	}
	for i, a := range attrs {
		if a == nil || a.GetName() == "" {
			b.fail("node %q (%s): attribute %d is nil or unnamed", name, opType, i)
			return nil
		}
	}
	b.used[name] = true
	for _, o := range outs {
		b.used[o] = true
	}
	b.g.Node = append(b.g.Node, &onnxpb.NodeProto{
		Name:      proto.String(name),
		OpType:    proto.String(opType),
		Input:     append([]string(nil), inputs...),
		Output:    outs,
		Attribute: attrs,
	})
	return outs
}

func attr(name string, t onnxpb.AttributeProto_AttributeType) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: t.Enum()}
}

// AttrInt makes an INT attribute.
func AttrInt(name string, v int64) *onnxpb.AttributeProto {
	a := attr(name, onnxpb.AttributeProto_INT)
	a.I = proto.Int64(v)
	return a
}

// AttrInts makes an INTS attribute.
func AttrInts(name string, v ...int64) *onnxpb.AttributeProto {
	a := attr(name, onnxpb.AttributeProto_INTS)
	a.Ints = append([]int64{}, v...)
	return a
}

// AttrFloat makes a FLOAT attribute.
func AttrFloat(name string, v float32) *onnxpb.AttributeProto {
	a := attr(name, onnxpb.AttributeProto_FLOAT)
	a.F = proto.Float32(v)
	return a
}

// AttrFloats makes a FLOATS attribute.
func AttrFloats(name string, v ...float32) *onnxpb.AttributeProto {
	a := attr(name, onnxpb.AttributeProto_FLOATS)
	a.Floats = append([]float32{}, v...)
	return a
}

// AttrString makes a STRING attribute.
func AttrString(name, v string) *onnxpb.AttributeProto {
	a := attr(name, onnxpb.AttributeProto_STRING)
	a.S = []byte(v)
	return a
}

// AttrTensor makes a TENSOR attribute (e.g. ConstantOfShape's value).
func AttrTensor(name string, t *onnxpb.TensorProto) *onnxpb.AttributeProto {
	a := attr(name, onnxpb.AttributeProto_TENSOR)
	a.T = t
	return a
}
