package pipeline

import (
	"io"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/lm"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/transform/decoder"
)

// withPastRecipe is fixture's recipe on the model at path, without the LoRA baselines.
func withPastRecipe(t *testing.T, path string) *Recipe {
	t.Helper()
	r := fixture(t)
	r.Model, r.Baselines.LoRA = path, false
	return r
}

// readInterface loads path and reads its interface.
func readInterface(t *testing.T, path string) *lm.Interface {
	t.Helper()
	m, err := onnx.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	it, err := lm.Read(m)
	if err != nil {
		t.Fatal(err)
	}
	return it
}

// Every stage on with-past models — our llama2.c import and PyTorch's optimum-style export:
// Wanda 50% → adapt → NLS train → hill-climb search → export with each merge mode. Each export
// has exactly the original interface (names, order, element types, dims), passes the official
// checker, and gives finite logits.
func TestWithPastThroughEveryStage(t *testing.T) {
	sources := map[string]func(t *testing.T) string{
		"llama2c import": func(t *testing.T) string { return fixture(t).Model },
		"torch with-past export": func(t *testing.T) string {
			e := testkit.TorchRandom(t, testkit.TorchTinySpec, 7)
			return e.WithPast
		},
		// optimum's decoder_model_merged.onnx, made from our import the way optimum merges.
		"merged decoder": func(t *testing.T) string {
			m, err := onnx.Load(fixture(t).Model)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			nc, err := decoder.NoCache(m)
			if err != nil {
				t.Fatal(err)
			}
			mg, err := decoder.Merge(m, nc)
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(t.TempDir(), "decoder_model_merged.onnx")
			if err := mg.Save(p, onnx.SaveOptions{}); err != nil {
				t.Fatal(err)
			}
			return p
		},
		"torch merged export": func(t *testing.T) string {
			e := testkit.TorchRandom(t, testkit.TorchTinySpec, 7)
			return e.Merged
		},
	}
	for name, src := range sources {
		t.Run(name, func(t *testing.T) {
			model := src(t)
			orig := readInterface(t, model)
			if !orig.HasPast() {
				t.Fatalf("%s has no KV cache: %+v", model, orig)
			}
			merged := orig.UseCacheBranch
			r := withPastRecipe(t, model)
			if _, err := Run(r, Options{Log: io.Discard}); err != nil {
				t.Fatal(err)
			}
			runs, _ := filepath.Glob(filepath.Join(r.Work, "*", "run", "adapter.safetensors"))
			if len(runs) != 1 {
				t.Fatalf("NLS runs %v, want one", runs)
			}
			cfg := filepath.Join(r.Work, "search", "config.json")
			if _, err := os.Stat(cfg); err != nil {
				t.Fatal(err)
			}
			byMode := map[string][]float32{}
			for _, mode := range []string{"none", "dense", "sparse"} {
				out := filepath.Join(t.TempDir(), mode+".onnx")
				if _, err := Export(ExportOptions{RunDir: filepath.Dir(runs[0]), Config: cfg, Merge: mode, Out: out, CopyBase: true}); err != nil {
					t.Fatalf("merge %s: %v", mode, err)
				}
				if d := lm.SameIO(orig, readInterface(t, out)); d != "" {
					t.Errorf("merge %s: the export's interface differs from the model's: %s", mode, d)
				}
				testkit.CheckONNX(t, out)
				m, err := onnx.Load(out)
				if err != nil {
					t.Fatal(err)
				}
				if merged {
					// Both branches kept, the weights once: every initializer is read by name from
					// the If's branches, none is duplicated inside them.
					if !decoder.IsMerged(m) {
						t.Errorf("merge %s: the export of a merged decoder is not merged", mode)
					}
					seen := map[string]bool{}
					for _, x := range m.Graph().GetInitializer() {
						if seen[x.GetName()] {
							t.Errorf("merge %s: initializer %s twice", mode, x.GetName())
						}
						seen[x.GetName()] = true
					}
					for _, n := range m.Graph().GetNode() {
						for _, a := range n.GetAttribute() {
							if a.GetG() != nil && len(a.GetG().GetInitializer()) > 0 {
								t.Errorf("merge %s: branch %s holds %d initializers", mode, a.GetName(), len(a.GetG().GetInitializer()))
							}
						}
					}
					// The two branches carry the same adapters: on a fresh prompt they agree.
					var got [2][]float32
					for i, cache := range []bool{true, false} {
						b, err := decoder.Specialise(m, cache)
						if err != nil {
							t.Fatal(err)
						}
						_, got[i] = testkit.RunLogits(t, b, 1, []int64{1, 34, 87, 200, 5, 9}, nil)
					}
					if d := testkit.MaxDiff(got[0], got[1]); !(d <= 1e-5) {
						t.Errorf("merge %s: the with-past and no-cache branches differ by %g", mode, d)
					}
				}
				_, logits := testkit.RunLogits(t, m, 1, []int64{1, 34, 87, 200, 5, 9}, nil)
				m.Close()
				for _, v := range logits {
					if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
						t.Fatalf("merge %s: logit %v", mode, v)
					}
				}
				byMode[mode] = logits
			}
			// A dense merge computes what the unmerged sub-adapter computes (float rounding
			// apart): the merged weights were written, not the base's.
			if d := testkit.MaxDiff(byMode["dense"], byMode["none"]); !(d <= 1e-4) {
				t.Errorf("dense export differs from the unmerged one by %g", d)
			}
		})
	}
}
