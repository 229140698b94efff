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
// or m itself when it has none of the inputs to fold.
func TrainForm(m *onnx.Model) (*onnx.Model, error) {
	it, err := lm.Read(m)
	if err != nil {
		return nil, fmt.Errorf("decoder: train form: %w", err)
	}
	if !it.HasPast() && !it.AttentionMask && !it.PositionIDs && it.Presents == 0 {
		return m, nil
	}
	if !it.InputIDs {
		return nil, fmt.Errorf("decoder: train form: the model has no %q input to derive the mask and positions from", lm.InputIDs)
	}
	out := &onnx.Model{Proto: proto.Clone(m.Proto).(*onnxpb.ModelProto), Dir: m.Dir, Path: m.Path}
	g := out.Graph()
	// The presents leave the interface first, so the folds below may rewire their producers.
	g.Output = slices.DeleteFunc(g.Output, func(v *onnxpb.ValueInfoProto) bool {
		_, _, ok := lm.ParsePresent(v.GetName())
		return ok
	})
	if err := foldPast(g, it); err != nil {
		return nil, fmt.Errorf("decoder: train form: %w", err)
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
	if it.AttentionMask {
		ones := onnx.Int64Tensor("", []int64{1}, []int64{1})
		replace[lm.AttentionMask] = b.Op("ConstantOfShape", "/shears/decoder/attention_mask", []string{idsShape()}, onnx.AttrTensor("value", ones))
	}
	if it.PositionIDs {
		t := b.Op("Gather", "/shears/decoder/position_ids/Gather", []string{idsShape(), b.Const("/shears/decoder/one", onnx.Int64Tensor("", nil, []int64{1}))}, onnx.AttrInt("axis", 0))
		r := b.Op("Range", "/shears/decoder/position_ids/Range", []string{
			b.Const("/shears/decoder/zero", onnx.Int64Tensor("", nil, []int64{0})), t, b.Const("/shears/decoder/one", onnx.Int64Tensor("", nil, []int64{1}))})
		r = b.Op("Unsqueeze", "/shears/decoder/position_ids/Unsqueeze", []string{r, b.Const("/shears/decoder/axes", onnx.Int64Tensor("", []int64{1}, []int64{0}))})
		replace[lm.PositionIDs] = b.Op("Expand", "/shears/decoder/position_ids", []string{r, idsShape()})
	}
	if err := b.Err(); err != nil {
		return nil, fmt.Errorf("decoder: train form: %w", err)
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
		return past || n == lm.AttentionMask || n == lm.PositionIDs
	})
	return out, nil
}

// foldPast rewires every Concat(past, new) to new (an empty past adds nothing along any axis)
// and drops the past from the Concat's inputs when others remain.
func foldPast(g *onnxpb.GraphProto, it *lm.Interface) error {
	if !it.HasPast() {
		return nil
	}
	ix := onnx.NewIndex(g)
	rename := map[string]string{}
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
				if len(n.Input) == 1 {
					rename[n.Output[0]] = n.Input[0]
				}
			default:
				return fmt.Errorf("past input %q is read by node %q (%s); only a Concat of the past and the new keys or values, or a fused attention's past input, is folded", past, n.GetName(), n.GetOpType())
			}
		}
		return nil
	}
	for i := 0; i < it.Layers; i++ {
		for _, k := range []lm.Kind{lm.Key, lm.Value} {
			if err := fold(lm.Past(i, k), lm.Past(i, k)); err != nil {
				return err
			}
		}
	}
	for _, o := range g.GetOutput() {
		if _, ok := rename[o.GetName()]; ok {
			return fmt.Errorf("graph output %q is a concatenation with the past; only present outputs may be", o.GetName())
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
	return nil
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
