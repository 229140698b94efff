package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
)

// TestHFFormatRoundTrip: a 50%-pruned model written as a Hugging Face checkpoint (--format hf:
// safetensors under the checkpoint's names, [out, in], q/k rows in rotate-half order) and read
// back by "shears import hf" computes the pruned graph's logits.
func TestHFFormatRoundTrip(t *testing.T) {
	testkit.ORT(t)
	in := testkit.Synthetic(t, "tiny")
	tok := testkit.Tokenizer(t, 512)
	dir := t.TempDir()
	pruned := filepath.Join(dir, "pruned.onnx")
	prune50(t, in, pruned)
	hf := filepath.Join(dir, "hf")
	if _, e, code := shears(t, "prune", in, "-o", hf, "--method", "magnitude", "--sparsity", "0.5", "--format", "hf", "--tokenizer", tok); code != 0 {
		t.Fatalf("prune --format hf: %s", e)
	}
	back := filepath.Join(dir, "back.onnx")
	if _, e, code := shears(t, "import", "hf", hf, "-o", back); code != 0 {
		t.Fatalf("import hf: %s", e)
	}
	load := func(p string) *onnx.Model {
		m, err := onnx.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	ids := []int64{1, 403, 407, 261, 378, 17, 99, 300, 12, 5}
	_, want := testkit.RunLogits(t, load(pruned), 1, ids, nil)
	_, got := testkit.RunLogits(t, load(back), 1, ids, nil)
	if len(got) != len(want) {
		t.Fatalf("%d logits back, %d before", len(got), len(want))
	}
	if d := testkit.MaxDiff(got, want); !(d <= 1e-4) {
		t.Errorf("the re-imported checkpoint's logits differ from the pruned graph's by %g", d)
	} else {
		t.Logf("max |import hf − pruned| = %.3g over %d logits", d, len(got))
	}
}

// TestHFImportFolderInTransformersJS: a checkpoint written by --format hf, imported with
// "shears import hf --format folder", carries the checkpoint's config.json verbatim and its
// tokenizer, and transformers.js generates from it what shears generate does.
func TestHFImportFolderInTransformersJS(t *testing.T) {
	testkit.TransformersJSDir(t)
	testkit.ORT(t)
	in := testkit.Synthetic(t, "tiny")
	tok := testkit.Tokenizer(t, 512)
	dir := t.TempDir()
	hf := filepath.Join(dir, "hf")
	if _, e, code := shears(t, "prune", in, "-o", hf, "--method", "magnitude", "--sparsity", "0.5", "--format", "hf", "--tokenizer", tok); code != 0 {
		t.Fatalf("prune --format hf: %s", e)
	}
	folder := filepath.Join(dir, "folder")
	if _, e, code := shears(t, "import", "hf", hf, "--format", "folder", "-o", folder); code != 0 {
		t.Fatalf("import hf --format folder: %s", e)
	}
	for _, f := range []string{"config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"} {
		a, _ := os.ReadFile(filepath.Join(hf, f))
		b, err := os.ReadFile(filepath.Join(folder, f))
		if err != nil || string(a) != string(b) {
			t.Errorf("%s: not carried from the checkpoint verbatim (%v)", f, err)
		}
	}
	want := generateIDs(t, folder, 30)
	var js struct {
		IDs []int `json:"ids"`
	}
	if err := json.Unmarshal(testkit.RunTransformersJS(t, "generate.mjs", nil, folder, servePrompt, itoa(30)), &js); err != nil {
		t.Fatal(err)
	}
	if k := len(js.IDs); k > 0 && k < 30 && js.IDs[k-1] == 2 {
		js.IDs = js.IDs[:k-1]
	}
	if len(want) == 0 || !slices.Equal(js.IDs, want) {
		t.Errorf("transformers.js generates\n%v\nshears generate\n%v", js.IDs, want)
	}
}
