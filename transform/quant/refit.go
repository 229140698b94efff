package quant

import "math"

// A merged weight W' = W + M ⊙ ΔW (QA-SparsePEFT) may leave its block's range on the base's
// grid: the block's extreme weights sit on the end codes, and any update past them would be
// clamped (up to more than a step away from W'). The merge rule used by both the QA train
// graph (transform/lora) and Requantize is therefore per block:
//
//   - if every value rounds within half a step on the base grid (Fits), the block keeps the
//     base's scale and zero point (an unchanged or slightly moved block is byte-identical);
//   - otherwise the block gets its own grid fitted to its values (Refit), which keeps 0 exactly
//     representable, so every weight lands within half a step of W'.
//
// Both are computed in float32 arithmetic only (products and quotients of float32 values,
// correctly rounded), so Go and onnxruntime make the same decision and the same grid.

// Fits reports whether values whose extremes are lo ≤ hi all round on g to a code at most half
// a step away: lo ≥ (−Z − ½)·S and hi ≤ (2^bits − 1 − Z + ½)·S. An all-zero block (S = 0)
// fits only values that are all zero.
func (g Grid) Fits(lo, hi float32, c Config) bool {
	loT := (float32(-g.Zero) - 0.5) * g.Scale
	hiT := (float32(c.MaxCode()-g.Zero) + 0.5) * g.Scale
	return lo >= loT && hi <= hiT
}

// Refit is the grid of a block whose values span lo ≤ hi, fitted as NewGrid fits a float block
// (symmetric: S = max(hi, −lo)/(2^(bits−1)−1) with the default zero point; asymmetric: the
// range widened to include 0, S = (hi − lo)/(2^bits − 1), Z = round(−lo/S)), in float32. 0 stays
// on the grid and every value of [lo, hi] is within half a step of its code.
func Refit(lo, hi float32, c Config) Grid {
	if c.Symmetric {
		return Grid{Scale: max(hi, -lo) / float32(c.DefaultZero()-1), Zero: c.DefaultZero()}
	}
	lo, hi = min(lo, 0), max(hi, 0)
	if hi == lo {
		return Grid{Scale: 0, Zero: c.DefaultZero()}
	}
	s := (hi - lo) / float32(c.MaxCode())
	z := int(math.RoundToEven(float64(-lo / s)))
	return Grid{Scale: s, Zero: max(0, min(c.MaxCode(), z))}
}

// blockRange is the extremes of output n's block b of w [K, N].
func blockRange(w []float32, k, n, j, b, bs int) (lo, hi float32) {
	lo, hi = w[b*bs*n+j], w[b*bs*n+j]
	for i := b * bs; i < min(k, (b+1)*bs); i++ {
		lo, hi = min(lo, w[i*n+j]), max(hi, w[i*n+j])
	}
	return lo, hi
}
