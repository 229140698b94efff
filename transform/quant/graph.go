package quant

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/transform/layers"
	"google.golang.org/protobuf/proto"
)

// Domain is the operator domain of MatMulNBits.
const Domain = "com.microsoft"

// OpType is the quantized linear's operator.
const OpType = "MatMulNBits"

// Target is one linear of a plan and the tensors that replace its float weight.
type Target struct {
	Linear layers.Linear
	K, N   int
	// B, Scales and Zeros name the new initializers (Zeros is "" for a symmetric grid).
	B, Scales, Zeros string
	// ScaleType is A's float type, which the operator requires of the scales.
	ScaleType onnxpb.TensorProto_DataType
}

// Plan is the graph rewrite: which linears become MatMulNBits nodes, with which tensors.
type Plan struct {
	Config  Config
	Targets []Target
	// AccuracyLevel is the nodes' accuracy_level attribute: 0 (default) computes with A as it
	// is; 4 lets onnxruntime quantize A to int8 per block (faster CPU kernels, less exact).
	AccuracyLevel int
}

// NewPlan checks every target (a MatMul, or a Gemm with alpha = beta = 1, on a float input) and
// names its new tensors. An error names the first layer that cannot be quantized and why.
func NewPlan(m *onnx.Model, targets []layers.Linear, c Config) (*Plan, error) {
	if err := c.Check(); err != nil {
		return nil, err
	}
	if len(targets) == 0 {
		return nil, fmt.Errorf("quantize %s: no target linear layers", m.Path)
	}
	if has, node := HasQuantized(m); has {
		return nil, fmt.Errorf("quantize %s: node %s is already a %s; quantize the float model", m.Path, node, OpType)
	}
	if n := onnx.SubgraphNode(m.Graph()); n != nil {
		return nil, fmt.Errorf("quantize %s: node %q (%s) holds subgraphs (a merged decoder?), whose linears this pass cannot rewrite; quantize the with-past model (model.onnx) instead", m.Path, n.GetName(), n.GetOpType())
	}
	types, err := onnx.InferShapes(m, nil)
	if err != nil {
		return nil, fmt.Errorf("quantize %s: %w", m.Path, err)
	}
	ix := onnx.NewIndex(m.Graph())
	p := &Plan{Config: c}
	for _, l := range targets {
		n := nodeByName(m.Graph(), l.Node)
		if n == nil {
			return nil, fmt.Errorf("quantize %s: linear %s not found", m.Path, l.Node)
		}
		if l.Op == "Gemm" {
			for _, a := range n.GetAttribute() {
				if (a.GetName() == "alpha" || a.GetName() == "beta") && a.GetF() != 1 {
					return nil, fmt.Errorf("quantize %s: gemm %s has %s = %g; only alpha = beta = 1 maps onto %s", m.Path, l.Node, a.GetName(), a.GetF(), OpType)
				}
			}
		}
		at := types[l.Input].Elem
		switch at {
		case onnxpb.TensorProto_FLOAT, onnxpb.TensorProto_FLOAT16:
		default:
			return nil, fmt.Errorf("quantize %s: linear %s: input %s is %s; %s takes float or float16 activations", m.Path, l.Node, l.Input, at, OpType)
		}
		base := strings.TrimSuffix(l.Weight, ".weight")
		t := Target{Linear: l, K: int(l.In), N: int(l.Out), ScaleType: at,
			B: ix.UniqueName(base + ".qweight"), Scales: ix.UniqueName(base + ".scales")}
		if !c.Symmetric {
			t.Zeros = ix.UniqueName(base + ".qzeros")
		}
		p.Targets = append(p.Targets, t)
	}
	return p, nil
}

// HasQuantized reports whether m already holds a MatMulNBits node, in its graph or in a
// subgraph, and the first one's name.
func HasQuantized(m *onnx.Model) (bool, string) {
	n := onnx.FindNode(m.Graph(), func(n *onnxpb.NodeProto) bool {
		return n.GetOpType() == OpType && n.GetDomain() == Domain
	})
	return n != nil, n.GetName()
}

func nodeByName(g *onnxpb.GraphProto, name string) *onnxpb.NodeProto {
	for _, n := range g.GetNode() {
		if n.GetName() == name {
			return n
		}
	}
	return nil
}

// Apply rewrites m in place: each target node becomes MatMulNBits(x, B, scales[, zero_points]
// [, bias]) writing the same output, the new tensors are added inline (Save moves large ones to
// external data), and the float weight with the Transpose/Cast nodes that only fed it is removed
// when nothing else reads it. layers maps each target's node name to its quantized weight.
func (p *Plan) Apply(m *onnx.Model, q map[string]*Layer) error {
	for _, t := range p.Targets {
		if err := p.ApplyTarget(m, t, q[t.Linear.Node]); err != nil {
			return err
		}
	}
	return nil
}

