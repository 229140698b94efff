package lora

import (
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/train/gradcheck"
	"github.com/shears-ml/shears/transform/autodiff"
)

// TestSparseAdapterGradients: the SparsePEFT path x·(M ⊙ (s·(A⊙m)·B)) of a half-zero tiny
// model differentiates (M = Cast(Not(Equal(W, 0))) is stop-gradient) and matches central
// differences in float64 for A and B, inactive ranks included (gradient exactly 0); its train
// graph with all-ones keep masks computes the inference graph's logits.
func TestSparseAdapterGradients(t *testing.T) {
	testkit.ORT(t)
	m := tiny(t)
	for _, l := range targetsOf(t, m) {
		w, _ := m.Float32s(m.Initializer(l.Weight))
		for i := range w {
			if i%2 == 0 {
				w[i] = 0
			}
		}
		if err := onnx.SetFloat32s(m.Initializer(l.Weight), w); err != nil {
			t.Fatal(err)
		}
	}
	p := plan(t, m, Config{Ranks: []int{8, 6, 4}, Dropout: 0.1, SparseAdapter: true})
	sup, err := Apply(m, p, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := ReadConfig(sup)
	if !meta.SparseAdapter {
		t.Fatal("metadata lost sparse_adapter")
	}
	randomizeB(t, sup, meta, 12)
	feeds, _ := masksFor(meta, 6, 4)
	want := logits(t, sup, feeds)
	trainG, err := Apply(m, p, ApplyOptions{Train: true})
	if err != nil {
		t.Fatal(err)
	}
	randomizeB(t, trainG, meta, 12)
	for _, mod := range meta.Modules {
		feeds[mod.Dropout] = ones(16 * mod.In)
	}
	if d := maxDiff(want, logits(t, trainG, feeds)); d != 0 {
		t.Errorf("train graph with keep = 1 differs from the inference graph by %g", d)
	}

	trainG = weightedLoss(t, trainG, 5)
	in := map[string]*runtime.Tensor{"input_ids": runtime.I64([]int64{2, 8}, testIDs)}
	for k, v := range feeds {
		shape := []int64{int64(len(v))}
		if len(v) > meta.RMax {
			shape = []int64{2, 8, int64(len(v) / 16)}
		}
		v64 := make([]float64, len(v))
		for i, x := range v {
			v64[i] = float64(x)
		}
		in[k] = runtime.F64(shape, v64)
	}
	g64, err := autodiff.ToFloat64(trainG)
	if err != nil {
		t.Fatal(err)
	}
	q, down := meta.Modules[0], meta.Modules[4] // layer 0 q (rank 6) and down (rank 6, group 2)
	res, err := gradcheck.Check(g64, "loss", []string{q.A, q.B, down.A, down.B}, in,
		gradcheck.Options{InputDims: map[string][]int64{"input_ids": {2, 8}}, MaxSamples: 24, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	inactive := 0
	for _, r := range res {
		for k, idx := range r.Indices {
			col := idx % meta.RMax // A [in, r_max]
			if r.Name == q.B || r.Name == down.B {
				col = idx / int(q.Out) // B [r_max, out]; q and down both have out = 64
			}
			if col >= 6 {
				inactive++
				if r.Analytic[k] != 0 {
					t.Errorf("%s[%d] (rank slot %d ≥ active 6): gradient %g, want exactly 0", r.Name, idx, col, r.Analytic[k])
				}
			}
		}
		t.Logf("%s: max relative error %.2g, scale %.2g", r.Name, r.MaxRelErr, r.Scale)
	}
	for _, f := range gradcheck.Failures(res, gradcheck.TolModel64) {
		t.Error(f)
	}
	if inactive == 0 {
		t.Error("no inactive rank slot was sampled")
	}
}
