package testkit

import (
	"path/filepath"
	"testing"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/runtime"
)

// TestFusedMatchesPlain: the GenAI-style graph (SimplifiedLayerNormalization,
// SkipSimplifiedLayerNormalization, RotaryEmbedding, GroupQueryAttention or
// MultiHeadAttention) computes the plain graph's logits in onnxruntime, on an empty past and
// continuing from its own cache.
func TestFusedMatchesPlain(t *testing.T) {
	ORT(t)
	for _, attn := range FusedAttentions {
		t.Run(attn, func(t *testing.T) {
			fm, plainPath, cfg := FusedTiny(t, attn, 3)
			plain, err := onnx.Load(plainPath)
			if err != nil {
				t.Fatal(err)
			}
			defer plain.Close()
			fpath := filepath.Join(t.TempDir(), "fused.onnx")
			if err := fm.Save(fpath, onnx.SaveOptions{}); err != nil {
				t.Fatal(err)
			}
			s, err := runtime.OpenFile(fpath, runtime.Options{Threads: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ids := [][]int64{{1, 5, 9, 300, 2, 7, 7, 100, 11}, {3, 4, 5, 6, 7, 8, 9, 10, 12}}
			var flat []int64
			for _, r := range ids {
				flat = append(flat, r...)
			}
			_, want := RunLogits(t, plain, 2, flat, nil)
			out, err := s.Run(PastFeeds(t, s.Inputs(), ids, nil, 0), []string{"logits"})
			if err != nil {
				t.Fatal(err)
			}
			if d := MaxDiff(out["logits"].F32, want); !(d <= 1e-4) {
				t.Fatalf("empty past: max |fused - plain| = %.3g", d)
			} else {
				t.Logf("empty past: max |fused - plain| = %.3g", d)
			}
			// Prefill 5 tokens, then one token per step with the cache (GroupQueryAttention
			// takes a past with several new tokens only for batch 1).
			head := [][]int64{ids[0][:5], ids[1][:5]}
			res, err := s.Run(PastFeeds(t, s.Inputs(), head, nil, 0), nil)
			if err != nil {
				t.Fatal(err)
			}
			v := cfg.Vocab
			for p := 5; p < 9; p++ {
				if res, err = s.Run(PastFeeds(t, s.Inputs(), [][]int64{{ids[0][p]}, {ids[1][p]}}, NextPast(res), p), nil); err != nil {
					t.Fatal(err)
				}
				var wantRow []float32
				for r := 0; r < 2; r++ {
					wantRow = append(wantRow, want[(r*9+p)*v:(r*9+p+1)*v]...)
				}
				if d := MaxDiff(res["logits"].F32, wantRow); !(d <= 1e-4) {
					t.Fatalf("cached step at position %d: max |fused - plain| = %.3g", p, d)
				}
			}
		})
	}
}
