package hf

import (
	"path/filepath"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/lm"
	"github.com/shears-ml/shears/runtime"
)

// cached runs an imported model on one sequence, a chunk at a time, carrying the KV cache.
type cached struct {
	t        *testing.T
	s        *runtime.Session
	it       *lm.Interface
	presents []string
	pastOf   map[string]string
	past     map[string]*runtime.Tensor
	at       int // the cache's length
}

// openCached writes familyConfigs[name]'s random checkpoint (seed), imports it and opens it.
func openCached(t *testing.T, name string, seed uint64) (*cached, *Config, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := WriteRandom(dir, []byte(familyConfigs[name]), RandomOptions{Seed: seed}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), name+".onnx")
	importTo(t, dir, out)
	s, err := runtime.OpenFile(out, runtime.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	it, err := lm.FromIO(runtime.LMIO(s.Inputs()), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &cached{t: t, s: s, it: it, pastOf: map[string]string{}, past: map[string]*runtime.Tensor{}}
	for _, o := range s.Outputs() {
		if i, k, ok := lm.ParsePresent(o.Name); ok {
			r.presents = append(r.presents, o.Name)
			r.pastOf[o.Name] = lm.Past(i, k)
		}
	}
	c, err := ReadConfig(dir)
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
	b := lm.Batch{IDs: [][]int{ids}}
	if r.at > 0 {
		b.PastMask = [][]int64{make([]int64, r.at)}
		for i := range b.PastMask[0] {
			b.PastMask[0][i] = 1
		}
	}
	feeds, err := r.it.Feeds(b)
	if err != nil {
		t.Fatal(err)
	}
	in := map[string]*runtime.Tensor{}
	for k, v := range feeds {
		if in[k], err = runtime.LMTensor(v); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range r.past {
		in[k] = v
	}
	res, err := r.s.Run(in, append([]string{lm.Logits}, r.presents...))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range r.presents {
		r.past[r.pastOf[p]] = res[p]
	}
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
