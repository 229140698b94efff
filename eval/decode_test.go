package eval

import (
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/runtime"
)

// cachedModels are with-past graphs to check the cached path on: our own LLaMA import (the
// models/llama graph the generation benchmarks time), GenAI-style graphs with
// onnxruntime's fused operators (GroupQueryAttention, MultiHeadAttention) and, where
// python3-torch is installed, PyTorch's optimum-style export of a random tiny LLaMA and its
// merged decoder (If on use_cache_branch).
func cachedModels(t *testing.T) map[string]*runtime.Session {
	t.Helper()
	testkit.ORT(t)
	paths := map[string]string{"llama import": testkit.Synthetic(t, "tiny")}
	for _, attn := range testkit.FusedAttentions {
		m, _, _ := testkit.FusedTiny(t, attn, 2)
		paths[attn] = filepath.Join(t.TempDir(), "fused.onnx")
		if err := m.Save(paths[attn], onnx.SaveOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if e, ok := testkit.TryTorchRandom(t, testkit.TorchTinySpec, 3); ok {
		paths["torch with-past"], paths["torch merged"] = e.WithPast, e.Merged
	}
	out := map[string]*runtime.Session{}
	for name, path := range paths {
		s, err := runtime.OpenFile(path, runtime.Options{Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		out[name] = s
	}
	return out
}

// TestCachedLogitsEqualRecompute steps a cached and a recomputing decoder through the same
// tokens (three rows, beams reordered midway) and compares the last-position logits every step.
func TestCachedLogitsEqualRecompute(t *testing.T) {
	for name, s := range cachedModels(t) {
		t.Run(name, func(t *testing.T) {
			cached, err := newDecoder(s, false)
			if err != nil {
				t.Fatal(err)
			}
			if !cached.cached {
				t.Fatal("the decoder did not use the model's cache")
			}
			full, err := newDecoder(s, true)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(5, 6))
			tok := func(n int) []int {
				r := make([]int, n)
				for i := range r {
					r[i] = rng.IntN(512)
				}
				return r
			}
			steps := [][][]int{{tok(6)}}
			worst := 0.0
			for step := 0; step < 12; step++ {
				if step == 3 {
					// one row becomes three (beam search's first expansion)
					for _, d := range []*decoder{cached, full} {
						if err := d.reorder([]int{0, 0, 0}); err != nil {
							t.Fatal(err)
						}
					}
				}
				if step == 7 {
					for _, d := range []*decoder{cached, full} {
						if err := d.reorder([]int{2, 0, 2}); err != nil {
							t.Fatal(err)
						}
					}
				}
				var next [][]int
				if step < len(steps) {
					next = steps[step]
				} else {
					for range cached.seqs {
						next = append(next, tok(1))
					}
				}
				a, va, err := cached.step(next)
				if err != nil {
					t.Fatal(err)
				}
				b, vb, err := full.step(next)
				if err != nil {
					t.Fatal(err)
				}
				if va != 512 || vb != 512 || len(a) != len(next)*512 {
					t.Fatalf("step %d: vocab %d/%d, %d logits", step, va, vb, len(a))
				}
				d := testkit.MaxDiff(a, b)
				if !(d <= 1e-5) {
					t.Fatalf("step %d: max |cached - recomputed| = %.3g", step, d)
				}
				worst = max(worst, d)
			}
			if !reflect.DeepEqual(cached.seqs, full.seqs) {
				t.Fatal("the decoders' sequences differ")
			}
			if c := cached.kv; c.rows != 3 || c.length != cached.length() {
				t.Errorf("cache of %d rows × %d positions after %d tokens on 3 rows", c.rows, c.length, cached.length())
			}
			// The steps crossed buffer reallocations (1 row becoming 3 outgrows the buffers),
			// and the buffers were reused between them.
			if a := cached.kv.allocs; a <= 2*len(cached.kv.layers) || a > 6*len(cached.kv.layers) {
				t.Errorf("%d cache buffers allocated for %d past inputs over 12 steps", a, len(cached.kv.layers))
			}
			t.Logf("max |cached - recomputed| over 12 steps = %.3g (%d cache buffers for %d past inputs)", worst, cached.kv.allocs, len(cached.kv.layers))
		})
	}
}

// TestCachedGenerationEqualsRecompute: greedy and beam search give the same ids with the
// cache as without it.
func TestCachedGenerationEqualsRecompute(t *testing.T) {
	for name, s := range cachedModels(t) {
		t.Run(name, func(t *testing.T) {
			prompt := []int{1, 300, 45, 99}
			stop := []int{2}
			a, err := Generate(s, prompt, GenOptions{MaxTokens: 30, Stop: stop, MaxContext: 128}, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, err := Generate(s, prompt, GenOptions{MaxTokens: 30, Stop: stop, MaxContext: 128, NoCache: true}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(a, b) || len(a) == 0 {
				t.Fatalf("greedy: cached %v, recomputed %v", a, b)
			}
			for _, beams := range []int{1, 3} {
				o := BeamOptions{Beams: beams, MaxTokens: 20, Stop: stop, MaxContext: 128, LengthPenalty: 1}
				h1, err := BeamSearch(s, prompt, o)
				if err != nil {
					t.Fatal(err)
				}
				o.NoCache = true
				h2, err := BeamSearch(s, prompt, o)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(h1.IDs, h2.IDs) || !(abs(h1.LogProb-h2.LogProb) <= 1e-4) {
					t.Fatalf("%d beams: cached %v (%.6f), recomputed %v (%.6f)", beams, h1.IDs, h1.LogProb, h2.IDs, h2.LogProb)
				}
				if beams == 1 && !reflect.DeepEqual(h1.IDs, a[:len(h1.IDs)]) {
					t.Errorf("one beam %v is not greedy %v", h1.IDs, a)
				}
			}
			// The context limit stops a cached run where it stops an uncached one.
			c, err := Generate(s, prompt, GenOptions{MaxTokens: 30, MaxContext: 9}, nil)
			if err != nil || len(c) != 5 {
				t.Fatalf("MaxContext 9 from 4 prompt tokens: %d new ids (%v), want 5", len(c), err)
			}
		})
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
