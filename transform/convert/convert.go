package convert

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/transform/layers"
)

// Compute says which type the converted graph computes in.
type Compute string

const (
	// ComputeFP32 stores weights in the low-precision type and computes in float32.
	ComputeFP32 Compute = "fp32"
	// ComputeNative computes the whole float graph in the low-precision type.
	ComputeNative Compute = "native"
)

// Options configure a conversion.
type Options struct {
	DType   onnxpb.TensorProto_DataType // FLOAT16 or BFLOAT16
	Compute Compute                     // "" means ComputeFP32
}

// ParseDType reads a --dtype value: fp16/float16/half or bf16/bfloat16.
func ParseDType(s string) (onnxpb.TensorProto_DataType, error) {
	switch strings.ToLower(s) {
	case "fp16", "float16", "half", "f16":
		return onnxpb.TensorProto_FLOAT16, nil
	case "bf16", "bfloat16":
		return onnxpb.TensorProto_BFLOAT16, nil
	}
	return 0, fmt.Errorf("dtype %q: want fp16 or bf16", s)
}

// DTypeName is the short name of a low-precision type ("fp16", "bf16").
func DTypeName(dt onnxpb.TensorProto_DataType) string {
	switch dt {
	case onnxpb.TensorProto_FLOAT16:
		return "fp16"
	case onnxpb.TensorProto_BFLOAT16:
		return "bf16"
	case onnxpb.TensorProto_FLOAT:
		return "fp32"
	}
	return strings.ToLower(dt.String())
}

func (o Options) check() error {
	if o.DType != onnxpb.TensorProto_FLOAT16 && o.DType != onnxpb.TensorProto_BFLOAT16 {
		return fmt.Errorf("convert: target type %s: want FLOAT16 or BFLOAT16", o.DType)
	}
	if o.Compute != "" && o.Compute != ComputeFP32 && o.Compute != ComputeNative {
		return fmt.Errorf("convert: compute %q: want fp32 or native", o.Compute)
	}
	return nil
}

func (o Options) compute() Compute {
	if o.Compute == "" {
		return ComputeFP32
	}
	return o.Compute
}

// Tensor is one initializer the plan stores in the target type.
type Tensor struct {
	Name string
	Dims []int64
	Role string // "linear", "embedding", or "other" (native mode: every float tensor)
}

// Plan is what a conversion will do; print it with String.
type Plan struct {
	Options
	Tensors []Tensor // initializers stored in DType, in graph order
	// Kept are the float32 initializers left as they are (weight-only mode).
	Kept []string
	// Gathers are the embedding Gather nodes whose output gets a Cast (weight-only mode).
	Gathers []string
	// Inputs and Outputs are the float32 graph inputs cast in and outputs cast out (native mode).
	Inputs, Outputs []string
	// BytesBefore and BytesAfter are the converted tensors' sizes.
	BytesBefore, BytesAfter int64

	convert map[string]bool
}