// ApplyTarget rewrites one target (see Apply); callers that quantize layer by layer apply each
// as soon as it is ready, so only its packed bytes stay in memory.
func (p *Plan) ApplyTarget(m *onnx.Model, t Target, l *Layer) error {
	g := m.Graph()
	if l == nil || l.K != t.K || l.N != t.N || l.Config != p.Config {
		return fmt.Errorf("quantize %s: no quantized weight of the planned shape for %s", m.Path, t.Linear.Node)
	}
	n := nodeByName(g, t.Linear.Node)
	if n == nil {
		return fmt.Errorf("quantize %s: linear %s not found", m.Path, t.Linear.Node)
	}
	inits, inputs := p.tensors(t, l)
	g.Initializer = append(g.Initializer, inits...)
	weightIn := n.GetInput()[1]
	if t.Linear.Op == "Gemm" && len(n.GetInput()) > 2 && n.GetInput()[2] != "" {
		for len(inputs) < 5 {
			inputs = append(inputs, "")
		}
		inputs = append(inputs, n.GetInput()[2]) // bias (input 5; g_idx, input 4, is deprecated)
	}
	n.OpType, n.Domain = proto.String(OpType), proto.String(Domain)
	n.Input = inputs
	n.Attribute = p.attrs(t)
	removeDeadChain(g, weightIn)
	ensureDomain(m.Proto)
	return nil
}

// tensors packs l into t's MatMulNBits initializers and returns them with the node's inputs
// after A: B, scales and, when asymmetric, zero points.
func (p *Plan) tensors(t Target, l *Layer) ([]*onnxpb.TensorProto, []string) {
	kb := int64(l.KBlocks())
	inits := []*onnxpb.TensorProto{
		onnx.NewTensor(t.B, onnxpb.TensorProto_UINT8, []int64{int64(t.N), kb, int64(l.BlobSize())}, l.PackB()),
		scaleTensor(t.Scales, t.ScaleType, []int64{int64(t.N), kb}, l.Scales)}
	inputs := []string{t.Linear.Input, t.B, t.Scales}
	if t.Zeros != "" {
		inits = append(inits, onnx.NewTensor(t.Zeros, onnxpb.TensorProto_UINT8, []int64{int64(t.N), int64(l.ZeroBytes())}, l.PackZeros()))
		inputs = append(inputs, t.Zeros)
	}
	return inits, inputs
}

// attrs are a MatMulNBits node's attributes for t.
func (p *Plan) attrs(t Target) []*onnxpb.AttributeProto {
	return []*onnxpb.AttributeProto{
		onnx.AttrInt("K", int64(t.K)), onnx.AttrInt("N", int64(t.N)),
		onnx.AttrInt("bits", int64(p.Config.Bits)), onnx.AttrInt("block_size", int64(p.Config.BlockSize)),
		onnx.AttrInt("accuracy_level", int64(p.AccuracyLevel)),
	}
}

// removeDeadChain removes the nodes and initializer that produced name, back through
// single-input Transpose/Cast/Identity nodes, as long as nothing else reads them.
func removeDeadChain(g *onnxpb.GraphProto, name string) {
	for name != "" {
		if readers(g, name) > 0 || isGraphOutput(g, name) {
			return
		}
		var prod *onnxpb.NodeProto
		for _, n := range g.GetNode() {
			for _, o := range n.GetOutput() {
				if o == name {
					prod = n
				}
			}
		}
		if prod == nil {
			for i, t := range g.GetInitializer() {
				if t.GetName() == name {
					g.Initializer = append(g.Initializer[:i:i], g.Initializer[i+1:]...)
					break
				}
			}
			return
		}
		for i, n := range g.Node {
			if n == prod {
				g.Node = append(g.Node[:i:i], g.Node[i+1:]...)
				break
			}
		}
		name = ""
		if len(prod.GetInput()) > 0 {
			name = prod.GetInput()[0]
		}
	}
}

func readers(g *onnxpb.GraphProto, name string) int {
	c := 0
	for _, n := range g.GetNode() {
		for _, in := range n.GetInput() {
			if in == name {
				c++
			}
		}
		for _, a := range n.GetAttribute() { // subgraphs reading it keep it alive
			if a.GetG() != nil || len(a.GetGraphs()) > 0 {
				c++
			}
		}
	}
	return c
}

func isGraphOutput(g *onnxpb.GraphProto, name string) bool {
	for _, o := range g.GetOutput() {
		if o.GetName() == name {
			return true
		}
	}
	return false
}

// ensureDomain imports com.microsoft version 1 when the model does not yet.
func ensureDomain(mp *onnxpb.ModelProto) {
	for _, op := range mp.GetOpsetImport() {
		if op.GetDomain() == Domain {
			return
		}
	}
	mp.OpsetImport = append(mp.OpsetImport, &onnxpb.OperatorSetIdProto{Domain: proto.String(Domain), Version: proto.Int64(1)})
}

