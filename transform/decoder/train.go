package decoder

import (
	"fmt"
	"slices"

	"github.com/shears-ml/shears/lm"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"google.golang.org/protobuf/proto"
)

// TrainForm returns the train form of m (see the package doc): a new model sharing m's Dir,
// or m itself when it has none of the inputs to fold. A merged decoder trains its no-cache
// branch.
func TrainForm(m *onnx.Model) (*onnx.Model, error) {
	if IsMerged(m) {
		var err error
		if m, err = Specialise(m, false); err != nil {
			return nil, fmt.Errorf("decoder: train form: %w", err)
		}
	}
	return derive(m, true, "train form")
}

// NoCache returns m without its past inputs, the past fixed at length 0: optimum's
// decoder_model.onnx beside the with-past model.onnx (the mask and position inputs and the
// present outputs stay; a present is then this run's keys or values).
func NoCache(m *onnx.Model) (*onnx.Model, error) {
	return derive(m, false, "no-cache form")
}

// derive folds the past away; train also drops the presents and computes the mask and
// positions from input_ids.
func derive(m *onnx.Model, train bool, what string) (*onnx.Model, error) {
	it, err := lm.Read(m)
	if err != nil {
		return nil, fmt.Errorf("decoder: %s: %w", what, err)
	}
	if !it.HasPast() && (!train || (!it.AttentionMask && !it.PositionIDs && it.Presents == 0)) {
		return m, nil
	}
	if !it.InputIDs {
		return nil, fmt.Errorf("decoder: %s: the model has no %q input to derive the mask, positions and past from", what, lm.InputIDs)
	}
	out := &onnx.Model{Proto: proto.Clone(m.Proto).(*onnxpb.ModelProto), Dir: m.Dir, Path: m.Path}
	g := out.Graph()
	if train {
		// The presents leave the interface first, so the folds below may rewire their producers.
		g.Output = slices.DeleteFunc(g.Output, func(v *onnxpb.ValueInfoProto) bool {
			_, _, ok := lm.ParsePresent(v.GetName())
			return ok
		})
	}
	still, err := foldPast(g, it, !train)
	if err != nil {
		return nil, fmt.Errorf("decoder: %s: %w", what, err)
	}
	b := onnx.BuilderFor(out)
	n0 := len(g.Node)
	var shape string
	idsShape := func() string {
		if shape == "" {
			shape = b.Op("Shape", "/shears/decoder/Shape", []string{lm.InputIDs})
		}
		return shape
	}
	replace := map[string]string{}
	if train && it.AttentionMask {
		ones := onnx.Int64Tensor("", []int64{1}, []int64{1})
		replace[lm.AttentionMask] = b.Op("ConstantOfShape", "/shears/decoder/attention_mask", []string{idsShape()}, onnx.AttrTensor("value", ones))
	}
	if train && it.PositionIDs {
		t := b.Op("Gather", "/shears/decoder/position_ids/Gather", []string{idsShape(), b.Const("/shears/decoder/one", onnx.Int64Tensor("", nil, []int64{1}))}, onnx.AttrInt("axis", 0))
		r := b.Op("Range", "/shears/decoder/position_ids/Range", []string{
			b.Const("/shears/decoder/zero", onnx.Int64Tensor("", nil, []int64{0})), t, b.Const("/shears/decoder/one", onnx.Int64Tensor("", nil, []int64{1}))})
		r = b.Op("Unsqueeze", "/shears/decoder/position_ids/Unsqueeze", []string{r, b.Const("/shears/decoder/axes", onnx.Int64Tensor("", []int64{1}, []int64{0}))})
		replace[lm.PositionIDs] = b.Op("Expand", "/shears/decoder/position_ids", []string{r, idsShape()})
	}
	if len(still) > 0 {
		// The past is read otherwise too (its length through Shape, say): it becomes an empty
		// tensor [batch, kv_heads, 0, head_dim] made in the graph.
		if it.KVHeads < 0 || it.HeadDim < 0 {
			return nil, fmt.Errorf("decoder: %s: %q is read by node %q and its kv heads or head dim are symbolic; cannot make an empty past", what, still[0].past, still[0].node)
		}
		batch := b.Op("Gather", "/shears/decoder/past/Gather", []string{idsShape(), b.Const("/shears/decoder/zero_axis", onnx.Int64Tensor("", []int64{1}, []int64{0}))}, onnx.AttrInt("axis", 0))
		dims := b.Op("Concat", "/shears/decoder/past/Concat", []string{batch, b.Const("/shears/decoder/past/rest", onnx.Int64Tensor("", []int64{3}, []int64{it.KVHeads, 0, it.HeadDim}))}, onnx.AttrInt("axis", 0))
		zero := onnx.NewTensor("", it.PastType, []int64{1}, make([]byte, onnx.ElemSize(it.PastType)))
		empty := b.Op("ConstantOfShape", "/shears/decoder/past", []string{dims}, onnx.AttrTensor("value", zero))
		for _, r := range still {
			replace[r.past] = empty
		}
	}
	if err := b.Err(); err != nil {
		return nil, fmt.Errorf("decoder: %s: %w", what, err)
	}
	for _, n := range g.Node {
		for k, in := range n.Input {
			if r, ok := replace[in]; ok {
				n.Input[k] = r
			}
		}
	}
	// The new nodes read only input_ids and constants: they go first, so the graph stays
	// topologically sorted.
	g.Node = slices.Concat(g.Node[n0:], g.Node[:n0])
	onnx.RemoveDead(g)
	g.Input = slices.DeleteFunc(g.Input, func(v *onnxpb.ValueInfoProto) bool {
		n := v.GetName()
		_, _, past := lm.ParsePast(n)
		return past || (train && (n == lm.AttentionMask || n == lm.PositionIDs))
	})
	return out, nil
}

