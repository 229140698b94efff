package lm

import (
	"slices"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// IO is one graph input or output: its name, element type and declared dims (-1 where
// symbolic or unknown; nil when the rank is unknown).
type IO struct {
	Name  string
	DType onnxpb.TensorProto_DataType
	Dims  []int64
}

// Interface is what a causal-LM graph takes and gives, read from its inputs and outputs.
type Interface struct {
	Inputs, Outputs []IO // in graph order

	InputIDs, AttentionMask, PositionIDs, Logits bool // which of the canonical names it has
	UseCacheBranch                               bool // a merged decoder's branch switch
	// Layers is the number of layers with a past input (0: no KV cache). Every layer 0…Layers−1
	// has both a key and a value past.
	Layers int
	// KVHeads and HeadDim come from the past inputs' shapes [batch, kv_heads, past, head_dim];
	// -1 where the graph leaves them symbolic.
	KVHeads, HeadDim int64
	// PastType is the past's element type (the cache's precision); UNDEFINED without a cache.
	PastType onnxpb.TensorProto_DataType
	// Presents is the number of layers with present outputs.
	Presents int
	// Other lists the inputs outside the interface (rank masks, ...), in graph order.
	Other []string
}

// HasPast reports whether the graph takes a KV cache.
func (it *Interface) HasPast() bool { return it.Layers > 0 }

// Read reads the interface of m's main graph (initializers listed as inputs are not inputs).
func Read(m *onnx.Model) (*Interface, error) {
	if m == nil || m.Graph() == nil {
		return nil, errorf("read interface: no model graph")
	}
	g := m.Graph()
	inits := map[string]bool{}
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = true
	}
	var ins, outs []IO
	for _, v := range g.GetInput() {
		if !inits[v.GetName()] {
			ins = append(ins, ioOf(v))
		}
	}
	for _, v := range g.GetOutput() {
		outs = append(outs, ioOf(v))
	}
	return FromIO(ins, outs)
}

func ioOf(v *onnxpb.ValueInfoProto) IO {
	tt := v.GetType().GetTensorType()
	io := IO{Name: v.GetName(), DType: onnxpb.TensorProto_DataType(tt.GetElemType())}
	if tt.GetShape() != nil {
		io.Dims = []int64{}
		for _, d := range tt.GetShape().GetDim() {
			if x := d.GetDimValue(); x > 0 && d.GetDimParam() == "" {
				io.Dims = append(io.Dims, x)
			} else {
				io.Dims = append(io.Dims, -1)
			}
		}
	}
	return io
}

// FromIO reads the interface from a graph's inputs and outputs (a session's, say). It checks
// the cache is whole: both halves of every layer 0…n−1, all of rank 4 and one element type,
// with the same kv heads and head dim.
func FromIO(inputs, outputs []IO) (*Interface, error) {
	it := &Interface{Inputs: slices.Clone(inputs), Outputs: slices.Clone(outputs), KVHeads: -1, HeadDim: -1}
	past := map[string]IO{}
	maxLayer := -1
	for _, in := range inputs {
		switch in.Name {
		case InputIDs:
			it.InputIDs = true
			continue
		case AttentionMask:
			it.AttentionMask = true
			continue
		case PositionIDs:
			it.PositionIDs = true
			continue
		case UseCacheBranch:
			it.UseCacheBranch = true
			continue
		}
		if i, _, ok := ParsePast(in.Name); ok {
			past[in.Name] = in
			maxLayer = max(maxLayer, i)
			continue
		}
		it.Other = append(it.Other, in.Name)
	}
	for i := 0; i <= maxLayer; i++ {
		for _, k := range []Kind{Key, Value} {
			in, ok := past[Past(i, k)]
			if !ok {
				return nil, errorf("the model has past inputs up to layer %d but no %q", maxLayer, Past(i, k))
			}
			if len(in.Dims) != 4 {
				return nil, errorf("past input %q has dims %v; want [batch, kv_heads, past_sequence_length, head_dim]", in.Name, in.Dims)
			}
			if it.PastType == onnxpb.TensorProto_UNDEFINED {
				it.PastType, it.KVHeads, it.HeadDim = in.DType, in.Dims[1], in.Dims[3]
			} else if in.DType != it.PastType || in.Dims[1] != it.KVHeads || in.Dims[3] != it.HeadDim {
				return nil, errorf("past input %q is %v %v, unlike %q (%v [_, %d, _, %d])", in.Name, in.DType, in.Dims, Past(0, Key), it.PastType, it.KVHeads, it.HeadDim)
			}
		}
	}
	it.Layers = maxLayer + 1
	for _, o := range outputs {
		if o.Name == Logits {
			it.Logits = true
		}
		if i, _, ok := ParsePresent(o.Name); ok {
			it.Presents = max(it.Presents, i+1)
		}
	}
	if it.HasPast() && !it.AttentionMask {
		return nil, errorf("the model takes a KV cache but no %q input (the mask is how the cache's length is known)", AttentionMask)
	}
	return it, nil
}

// Input returns the named input, or false.
func (it *Interface) Input(name string) (IO, bool) {
	for _, in := range it.Inputs {
		if in.Name == name {
			return in, true
		}
	}
	return IO{}, false
}

// SameIO reports the first difference between two interfaces' inputs and outputs (names, order,
// element types, ranks and fixed dims), or "" when they match: the check that a transform kept
// a model's interface.
func SameIO(a, b *Interface) string {
	if d := sameList("input", a.Inputs, b.Inputs); d != "" {
		return d
	}
	return sameList("output", a.Outputs, b.Outputs)
}

func sameList(what string, a, b []IO) string {
	names := func(l []IO) []string {
		out := make([]string, len(l))
		for i, x := range l {
			out[i] = x.Name
		}
		return out
	}
	if len(a) != len(b) {
		return what + "s differ: " + join(names(a)) + " vs " + join(names(b))
	}
	for i := range a {
		x, y := a[i], b[i]
		switch {
		case x.Name != y.Name:
			return what + " " + itoa(i) + " is " + x.Name + ", now " + y.Name
		case x.DType != y.DType:
			return what + " " + x.Name + " was " + x.DType.String() + ", now " + y.DType.String()
		case !slices.Equal(x.Dims, y.Dims):
			return what + " " + x.Name + " had dims " + dims(x.Dims) + ", now " + dims(y.Dims)
		}
	}
	return ""
}