// NewPlan decides which initializers to convert in m; it changes nothing.
func NewPlan(m *onnx.Model, o Options) (*Plan, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	g := m.Graph()
	if g == nil {
		return nil, fmt.Errorf("convert %s: no graph", m.Path)
	}
	if n := onnx.SubgraphNode(g); n != nil {
		return nil, fmt.Errorf("convert %s: node %q (%s) holds subgraphs (a merged decoder?), which this pass cannot rewrite; convert the with-past model (model.onnx) instead", m.Path, n.GetName(), n.GetOpType())
	}
	p := &Plan{Options: o, convert: map[string]bool{}}
	p.Compute = o.compute()
	ix := onnx.NewIndex(g)
	role := map[string]string{}
	if p.Compute == ComputeNative {
		for _, n := range g.GetNode() {
			for _, a := range n.GetAttribute() {
				if a.GetG() != nil || len(a.GetGraphs()) > 0 {
					return nil, fmt.Errorf("convert %s: node %q (%s) has a subgraph; native %s compute does not convert subgraphs",
						m.Path, n.GetName(), n.GetOpType(), DTypeName(o.DType))
				}
			}
		}
		for _, t := range g.GetInitializer() {
			if onnx.DataType(t) == onnxpb.TensorProto_FLOAT && !onlyExponent(ix, t.GetName()) {
				role[t.GetName()] = "other"
			}
		}
		for _, in := range g.GetInput() {
			if _, isInit := ix.Initializers[in.GetName()]; !isInit && elemType(in) == onnxpb.TensorProto_FLOAT {
				p.Inputs = append(p.Inputs, in.GetName())
			}
		}
		for _, out := range g.GetOutput() {
			if elemType(out) == onnxpb.TensorProto_FLOAT {
				if _, isInit := ix.Initializers[out.GetName()]; isInit {
					return nil, fmt.Errorf("convert %s: output %q is an initializer", m.Path, out.GetName())
				}
				p.Outputs = append(p.Outputs, out.GetName())
			}
		}
	}
	ls, err := layers.Find(m)
	if err != nil {
		return nil, fmt.Errorf("convert %s: %w", m.Path, err)
	}
	for _, l := range ls {
		role[l.Weight] = "linear"
	}
	for _, e := range layers.Embeddings(g) {
		t := ix.Initializers[e.Table]
		role[t.GetName()] = "embedding"
		if p.Compute == ComputeFP32 && onnx.DataType(t) == onnxpb.TensorProto_FLOAT {
			p.Gathers = append(p.Gathers, e.Node)
		}
	}
	es := int64(onnx.ElemSize(o.DType))
	for _, t := range g.GetInitializer() {
		r, ok := role[t.GetName()]
		if !ok || onnx.DataType(t) != onnxpb.TensorProto_FLOAT {
			if onnx.DataType(t) == onnxpb.TensorProto_FLOAT {
				p.Kept = append(p.Kept, t.GetName())
			}
			continue
		}
		n := onnx.NumElements(t.GetDims())
		if n < 0 {
			return nil, fmt.Errorf("convert %s: initializer %q has invalid dims %v", m.Path, t.GetName(), t.GetDims())
		}
		p.Tensors = append(p.Tensors, Tensor{Name: t.GetName(), Dims: onnx.Dims(t), Role: r})
		p.convert[t.GetName()] = true
		p.BytesBefore += 4 * n
		p.BytesAfter += es * n
	}
	for _, name := range p.Gathers {
		if ix.Nodes[name] == nil {
			return nil, fmt.Errorf("convert %s: an embedding Gather has no name; name every node first", m.Path)
		}
	}
	return p, nil
}

// onlyExponent reports whether every reader of name uses it as Pow's exponent, which may keep
// its own type: a float32 exponent is exact, and onnxruntime's CPU fusions (SimplifiedLayerNorm)
// fail on a float16 exponent that its fp16 fallback casts (ORT 1.24, optimization level all).
func onlyExponent(ix *onnx.Index, name string) bool {
	cs := ix.Consumers[name]
	for _, n := range cs {
		if n.GetOpType() != "Pow" || len(n.GetInput()) != 2 || n.GetInput()[0] == name || n.GetInput()[1] != name {
			return false
		}
	}
	return len(cs) > 0
}

func elemType(v *onnxpb.ValueInfoProto) onnxpb.TensorProto_DataType {
	return onnxpb.TensorProto_DataType(v.GetType().GetTensorType().GetElemType())
}

// Converts reports whether the plan stores initializer name in the target type.
func (p *Plan) Converts(name string) bool { return p.convert[name] }

// String prints the plan: one line per converted tensor, then the casts and the sizes.
func (p *Plan) String() string {
	var b strings.Builder
	mode := "weight-only, compute float32"
	if p.Compute == ComputeNative {
		mode = "native, compute " + DTypeName(p.DType)
	}
	fmt.Fprintf(&b, "convert to %s (%s)\n", DTypeName(p.DType), mode)
	for _, t := range p.Tensors {
		fmt.Fprintf(&b, "  %s %-9s %s %v\n", DTypeName(p.DType), t.Role, t.Name, t.Dims)
	}
	for _, n := range p.Kept {
		fmt.Fprintf(&b, "  fp32 kept      %s\n", n)
	}
	for _, n := range p.Gathers {
		fmt.Fprintf(&b, "  cast after gather %s\n", n)
	}
	for _, n := range p.Inputs {
		fmt.Fprintf(&b, "  cast input  %s\n", n)
	}
	for _, n := range p.Outputs {
		fmt.Fprintf(&b, "  cast output %s\n", n)
	}
	fmt.Fprintf(&b, "%d tensors: %d → %d bytes\n", len(p.Tensors), p.BytesBefore, p.BytesAfter)
	return b.String()
}

