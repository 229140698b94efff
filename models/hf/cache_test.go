package hf_test

import (
	"path/filepath"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/lm"
	"github.com/shears-ml/shears/models/hf"
	"github.com/shears-ml/shears/runtime"
)

// cached runs an imported model on one sequence, a chunk at a time, carrying the KV cache.
type cached struct {
	t        *testing.T
	s        *runtime.Session
	presents []string
	past     map[string]*runtime.Tensor
	at       int // the cache's length
}

// openCached writes hf.FamilyConfigs[name]'s random checkpoint (seed), imports it and opens it.
func openCached(t *testing.T, name string, seed uint64) (*cached, *hf.Config, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := hf.WriteRandom(dir, []byte(hf.FamilyConfigs[name]), hf.RandomOptions{Seed: seed}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), name+".onnx")
	importTo(t, dir, out)
	s, err := runtime.OpenFile(out, runtime.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	r := &cached{t: t, s: s}
	for _, o := range s.Outputs() {
		if _, _, ok := lm.ParsePresent(o.Name); ok {
			r.presents = append(r.presents, o.Name)
		}
	}
	c, err := hf.ReadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	return r, c, dir
}

// next feeds ids after the cache and returns their logits [len(ids)·vocab]; the presents become
// the cache.
func (r *cached) next(ids []int) []float32 {
	t := r.t
	t.Helper()
	res, err := r.s.Run(testkit.PastFeeds(t, r.s.Inputs(), [][]int{ids}, r.past, r.at), append([]string{lm.Logits}, r.presents...))
	if err != nil {
		t.Fatal(err)
	}
	r.past = testkit.NextPast(res)
	r.at += len(ids)
	return res[lm.Logits].F32
}

// The KV cache: a prefix of 5, then 2 tokens and then 1 (a decode step), each fed the presents
// so far as the past, give the whole sequence's logits (positions, the past's layout, the
// rotary tables and the sliding windows, which the prefix already exceeds, agree), for every
// family.
func TestFamiliesCachedContinuation(t *testing.T) {
	testkit.ORT(t)
	for _, name := range familyNames() {
		t.Run(name, func(t *testing.T) {
			ids := []int{5, 77, 3, 120, 64, 9, 31, 100}
			whole, _, _ := openCached(t, name, 11)
			full := whole.next(ids)
			r, _, _ := openCached(t, name, 11)
			for _, n := range []int{5, 2, 1} {
				at := r.at
				got := r.next(ids[at : at+n])
				if d := testkit.MaxDiff(got, full[at*128:(at+n)*128]); !(d <= 1e-4) {
					t.Fatalf("tokens %d..%d fed with a cache of %d differ from the full sequence by %.3g", at, at+n, at, d)
				}
			}
		})
	}
}
