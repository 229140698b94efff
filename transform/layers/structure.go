package layers

import (
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// Roles from the graph around a linear, for graphs whose names say nothing (torch's dynamo
// exporter writes node_MatMul_12 and val_34; optimizers rename freely). What a LLaMA-style
// block looks like whatever it is called:
//
//   - q, k and v read the same normed input; q reaches the attention scores product
//     (a MatMul of two activations followed by Softmax) as its left input, k as its right
//     input, v reaches the right input of the product whose left input is the Softmax; a
//     fused attention operator takes them as its inputs 0, 1 and 2. A projection reaching
//     more than one of these places is a fused qkv.
//   - o reads the attention's output (the probabilities × values product, or a fused
//     attention operator) through reshapes only.
//   - gate and up read the same input and meet in one Mul; up feeds that Mul directly, gate
//     through its activation (SiLU, GELU, whatever the chain). down reads the product.
//
// Anything else keeps the depth fallback (attn_in, attn_out, mlp_in, mlp_out).
type structure struct {
	ix     *onnx.Index
	linear map[*onnxpb.NodeProto]bool
}

// Attention positions a projection's output reaches.
const (
	posQ = 1 << iota
	posK
	posV
)

// walkLimit bounds every walk, so a graph without the expected shape costs little.
const walkLimit = 256

// fusedAttention are operators that take q, k and v as inputs 0, 1 and 2.
var fusedAttention = map[string]bool{"MultiHeadAttention": true, "GroupQueryAttention": true, "Attention": true}

func isFusedAttention(n *onnxpb.NodeProto) bool {
	if !fusedAttention[n.GetOpType()] {
		return false
	}
	// ai.onnx Attention (opset 23) takes q, k, v; com.microsoft Attention takes x and packed weights.
	return !(n.GetOpType() == "Attention" && n.GetDomain() == "com.microsoft")
}

// structuralRoles returns a role for each linear (by index) that structure identifies.
func structuralRoles(ix *onnx.Index, ls []Linear) map[int]string {
	s := &structure{ix: ix, linear: map[*onnxpb.NodeProto]bool{}}
	out := map[int]string{}
	byOutput := map[string]int{}
	for i, l := range ls {
		if n := ix.Producer[l.Output]; n != nil {
			s.linear[n] = true
		}
		byOutput[l.Output] = i
	}
	for i, l := range ls {
		switch p := s.attentionPositions(l.Output); {
		case p == posQ:
			out[i] = "q"
		case p == posK:
			out[i] = "k"
		case p == posV:
			out[i] = "v"
		case p != 0:
			out[i] = "qkv"
		default:
			if s.readsAttention(l.Input) {
				out[i] = "o"
			}
		}
	}
	// gate / up pairs: two linears on one input, not attention projections, meeting in a Mul.
	byInput := map[string][]int{}
	for i, l := range ls {
		if _, ok := out[i]; !ok {
			byInput[l.Input] = append(byInput[l.Input], i)
		}
	}
	for _, group := range byInput {
		if len(group) != 2 {
			continue
		}
		a, b := ls[group[0]], ls[group[1]]
		mul, direct := s.meetingMul(a.Output, b.Output)
		if mul == nil {
			continue
		}
		gate, up := group[0], group[1]
		if direct == a.Output {
			gate, up = up, gate
		}
		out[gate], out[up] = "gate", "up"
		for _, c := range s.through(mul.GetOutput()[0]) {
			if j, ok := s.linearReading(c, ls); ok {
				out[j] = "down"
			}
		}
	}
	return out
}

// attentionPositions walks forward from a projection's output to the attention products it
// reaches, through anything that is not a product, a linear or a fused attention.
func (s *structure) attentionPositions(start string) int {
	pos := 0
	seen := map[*onnxpb.NodeProto]bool{}
	queue := []string{start}
	for steps := 0; len(queue) > 0 && steps < walkLimit; steps++ {
		t := queue[0]
		queue = queue[1:]
		for _, c := range s.ix.Consumers[t] {
			switch {
			case s.linear[c]:
				continue
			case isFusedAttention(c):
				for i, in := range c.GetInput() {
					if in == t && i < 3 {
						pos |= []int{posQ, posK, posV}[i]
					}
				}
				continue
			case s.isProduct(c):
				in := c.GetInput()
				if s.scores(c) {
					if in[0] == t {
						pos |= posQ
					}
					if in[1] == t {
						pos |= posK
					}
				} else if in[1] == t && s.fromSoftmax(in[0]) {
					pos |= posV
				}
				continue
			case c.GetOpType() == "Softmax" || !carriesValue(c, t):
				continue
			}
			if !seen[c] {
				seen[c] = true
				queue = append(queue, c.GetOutput()...)
			}
		}
	}
	return pos
}

// shapeArgs are operators whose inputs after the first are sizes, indices or positions: a
// value flowing into those does not flow on (torch computes a view's shape from the hidden
// state, which must not link one layer's output to the next layer's projections).
var shapeArgs = map[string]bool{"Reshape": true, "Expand": true, "Slice": true, "Tile": true, "Pad": true, "Range": true}

// carriesValue reports whether c passes t's values on: not a shape query, not a size argument.
func carriesValue(c *onnxpb.NodeProto, t string) bool {
	switch op := c.GetOpType(); {
	case op == "Shape" || op == "Size" || op == "ConstantOfShape":
		return false
	case shapeArgs[op]:
		return len(c.GetInput()) > 0 && c.GetInput()[0] == t
	}
	return true
}

// isProduct is a MatMul of two activations (not a linear: no constant side).
func (s *structure) isProduct(n *onnxpb.NodeProto) bool {
	if n.GetOpType() != "MatMul" || n.GetDomain() != "" || len(n.GetInput()) != 2 || s.linear[n] {
		return false
	}
	for _, in := range n.GetInput() {
		if _, c := s.ix.Initializers[in]; c || s.ix.ConstantValue(in) != nil {
			return false
		}
	}
	return true
}

// scores reports whether a product's output reaches a Softmax through a few elementwise steps
// (scale, mask, cast) before any other product.
func (s *structure) scores(n *onnxpb.NodeProto) bool {
	frontier := n.GetOutput()
	for hop := 0; hop < 8 && len(frontier) > 0; hop++ {
		var next []string
		for _, t := range frontier {
			for _, c := range s.ix.Consumers[t] {
				if c.GetOpType() == "Softmax" {
					return true
				}
				if c.GetOpType() == "MatMul" || s.linear[c] {
					continue
				}
				next = append(next, c.GetOutput()...)
			}
		}
		frontier = next
	}
	return false
}

// passThrough are the operators between an attention's products and its projections that move
// or retype values without mixing them.
var passThrough = map[string]bool{
	"Reshape": true, "Transpose": true, "Cast": true, "Identity": true, "Squeeze": true,
	"Unsqueeze": true, "Flatten": true, "Dropout": true, "Where": true, "Expand": true,
}

// fromSoftmax reports whether t is a Softmax's output, through pass-through operators.
func (s *structure) fromSoftmax(t string) bool {
	for hop := 0; hop < 6; hop++ {
		p := s.ix.Producer[t]
		if p == nil || len(p.GetInput()) == 0 {
			return false
		}
		if p.GetOpType() == "Softmax" {
			return true
		}
		if !passThrough[p.GetOpType()] {
			return false
		}
		t = p.GetInput()[0]
	}
	return false
}

// readsAttention reports whether a linear's input is an attention's output: the probabilities
// × values product or a fused attention, through pass-through operators.
func (s *structure) readsAttention(t string) bool {
	for hop := 0; hop < 8; hop++ {
		p := s.ix.Producer[t]
		if p == nil || len(p.GetInput()) == 0 {
			return false
		}
		switch {
		case isFusedAttention(p):
			return true
		case s.isProduct(p):
			return s.fromSoftmax(p.GetInput()[0])
		case !passThrough[p.GetOpType()]:
			return false
		}
		t = p.GetInput()[0]
	}
	return false
}

// meetingMul finds the Mul both outputs reach within a few steps (the gated product) and
// which of the two feeds it directly (through pass-through operators only): up.
func (s *structure) meetingMul(a, b string) (*onnxpb.NodeProto, string) {
	ra, rb := s.mulsReached(a), s.mulsReached(b)
	for m, da := range ra {
		db, ok := rb[m]
		if !ok {
			continue
		}
		switch {
		case da && !db:
			return m, a
		case db && !da:
			return m, b
		}
	}
	return nil, ""
}

// mulsReached maps each Mul reachable from t within six steps (stopping at linears and
// products) to whether t reaches it through pass-through operators only.
func (s *structure) mulsReached(t string) map[*onnxpb.NodeProto]bool {
	out := map[*onnxpb.NodeProto]bool{}
	type item struct {
		t      string
		direct bool
	}
	frontier := []item{{t, true}}
	for hop := 0; hop < 6 && len(frontier) > 0; hop++ {
		var next []item
		for _, it := range frontier {
			for _, c := range s.ix.Consumers[it.t] {
				if s.linear[c] || c.GetOpType() == "MatMul" || !carriesValue(c, it.t) {
					continue
				}
				if c.GetOpType() == "Mul" {
					out[c] = out[c] || it.direct
				}
				direct := it.direct && passThrough[c.GetOpType()]
				for _, o := range c.GetOutput() {
					next = append(next, item{o, direct})
				}
			}
		}
		frontier = next
	}
	return out
}

// through returns t and the tensors it passes to through pass-through operators.
func (s *structure) through(t string) []string {
	out := []string{t}
	for i := 0; i < len(out) && i < walkLimit; i++ {
		for _, c := range s.ix.Consumers[out[i]] {
			if passThrough[c.GetOpType()] {
				out = append(out, c.GetOutput()...)
			}
		}
	}
	return out
}

// linearReading returns the linear whose input is t.
func (s *structure) linearReading(t string, ls []Linear) (int, bool) {
	for i, l := range ls {
		if l.Input == t {
			return i, true
		}
	}
	return 0, false
}
