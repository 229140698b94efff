package layers

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// Linear is one linear layer: y = x·W (+ b) with a constant weight.
type Linear struct {
	Node   string // the MatMul or Gemm node's name
	Op     string // "MatMul" or "Gemm"
	Weight string // the initializer that stores the weight
	Input  string // the activation input x
	Output string // the node's output y
	In     int64  // input features
	Out    int64  // output features
	// Transposed is true when the stored weight is [out, in] (PyTorch layout), reached through a
	// Transpose node or Gemm's transB; otherwise it is [in, out] (ONNX MatMul layout).
	Transposed bool
	Block      int    // decoder block, -1 outside the blocks
	Role       string // q k v o gate up down, a family's own role, or a structural one
	Head       bool   // the LM head: found, but never a target unless included
	Depth      int    // position in the longest chain of linears from the inputs (1-based)
}

// Find returns every linear layer of the model's main graph in topological order.
func Find(m *onnx.Model) ([]Linear, error) {
	g := m.Graph()
	if g == nil {
		return nil, fmt.Errorf("find linear layers: %s has no graph", m.Path)
	}
	ix := onnx.NewIndex(g)
	order, err := ix.TopoOrder()
	if err != nil {
		return nil, fmt.Errorf("find linear layers: %w", err)
	}
	depth := map[string]int{}
	var out []Linear
	for _, n := range order {
		d := 0
		for _, in := range n.GetInput() {
			if depth[in] > d {
				d = depth[in]
			}
		}
		if l, ok := asLinear(ix, n); ok {
			d++
			l.Depth = d
			out = append(out, l)
		}
		for _, o := range n.GetOutput() {
			depth[o] = d
		}
	}
	label(ix, out)
	return out, nil
}

// asLinear recognises MatMul(x, W) and Gemm(x, W[, b]) with a constant rank-2 W.
func asLinear(ix *onnx.Index, n *onnxpb.NodeProto) (Linear, bool) {
	op := n.GetOpType()
	if (op != "MatMul" && op != "Gemm") || n.GetDomain() != "" || len(n.GetInput()) < 2 {
		return Linear{}, false
	}
	x, wIn := n.GetInput()[0], n.GetInput()[1]
	if _, xConst := ix.Initializers[x]; xConst {
		return Linear{}, false
	}
	w, transposed, ok := weightSource(ix, wIn, 0)
	if !ok || isAdapterWeight(w) {
		return Linear{}, false
	}
	if op == "Gemm" {
		for _, a := range n.GetAttribute() {
			switch a.GetName() {
			case "transB":
				if a.GetI() != 0 {
					transposed = !transposed
				}
			case "transA":
				if a.GetI() != 0 {
					return Linear{}, false
				}
			}
		}
	}
	dims := ix.Initializers[w].GetDims()
	in, outF := dims[0], dims[1]
	if transposed {
		in, outF = outF, in
	}
	return Linear{
		Node: n.GetName(), Op: op, Weight: w, Input: x, Output: n.GetOutput()[0],
		In: in, Out: outF, Transposed: transposed, Block: -1,
	}, true
}

// weightSource follows Transpose/Cast/Identity back to a rank-2 float initializer.
func weightSource(ix *onnx.Index, name string, hops int) (init string, transposed bool, ok bool) {
	if t, isInit := ix.Initializers[name]; isInit {
		if len(t.GetDims()) != 2 || !isFloat(onnxpb.TensorProto_DataType(t.GetDataType())) {
			return "", false, false
		}
		return name, false, true
	}
	p := ix.Producer[name]
	if p == nil || hops > 4 || len(p.GetInput()) == 0 {
		return "", false, false
	}
	switch p.GetOpType() {
	case "Cast", "Identity":
		return weightSource(ix, p.GetInput()[0], hops+1)
	case "Transpose":
		for _, a := range p.GetAttribute() {
			if a.GetName() == "perm" && !(len(a.GetInts()) == 2 && a.GetInts()[0] == 1 && a.GetInts()[1] == 0) {
				return "", false, false
			}
		}
		w, tr, ok := weightSource(ix, p.GetInput()[0], hops+1)
		return w, !tr, ok
	}
	return "", false, false
}

