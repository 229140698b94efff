package quant

import (
	"math"
	"math/rand/v2"
	"testing"
)

// plainGPTQ is the paper's algorithm written out directly (Frantar et al. 2022, eqs. 2–3, the
// OBQ update in a fixed order): an explicit inverse Hessian by Gauss–Jordan, each input quantized
// in turn, the remaining inputs updated by −(w_i − q_i)/[H⁻¹]_ii · [H⁻¹]_i,·, and input i removed
// from H⁻¹ by H⁻¹ ← H⁻¹ − H⁻¹_:,i H⁻¹_i,: / [H⁻¹]_ii. No Cholesky, no lazy batches. Pruned
// weights quantize to 0 (the zero point). It returns codes [N][K] and grids [N][blocks].
func plainGPTQ(w []float32, k, n int, h []float64, c Config, damp float64) ([][]uint8, [][]Grid) {
	H := append([]float64(nil), h...)
	W := make([][]float64, n)
	pruned := make([][]bool, n)
	for j := range W {
		W[j], pruned[j] = make([]float64, k), make([]bool, k)
		for i := 0; i < k; i++ {
			W[j][i], pruned[j][i] = float64(w[i*n+j]), w[i*n+j] == 0
		}
	}
	mean := 0.0
	for i := 0; i < k; i++ {
		if H[i*k+i] == 0 {
			H[i*k+i] = 1
			for j := range W {
				W[j][i] = 0
			}
		}
		mean += H[i*k+i] / float64(k)
	}
	for i := 0; i < k; i++ {
		H[i*k+i] += damp * mean
	}
	// Gauss–Jordan inverse.
	A := make([][]float64, k)
	for r := range A {
		A[r] = make([]float64, 2*k)
		copy(A[r], H[r*k:(r+1)*k])
		A[r][k+r] = 1
	}
	for p := 0; p < k; p++ {
		best := p
		for r := p + 1; r < k; r++ {
			if math.Abs(A[r][p]) > math.Abs(A[best][p]) {
				best = r
			}
		}
		A[p], A[best] = A[best], A[p]
		piv := A[p][p]
		for t := range A[p] {
			A[p][t] /= piv
		}
		for r := 0; r < k; r++ {
			if r != p && A[r][p] != 0 {
				f := A[r][p]
				for t := range A[r] {
					A[r][t] -= f * A[p][t]
				}
			}
		}
	}
	Hinv := make([][]float64, k)
	for r := range Hinv {
		Hinv[r] = A[r][k:]
	}
	codes := make([][]uint8, n)
	grids := make([][]Grid, n)
	for j := range codes {
		codes[j] = make([]uint8, k)
	}
	bs := c.BlockSize
	for i := 0; i < k; i++ {
		for j := 0; j < n; j++ {
			if i%bs == 0 {
				var vals []float32
				for t := i; t < min(k, i+bs); t++ {
					if !pruned[j][t] {
						vals = append(vals, float32(W[j][t]))
					}
				}
				grids[j] = append(grids[j], NewGrid(vals, c))
			}
			g := grids[j][i/bs]
			q := uint8(g.Zero)
			if !pruned[j][i] {
				q = g.Code(float32(W[j][i]), c)
			}
			codes[j][i] = q
			e := (W[j][i] - float64(g.Value(q))) / Hinv[i][i]
			for t := i + 1; t < k; t++ {
				W[j][t] -= e * Hinv[i][t]
			}
		}
		d := Hinv[i][i]
		col, row := make([]float64, k), append([]float64(nil), Hinv[i]...)
		for r := 0; r < k; r++ {
			col[r] = Hinv[r][i]
		}
		for r := 0; r < k; r++ {
			for t := 0; t < k; t++ {
				Hinv[r][t] -= col[r] * row[t] / d
			}
		}
	}
	return codes, grids
}

// hessian is 2/T·XᵀX of T random correlated inputs (one input always 0: a dead feature).
func hessian(r *rand.Rand, k, tokens int) []float64 {
	h := make([]float64, k*k)
	x := make([]float64, k)
	for s := 0; s < tokens; s++ {
		base := r.NormFloat64()
		for i := range x {
			x[i] = r.NormFloat64() + 0.5*base
		}
		x[3] = 0
		for a := 0; a < k; a++ {
			for b := 0; b < k; b++ {
				h[a*k+b] += 2 * x[a] * x[b] / float64(tokens)
			}
		}
	}
	return h
}

// TestGPTQMatchesPlainReference checks the Cholesky, lazy-batch implementation against the
// plain algorithm on small sparse layers: the same integer codes and the same scales and zero
// points, for several grids, with K not a multiple of the lazy batch.
func TestGPTQMatchesPlainReference(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	const k, n = 80, 6
	w := sparseWeight(r, k, n)
	h := hessian(r, k, 200)
	for _, c := range []Config{{4, 16, false}, {4, 32, true}, {8, 16, false}, {4, 64, false}} {
		l, err := GPTQ(w, k, n, h, c, GPTQOptions{Damp: 0.01, Lazy: 32})
		if err != nil {
			t.Fatal(err)
		}
		codes, grids := plainGPTQ(w, k, n, h, c, 0.01)
		for j := 0; j < n; j++ {
			for b, g := range grids[j] {
				got := l.GridAt(j, b)
				if got.Zero != g.Zero || !(math.Abs(float64(got.Scale-g.Scale)) <= 1e-6*math.Abs(float64(g.Scale))) {
					t.Fatalf("%+v out %d block %d: grid %+v, reference %+v", c, j, b, got, g)
				}
			}
			for i := 0; i < k; i++ {
				if l.Code(i, j) != codes[j][i] {
					t.Fatalf("%+v W[%d,%d]: code %d, reference %d", c, i, j, l.Code(i, j), codes[j][i])
				}
			}
		}
		deq := l.Dequant()
		for i, v := range w {
			if v == 0 && deq[i] != 0 {
				t.Fatalf("%+v: pruned weight %d dequantizes to %g", c, i, deq[i])
			}
		}
	}
}

// TestGPTQBeatsRTN: on correlated inputs GPTQ's reconstruction error tr((W−Q)ᵀH(W−Q)) is
// below round-to-nearest's, the point of the method.
func TestGPTQBeatsRTN(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	const k, n = 96, 16
	w := sparseWeight(r, k, n)
	h := hessian(r, k, 400)
	c := Config{4, 32, false}
	g, err := GPTQ(w, k, n, h, c, GPTQOptions{})
	if err != nil {
		t.Fatal(err)
	}
	q, _ := RTN(w, k, n, c)
	loss := func(d []float32) float64 {
		s := 0.0
		for j := 0; j < n; j++ {
			for a := 0; a < k; a++ {
				for b := 0; b < k; b++ {
					s += (float64(w[a*n+j]) - float64(d[a*n+j])) * h[a*k+b] * (float64(w[b*n+j]) - float64(d[b*n+j]))
				}
			}
		}
		return s
	}
	lg, lr := loss(g.Dequant()), loss(q.Dequant())
	if !(lg < 0.8*lr) {
		t.Fatalf("gptq loss %g, rtn %g: want gptq well below", lg, lr)
	}
	t.Logf("reconstruction loss: gptq %.4g, rtn %.4g (%.2f×)", lg, lr, lg/lr)
}
