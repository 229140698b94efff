package bench

import (
	"testing"

	"github.com/shears-ml/shears/eval"
	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/lm"
	"github.com/shears-ml/shears/runtime"
)

// TestDecodeStepIsGeneration: the step the decode columns time is a real decode step — its
// logits equal the last position's logits of a forward over the prompt and the new token with
// no cache — and Forward reports both rates on a model with a KV cache.
func TestDecodeStepIsGeneration(t *testing.T) {
	testkit.ORT(t)
	model := testkit.Synthetic(t, "tiny")
	s, err := runtime.OpenFile(model, runtime.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	it, err := lm.FromIO(runtime.LMIO(s.Inputs()), runtime.LMIO(s.Outputs()))
	if err != nil || !it.HasPast() {
		t.Fatalf("tiny model: cache %v (%v)", it != nil && it.HasPast(), err)
	}
	prompt := []int{5, 17, 200, 3, 99, 42, 7, 7, 130, 64, 1, 250}
	next := 77
	feeds, fetch, err := decodeStep(s, it, prompt, next)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Run(feeds, fetch)
	if err != nil {
		t.Fatal(err)
	}
	full, err := eval.Feeds(s.Inputs(), [][]int{append(append([]int{}, prompt...), next)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, err := s.Run(full, []string{lm.Logits})
	if err != nil {
		t.Fatal(err)
	}
	v := len(got[lm.Logits].F32)
	last := want[lm.Logits].F32[len(prompt)*v:]
	if d := testkit.MaxDiff(got[lm.Logits].F32, last); !(d <= 1e-4) || v == 0 {
		t.Fatalf("decode step logits differ from the uncached forward's last row by %g (vocab %d)", d, v)
	}
	if p := got[lm.Present(0, lm.Key)].Shape; len(p) != 4 || p[2] != int64(len(prompt)+1) {
		t.Fatalf("present of the decode step has shape %v, want past %d + 1", p, len(prompt))
	}
	r, err := Forward(model, runtime.Options{Threads: 1}, 2, 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	if r.DecodePast != 64 || !(r.DecodeTokensPerSecond > 0) || !(r.TokensPerSecond > 0) {
		t.Fatalf("forward: %+v", r)
	}
}
