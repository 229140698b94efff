package autodiff

import (
	"fmt"
	"sort"
	"strings"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// Options configure Backward.
type Options struct {
	// InputDims gives static shapes for graph inputs with symbolic dims, e.g.
	// {"input_ids": {2, 16}}. Every tensor on the gradient path must end up with a static
	// shape: the rules undo broadcasting with constant axes and shapes.
	InputDims map[string][]int64
}

// MinOpset is the oldest ai.onnx opset Backward supports: Pad and ScatterND with their
// opset-11 signatures are the oldest forms the rules emit.
const MinOpset = 11

// GradName is the name Backward gives the gradient of x when that name is free
// (it falls back to a builder-made name otherwise; always use the returned map).
func GradName(x string) string { return x + "_grad" }

// Backward appends to m's main graph the nodes that compute d loss / d w for every w in
// wrt, and returns w → the name of its gradient tensor (same type and shape as w). loss must
// be a float scalar; wrt are float tensors of the graph (initializers, inputs or activations)
// that the loss depends on. On error m may hold some of the new nodes; callers that keep m
// after a failure should pass a copy.
func Backward(m *onnx.Model, loss string, wrt []string, opts Options) (map[string]string, error) {
	if m == nil || m.Graph() == nil {
		return nil, fmt.Errorf("autodiff: no model graph")
	}
	if len(wrt) == 0 {
		return nil, fmt.Errorf("autodiff: no tensors to differentiate with respect to")
	}
	opset := modelOpset(m)
	if opset < MinOpset {
		return nil, fmt.Errorf("autodiff: model opset %d is older than %d (convert it first)", opset, MinOpset)
	}
	types, folded, err := inferFolded(m, opts.InputDims)
	if err != nil {
		return nil, fmt.Errorf("autodiff: %w", err)
	}
	ix := onnx.NewIndex(m.Graph())
	order, err := ix.TopoOrder()
	if err != nil {
		return nil, fmt.Errorf("autodiff: %w", err)
	}
	lt, ok := types[loss]
	if !ok {
		return nil, fmt.Errorf("autodiff: loss %q is not a tensor of the graph", loss)
	}
	if !isFloat(lt.Elem) || len(lt.Shape) != 0 {
		return nil, fmt.Errorf("autodiff: loss %q must be a float scalar, it is %s %v", loss, lt.Elem, lt.Shape)
	}
	for _, w := range wrt {
		t, ok := types[w]
		if !ok {
			return nil, fmt.Errorf("autodiff: wrt %q is not a tensor of the graph", w)
		}
		if !isFloat(t.Elem) {
			return nil, fmt.Errorf("autodiff: wrt %q is %s, not a float tensor", w, t.Elem)
		}
	}

	need := needsGrad(order, loss, wrt, types)
	for _, w := range wrt {
		if !need[w] {
			return nil, fmt.Errorf("autodiff: loss %q does not depend on wrt %q", loss, w)
		}
	}

	b := onnx.BuilderFor(m)
	e := &emitter{m: m, b: b, types: types, folded: folded, ix: ix, opset: opset, consts: map[string]string{}}
	grads := map[string][]string{} // tensor → gradient contributions
	grads[loss] = []string{e.scalar(lt.Elem, 1)}

	// total sums the contributions to t's gradient once, on first use.
	total := func(t string) string {
		gs := grads[t]
		switch len(gs) {
		case 0:
			return ""
		case 1:
			return gs[0]
		}
		s := e.op("Sum", gradNode(t)+"/Sum", gs)
		grads[t] = []string{s}
		return s
	}

	for i := len(order) - 1; i >= 0; i-- {
		n := order[i]
		var gout []string
		flows := false
		for _, o := range n.GetOutput() {
			g := ""
			if o != "" && need[o] {
				g = total(o)
				flows = flows || g != ""
			}
			gout = append(gout, g)
		}
		if !flows {
			continue
		}
		inNeed := make([]bool, len(n.GetInput()))
		anyIn := false
		for k, in := range n.GetInput() {
			if in != "" && need[in] {
				inNeed[k], anyIn = true, true
			}
		}
		if !anyIn {
			continue
		}
		rule, ok := registry[ruleKey(n)]
		if !ok {
			return nil, fmt.Errorf("autodiff: node %q (%s): no gradient rule for op %s on the gradient path", n.GetName(), opLabel(n), opLabel(n))
		}
		c := &ctx{emitter: e, n: n, gout: gout, need: inNeed}
		dins, err := rule(c)
		if err == nil {
			err = b.Err()
		}
		if err != nil {
			return nil, fmt.Errorf("autodiff: node %q (%s): %w", n.GetName(), opLabel(n), err)
		}
		for k, in := range n.GetInput() {
			if !inNeed[k] {
				continue
			}
			if k >= len(dins) || dins[k] == "" {
				return nil, fmt.Errorf("autodiff: node %q (%s): rule gave no gradient for input %d %q", n.GetName(), opLabel(n), k, in)
			}
			grads[in] = append(grads[in], dins[k])
		}
	}

	out := map[string]string{}
	for _, w := range wrt {
		g := total(w)
		if g == "" {
			return nil, fmt.Errorf("autodiff: no gradient reached %q", w)
		}
		if name := GradName(w); !b.Has(name) {
			if o := b.OpOut("Identity", gradNode(w)+"/Identity", []string{g}, []string{name}); o != nil {
				g = o[0]
			}
		}
		out[w] = g
	}
	if err := b.Err(); err != nil {
		return nil, fmt.Errorf("autodiff: %w", err)
	}
	return out, nil
}

// needsGrad marks the float tensors that are forward-reachable from wrt and from which loss
// is reachable. Control-flow nodes count as depending on everything (their subgraphs may read
// any outer tensor), so one on the gradient path is refused rather than silently skipped.
func needsGrad(order []*onnxpb.NodeProto, loss string, wrt []string, types map[string]onnx.TensorType) map[string]bool {
	fwd := map[string]bool{}
	for _, w := range wrt {
		fwd[w] = true
	}
	for _, n := range order {
		dep := controlFlow(n)
		for _, in := range n.GetInput() {
			dep = dep || (in != "" && fwd[in])
		}
		if !dep {
			continue
		}
		for _, o := range n.GetOutput() {
			if o != "" && isFloat(types[o].Elem) {
				fwd[o] = true
			}
		}
	}
	bwd := map[string]bool{loss: true}
	for i := len(order) - 1; i >= 0; i-- {
		n := order[i]
		reach := false
		for _, o := range n.GetOutput() {
			reach = reach || (o != "" && bwd[o])
		}
		if reach {
			for _, in := range n.GetInput() {
				if in != "" {
					bwd[in] = true
				}
			}
		}
	}
	need := map[string]bool{}
	for t := range fwd {
		if bwd[t] && isFloat(types[t].Elem) {
			need[t] = true
		}
	}
	return need
}

func controlFlow(n *onnxpb.NodeProto) bool {
	switch n.GetOpType() {
	case "If", "Loop", "Scan":
		return true
	}
	for _, a := range n.GetAttribute() {
		if a.GetG() != nil || len(a.GetGraphs()) > 0 {
			return true
		}
	}
	return false
}

func modelOpset(m *onnx.Model) int64 {
	v, _ := m.Opset("")
	return v
}

// InferShapes is onnx.InferShapes that also knows the com.microsoft ops autodiff differentiates
// (Gelu, presented to onnx.InferShapes as the ai.onnx Gelu of the same shape function).
func InferShapes(m *onnx.Model, dims map[string][]int64) (map[string]onnx.TensorType, error) {
	types, _, err := inferFolded(m, dims)
	return types, err
}

// inferFolded is InferShapes with the integer tensors shape inference folded.
func inferFolded(m *onnx.Model, dims map[string][]int64) (map[string]onnx.TensorType, map[string][]int64, error) {
	var swapped []*onnxpb.NodeProto
	for _, n := range m.Graph().GetNode() {
		if n.GetDomain() == msDomain && n.GetOpType() == "Gelu" {
			swapped = append(swapped, n)
			n.Domain = nil
		}
	}
	types, folded, err := onnx.InferShapesFolded(m, dims)
	for _, n := range swapped {
		d := msDomain
		n.Domain = &d
	}
	return types, folded, err
}

const msDomain = "com.microsoft"

func isFloat(dt onnxpb.TensorProto_DataType) bool {
	switch dt {
	case onnxpb.TensorProto_FLOAT, onnxpb.TensorProto_DOUBLE, onnxpb.TensorProto_FLOAT16,
		onnxpb.TensorProto_BFLOAT16:
		return true
	}
	return false
}

func ruleKey(n *onnxpb.NodeProto) string {
	if d := n.GetDomain(); d != "" && d != "ai.onnx" {
		return d + "." + n.GetOpType()
	}
	return n.GetOpType()
}

func opLabel(n *onnxpb.NodeProto) string { return ruleKey(n) }

// gradNode is the name prefix of gradient nodes for a tensor or node called name.
func gradNode(name string) string {
	if strings.HasPrefix(name, "/") {
		return "/grad" + name
	}
	return "/grad/" + name
}

// SupportedOps lists the op types with a gradient rule (com.microsoft ops prefixed by their
// domain), sorted.
func SupportedOps() []string {
	ops := make([]string, 0, len(registry))
	for k := range registry {
		ops = append(ops, k)
	}
	sort.Strings(ops)
	return ops
}

// Required is the op set the rule registry must cover (checked by a test): every op of the
// issue's list plus what the stories260K graphs put on the gradient path.
var Required = []string{
	"MatMul", "Gemm", "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Reciprocal", "Exp", "Log",
	"Neg", "Relu", "Tanh", "Erf", "Sigmoid", "Gelu", "com.microsoft.Gelu", "Softmax",
	"LogSoftmax", "ReduceMean", "ReduceSum", "LayerNormalization", "Where", "Gather", "Reshape",
	"Flatten", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Split", "Slice", "Expand", "Cast",
	"Identity", "Einsum", "Sin", "Cos", "Abs", "Sum", "Dropout", "ReduceSumSquare", "GatherElements",
}
