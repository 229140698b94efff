package lora

import (
	"fmt"
	"sort"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/transform/layers"
)

// Fused q/k/v linears (GPT-2's c_attn, Phi-3's qkv_proj, NeoX's query_key_value) are adapted as
// the reference adapts MPT's fused Wqkv: one adapter per q, k and v slice of the output, all
// three in the linear's qkv rank group, so
//
//	y = x·W + Concat((x·A_q ⊙ s·m)·B_q, (x·A_k ⊙ s·m)·B_k, (x·A_v ⊙ s·m)·B_v)
//
// equals separate q, k and v adapters on the split weights W[:, q], W[:, k], W[:, v] (tested),
// where a single adapter on the fused layer would tie q, k and v to one rank-r subspace.

// qkvSlice is one slice of a fused linear's output features: [Lo, Hi) for role q, k or v.
type qkvSlice struct {
	Role   string
	Lo, Hi int64
}

// qkvSlices finds how the fused linear l's output splits into q, k and v: a Split (sizes from
// its input or attribute, or equal parts) or three Slices on the last axis, read through a
// bias Add; failing both, equal thirds. The three must tile [0, l.Out).
func qkvSlices(ix *onnx.Index, m *onnx.Model, l layers.Linear) ([]qkvSlice, error) {
	y := l.Output
	for hop := 0; hop < 4; hop++ {
		cs := ix.Consumers[y]
		if len(cs) == 1 && cs[0].GetOpType() == "Add" {
			y = cs[0].GetOutput()[0] // the bias
			continue
		}
		if len(cs) == 1 && cs[0].GetOpType() == "Split" {
			sizes, err := splitSizes(ix, m, cs[0], l.Out)
			if err != nil {
				return nil, fmt.Errorf("fused qkv linear %s: %w", l.Node, err)
			}
			if len(sizes) == 3 {
				return tile(l, []int64{0, sizes[0], sizes[0] + sizes[1], l.Out})
			}
		}
		var cuts []qkvSlice
		for _, c := range cs {
			if c.GetOpType() != "Slice" {
				continue
			}
			lo, hi, ok := lastAxisSlice(ix, m, c, l.Out)
			if ok {
				cuts = append(cuts, qkvSlice{Lo: lo, Hi: hi})
			}
		}
		if len(cuts) == 3 {
			sort.Slice(cuts, func(i, j int) bool { return cuts[i].Lo < cuts[j].Lo })
			return tile(l, []int64{cuts[0].Lo, cuts[0].Hi, cuts[1].Hi, cuts[2].Hi})
		}
		break
	}
	if l.Out%3 != 0 {
		return nil, fmt.Errorf("fused qkv linear %s: no Split or Slices of its output show the q, k, v sizes, and %d outputs are not three equal parts", l.Node, l.Out)
	}
	return tile(l, []int64{0, l.Out / 3, 2 * l.Out / 3, l.Out})
}

// tile checks that the cuts 0 = c0 < c1 < c2 < c3 = l.Out and names the slices q, k, v.
func tile(l layers.Linear, c []int64) ([]qkvSlice, error) {
	if c[0] != 0 || c[3] != l.Out || !(c[0] < c[1] && c[1] < c[2] && c[2] < c[3]) {
		return nil, fmt.Errorf("fused qkv linear %s: its output splits at %v, which does not tile [0, %d) into three parts", l.Node, c, l.Out)
	}
	return []qkvSlice{{"q", c[0], c[1]}, {"k", c[1], c[2]}, {"v", c[2], c[3]}}, nil
}

// splitSizes reads a Split's sizes on the last axis (out features in all).
func splitSizes(ix *onnx.Index, m *onnx.Model, n *onnxpb.NodeProto, out int64) ([]int64, error) {
	axis := int64(0)
	var sizes []int64
	for _, a := range n.GetAttribute() {
		switch a.GetName() {
		case "axis":
			axis = a.GetI()
		case "split":
			sizes = a.GetInts()
		}
	}
	if axis != -1 && axis != 2 {
		return nil, nil // not the feature axis of a [batch, seq, features] output
	}
	if len(n.GetInput()) > 1 && n.GetInput()[1] != "" {
		t := ix.ConstantValue(n.GetInput()[1])
		if t == nil {
			return nil, fmt.Errorf("split %s has run-time sizes", n.GetName())
		}
		v, err := m.Int64s(t)
		if err != nil {
			return nil, err
		}
		sizes = v
	}
	if sizes == nil {
		k := int64(len(n.GetOutput()))
		if k == 0 || out%k != 0 {
			return nil, fmt.Errorf("split %s: %d outputs do not divide %d features", n.GetName(), k, out)
		}
		for i := int64(0); i < k; i++ {
			sizes = append(sizes, out/k)
		}
	}
	return sizes, nil
}

// lastAxisSlice reads a unit-step Slice of the last axis with constant bounds, clamped to out.
func lastAxisSlice(ix *onnx.Index, m *onnx.Model, n *onnxpb.NodeProto, out int64) (lo, hi int64, ok bool) {
	in := n.GetInput()
	if len(in) < 4 {
		return 0, 0, false
	}
	var v [4][]int64
	for k := 1; k < len(in) && k <= 4; k++ {
		if in[k] == "" {
			continue
		}
		t := ix.ConstantValue(in[k])
		if t == nil {
			return 0, 0, false
		}
		x, err := m.Int64s(t)
		if err != nil || len(x) != 1 {
			return 0, 0, false
		}
		v[k-1] = x
	}
	if v[2] == nil || v[2][0] != -1 && v[2][0] != 2 {
		return 0, 0, false
	}
	if v[3] != nil && v[3][0] != 1 {
		return 0, 0, false
	}
	clamp := func(x int64) int64 {
		if x < 0 {
			x += out
		}
		return max(0, min(out, x))
	}
	return clamp(v[0][0]), clamp(v[1][0]), true
}
