package train

import (
	"math"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/transform/trainstep"
)

// refAdamW is METHOD.md §3 written out in float64, with torch's decoupled decay first.
type refAdamW struct{ m, v []float64 }

func (r *refAdamW) update(hp trainstep.AdamW, p, g []float64, lr float64, k int) []float64 {
	if r.m == nil {
		r.m, r.v = make([]float64, len(p)), make([]float64, len(p))
	}
	out := make([]float64, len(p))
	for i := range p {
		r.m[i] = hp.Beta1*r.m[i] + (1-hp.Beta1)*g[i]
		r.v[i] = hp.Beta2*r.v[i] + (1-hp.Beta2)*g[i]*g[i]
		mhat := r.m[i] / (1 - math.Pow(hp.Beta1, float64(k)))
		vhat := r.v[i] / (1 - math.Pow(hp.Beta2, float64(k)))
		out[i] = p[i]*(1-lr*hp.WeightDecay) - lr*mhat/(math.Sqrt(vhat)+hp.Eps)
	}
	return out
}

func f64s(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// The runner's Go AdamW and the optimizer graph both follow the formula, step after step, on
// real stories260K gradients.
func TestAdamWMatchesFormula(t *testing.T) {
	testkit.ORT(t)
	m := stories(t)
	const b, l = 2, 16
	hp := trainstep.AdamW{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.1}
	st, err := trainstep.Build(m, trainstep.Config{Batch: b, Seq: l, Trainable: normWeights()[:3]})
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(st, Options{AdamW: hp})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	opt, err := trainstep.BuildAdamW(st.Params, hp)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := opt.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	osess, err := runtime.OpenBytes(raw, "", runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer osess.Close()

	refs := make([]refAdamW, len(st.Params))
	graphM := make([][]float32, len(st.Params))
	graphV := make([][]float32, len(st.Params))
	for i, p := range st.Params {
		graphM[i], graphV[i] = make([]float32, len(p.Init)), make([]float32, len(p.Init))
	}
	lrs := []float64{1e-2, 5e-3, 2e-2, 1e-3}
	for k, lr := range lrs {
		ids := randomIDs(b*l, uint64(10+k))
		if _, err := r.Accumulate(ids, ids, 1); err != nil {
			t.Fatal(err)
		}
		feeds := map[string]*runtime.Tensor{
			trainstep.AdamWLR: runtime.F32([]int64{}, []float32{float32(lr)}), trainstep.AdamWStep: runtime.F32([]int64{}, []float32{float32(k + 1)})}
		var before, grads [][]float64
		for i, p := range st.Params {
			pv, _ := r.Param(p.Name)
			gv, _ := r.Grad(p.Name)
			before, grads = append(before, f64s(pv)), append(grads, f64s(gv))
			pn, gn, mn, vn, _, _, _ := trainstep.AdamWNames(p.Name)
			feeds[pn] = runtime.F32(p.Dims, append([]float32(nil), pv...))
			feeds[gn] = runtime.F32(p.Dims, append([]float32(nil), gv...))
			feeds[mn], feeds[vn] = runtime.F32(p.Dims, graphM[i]), runtime.F32(p.Dims, graphV[i])
		}
		gout, err := osess.Run(feeds, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Apply(lr); err != nil {
			t.Fatal(err)
		}
		for i, p := range st.Params {
			want := refs[i].update(hp, before[i], grads[i], lr, k+1)
			got, _ := r.Param(p.Name)
			_, _, _, _, np, nm, nv := trainstep.AdamWNames(p.Name)
			for j := range want {
				// Each step moves a weight by about lr; both must land within float32 rounding.
				if d := math.Abs(float64(got[j]) - want[j]); !(d <= 1e-6*math.Max(1, math.Abs(want[j]))) {
					t.Fatalf("step %d %s[%d]: Go AdamW %v, formula %v", k+1, p.Name, j, got[j], want[j])
				}
				if d := math.Abs(float64(gout[np].F32[j]) - want[j]); !(d <= 1e-6*math.Max(1, math.Abs(want[j]))) {
					t.Fatalf("step %d %s[%d]: AdamW graph %v, formula %v", k+1, p.Name, j, gout[np].F32[j], want[j])
				}
				if math.Abs(want[j]-before[i][j]) < 1e-4*lr {
					t.Fatalf("step %d %s[%d] barely moved (%v → %v): the check would prove nothing", k+1, p.Name, j, before[i][j], want[j])
				}
			}
			graphM[i], graphV[i] = gout[nm].F32, gout[nv].F32
		}
	}
	if r.Updates() != len(lrs) {
		t.Fatalf("updates %d, want %d", r.Updates(), len(lrs))
	}
}
