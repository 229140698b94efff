package main

import (
	"encoding/json"
	"math"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/pipeline"
)

// storiesGreedy are stories260K's 20 greedy ids after BOS (llama2.c's run.c).
var storiesGreedy = []int{403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337}

func generateJSON(t *testing.T, args ...string) pipeline.GenerateReport {
	t.Helper()
	o, e, code := shears(t, append([]string{"generate"}, args...)...)
	if code != 0 {
		t.Fatalf("generate %v: %s", args, e)
	}
	var r pipeline.GenerateReport
	if err := json.Unmarshal([]byte(o), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestOptimumExportGenerates: PyTorch's optimum-style exports of stories260K (with past, and the
// merged decoder) give llama2.c's greedy ids through the KV cache, and the same as without it;
// beam search too.
func TestOptimumExportGenerates(t *testing.T) {
	e := testkit.TorchStories260K(t)
	tok := testkit.Shared(t, "models/stories260K/tok512.bin")
	testkit.ORT(t)
	for _, model := range []string{e.WithPast, e.Merged} {
		r := generateJSON(t, model, "--tokenizer", tok, "--max-tokens", "20", "--json")
		if r.Caching != "kv cache" || !reflect.DeepEqual(r.IDs, storiesGreedy) {
			t.Errorf("%s: %s ids %v, want %v", model, r.Caching, r.IDs, storiesGreedy)
		}
		n := generateJSON(t, model, "--tokenizer", tok, "--max-tokens", "20", "--json", "--no-cache")
		if n.Caching != "recompute" || !reflect.DeepEqual(n.IDs, storiesGreedy) {
			t.Errorf("%s --no-cache: %s ids %v, want %v", model, n.Caching, n.IDs, storiesGreedy)
		}
		b := generateJSON(t, model, "--tokenizer", tok, "--max-tokens", "24", "--beams", "4", "--json")
		nb := generateJSON(t, model, "--tokenizer", tok, "--max-tokens", "24", "--beams", "4", "--json", "--no-cache")
		if !reflect.DeepEqual(b.IDs, nb.IDs) || len(b.IDs) == 0 {
			t.Errorf("%s: 4 beams cached %v, recomputed %v", model, b.IDs, nb.IDs)
		}
	}
}

// TestOptimumExportInspect: inspect finds the with-past export's 35 linears with the roles
// and shapes of our own import's.
func TestOptimumExportInspect(t *testing.T) {
	e := testkit.TorchStories260K(t)
	ours := inspectJSON(t, importStories(t, t.TempDir()))
	theirs := inspectJSON(t, e.WithPast)
	if len(theirs.Linears) != 35 || !reflect.DeepEqual(linearSet(ours), linearSet(theirs)) {
		t.Errorf("linears of the torch export %v\nwant (our import) %v", linearSet(theirs), linearSet(ours))
	}
	if len(theirs.Inputs) != 13 || theirs.Inputs[3].Name != "past_key_values.0.key" || len(theirs.Outputs) != 11 {
		t.Errorf("interface: %d inputs (%v…), %d outputs", len(theirs.Inputs), theirs.Inputs[:4], len(theirs.Outputs))
	}
}

// TestOptimumExportPerplexity: eval --task ppl on PyTorch's with-past export and on its merged
// decoder equals our import's (same weights, same windows).
func TestOptimumExportPerplexity(t *testing.T) {
	e := testkit.TorchStories260K(t)
	tok := testkit.Shared(t, "models/stories260K/tok512.bin")
	data := testkit.Shared(t, "data/llm-adapters/ARC-Easy-test.json")
	testkit.ORT(t)
	ppl := func(model string) float64 {
		o, errOut, code := shears(t, "eval", model, "--task", "ppl", "--data", data, "--tokenizer", tok, "--seq-len", "128", "--limit", "40", "--json")
		if code != 0 {
			t.Fatalf("eval %s: %s", model, errOut)
		}
		var r struct {
			PPL    float64 `json:"ppl"`
			Tokens int     `json:"tokens"`
		}
		if err := json.Unmarshal([]byte(o), &r); err != nil {
			t.Fatal(err)
		}
		if r.Tokens < 1000 {
			t.Fatalf("eval %s: %d tokens", model, r.Tokens)
		}
		return r.PPL
	}
	want := ppl(importStories(t, t.TempDir()))
	for _, model := range []string{e.WithPast, e.Merged} {
		if got := ppl(model); !(math.Abs(got-want) <= 1e-5*want) {
			t.Errorf("%s: perplexity %.6f, our import %.6f", model, got, want)
		} else {
			t.Logf("%s: perplexity %.6f, our import %.6f", model, got, want)
		}
	}
}

// TestOptimumExportWandaMasks: 50% Wanda on PyTorch's with-past export zeroes the same weights
// as on our import, on the same calibration data: Wanda ranks each output's inputs, and the
// export's q and k outputs are Hugging Face's permutation of ours (undone here).
func TestOptimumExportWandaMasks(t *testing.T) {
	e := testkit.TorchStories260K(t)
	tok := testkit.Shared(t, "models/stories260K/tok512.bin")
	calib := testkit.Shared(t, "data/llm-adapters/ARC-Easy-train.json")
	testkit.ORT(t)
	dir := t.TempDir()
	const headDim = 8 // stories260K: dim 64, 8 heads
	masks := func(model, out string) map[[2]any][][]bool {
		if _, errOut, code := shears(t, "prune", model, "-o", out, "--sparsity", "0.5", "--calib", calib, "--tokenizer", tok, "--samples", "8", "--seq-len", "64", "--seed", "3"); code != 0 {
			t.Fatalf("prune %s: %s", model, errOut)
		}
		res := map[[2]any][][]bool{}
		for k, l := range zeroFlags(t, out) {
			if l.Head {
				continue
			}
			// columns[o][i]: output o's input i is zero ([in, out] storage).
			cols := make([][]bool, l.Out)
			zeros := 0
			for o := range cols {
				cols[o] = make([]bool, l.In)
				for i := range cols[o] {
					cols[o][i] = l.Zero[int64(i)*l.Out+int64(o)]
					if cols[o][i] {
						zeros++
					}
				}
			}
			if zeros != len(l.Zero)/2 {
				t.Fatalf("%s %s: %d of %d weights zero, want half", model, l.Weight, zeros, len(l.Zero))
			}
			res[k] = cols
		}
		return res
	}
	ours := masks(importStories(t, dir), filepath.Join(dir, "ours-50.onnx"))
	theirs := masks(e.WithPast, filepath.Join(dir, "torch-50.onnx"))
	if len(ours) != 35 || len(theirs) != 35 {
		t.Fatalf("pruned linears: ours %d, torch export %d", len(ours), len(theirs))
	}
	// Hugging Face's output c' = h·hd + a·hd/2 + j is llama2.c's c = h·hd + 2j + a.
	unpermute := func(c int) int {
		h, r := c/headDim, c%headDim
		a, j := r/(headDim/2), r%(headDim/2)
		return h*headDim + 2*j + a
	}
	for k, want := range ours {
		got := theirs[k]
		differ := 0
		for c := range got {
			o := c
			if k[1] == "q" || k[1] == "k" {
				o = unpermute(c)
			}
			if !reflect.DeepEqual(got[c], want[o]) {
				differ++
			}
		}
		if differ > 0 {
			t.Errorf("layer %v: %d of %d outputs have different masks", k, differ, len(got))
		}
	}
}
