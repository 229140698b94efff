package hf_test

import (
	"path/filepath"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/lm"
	"github.com/shears-ml/shears/models/hf"
	"github.com/shears-ml/shears/runtime"
)

// The KV cache: a prefix, then the rest of the sequence fed with the prefix's presents as the
// past, gives the whole sequence's logits (positions, the past's layout and the rotary tables
// agree), for every family.
func TestFamiliesCachedContinuation(t *testing.T) {
	testkit.ORT(t)
	for _, name := range []string{"llama", "mistral", "qwen2", "phi3", "gemma", "gpt2"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), name)
			if err := hf.WriteRandom(dir, []byte(familyConfigs[name]), hf.RandomOptions{Seed: 11}); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), name+".onnx")
			importTo(t, dir, out)
			s, err := runtime.OpenFile(out, runtime.Options{Threads: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			pastOf := map[string]string{}
			it, err := lm.FromIO(runtime.LMIO(s.Inputs()), nil)
			if err != nil {
				t.Fatal(err)
			}
			var presents []string
			for _, o := range s.Outputs() {
				if i, k, ok := lm.ParsePresent(o.Name); ok {
					presents = append(presents, o.Name)
					pastOf[o.Name] = lm.Past(i, k)
				}
			}
			run := func(ids []int, past map[string]*runtime.Tensor, pastLen int) map[string]*runtime.Tensor {
				b := lm.Batch{IDs: [][]int{ids}}
				if pastLen > 0 {
					b.PastMask = [][]int64{make([]int64, pastLen)}
					for i := range b.PastMask[0] {
						b.PastMask[0][i] = 1
					}
				}
				feeds, err := it.Feeds(b)
				if err != nil {
					t.Fatal(err)
				}
				in := map[string]*runtime.Tensor{}
				for k, v := range feeds {
					if in[k], err = runtime.LMTensor(v); err != nil {
						t.Fatal(err)
					}
				}
				for k, v := range past {
					in[k] = v
				}
				res, err := s.Run(in, append([]string{lm.Logits}, presents...))
				if err != nil {
					t.Fatal(err)
				}
				return res
			}
			ids := []int{5, 77, 3, 120, 64, 9, 31, 100}
			full := run(ids, nil, 0)[lm.Logits].F32
			head := run(ids[:5], nil, 0)
			past := map[string]*runtime.Tensor{}
			for _, p := range presents {
				past[pastOf[p]] = head[p]
			}
			tail := run(ids[5:], past, 5)[lm.Logits].F32
			want := full[5*128:]
			if d := testkit.MaxDiff(tail, want); !(d <= 1e-4) {
				t.Fatalf("cached continuation differs from the full sequence by %.3g", d)
			}
		})
	}
}
