package trainstep

import (
	"fmt"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// AdamW holds the optimizer's hyper-parameters (METHOD.md §3): torch's adamw with decoupled
// weight decay and bias correction.
type AdamW struct {
	Beta1, Beta2, Eps, WeightDecay float64
}

// DefaultAdamW is the reference setting: β1 0.9, β2 0.999, ε 1e-8, no weight decay.
func DefaultAdamW() AdamW { return AdamW{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8} }

// Validate rejects hyper-parameters outside their ranges.
func (a AdamW) Validate() error {
	if !(a.Beta1 >= 0 && a.Beta1 < 1) || !(a.Beta2 >= 0 && a.Beta2 < 1) {
		return fmt.Errorf("adamw: betas (%v, %v) must lie in [0, 1)", a.Beta1, a.Beta2)
	}
	if !(a.Eps > 0) {
		return fmt.Errorf("adamw: eps %v must be positive", a.Eps)
	}
	if !(a.WeightDecay >= 0) {
		return fmt.Errorf("adamw: weight decay %v must be ≥ 0", a.WeightDecay)
	}
	return nil
}

// Names of the optimizer graph's tensors for parameter p.
func AdamWNames(p string) (param, grad, m, v, newParam, newM, newV string) {
	return p, p + ".grad", p + ".m", p + ".v", p + ".new", p + ".m.new", p + ".v.new"
}

// Names of the optimizer graph's scalar inputs.
const (
	AdamWLR   = "lr"
	AdamWStep = "step" // 1-based count of optimizer steps, as float
)

// BuildAdamW makes an onnxruntime graph of one AdamW update for the given parameters: inputs
// lr and step (float32 scalars) and, per parameter p, p, p.grad, p.m, p.v; outputs p.new,
// p.m.new, p.v.new. Per element:
//
//	p ← p·(1 − lr·wd);  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
//	p ← p − lr · (m / (1−β1^step)) / (√(v / (1−β2^step)) + ε)
//
// Package train applies the same update in Go, which we measured faster on the CPU (see the
// package doc); this graph is the in-graph alternative.
func BuildAdamW(params []Param, hp AdamW) (*onnx.Model, error) {
	if err := hp.Validate(); err != nil {
		return nil, fmt.Errorf("trainstep: %w", err)
	}
	if len(params) == 0 {
		return nil, fmt.Errorf("trainstep: adamw graph: no parameters")
	}
	b := onnx.NewBuilder("adamw", 17)
	f := func(name string, v float64) string {
		return b.Const("/adamw/"+name, onnx.Float32Tensor("", nil, []float32{float32(v)}))
	}
	lr := b.Input(AdamWLR, onnxpb.TensorProto_FLOAT)
	step := b.Input(AdamWStep, onnxpb.TensorProto_FLOAT)
	one := f("one", 1)
	b1, b2 := f("beta1", hp.Beta1), f("beta2", hp.Beta2)
	c1, c2 := f("one_minus_beta1", 1-hp.Beta1), f("one_minus_beta2", 1-hp.Beta2)
	eps := f("eps", hp.Eps)
	bc1 := b.Op("Sub", "/adamw/bc1", []string{one, b.Op("Pow", "/adamw/beta1_pow", []string{b1, step})})
	bc2 := b.Op("Sub", "/adamw/bc2", []string{one, b.Op("Pow", "/adamw/beta2_pow", []string{b2, step})})
	decay := ""
	if hp.WeightDecay != 0 {
		decay = b.Op("Sub", "/adamw/decay", []string{one, b.Op("Mul", "/adamw/lr_wd", []string{lr, f("wd", hp.WeightDecay)})})
	}
	for _, p := range params {
		pn, gn, mn, vn, np, nm, nv := AdamWNames(p.Name)
		d := anyDims(p.Dims)
		for _, n := range []string{pn, gn, mn, vn} {
			b.Input(n, onnxpb.TensorProto_FLOAT, d...)
		}
		pre := "/adamw/" + p.Name
		m1 := b.Op("Add", pre+"/m", []string{b.Op("Mul", pre+"/m_b1", []string{mn, b1}), b.Op("Mul", pre+"/g_c1", []string{gn, c1})})
		g2 := b.Op("Mul", pre+"/g2", []string{gn, gn})
		v1 := b.Op("Add", pre+"/v", []string{b.Op("Mul", pre+"/v_b2", []string{vn, b2}), b.Op("Mul", pre+"/g2_c2", []string{g2, c2})})
		den := b.Op("Add", pre+"/den", []string{b.Op("Sqrt", pre+"/sqrt", []string{b.Op("Div", pre+"/vhat", []string{v1, bc2})}), eps})
		upd := b.Op("Mul", pre+"/lr_upd", []string{b.Op("Div", pre+"/upd", []string{b.Op("Div", pre+"/mhat", []string{m1, bc1}), den}), lr})
		base := pn
		if decay != "" {
			base = b.Op("Mul", pre+"/decayed", []string{pn, decay})
		}
		b.OpOut("Sub", pre+"/p", []string{base, upd}, []string{np})
		b.OpOut("Identity", pre+"/m_out", []string{m1}, []string{nm})
		b.OpOut("Identity", pre+"/v_out", []string{v1}, []string{nv})
		for _, n := range []string{np, nm, nv} {
			b.Output(n, onnxpb.TensorProto_FLOAT, d...)
		}
	}
	m, err := b.Model()
	if err != nil {
		return nil, fmt.Errorf("trainstep: adamw graph: %w", err)
	}
	return m, nil
}
