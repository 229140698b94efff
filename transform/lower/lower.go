package lower

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// ErrFused is the error (errors.Is) for a fused operator Lower cannot rewrite.
var ErrFused = errors.New("fused operator without a lowering")

// Report lists what Lower rewrote: operator type → count.
type Report struct {
	Lowered map[string]int
}

// String is e.g. "SimplifiedLayerNormalization ×1, SkipSimplifiedLayerNormalization ×4".
func (r Report) String() string {
	var parts []string
	for _, k := range sortedKeys(r.Lowered) {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, r.Lowered[k]))
	}
	return strings.Join(parts, ", ")
}

// rule emits the standard operators that compute node n, writing n's outputs by name.
type rule func(e *emitter, n *onnxpb.NodeProto) error

// rules is the one registry of lowerings, by operator type.
var rules = map[string]rule{
	"SimplifiedLayerNormalization":     simplifiedNorm,
	"SkipSimplifiedLayerNormalization": skipSimplifiedNorm,
	"RotaryEmbedding":                  rotary,
	"GroupQueryAttention":              gqa,
	"MultiHeadAttention":               mha,
}

// constants are the nodes of g whose every input is, transitively, an initializer (or that
// have none, as Constant): what they
// compute is a constant of the graph (onnxruntime folds it at load), not on any gradient path.
func constants(g *onnxpb.GraphProto) map[*onnxpb.NodeProto]bool {
	known := map[string]bool{}
	for _, t := range g.GetInitializer() {
		known[t.GetName()] = true
	}
	out := map[*onnxpb.NodeProto]bool{}
	order, err := onnx.NewIndex(g).TopoOrder()
	if err != nil {
		order = g.GetNode() // a cycle is reported by whoever sorts the graph
	}
	for _, n := range order {
		c := true
		for _, in := range n.GetInput() {
			c = c && (in == "" || known[in])
		}
		if c {
			out[n] = true
			for _, o := range n.GetOutput() {
				known[o] = true
			}
		}
	}
	return out
}

// refusals say what to do about fused operators without a lowering.
var refusals = map[string]string{
	"RotaryEmbedding":        "rotary embeddings",
	"GroupQueryAttention":    "attention",
	"MultiHeadAttention":     "attention",
	"Attention":              "attention",
	"PackedAttention":        "attention",
	"SkipLayerNormalization": "layer normalization",
	"FastGelu":               "activations",
	"BiasGelu":               "activations",
	"MatMulNBits":            "quantized weights",
}

// advice says what to do about a fused operator Lower cannot rewrite.
const advice = "training needs standard ONNX operators and shears lowers only SimplifiedLayerNormalization, " +
	"SkipSimplifiedLayerNormalization, RotaryEmbedding (full rotation), GroupQueryAttention and MultiHeadAttention " +
	"(separate q, k, v, no bias); inspect, prune, eval and generate run the model as it is, but to train, export it " +
	"without onnxruntime's fusions (optimum-cli export onnx without --optimize, not the GenAI builder or " +
	"onnxruntime.transformers.optimizer) or import the checkpoint with shears import hf"

// IsFused reports whether n is an onnxruntime fused operator Lower knows about (lowered or
// refused).
func IsFused(n *onnxpb.NodeProto) bool {
	d := n.GetDomain()
	if d != onnx.MicrosoftDomain && !(n.GetOpType() == "SimplifiedLayerNormalization" && (d == "" || d == "ai.onnx")) {
		return false
	}
	_, r := rules[n.GetOpType()]
	_, f := refusals[n.GetOpType()]
	return r || f
}

