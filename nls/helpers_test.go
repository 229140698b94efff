package nls

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/shears-ml/shears/calibrate"
	"github.com/shears-ml/shears/data"
	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/models/llama2c"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/transform/layers"
	"github.com/shears-ml/shears/transform/lora"
	"github.com/shears-ml/shears/transform/prune"
)

// testRanks is the rank space used on stories260K (dim 64): the reference's 32, 24, 16 is
// sized for 4096-wide models, so the tests use the same proportions at a quarter (8, 6, 4) with
// alpha 16, keeping the reference's scale alpha / r_max = 2.
var testRanks = []int{8, 6, 4}

const testAlpha = 16

// superNet writes, into dir, stories260K pruned to 50% by magnitude (sparse.onnx) and its
// elastic-LoRA super-network (super.onnx, dropout p as given) and returns both paths.
func superNet(t testing.TB, dir string, dropout float64) (sparse, super string) {
	t.Helper()
	m, err := llama2c.Import(testkit.StoriesShaped(t))
	if err != nil {
		t.Fatal(err)
	}
	targets, err := layers.Find(m)
	if err != nil {
		t.Fatal(err)
	}
	cfg := prune.Config{Method: prune.Magnitude, Sparsity: 0.5}
	sparse = filepath.Join(dir, "sparse.onnx")
	if err := m.Save(sparse, onnx.SaveOptions{Transform: calibrate.Transform(targets, nil, cfg)}); err != nil {
		t.Fatal(err)
	}
	sm, err := onnx.Load(sparse)
	if err != nil {
		t.Fatal(err)
	}
	defer sm.Close()
	ls, err := layers.Find(sm)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := lora.NewPlan(sm, ls, lora.Config{Ranks: testRanks, Alpha: testAlpha, Dropout: dropout, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	sup, err := lora.Apply(sm, plan, lora.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	super = filepath.Join(dir, "super.onnx")
	if err := sup.Save(super, onnx.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	return sparse, super
}

// subset writes the first n (from skip) LLM-Adapters examples of a shared training file to dir;
// a smaller file (testdata's stand-in) gives its last n instead when skip runs past its end.
func subset(t testing.TB, dir, rel string, skip, n int) string {
	t.Helper()
	b, err := json.Marshal(window(examples(t, rel), skip, n))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, filepath.Base(rel))
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func tokPath(t testing.TB) string { return testkit.Tok512Shaped(t) }

// window is exs[skip:skip+n], or the last n when skip runs past the end of a smaller file
// (testdata's stand-ins hold a hundred or so records).
func window(exs []data.Example, skip, n int) []data.Example {
	if skip+n > len(exs) {
		skip = max(0, len(exs)-n)
	}
	return exs[skip:min(len(exs), skip+n)]
}

// examples reads a shared LLM-Adapters JSON file.
func examples(t testing.TB, rel string) []data.Example {
	t.Helper()
	raw, err := os.ReadFile(testkit.Dataset(t, filepath.Base(rel)))
	if err != nil {
		t.Fatal(err)
	}
	var exs []data.Example
	if err := json.Unmarshal(raw, &exs); err != nil {
		t.Fatal(err)
	}
	return exs
}
