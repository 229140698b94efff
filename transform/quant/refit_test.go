package quant

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestFitsAndRefit checks the merge rule against its definition on random blocks moved off a
// quantized base: Fits is true exactly when every value's code is within half a step of it
// on the base grid (clamping included), and a refit grid puts every value within half a step
// and keeps 0 on the grid; Requantize keeps the base grid of the blocks that fit.
func TestFitsAndRefit(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	const k, n = 172, 6
	fits, refits := 0, 0
	for _, c := range grids {
		w := sparseWeight(r, k, n)
		base, err := RTN(w, k, n, c)
		if err != nil {
			t.Fatal(err)
		}
		moved := base.Dequant()
		for i := range moved {
			if moved[i] != 0 && r.IntN(8) == 0 {
				moved[i] += float32(r.NormFloat64() * 0.03)
			}
		}
		halfStep := func(g Grid, v float32) bool {
			return g.Scale == 0 && v == 0 || g.Scale != 0 && math.Abs(float64(v-g.Value(g.Code(v, c))))/float64(g.Scale) <= 0.5+1e-6
		}
		refits0 := refits
		for j := 0; j < n; j++ {
			for b := 0; b < base.KBlocks(); b++ {
				lo, hi := blockRange(moved, k, n, j, b, c.BlockSize)
				g := base.GridAt(j, b)
				all := true
				for i := b * c.BlockSize; i < min(k, (b+1)*c.BlockSize); i++ {
					all = all && halfStep(g, moved[i*n+j])
				}
				// Away from the threshold (1e-4 of a step) the two must agree.
				near := g.Scale != 0 && (math.Abs(float64(lo)/float64(g.Scale)+float64(g.Zero)+0.5) < 1e-4 ||
					math.Abs(float64(hi)/float64(g.Scale)+float64(g.Zero)-float64(c.MaxCode())-0.5) < 1e-4)
				if f := g.Fits(lo, hi, c); f != all && !near {
					t.Fatalf("%+v block (%d, %d) [%g, %g]: Fits %v, every value within half a step %v", c, j, b, lo, hi, f, all)
				} else if f {
					fits++
					continue
				}
				refits++
				rg := Refit(lo, hi, c)
				if rg.Value(uint8(rg.Zero)) != 0 || rg.Code(0, c) != uint8(rg.Zero) {
					t.Fatalf("%+v: refit grid %+v does not keep 0", c, rg)
				}
				for i := b * c.BlockSize; i < min(k, (b+1)*c.BlockSize); i++ {
					if !halfStep(rg, moved[i*n+j]) {
						t.Fatalf("%+v: refit grid %+v leaves %g more than half a step away", c, rg, moved[i*n+j])
					}
				}
			}
		}
		l, nr, err := Requantize(moved, base)
		if err != nil {
			t.Fatal(err)
		}
		if nr != refits-refits0 {
			t.Fatalf("%+v: Requantize refit %d blocks, want %d", c, nr, refits-refits0)
		}
		for i, v := range l.Dequant() {
			if moved[i] == 0 && v != 0 {
				t.Fatalf("%+v: a zero dequantizes to %g", c, v)
			}
		}
	}
	if fits == 0 || refits == 0 {
		t.Fatalf("%d blocks fit, %d refit: the test checks only one side", fits, refits)
	}
	t.Logf("%d blocks fit the base grid, %d refit", fits, refits)
}
