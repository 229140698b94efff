package hf_test

import (
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
)

// LongRoPE in both regimes against the reference: 8 tokens (largest position 7 < original 8)
// use short_factor, a 12-token run continued through the cache (9, then 2, then 1: every call
// past the original context) uses long_factor. The reference's two regimes differ on the same
// 8 tokens by far more than the tolerance, so a graph that did not switch would fail.
func TestLongRopeRegimes(t *testing.T) {
	testkit.ORT(t)
	ids := []int{5, 77, 3, 120, 64, 9, 31, 100, 17, 88, 42, 6}
	ids64 := make([]int64, len(ids))
	for i, x := range ids {
		ids64[i] = int64(x)
	}
	r, c, dir := openCached(t, "phi3-longrope", 5)
	w := loadRef(t, dir)
	short := refForward(t, c, w, ids64[:8])
	long := refForward(t, c, w, ids64)
	if d := relDiff(flat(long[:8]), short); !(d >= 1e-2) {
		t.Fatalf("the reference's short and long regimes differ by only %.3g on 8 tokens", d)
	}
	if d := relDiff(r.next(ids[:8]), short); !(d <= 1e-5) {
		t.Errorf("short regime (8 tokens): %.3g relative from the reference", d)
	} else {
		t.Logf("short regime: %.3g relative", d)
	}
	r, _, _ = openCached(t, "phi3-longrope", 5)
	for _, n := range []int{9, 2, 1} {
		at := r.at
		if d := relDiff(r.next(ids[at:at+n]), long[at:at+n]); !(d <= 1e-5) {
			t.Errorf("long regime, tokens %d..%d after a cache of %d: %.3g relative from the reference", at, at+n, at, d)
		} else {
			t.Logf("long regime, tokens %d..%d: %.3g relative", at, at+n, d)
		}
	}
}

// flat concatenates rows.
func flat(rows [][]float64) []float32 {
	var f []float32
	for _, r := range rows {
		for _, x := range r {
			f = append(f, float32(x))
		}
	}
	return f
}
