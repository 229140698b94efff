package llama_test

import (
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/lm"
	"github.com/shears-ml/shears/models/llama"
	"github.com/shears-ml/shears/runtime"
	"google.golang.org/protobuf/proto"
)

// withPastRun runs one batch through s: b's feeds from lm, the cache from past (nil: empty),
// and returns the logits [B, T, vocab] and the presents by past-input name.
func withPastRun(t *testing.T, s *runtime.Session, it *lm.Interface, b lm.Batch, past map[string]*runtime.Tensor) (*runtime.Tensor, map[string]*runtime.Tensor) {
	t.Helper()
	outs := []string{lm.Logits}
	for i := 0; i < it.Layers; i++ {
		outs = append(outs, lm.Present(i, lm.Key), lm.Present(i, lm.Value))
	}
	res, err := s.Run(testkit.BatchFeeds(t, s.Inputs(), b, past), outs)
	if err != nil {
		t.Fatal(err)
	}
	return res[lm.Logits], testkit.NextPast(res)
}

// rowLogits returns the logits of row r, positions [from, to) of l [B, T, V].
func rowLogits(l *runtime.Tensor, r, from, to int) []float32 {
	T, V := int(l.Shape[1]), int(l.Shape[2])
	return l.F32[(r*T+from)*V : (r*T+to)*V]
}

// The with-past graph computes what a full recompute computes: a prefill of 4 tokens then the
// other 3 fed with the cache give the full run's logits; a right-padded row gives its unpadded
// logits, and continuing it from a padded cache (the mask hides the padding, positions count
// real tokens only) gives the logits of the unpadded sequence.
func TestWithPastMatchesRecompute(t *testing.T) {
	testkit.ORT(t)
	c := llama.Config{Dim: 32, HiddenDim: 48, Layers: 2, Heads: 4, KVHeads: 2, Vocab: 40, MaxSeq: 16, NormEps: 1e-5, RopeTheta: 10000}
	m, err := llama.Build(c, llama.Weights(randomWeights(c, 3)))
	if err != nil {
		t.Fatal(err)
	}
	it, err := lm.Read(m)
	if err != nil {
		t.Fatal(err)
	}
	if it.Layers != 2 || it.KVHeads != 2 || it.HeadDim != 8 || !it.AttentionMask || !it.PositionIDs || it.Presents != 2 {
		t.Fatalf("interface %+v", it)
	}
	raw, err := proto.Marshal(m.Proto)
	if err != nil {
		t.Fatal(err)
	}
	s, err := runtime.OpenBytes(raw, "", runtime.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a := []int{1, 5, 9, 39, 0, 12, 3}
	bq := []int{20, 20, 21, 2, 38}
	full, _ := withPastRun(t, s, it, lm.Batch{IDs: [][]int{a}}, nil)
	aloneB, _ := withPastRun(t, s, it, lm.Batch{IDs: [][]int{bq}}, nil)
	const tol = 2e-5

	// Prefill 4, then 3 with the cache.
	_, cache := withPastRun(t, s, it, lm.Batch{IDs: [][]int{a[:4]}}, nil)
	if sh := cache[lm.Past(0, lm.Key)].Shape; len(sh) != 4 || sh[0] != 1 || sh[1] != 2 || sh[2] != 4 || sh[3] != 8 {
		t.Fatalf("present shape %v, want [1 2 4 8]", sh)
	}
	step, _ := withPastRun(t, s, it, lm.Batch{IDs: [][]int{a[4:]}, PastMask: [][]int64{{1, 1, 1, 1}}}, cache)
	if d := testkit.MaxDiff(rowLogits(step, 0, 0, 3), rowLogits(full, 0, 4, 7)); !(d <= tol) {
		t.Errorf("cached continuation differs from the full run by %g", d)
	}

	// A padded batch: row 1 is b's first 3 tokens, padded to 7.
	batch := lm.Batch{IDs: [][]int{a, bq[:3]}, Pad: 0}
	padded, pc := withPastRun(t, s, it, batch, nil)
	if d := testkit.MaxDiff(rowLogits(padded, 0, 0, 7), rowLogits(full, 0, 0, 7)); !(d <= tol) {
		t.Errorf("row 0 of the padded batch differs from its own run by %g", d)
	}
	if d := testkit.MaxDiff(rowLogits(padded, 1, 0, 3), rowLogits(aloneB, 0, 0, 3)); !(d <= tol) {
		t.Errorf("row 1's real tokens differ from its own run by %g", d)
	}
	// Continue both rows by 2 tokens from the padded cache.
	f, _ := it.Feeds(batch)
	pm := f[lm.AttentionMask].I64
	mask := [][]int64{pm[:7], pm[7:]}
	cont, _ := withPastRun(t, s, it, lm.Batch{IDs: [][]int{{7, 8}, bq[3:5]}, PastMask: mask}, pc)
	if d := testkit.MaxDiff(rowLogits(cont, 1, 0, 2), rowLogits(aloneB, 0, 3, 5)); !(d <= tol) {
		t.Errorf("row 1 continued from a padded cache differs from its unpadded run by %g", d)
	}
}
