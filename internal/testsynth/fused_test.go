package testsynth

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/models/llama"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/runtime"
)

// fusedFeeds are the with-past inputs for rows of new tokens after a past of length p.
func fusedFeeds(ids [][]int64, past map[string]*runtime.Tensor, p int, cfg llama.Config) map[string]*runtime.Tensor {
	b, t := len(ids), len(ids[0])
	var flat, mask, pos []int64
	for _, row := range ids {
		flat = append(flat, row...)
		for j := 0; j < p+t; j++ {
			mask = append(mask, 1)
		}
		for j := 0; j < t; j++ {
			pos = append(pos, int64(p+j))
		}
	}
	f := map[string]*runtime.Tensor{
		"input_ids":      runtime.I64([]int64{int64(b), int64(t)}, flat),
		"attention_mask": runtime.I64([]int64{int64(b), int64(p + t)}, mask),
		"position_ids":   runtime.I64([]int64{int64(b), int64(t)}, pos),
	}
	for i := 0; i < cfg.Layers; i++ {
		for _, kind := range []string{"key", "value"} {
			name := fmt.Sprintf("past_key_values.%d.%s", i, kind)
			if x, ok := past[name]; ok {
				f[name] = x
			} else {
				f[name] = runtime.F32([]int64{int64(b), int64(cfg.KVHeads), 0, int64(cfg.HeadDim())}, []float32{})
			}
		}
	}
	return f
}

// TestFusedMatchesPlain: the GenAI-style graph (SimplifiedLayerNormalization,
// SkipSimplifiedLayerNormalization, RotaryEmbedding, GroupQueryAttention or
// MultiHeadAttention) computes the plain graph's logits in onnxruntime, on an empty past and
// continuing from its own cache.
func TestFusedMatchesPlain(t *testing.T) {
	testkit.ORT(t)
	for _, c := range []struct {
		attn string
		kv   int
	}{{GQA, 4}, {MHA, 8}} {
		t.Run(c.attn, func(t *testing.T) {
			cfg, _ := llama.Preset("tiny")
			cfg.KVHeads = c.kv
			path := filepath.Join(t.TempDir(), "plain.onnx")
			if err := llama.WriteSynthetic(path, cfg, 3, 1); err != nil {
				t.Fatal(err)
			}
			plain, err := onnx.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			defer plain.Close()
			fm, err := Fused(plain, cfg, c.attn)
			if err != nil {
				t.Fatal(err)
			}
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
			_, want := testkit.RunLogits(t, plain, 2, flat, nil)
			out, err := s.Run(fusedFeeds(ids, nil, 0, cfg), []string{"logits"})
			if err != nil {
				t.Fatal(err)
			}
			if d := testkit.MaxDiff(out["logits"].F32, want); !(d <= 1e-4) {
				t.Fatalf("empty past: max |fused - plain| = %.3g", d)
			} else {
				t.Logf("empty past: max |fused - plain| = %.3g", d)
			}
			// Prefill 5 tokens, then one token per step with the cache (GroupQueryAttention
			// takes a past with several new tokens only for batch 1).
			head := [][]int64{ids[0][:5], ids[1][:5]}
			res, err := s.Run(fusedFeeds(head, nil, 0, cfg), nil)
			if err != nil {
				t.Fatal(err)
			}
			v := cfg.Vocab
			for p := 5; p < 9; p++ {
				past := map[string]*runtime.Tensor{}
				for i := 0; i < cfg.Layers; i++ {
					for _, kind := range []string{"key", "value"} {
						past[fmt.Sprintf("past_key_values.%d.%s", i, kind)] = res[fmt.Sprintf("present.%d.%s", i, kind)]
					}
				}
				if res, err = s.Run(fusedFeeds([][]int64{{ids[0][p]}, {ids[1][p]}}, past, p, cfg), nil); err != nil {
					t.Fatal(err)
				}
				var wantRow []float32
				for r := 0; r < 2; r++ {
					wantRow = append(wantRow, want[(r*9+p)*v:(r*9+p+1)*v]...)
				}
				if d := testkit.MaxDiff(res["logits"].F32, wantRow); !(d <= 1e-4) {
					t.Fatalf("cached step at position %d: max |fused - plain| = %.3g", p, d)
				}
			}
		})
	}
}
