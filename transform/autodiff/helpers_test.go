package autodiff_test

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/shears-ml/shears/train/gradcheck"
)

func putF64(b []byte, v float64) { binary.LittleEndian.PutUint64(b, math.Float64bits(v)) }

// checkResults fails the test with every gradcheck.Failures line at tol and returns the worst
// relative error (+Inf when a gradient was NaN).
func checkResults(t *testing.T, res []gradcheck.Result, tol float64) float64 {
	t.Helper()
	for _, f := range gradcheck.Failures(res, tol) {
		t.Error(f)
	}
	worst := 0.0
	for _, r := range res {
		worst = max(worst, r.MaxRelErr)
	}
	return worst
}
