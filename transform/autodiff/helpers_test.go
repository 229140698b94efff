package autodiff_test

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/shears-ml/shears/transform/autodiff/gradcheck"
)

func putF64(b []byte, v float64) { binary.LittleEndian.PutUint64(b, math.Float64bits(v)) }

// checkResults fails on a tensor whose gradient is all zero (the check would prove nothing)
// or whose relative error passes tol, and returns the worst relative error.
func checkResults(t *testing.T, res []gradcheck.Result, tol float64) float64 {
	t.Helper()
	worst := 0.0
	for _, r := range res {
		if r.Scale == 0 {
			t.Errorf("%s: gradient is identically zero; the check proves nothing", r.Name)
		}
		if r.MaxRelErr > tol {
			t.Errorf("%s: max rel err %.3g > %.0g (max abs %.3g, scale %.3g)\nanalytic %v\nnumeric  %v",
				r.Name, r.MaxRelErr, tol, r.MaxAbsErr, r.Scale, r.Analytic, r.Numeric)
		}
		worst = max(worst, r.MaxRelErr)
	}
	return worst
}
