package torchfix

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/models/llama2c"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/runtime"
)

// feeds for rows of equal length t after a past of length p (zeros when p = 0 is empty).
func feeds(s *runtime.Session, ids [][]int64, past map[string]*runtime.Tensor, p int) map[string]*runtime.Tensor {
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
	for _, in := range s.Inputs() {
		if x, ok := past[in.Name]; ok {
			f[in.Name] = x
		} else if _, ok := f[in.Name]; !ok && in.Name != "use_cache_branch" {
			// an empty past: [b, kv heads, 0, head dim]
			f[in.Name] = runtime.F32([]int64{int64(b), in.Dims[1], 0, in.Dims[3]}, nil)
		}
	}
	return f
}

func open(t *testing.T, path string) *runtime.Session {
	t.Helper()
	s, err := runtime.OpenFile(path, runtime.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestExportsMatchImport checks the fixtures against our llama2.c import of the same checkpoint:
// the with-past export on an empty past, the no-past export, and both branches of the merged
// decoder give our logits; a cached continuation gives the full recomputation's last rows.
func TestExportsMatchImport(t *testing.T) {
	for _, name := range []string{"random", "stories260K"} {
		t.Run(name, func(t *testing.T) {
			var e Export
			if name == "random" {
				e = Random(t, TinySpec, 7)
			} else {
				e = Stories260K(t)
			}
			testkit.ORT(t)
			m, err := llama2c.Import(e.Checkpoint)
			if err != nil {
				t.Fatal(err)
			}
			ours := filepath.Join(t.TempDir(), "ours.onnx")
			if err := m.Save(ours, onnx.SaveOptions{}); err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			const b, n = 2, 9
			ids := make([][]int64, b)
			var flat []int64
			for i := range ids {
				for j := 0; j < n; j++ {
					ids[i] = append(ids[i], int64(rng.IntN(512)))
				}
				flat = append(flat, ids[i]...)
			}
			so := open(t, ours) // with past (empty), as every import now is
			ref, err := so.Run(testkit.Feeds(t, so.Inputs(), runtime.I64([]int64{b, n}, flat), nil), []string{"logits"})
			if err != nil {
				t.Fatal(err)
			}
			want := ref["logits"].F32
			check := func(what string, got []float32) {
				t.Helper()
				if d := testkit.MaxDiff(got, want); !(d <= 2e-5) {
					t.Errorf("%s: max |logits - our import| = %.3g", what, d)
				} else {
					t.Logf("%s: max |logits - our import| = %.3g", what, d)
				}
			}
			for _, c := range []struct{ what, path string }{{"with past (empty)", e.WithPast}, {"no past", e.NoPast}, {"merged, no-cache branch", e.Merged}} {
				s := open(t, c.path)
				f := feeds(s, ids, nil, 0)
				if c.path == e.Merged {
					f["use_cache_branch"] = &runtime.Tensor{DType: runtime.Bool, Shape: []int64{1}, Raw: []byte{0}}
				}
				out, err := s.Run(f, []string{"logits"})
				if err != nil {
					t.Fatal(err)
				}
				check(c.what, out["logits"].F32)
			}
			// Prefill 5 tokens, then feed the other 4 with the cache.
			for _, path := range []string{e.WithPast, e.Merged} {
				s := open(t, path)
				head, tail := make([][]int64, b), make([][]int64, b)
				for i := range ids {
					head[i], tail[i] = ids[i][:5], ids[i][5:]
				}
				f := feeds(s, head, nil, 0)
				if path == e.Merged {
					f["use_cache_branch"] = &runtime.Tensor{DType: runtime.Bool, Shape: []int64{1}, Raw: []byte{0}}
				}
				first, err := s.Run(f, nil)
				if err != nil {
					t.Fatal(err)
				}
				past := map[string]*runtime.Tensor{}
				for name, x := range first {
					var i int
					var kind string
					if _, err := fmt.Sscanf(name, "present.%d.%s", &i, &kind); err == nil {
						past[fmt.Sprintf("past_key_values.%d.%s", i, kind)] = x
					}
				}
				f = feeds(s, tail, past, 5)
				if path == e.Merged {
					f["use_cache_branch"] = &runtime.Tensor{DType: runtime.Bool, Shape: []int64{1}, Raw: []byte{1}}
				}
				second, err := s.Run(f, []string{"logits", "present.0.key"})
				if err != nil {
					t.Fatal(err)
				}
				if sh := second["present.0.key"].Shape; sh[2] != n {
					t.Errorf("present.0.key shape %v, want past+current = %d", sh, n)
				}
				// Compare the last 4 positions of each row.
				v := 512
				var got, wantTail []float32
				for i := 0; i < b; i++ {
					got = append(got, second["logits"].F32[i*4*v:(i+1)*4*v]...)
					wantTail = append(wantTail, want[(i*n+5)*v:(i+1)*n*v]...)
				}
				if d := testkit.MaxDiff(got, wantTail); !(d <= 2e-5) {
					t.Errorf("%s cached continuation: max diff %.3g", filepath.Base(path), d)
				}
			}
		})
	}
}
