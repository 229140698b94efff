package lora

import (
	"fmt"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/transform/decoder"
)

// AddDropout turns an inference super-network into a train graph in place: each module's
// adapter input x becomes x ⊙ keep, keep being a new float graph input named by the module's
// Dropout field, with x's shape. The caller feeds keep = Bernoulli(1−p)/(1−p) per element
// (p = Meta.Dropout), or all ones to switch dropout off for a step. The metadata's Train flag
// is set. A model that already has the inputs is an error.
func AddDropout(m *onnx.Model) error {
	meta, err := ReadConfig(m)
	if err != nil {
		return err
	}
	if meta.Train {
		return fmt.Errorf("lora: add dropout: %s already has the dropout inputs", name(m))
	}
	if len(meta.Fixed) > 0 {
		return fmt.Errorf("lora: add dropout: %s is an extracted sub-adapter, not a super-network", name(m))
	}
	xs := make([]string, len(meta.Modules))
	for i, mod := range meta.Modules {
		xs[i] = mod.Input
	}
	// Probed on the train form: a with-past graph's symbolic dims are related (total = past +
	// sequence), and probing them with independent values would make shapes that cannot meet.
	tf, err := decoder.TrainForm(m)
	if err != nil {
		return fmt.Errorf("lora: add dropout: %w", err)
	}
	shapes, err := symbolicShapes(tf, xs)
	if err != nil {
		return fmt.Errorf("lora: add dropout: %w", err)
	}
	ix := onnx.NewIndex(m.Graph())
	b := onnx.BuilderFor(m)
	for _, mod := range meta.Modules {
		an := ix.Nodes[mod.ANode]
		x := mod.Input
		if mod.AdapterInput != "" {
			x = mod.AdapterInput
		}
		if an == nil || len(an.Input) != 2 || an.Input[0] != x || (an.Input[1] != mod.A && !meta.SparseAdapter) {
			return fmt.Errorf("lora: add dropout: module %s: adapter node %q reading %s·%s not found", mod.Name, mod.ANode, x, mod.A)
		}
		// The keep mask is fed as float32 and cast to the adapter's type when that differs.
		keep := b.Input(mod.Dropout, onnxpb.TensorProto_FLOAT, shapes[mod.Input]...)
		if _, adt := mod.Types(); adt != onnxpb.TensorProto_FLOAT {
			keep = b.Op("Cast", nodePrefix(mod)+"/lora_dropout/Cast", []string{keep}, onnx.AttrInt("to", int64(adt)))
		}
		xd := b.Op("Mul", nodePrefix(mod)+"/lora_dropout/Mul", []string{x, keep})
		if b.Err() != nil {
			return fmt.Errorf("lora: add dropout: module %s: %w", mod.Name, b.Err())
		}
		an.Input[0] = xd
	}
	if err := sortNodes(m.Graph()); err != nil {
		return fmt.Errorf("lora: add dropout: %w", err)
	}
	meta.Train = true
	return writeMeta(m, meta)
}

// symbolicShapes returns the shapes of the named tensors as Builder dims: fixed sizes as int64,
// and the graph inputs' symbolic dims (batch, sequence) by name. It runs shape inference twice
// with different values for every symbolic input dim, so a dim that follows one of them is
// recognised by the pair of values it takes; a dim that varies otherwise gets its own name.
func symbolicShapes(m *onnx.Model, names []string) (map[string][]any, error) {
	type param struct {
		name string
		v    [2]int64
	}
	var params []param
	byName := map[string]int{}
	feeds := [2]map[string][]int64{{}, {}}
	for _, in := range m.Graph().GetInput() {
		tt := in.GetType().GetTensorType()
		if tt == nil || tt.GetShape() == nil {
			continue
		}
		var d0, d1 []int64
		symbolic := false
		for i, d := range tt.GetShape().GetDim() {
			if d.GetDimValue() > 0 {
				d0, d1 = append(d0, d.GetDimValue()), append(d1, d.GetDimValue())
				continue
			}
			symbolic = true
			pn := d.GetDimParam()
			if pn == "" {
				pn = fmt.Sprintf("%s_dim%d", in.GetName(), i)
			}
			k, ok := byName[pn]
			if !ok {
				k = len(params)
				byName[pn] = k
				// Small values (a sequence must fit the model's context); pairs differ per param.
				params = append(params, param{pn, [2]int64{int64(2 + k), int64(3 + 2*k)}})
			}
			d0, d1 = append(d0, params[k].v[0]), append(d1, params[k].v[1])
		}
		if symbolic {
			feeds[0][in.GetName()], feeds[1][in.GetName()] = d0, d1
		}
	}
	var types [2]map[string]onnx.TensorType
	for r := range types {
		t, err := onnx.InferShapes(m, feeds[r])
		if err != nil {
			return nil, fmt.Errorf("shapes of the adapter inputs: %w", err)
		}
		types[r] = t
	}
	out := map[string][]any{}
	for _, n := range names {
		s0, s1 := types[0][n].Shape, types[1][n].Shape
		if s0 == nil || len(s0) != len(s1) {
			return nil, fmt.Errorf("shape of %s is unknown", n)
		}
		dims := make([]any, len(s0))
		for i := range s0 {
			switch {
			case s0[i] < 0 || s1[i] < 0:
				return nil, fmt.Errorf("shape of %s: dim %d is unknown", n, i)
			case s0[i] == s1[i]:
				dims[i] = s0[i]
			default:
				dims[i] = fmt.Sprintf("%s_dim%d", n, i)
				for _, p := range params {
					if p.v == [2]int64{s0[i], s1[i]} {
						dims[i] = p.name
					}
				}
			}
		}
		out[n] = dims
	}
	return out, nil
}