// Lower rewrites m's main graph in place: every fused operator with a lowering becomes
// standard operators computing the same outputs (same names), so the rest of the graph is
// untouched. A fused operator without one is an error (ErrFused) naming every such node;
// the graph is then left as it was.
func Lower(m *onnx.Model) (Report, error) {
	rep := Report{Lowered: map[string]int{}}
	g := m.Graph()
	if g == nil {
		return rep, fmt.Errorf("lower: no graph")
	}
	var refused []string
	constant := constants(g)
	for _, n := range g.GetNode() {
		if !IsFused(n) || constant[n] {
			continue // a constant (a QA super-network's weight dequantized from its integers) needs no gradient
		}
		if _, ok := rules[n.GetOpType()]; !ok {
			refused = append(refused, fmt.Sprintf("%q (%s::%s)", n.GetName(), n.GetDomain(), n.GetOpType()))
		}
	}
	if len(refused) > 0 {
		more := ""
		if len(refused) > 3 {
			more = fmt.Sprintf(" and %d more", len(refused)-3)
			refused = refused[:3]
		}
		return rep, fmt.Errorf("lower: %w: node %s%s: %s", ErrFused, strings.Join(refused, ", "), more, advice)
	}
	e := &emitter{ix: onnx.NewIndex(g), opset: opsetOf(m)}
	var nodes []*onnxpb.NodeProto
	for _, n := range g.GetNode() {
		r, ok := rules[n.GetOpType()]
		if !ok || !IsFused(n) {
			nodes = append(nodes, n)
			continue
		}
		e.nodes, e.prefix = nil, n.GetName()
		if e.prefix == "" {
			e.prefix = "/lowered/" + n.GetOpType()
		}
		if err := r(e, n); err != nil {
			return Report{Lowered: map[string]int{}}, fmt.Errorf("lower: %w: node %q (%s::%s): %v; %s", ErrFused, n.GetName(), n.GetDomain(), n.GetOpType(), err, advice)
		}
		nodes = append(nodes, e.nodes...)
		rep.Lowered[n.GetOpType()]++
	}
	g.Node = nodes
	for _, t := range e.consts {
		g.Initializer = append(g.Initializer, t)
	}
	if !usesMicrosoft(g) {
		var keep []*onnxpb.OperatorSetIdProto
		for _, o := range m.Proto.GetOpsetImport() {
			if o.GetDomain() != onnx.MicrosoftDomain {
				keep = append(keep, o)
			}
		}
		m.Proto.OpsetImport = keep
	}
	return rep, nil
}

func usesMicrosoft(g *onnxpb.GraphProto) bool {
	for _, n := range g.GetNode() {
		if n.GetDomain() == onnx.MicrosoftDomain {
			return true
		}
	}
	return false
}

func opsetOf(m *onnx.Model) int64 {
	for _, o := range m.Proto.GetOpsetImport() {
		if o.GetDomain() == "" || o.GetDomain() == "ai.onnx" {
			return o.GetVersion()
		}
	}
	return 17
}

// emitter collects the nodes replacing one fused node, with names under its own.
type emitter struct {
	ix     *onnx.Index
	opset  int64
	prefix string
	nodes  []*onnxpb.NodeProto
	consts []*onnxpb.TensorProto
	seq    int
}

// op appends a node; outs names its outputs ("" picks fresh names).
func (e *emitter) op(opType string, inputs []string, outs []string, attrs ...*onnxpb.AttributeProto) []string {
	e.seq++
	name := e.ix.UniqueName(fmt.Sprintf("%s/%s_%d", e.prefix, opType, e.seq))
	for i := range outs {
		if outs[i] == "" {
			outs[i] = e.ix.UniqueName(fmt.Sprintf("%s_output_%d", name, i))
		}
	}
	e.nodes = append(e.nodes, &onnxpb.NodeProto{Name: &name, OpType: &opType, Input: inputs, Output: outs, Attribute: attrs})
	return outs
}

func (e *emitter) op1(opType string, inputs []string, attrs ...*onnxpb.AttributeProto) string {
	return e.op(opType, inputs, []string{""}, attrs...)[0]
}

// scalar is a float32 scalar constant.
func (e *emitter) scalar(v float32) string {
	name := e.ix.UniqueName(fmt.Sprintf("%s/const", e.prefix))
	e.consts = append(e.consts, onnx.Float32Tensor(name, nil, []float32{v}))
	return name
}