func scaleTensor(name string, dt onnxpb.TensorProto_DataType, dims []int64, v []float32) *onnxpb.TensorProto {
	if dt == onnxpb.TensorProto_FLOAT16 {
		raw := make([]byte, 2*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint16(raw[2*i:], onnx.Float32ToFloat16(x))
		}
		return onnx.NewTensor(name, dt, dims, raw)
	}
	raw := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(x))
	}
	return onnx.NewTensor(name, dt, dims, raw)
}

// Weight reads a linear's weight as float32 in ONNX layout W[K, N] (transposing a stored
// [out, in] weight; widening float16 / bfloat16).
func Weight(m *onnx.Model, l layers.Linear) ([]float32, error) {
	t := m.Initializer(l.Weight)
	if t == nil {
		return nil, fmt.Errorf("linear %s: weight %s not found", l.Node, l.Weight)
	}
	v, err := m.Float32s(t)
	if err != nil {
		return nil, fmt.Errorf("linear %s: %w", l.Node, err)
	}
	k, n := int(l.In), int(l.Out)
	if len(v) != k*n {
		return nil, fmt.Errorf("linear %s: weight %s has %d values, want %d×%d", l.Node, l.Weight, len(v), k, n)
	}
	if !l.Transposed {
		return v, nil
	}
	out := make([]float32, len(v))
	for j := 0; j < n; j++ {
		for i := 0; i < k; i++ {
			out[i*n+j] = v[j*k+i]
		}
	}
	return out, nil
}

// Info is what inspect reports about one MatMulNBits node.
type Info struct {
	Node, Input     string
	K, N            int
	Bits, BlockSize int
	Symmetric       bool
	Bytes           int64 // B + scales + zero points
	Zeros, Total    int64 // dequantized weights equal to 0, and all of them
}

// Quantized lists m's MatMulNBits nodes in graph order and reads each one's layer back.
func Quantized(m *onnx.Model) ([]Info, map[string]*Layer, error) {
	var infos []Info
	out := map[string]*Layer{}
	for _, n := range m.Graph().GetNode() {
		if n.GetOpType() != OpType || n.GetDomain() != Domain || strings.HasSuffix(n.GetName(), maskDequantSuffix) {
			continue // not a linear: an unmerged export's weight dequantization (DequantReads)
		}
		l, bytes, err := ReadNode(m, n)
		if err != nil {
			return nil, nil, err
		}
		in := Info{Node: n.GetName(), Input: n.GetInput()[0], K: l.K, N: l.N, Bits: l.Config.Bits, BlockSize: l.Config.BlockSize,
			Symmetric: l.Config.Symmetric, Bytes: bytes, Total: int64(l.K * l.N)}
		for _, v := range l.Dequant() {
			if v == 0 {
				in.Zeros++
			}
		}
		infos = append(infos, in)
		out[n.GetName()] = l
	}
	return infos, out, nil
}

// ReadNode unpacks one MatMulNBits node's constant tensors into a Layer, and their byte size.
func ReadNode(m *onnx.Model, n *onnxpb.NodeProto) (*Layer, int64, error) {
	attrs := map[string]int64{"bits": 4}
	for _, a := range n.GetAttribute() {
		attrs[a.GetName()] = a.GetI()
	}
	c := Config{Bits: int(attrs["bits"]), BlockSize: int(attrs["block_size"])}
	ins := n.GetInput()
	if len(ins) < 3 {
		return nil, 0, fmt.Errorf("%s %s: %d inputs, want at least 3", OpType, n.GetName(), len(ins))
	}
	bt, st := m.Initializer(ins[1]), m.Initializer(ins[2])
	if bt == nil || st == nil {
		return nil, 0, fmt.Errorf("%s %s: B and scales must be initializers", OpType, n.GetName())
	}
	b, err := m.RawData(bt)
	if err != nil {
		return nil, 0, err
	}
	scales, err := m.Float32s(st)
	if err != nil {
		return nil, 0, err
	}
	bytes := int64(len(b)) + int64(len(scales)*onnx.ElemSize(onnx.DataType(st)))
	var zeros []byte
	c.Symmetric = true
	if len(ins) > 3 && ins[3] != "" {
		zt := m.Initializer(ins[3])
		if zt == nil || onnx.DataType(zt) != onnxpb.TensorProto_UINT8 {
			return nil, 0, fmt.Errorf("%s %s: zero_points must be a packed uint8 initializer", OpType, n.GetName())
		}
		if zeros, err = m.RawData(zt); err != nil {
			return nil, 0, err
		}
		bytes += int64(len(zeros))
		c.Symmetric = false
	}
	l, err := Unpack(int(attrs["K"]), int(attrs["N"]), c, b, scales, zeros)
	if err != nil {
		return nil, 0, fmt.Errorf("%s %s: %w", OpType, n.GetName(), err)
	}
	return l, bytes, nil
}

// SortedNames returns q's keys in order (deterministic iteration for reports).
func SortedNames(q map[string]*Layer) []string {
	out := make([]string, 0, len(q))
	for k := range q {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
