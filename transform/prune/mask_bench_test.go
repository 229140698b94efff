package prune

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkMask is one 1B-model gate_proj (2048 × 5632) at 50% Wanda.
func BenchmarkMask(b *testing.B) {
	in, out := 2048, 5632
	rng := rand.New(rand.NewPCG(1, 2))
	w := make([]float32, in*out)
	for i := range w {
		w[i] = float32(rng.NormFloat64())
	}
	norm := make([]float64, in)
	for i := range norm {
		norm[i] = rng.Float64() * 10
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Mask(w, Weight{In: in, Out: out}, norm, Config{Method: Wanda, Sparsity: 0.5}); err != nil {
			b.Fatal(err)
		}
	}
}
