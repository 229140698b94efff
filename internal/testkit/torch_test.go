package testkit

import (
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/shears-ml/shears/models/llama2c"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/runtime"
)

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
			var e TorchExport
			if name == "random" {
				e = TorchRandom(t, TorchTinySpec, 7)
			} else {
				e = TorchStories260K(t)
			}
			ORT(t)
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
			ref, err := so.Run(Feeds(t, so.Inputs(), runtime.I64([]int64{b, n}, flat), nil), []string{"logits"})
			if err != nil {
				t.Fatal(err)
			}
			want := ref["logits"].F32
			check := func(what string, got []float32) {
				t.Helper()
				if d := MaxDiff(got, want); !(d <= 2e-5) {
					t.Errorf("%s: max |logits - our import| = %.3g", what, d)
				} else {
					t.Logf("%s: max |logits - our import| = %.3g", what, d)
				}
			}
			for _, c := range []struct{ what, path string }{{"with past (empty)", e.WithPast}, {"no past", e.NoPast}, {"merged, no-cache branch", e.Merged}} {
				s := open(t, c.path)
				out, err := s.Run(PastFeeds(t, s.Inputs(), ids, nil, 0), []string{"logits"})
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
				first, err := s.Run(PastFeeds(t, s.Inputs(), head, nil, 0), nil)
				if err != nil {
					t.Fatal(err)
				}
				second, err := s.Run(PastFeeds(t, s.Inputs(), tail, NextPast(first), 5), []string{"logits", "present.0.key"})
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
				if d := MaxDiff(got, wantTail); !(d <= 2e-5) {
					t.Errorf("%s cached continuation: max diff %.3g", filepath.Base(path), d)
				}
			}
		})
	}
}
