package main

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/internal/testsynth"
)

// relSetup makes a self-contained training fixture: the tiny synthetic LLaMA pruned by
// magnitude, adapted with ranks 8,6,4, and n pre-tokenized records ({"ids": [...]}, no
// tokenizer needed) of 20 to 31 tokens.
func relSetup(t *testing.T, n int) (dir, super, dataPath string) {
	t.Helper()
	testkit.ORT(t)
	dir = t.TempDir()
	model := testsynth.Synthetic(t, "tiny")
	sparse := filepath.Join(dir, "sparse.onnx")
	if _, e, code := shears(t, "prune", model, "-o", sparse, "--method", "magnitude", "--sparsity", "0.5"); code != 0 {
		t.Fatalf("prune: %s", e)
	}
	super = filepath.Join(dir, "super.onnx")
	if _, e, code := shears(t, "adapt", sparse, "-o", super, "--ranks", "8,6,4", "--alpha", "16"); code != 0 {
		t.Fatalf("adapt: %s", e)
	}
	dataPath = filepath.Join(dir, "ids.jsonl")
	writeIDs(t, dataPath, n, 1)
	return dir, super, dataPath
}

// writeIDs writes n pre-tokenized records drawn with seed.
func writeIDs(t *testing.T, path string, n int, seed int64) {
	t.Helper()
	r := rand.New(rand.NewSource(seed))
	var b strings.Builder
	for i := 0; i < n; i++ {
		ids := make([]int, 20+r.Intn(12))
		for j := range ids {
			ids[j] = 1 + r.Intn(500)
		}
		j, _ := json.Marshal(map[string][]int{"ids": ids})
		fmt.Fprintf(&b, "%s\n", j)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Issue 14 case 2: an output naming one of the command's own inputs (the model, its data
// file, the super-network, the base's data it refers to) is refused before any work, and the
// input is left as it was. Before, "prune m.onnx -o m.onnx.data" overwrote the model's
// weights and exited 0.
func TestOutputNeverAliasesAnInput(t *testing.T) {
	dir, super, _ := relSetup(t, 4)
	sparse := filepath.Join(dir, "sparse.onnx")
	before := map[string][]byte{}
	for _, f := range []string{sparse, sparse + ".data", super, super + ".data"} {
		b, err := os.ReadFile(f)
		if err == nil {
			before[f] = b
		}
	}
	if err := os.Symlink(sparse, filepath.Join(dir, "link.onnx")); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"prune", sparse, "-o", sparse + ".data", "--method", "magnitude"}, "is the model to prune's external data"},
		{[]string{"prune", sparse, "-o", sparse, "--method", "magnitude"}, "is the model to prune"},
		{[]string{"prune", sparse, "-o", filepath.Join(dir, "link.onnx"), "--method", "magnitude"}, "is the model to prune"},
		{[]string{"convert", sparse, "-o", sparse + ".data", "--dtype", "bf16"}, "is the model to convert's external data"},
		{[]string{"adapt", sparse, "-o", sparse, "--ranks", "8,4"}, "is the model to adapt"},
		{[]string{"export", "--super", super, "--ranks", "max", "-o", super}, "is the super-network"},
		// The super-network shares the pruned base's data file: exporting over it is refused too.
		{[]string{"export", "--super", super, "--ranks", "max", "-o", sparse + ".data"}, "is the super-network's external data"},
		{[]string{"prune", sparse, "-o", filepath.Join(dir, "no-such-dir", "x.onnx"), "--method", "magnitude"}, "cannot write in its folder"},
	}
	for _, c := range cases {
		_, e, code := shears(t, c.args...)
		if code != 1 || !strings.Contains(e, c.want) {
			t.Errorf("%s: exit %d, %q; want exit 1 and %q", strings.Join(c.args[:1], " "), code, e, c.want)
		}
	}
	for f, b := range before {
		if now, _ := os.ReadFile(f); string(now) != string(b) {
			t.Errorf("%s changed", f)
		}
	}
}
