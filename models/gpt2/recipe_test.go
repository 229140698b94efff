package gpt2_test

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/models/gpt2"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/pipeline"
)

// "shears run" on a GPT-2 graph with the recipe defaults for adapt (no targets given): every
// stage runs, and the table's parameter counts are GPT-2's.
func TestRecipeGPT2(t *testing.T) {
	testkit.ORT(t)
	tok := testkit.Tok512Shaped(t)
	dir := t.TempDir()
	m, err := gpt2.Build(gpt2.Tiny, 3)
	if err != nil {
		t.Fatal(err)
	}
	model := filepath.Join(dir, "gpt2.onnx")
	if err := m.Save(model, onnx.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	write := func(name string, from, n int) {
		var b strings.Builder
		for i := from; i < from+n; i++ {
			fmt.Fprintf(&b, `{"text": "Once upon a time number %d a cat saw a dog and they played in the park all day."}`+"\n", i)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("train.jsonl", 0, 8)
	write("val.jsonl", 8, 4)
	recipe := fmt.Sprintf(`
work: work
model: %s
tokenizer: %s
runtime: {threads: 2}
prune: {calib: train.jsonl, samples: 2, seq_len: 32}
adapt: {ranks: [8, 6, 4], alpha: 16}
train: {data: train.jsonl, epochs: 1, lr: 1.0e-3, batch: 4, micro_batch: 2, cutoff: 32}
search: {strategy: hill-climb, data: val.jsonl, budget: 2}
eval:
  - {name: val, data: val.jsonl, seq_len: 32}
`, model, tok)
	path := filepath.Join(dir, "recipe.yaml")
	if err := os.WriteFile(path, []byte(recipe), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := pipeline.LoadRecipe(path)
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	s, err := pipeline.Run(r, pipeline.Options{Log: &log})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	// Golden counts. Linears per block: qkv 64·192 + o 64·64 + up 64·256 + down 256·64 =
	// 49,152; two blocks, plus wte 512·64 (once: the head is tied to it) and wpe 128·64.
	// Wanda 50% removes half of the block linears. The default targets q,k,v,up,down become
	// qkv,up,down on GPT-2, c_attn adapted as three q, k, v slices of 64 outputs each (as the
	// reference adapts a fused Wqkv): r·(3·(64+64) + (64+256) + (256+64)) per block, at r = 6 →
	// 6·1024·2 = 12,288 (a single adapter on the fused 64→192 linear would have been 10,752).
	want := []struct {
		label            string
		nonzero, adapter int64
	}{
		{"dense base", 139264, 0},
		{"50% Wanda base", 90112, 0},
		{"50% Wanda + NLS (heuristic)", 90112, 12288},
		{"50% Wanda + NLS (searched: hill-climb)", 90112, -1},
	}
	rows := s.Tables[0].Rows
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d: %+v", len(rows), len(want), rows)
	}
	for i, w := range want {
		row := rows[i]
		t.Logf("%s: loss %.4f, nonzero %d, adapter %d", row.Model, row.Loss, row.NonZero, row.AdapterParams)
		if row.Model != w.label || row.NonZero != w.nonzero || (w.adapter >= 0 && row.AdapterParams != w.adapter) {
			t.Errorf("row %d: %s nonzero %d adapter %d; want %s %d %d", i, row.Model, row.NonZero, row.AdapterParams, w.label, w.nonzero, w.adapter)
		}
		if math.IsNaN(row.Loss) || math.IsInf(row.Loss, 0) || row.Loss <= 0 {
			t.Errorf("row %d: loss %v", i, row.Loss)
		}
	}
	if rows[2].Loss >= rows[1].Loss {
		t.Errorf("training did not lower the loss of the pruned base: %.4f → %.4f", rows[1].Loss, rows[2].Loss)
	}
}