// isAdapterWeight recognises LoRA factors (ours: "<module>.lora_A"; PEFT: "...lora_A.weight"),
// which are MatMuls with constant weights too but belong to an adapter, not to the base model.
func isAdapterWeight(name string) bool {
	for _, tok := range tokenSplit.Split(strings.ToLower(name), -1) {
		if tok == "lora_a" || tok == "lora_b" {
			return true
		}
	}
	return false
}

func isFloat(dt onnxpb.TensorProto_DataType) bool {
	switch dt {
	case onnxpb.TensorProto_FLOAT, onnxpb.TensorProto_FLOAT16, onnxpb.TensorProto_BFLOAT16, onnxpb.TensorProto_DOUBLE:
		return true
	}
	return false
}

// structuralRoles4 name the four depth levels of a decoder block when neither names nor
// structure say more.
var structuralRoles4 = [4]string{"attn_in", "attn_out", "mlp_in", "mlp_out"}

// label sets Block, Role and Head from names; a layer whose names say nothing gets its role
// from the graph around it (structuralRoles) or, failing that, from its depth, and its block
// from its depth (four levels of linears per decoder block).
func label(ix *onnx.Index, ls []Linear) {
	maxDepth := 0
	for _, l := range ls {
		if l.Depth > maxDepth {
			maxDepth = l.Depth
		}
	}
	var structural map[int]string
	for i := range ls {
		l := &ls[i]
		block, role, head, ok := labelByName(l.Node, l.Weight)
		switch {
		case ok:
			l.Block, l.Role, l.Head = block, role, head
		case maxDepth%4 == 1 && l.Depth == maxDepth:
			l.Role, l.Head = "lm_head", true
		default:
			if structural == nil {
				structural = structuralRoles(ix, ls)
			}
			l.Block, l.Role = (l.Depth-1)/4, structuralRoles4[(l.Depth-1)%4]
			if r, ok := structural[i]; ok {
				l.Role = r
			}
			if block >= 0 {
				l.Block = block
			}
		}
		if l.Head {
			l.Block = -1
		}
	}
}

// Select returns the pruning/adapter targets: linears inside decoder blocks, minus the LM head,
// filtered by include/exclude regular expressions over node and weight names. An include pattern
// that matches the head (or a layer outside the blocks) selects it explicitly.
func Select(ls []Linear, include, exclude string) ([]Linear, error) {
	var inc, exc *regexp.Regexp
	var err error
	if include != "" {
		if inc, err = regexp.Compile(include); err != nil {
			return nil, fmt.Errorf("--include %q: %w", include, err)
		}
	}
	if exclude != "" {
		if exc, err = regexp.Compile(exclude); err != nil {
			return nil, fmt.Errorf("--exclude %q: %w", exclude, err)
		}
	}
	match := func(re *regexp.Regexp, l Linear) bool {
		return re.MatchString(l.Node) || re.MatchString(l.Weight) || re.MatchString(l.Role)
	}
	var out []Linear
	for _, l := range ls {
		explicit := inc != nil && match(inc, l)
		if inc != nil && !explicit {
			continue
		}
		if (l.Head || l.Block < 0) && !(explicit && include != "") {
			continue
		}
		if exc != nil && match(exc, l) {
			continue
		}
		out = append(out, l)
	}
	return out, nil
}

// CountZeros scans one linear's weight in 1 MiB pieces (so it streams over large models without
// holding a tensor) and returns its zero count (+0 and −0) and element count.
func CountZeros(m *onnx.Model, l Linear) (zeros, total int64, err error) {
	t := m.Initializer(l.Weight)
	if t == nil {
		return 0, 0, fmt.Errorf("linear %s: weight %s not found", l.Node, l.Weight)
	}
	dt := onnxpb.TensorProto_DataType(t.GetDataType())
	es := onnx.ElemSize(dt)
	if !isFloat(dt) || es == 0 {
		return 0, 0, fmt.Errorf("linear %s: weight %s has type %s, not a float", l.Node, l.Weight, dt)
	}
	err = m.ReadChunks(t, 1<<20, func(b []byte) error {
		for k := 0; k < len(b); k += es {
			// A float is ±0 when every bit but the sign (the top bit of the last byte) is 0.
			zero := b[k+es-1]&0x7f == 0
			for _, x := range b[k : k+es-1] {
				zero = zero && x == 0
			}
			if zero {
				zeros++
			}
		}
		total += int64(len(b) / es)
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("linear %s: %w", l.Node, err)
	}
	return zeros, total, nil
}