// pastRead is a past input read by something other than the Concat with the new keys or values.
type pastRead struct{ past, node string }

// foldPast rewires every Concat(past, new) to new (an empty past adds nothing along any axis)
// and drops the past from the Concat's inputs when others remain; identity keeps a Concat left
// with one input as an Identity instead (its output is a present the form keeps). It returns
// the pasts still read by other nodes (each once).
func foldPast(g *onnxpb.GraphProto, it *lm.Interface, identity bool) ([]pastRead, error) {
	if !it.HasPast() {
		return nil, nil
	}
	ix := onnx.NewIndex(g)
	rename := map[string]string{}
	var still []pastRead
	// fold drops name (the past, or a Cast of it) from the Concats that read it.
	var fold func(past, name string) error
	fold = func(past, name string) error {
		for _, n := range ix.Consumers[name] {
			switch {
			case n.GetOpType() == "Cast" && len(n.Input) == 1:
				// A precision cast of the empty past (a converted model's): fold its readers.
				if err := fold(past, n.Output[0]); err != nil {
					return err
				}
			case fusedPast(n, name):
				// onnxruntime's fused attention takes its past as optional inputs: absent is empty.
				for k, in := range n.Input {
					if in == name {
						n.Input[k] = ""
					}
				}
			case n.GetOpType() == "Concat" && slices.Contains(n.Input, name):
				n.Input = slices.DeleteFunc(n.Input, func(s string) bool { return s == name })
				switch {
				case len(n.Input) == 1 && identity:
					n.OpType, n.Attribute = proto.String("Identity"), nil
				case len(n.Input) == 1:
					rename[n.Output[0]] = n.Input[0]
				}
			case n.GetOpType() == "If" || n.GetOpType() == "Loop" || n.GetOpType() == "Scan":
				return fmt.Errorf("past input %q is read inside the subgraph of node %q (%s)", past, n.GetName(), n.GetOpType())
			default:
				if name != past {
					return fmt.Errorf("past input %q is read through a Cast by node %q (%s); only Concats are folded there", past, n.GetName(), n.GetOpType())
				}
				if len(still) == 0 || still[len(still)-1].past != past {
					still = append(still, pastRead{past, n.GetName()})
				}
			}
		}
		return nil
	}
	for i := 0; i < it.Layers; i++ {
		for _, k := range []lm.Kind{lm.Key, lm.Value} {
			if err := fold(lm.Past(i, k), lm.Past(i, k)); err != nil {
				return nil, err
			}
		}
	}
	for _, o := range g.GetOutput() {
		if _, ok := rename[o.GetName()]; ok {
			return nil, fmt.Errorf("graph output %q is a concatenation with the past; only present outputs may be", o.GetName())
		}
	}
	for _, n := range g.Node {
		for k, in := range n.Input {
			for r, ok := rename[in]; ok; r, ok = rename[in] { // a chain of folded Concats
				in = r
			}
			n.Input[k] = in
		}
	}
	return still, nil
}

// fusedPastSlots are the optional past key and value inputs of onnxruntime's fused attention
// operators (com.microsoft).
var fusedPastSlots = map[string][2]int{"GroupQueryAttention": {3, 4}, "MultiHeadAttention": {6, 7}}

// fusedPast reports whether n is a fused attention reading name as its past key or value.
func fusedPast(n *onnxpb.NodeProto, name string) bool {
	slots, ok := fusedPastSlots[n.GetOpType()]
	if !ok || n.GetDomain() != onnx.MicrosoftDomain {
		return false
	}
	for _, i := range slots {
		if i < len(n.Input) && n.Input[i] == name {
			return true
		}
	}
	return false
}
