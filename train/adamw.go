package train

import (
	"math"

	"github.com/shears-ml/shears/transform/trainstep"
)

// AdamWUpdate applies one AdamW step (torch's adamw, METHOD.md §3) to p in place, updating the
// moments m and v; step is the 1-based number of this update. The per-element arithmetic is
// done in float64 and stored in float32.
func AdamWUpdate(hp trainstep.AdamW, p, g, m, v []float32, lr float64, step int) {
	bc1 := 1 - math.Pow(hp.Beta1, float64(step))
	bc2 := 1 - math.Pow(hp.Beta2, float64(step))
	decay := 1 - lr*hp.WeightDecay
	b1, b2 := hp.Beta1, hp.Beta2
	eps := hp.Eps
	// lr·m̂/(√v̂+ε) = (lr/bc1)·m / (√v/√bc2 + ε)
	a := lr / bc1
	s := 1 / math.Sqrt(bc2)
	for i := range p {
		gi := float64(g[i])
		mi := b1*float64(m[i]) + (1-b1)*gi
		vi := b2*float64(v[i]) + (1-b2)*gi*gi
		m[i], v[i] = float32(mi), float32(vi)
		p[i] = float32(float64(p[i])*decay - a*mi/(math.Sqrt(vi)*s+eps))
	}
}