// reduceMean over the last axes from axis (negative: from the end; rank needed when positive).
func (e *emitter) reduceMean(x string, axes []int64) string {
	keep := onnx.AttrInt("keepdims", 1)
	if e.opset >= 18 {
		name := e.ix.UniqueName(fmt.Sprintf("%s/axes", e.prefix))
		e.consts = append(e.consts, onnx.Int64Tensor(name, []int64{int64(len(axes))}, axes))
		return e.op1("ReduceMean", []string{x, name}, keep)
	}
	return e.op1("ReduceMean", []string{x}, onnx.AttrInts("axes", axes...), keep)
}

// rms writes y = x / sqrt(mean(x², axes) + eps) · scale into out[0] and, when asked,
// 1 / sqrt(mean + eps) into invStd: the RMSNorm both fused norms compute (in the input's type).
func (e *emitter) rms(x, scale string, axes []int64, eps float32, out, invStd string) {
	sq := e.op1("Mul", []string{x, x})
	m := e.reduceMean(sq, axes)
	s := e.op1("Sqrt", []string{e.op1("Add", []string{m, e.scalar(eps)})})
	inv := e.op("Reciprocal", []string{s}, []string{invStd})[0]
	n := e.op1("Mul", []string{x, inv})
	e.op("Mul", []string{n, scale}, []string{out})
}

func attrF(n *onnxpb.NodeProto, name string, def float32) float32 {
	for _, a := range n.GetAttribute() {
		if a.GetName() == name {
			return a.GetF()
		}
	}
	return def
}

func attrI(n *onnxpb.NodeProto, name string, def int64) int64 {
	for _, a := range n.GetAttribute() {
		if a.GetName() == name {
			return a.GetI()
		}
	}
	return def
}

func output(n *onnxpb.NodeProto, i int) string {
	if i < len(n.GetOutput()) {
		return n.GetOutput()[i]
	}
	return ""
}

// simplifiedNorm: SimplifiedLayerNormalization(X, scale; axis, epsilon) → Y, inv_std_var.
func simplifiedNorm(e *emitter, n *onnxpb.NodeProto) error {
	in := n.GetInput()
	if len(in) < 2 {
		return fmt.Errorf("needs X and scale, has %d inputs", len(in))
	}
	axis := attrI(n, "axis", -1)
	if axis >= 0 {
		return fmt.Errorf("axis %d: only negative axes (counted from the end) are lowered", axis)
	}
	var axes []int64
	for a := axis; a < 0; a++ {
		axes = append(axes, a)
	}
	e.rms(in[0], in[1], axes, attrF(n, "epsilon", 1e-5), output(n, 0), output(n, 1))
	return nil
}

// skipSimplifiedNorm: SkipSimplifiedLayerNormalization(input, skip, gamma[, bias]; epsilon)
// → output, mean (not computed by the simplified form), inv_std_var, input + skip (+ bias).
func skipSimplifiedNorm(e *emitter, n *onnxpb.NodeProto) error {
	in := n.GetInput()
	if len(in) < 3 {
		return fmt.Errorf("needs input, skip and gamma, has %d inputs", len(in))
	}
	if output(n, 1) != "" && len(e.ix.Consumers[output(n, 1)]) > 0 {
		return fmt.Errorf("output 1 (mean) is read, but the simplified norm has no mean")
	}
	sumOut := output(n, 3)
	var sum string
	if len(in) > 3 && in[3] != "" {
		s := e.op1("Add", []string{in[0], in[1]})
		sum = e.op("Add", []string{s, in[3]}, []string{sumOut})[0]
	} else {
		sum = e.op("Add", []string{in[0], in[1]}, []string{sumOut})[0]
	}
	// onnxruntime's skip norms default to BERT's epsilon, 1e-12 (the plain norms to 1e-5).
	e.rms(sum, in[2], []int64{-1}, attrF(n, "epsilon", 1e-12), output(n, 0), output(n, 2))
	return nil
}

func sortedKeys(m map[string]int) []string {
	var k []string
	for x := range m {
		k = append(k, x)
	}
	sort.Strings(k)
	return k
}