// Retype is the onnx.SaveOptions.Retype of the plan.
func (p *Plan) Retype(name string, t *onnxpb.TensorProto) (onnxpb.TensorProto_DataType, bool) {
	if p.convert[name] && onnx.DataType(t) == onnxpb.TensorProto_FLOAT {
		return p.DType, true
	}
	return 0, false
}

// Transform is the onnx.SaveOptions.Transform of the plan: it narrows the converted tensors'
// float32 bytes and passes every other tensor through.
func (p *Plan) Transform(name string, t *onnxpb.TensorProto, raw []byte) ([]byte, error) {
	if _, ok := p.Retype(name, t); !ok {
		return raw, nil
	}
	if len(raw)%4 != 0 {
		return nil, fmt.Errorf("convert %q: %d bytes is not a float32 tensor", name, len(raw))
	}
	out := make([]byte, len(raw)/2)
	for i := 0; i < len(raw)/4; i++ {
		binary.LittleEndian.PutUint16(out[2*i:], Narrow(p.DType, math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))))
	}
	return out, nil
}

// SaveOptions returns base with the plan's Transform and Retype set (base's own Transform, if
// any, runs first on the float32 bytes).
func (p *Plan) SaveOptions(base onnx.SaveOptions) onnx.SaveOptions {
	base.Retype = p.Retype
	return base.Then(p.Converts, p.Transform)
}

// Max16 is float16's largest finite value; Narrow saturates to it.
const Max16 = 65504

// Narrow rounds f to dt's bits (FLOAT16 or BFLOAT16), nearest-even. Finite values beyond the
// range saturate to the largest finite value, so large finite constants (a −1e9 mask) stay
// finite; ±Inf and NaN stay what they are.
func Narrow(dt onnxpb.TensorProto_DataType, f float32) uint16 {
	if dt == onnxpb.TensorProto_BFLOAT16 {
		h := onnx.Float32ToBFloat16(f)
		if h&0x7fff == 0x7f80 && !math.IsInf(float64(f), 0) {
			h-- // 0x7f7f: the largest finite bfloat16
		}
		return h
	}
	if !math.IsInf(float64(f), 0) && !math.IsNaN(float64(f)) {
		f = max(-Max16, min(Max16, f))
	}
	return onnx.Float32ToFloat16(f)
}

// Widen is Narrow's inverse (exact).
func Widen(dt onnxpb.TensorProto_DataType, h uint16) float32 {
	if dt == onnxpb.TensorProto_BFLOAT16 {
		return onnx.BFloat16ToFloat32(h)
	}
	return onnx.Float16ToFloat32(h)
}

// Convert plans, rewrites m and saves it to path with so's layout. m is then only fit for Save.
func Convert(m *onnx.Model, path string, o Options, so onnx.SaveOptions) (*Plan, error) {
	p, err := NewPlan(m, o)
	if err != nil {
		return nil, err
	}
	if err := p.Rewrite(m); err != nil {
		return nil, err
	}
	if err := m.Save(path, p.SaveOptions(so)); err != nil {
		return nil, fmt.Errorf("convert: %w", err)
	}
	return p, nil
}

// Storage is o as a model writer's storage step (llama.WriteSyntheticAs takes it): for a built
// float32 graph it makes the plan, rewrites the graph and returns the save options that
// narrow the converted weights as they are streamed. models/ cannot import transform/, so the
// writer takes this function instead of the plan.
func Storage(o Options) func(m *onnx.Model) (onnx.SaveOptions, error) {
	return func(m *onnx.Model) (onnx.SaveOptions, error) {
		p, err := NewPlan(m, o)
		if err != nil {
			return onnx.SaveOptions{}, err
		}
		if err := p.Rewrite(m); err != nil {
			return onnx.SaveOptions{}, err
		}
		return p.SaveOptions(onnx.SaveOptions{}), nil
	}
}
