package lora

import (
	"fmt"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"google.golang.org/protobuf/proto"
)

// Extract returns the sub-adapter of a super-network as a deployable graph (METHOD §6, no
// merge): every module keeps A[:, :r] and B[:r, :] of its group's rank r, the scale stays
// alpha / r_max, and each rank-mask input becomes a constant of r ones, so the graph has the
// base model's inputs only. Groups not in ranks keep r_max. super is not modified; the result's
// metadata records the ranks in Fixed.
func Extract(super *onnx.Model, ranks Ranks) (*onnx.Model, error) {
	meta, err := ReadConfig(super)
	if err != nil {
		return nil, err
	}
	if meta.Train {
		return nil, fmt.Errorf("lora: extract: %s is a train graph (dropout inputs); extract from the inference super-network", name(super))
	}
	if len(meta.Fixed) > 0 {
		return nil, fmt.Errorf("lora: extract: %s is already an extracted sub-adapter", name(super))
	}
	rOf := map[string]int{}
	for _, g := range meta.Groups {
		rOf[g.Name] = meta.RMax
	}
	for g, r := range ranks {
		if _, ok := rOf[g]; !ok {
			return nil, fmt.Errorf("lora: extract: no group %q in %s (groups look like %q)", g, name(super), meta.Groups[0].Name)
		}
		if r < 1 || r > meta.RMax {
			return nil, fmt.Errorf("lora: extract: group %s: rank %d outside 1..%d", g, r, meta.RMax)
		}
		rOf[g] = r
	}
	out := &onnx.Model{Proto: proto.Clone(super.Proto).(*onnxpb.ModelProto), Dir: super.Dir}
	g := out.Graph()
	inits := map[string]int{}
	for i, t := range g.Initializer {
		inits[t.GetName()] = i
	}
	replace := func(t *onnxpb.TensorProto) {
		if i, ok := inits[t.GetName()]; ok {
			g.Initializer[i] = t
		} else {
			g.Initializer = append(g.Initializer, t)
		}
	}
	rMax := int64(meta.RMax)
	for _, mod := range meta.Modules {
		r := int64(rOf[mod.Group])
		a, err := readF32(super, mod.A, mod.In*rMax)
		if err != nil {
			return nil, err
		}
		bv, err := readF32(super, mod.B, rMax*mod.Out)
		if err != nil {
			return nil, err
		}
		ar := make([]float32, 0, mod.In*r)
		for i := int64(0); i < mod.In; i++ {
			ar = append(ar, a[i*rMax:i*rMax+r]...)
		}
		_, adt := mod.Types()
		ta, tb := typedTensor(adt, []int64{mod.In, r}, ar), typedTensor(adt, []int64{r, mod.Out}, bv[:r*mod.Out])
		ta.Name, tb.Name = proto.String(mod.A), proto.String(mod.B)
		replace(ta)
		replace(tb)
	}
	masks := map[string]bool{}
	for _, gr := range meta.Groups {
		masks[gr.Mask] = true
		ones := RankMask(rOf[gr.Name], rOf[gr.Name])
		g.Initializer = append(g.Initializer, onnx.Float32Tensor(gr.Mask, []int64{int64(len(ones))}, ones))
	}
	kept := g.Input[:0]
	for _, in := range g.Input {
		if !masks[in.GetName()] {
			kept = append(kept, in)
		}
	}
	g.Input = kept
	meta.Fixed = rOf
	if err := writeMeta(out, meta); err != nil {
		return nil, err
	}
	return out, nil
}

func readF32(m *onnx.Model, tensor string, n int64) ([]float32, error) {
	t := m.Initializer(tensor)
	if t == nil {
		return nil, fmt.Errorf("lora: %s: adapter tensor %s is missing", name(m), tensor)
	}
	v, err := m.Float32s(t)
	if err != nil {
		return nil, fmt.Errorf("lora: %s: %w", name(m), err)
	}
	if int64(len(v)) != n {
		return nil, fmt.Errorf("lora: %s: adapter tensor %s has %d values, want %d", name(m), tensor, len(v), n)
	}
	return v, nil
}
