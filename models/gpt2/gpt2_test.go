package gpt2_test

import (
	"math"
	"slices"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/lm"
	"github.com/shears-ml/shears/models/gpt2"
	"github.com/shears-ml/shears/onnx"
)

// testIDs are two rows of 8 ids; row 1 equals row 0 in its first 4 ids.
var testIDs = []int64{5, 17, 300, 2, 99, 511, 0, 42, 5, 17, 300, 2, 7, 8, 9, 10}

// logits runs m in onnxruntime on ids [2, 8] and returns the logits, with any extra float inputs
// (every model input but input_ids must have one).
func logits(t *testing.T, m *onnx.Model, extra map[string][]float32) []float32 {
	t.Helper()
	names, out := testkit.RunLogits(t, m, 2, testIDs, testkit.Vectors(extra))
	for _, n := range names {
		if _, ok := extra[n]; !ok && !isLM(n) {
			t.Fatalf("model input %s has no feed", n)
		}
	}
	if len(out) != 2*8*512 {
		t.Fatalf("%d logits, want 2 × 8 × 512", len(out))
	}
	return out
}

// The tiny model runs in onnxruntime with finite, non-degenerate logits; it is causal (row 1
// shares row 0's first 4 ids, so their logits agree there and differ after); and it is
// reproducible from its seed and different under another seed.
func TestTinyRuns(t *testing.T) {
	testkit.ORT(t)
	m, err := gpt2.Build(gpt2.Tiny, 1)
	if err != nil {
		t.Fatal(err)
	}
	got := logits(t, m, nil)
	var sum, sq float64
	for i, v := range got {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("logit %d is %v", i, v)
		}
		sum += float64(v)
		sq += float64(v) * float64(v)
	}
	n := float64(len(got))
	std := math.Sqrt(sq/n - (sum/n)*(sum/n))
	if std < 1e-2 || std > 100 {
		t.Fatalf("logit std %g: degenerate model", std)
	}
	const v = 512
	row := func(b, p int) []float32 { return got[(b*8+p)*v : (b*8+p+1)*v] }
	for p := 0; p < 8; p++ {
		var d float64
		for k, x := range row(0, p) {
			d = max(d, math.Abs(float64(x-row(1, p)[k])))
		}
		if p < 4 && !(d <= 1e-5) {
			t.Errorf("position %d: rows differ by %g although their prefixes are equal (not causal)", p, d)
		}
		if p >= 4 && d < 1e-3 {
			t.Errorf("position %d: rows agree (%g) although their inputs differ", p, d)
		}
	}
	again, _ := gpt2.Build(gpt2.Tiny, 1)
	if !slices.Equal(got, logits(t, again, nil)) {
		t.Error("the same seed gave other logits")
	}
	other, _ := gpt2.Build(gpt2.Tiny, 2)
	if slices.Equal(got, logits(t, other, nil)) {
		t.Error("another seed gave the same logits")
	}
	t.Logf("logit std %.3f", std)
}

func TestValidate(t *testing.T) {
	c := gpt2.Tiny
	c.Heads = 5
	if _, err := gpt2.Build(c, 1); err == nil {
		t.Fatal("dim 64 with 5 heads was accepted")
	}
}

// isLM reports whether n is a causal-LM input lm feeds.
func isLM(n string) bool {
	_, _, past := lm.ParsePast(n)
	return past || n == lm.InputIDs || n == lm.AttentionMask || n == lm.PositionIDs
}
