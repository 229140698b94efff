package main

import (
	"encoding/json"
	"math"
	"reflect"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/internal/torchfix"
)

// storiesGreedy are stories260K's 20 greedy ids after BOS (llama2.c's run.c).
var storiesGreedy = []int{403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337}

func generateJSON(t *testing.T, args ...string) generateResult {
	t.Helper()
	o, e, code := shears(t, append([]string{"generate"}, args...)...)
	if code != 0 {
		t.Fatalf("generate %v: %s", args, e)
	}
	var r generateResult
	if err := json.Unmarshal([]byte(o), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestOptimumExportGenerates: PyTorch's optimum-style exports of stories260K (with past, and the
// merged decoder) give llama2.c's greedy ids through the KV cache, and the same as without it;
// beam search too.
func TestOptimumExportGenerates(t *testing.T) {
	e := torchfix.Stories260K(t)
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
	e := torchfix.Stories260K(t)
	ours := inspectJSON(t, importStories(t, t.TempDir()))
	theirs := inspectJSON(t, e.WithPast)
	type key struct {
		block   int
		role    string
		in, out int64
	}
	set := func(r inspectReport) map[key]int {
		m := map[key]int{}
		for _, l := range r.Linears {
			m[key{l.Block, l.Role, l.In, l.Out}]++
		}
		return m
	}
	if len(theirs.Linears) != 35 || !reflect.DeepEqual(set(ours), set(theirs)) {
		t.Errorf("linears of the torch export %v\nwant (our import) %v", set(theirs), set(ours))
	}
	if len(theirs.Inputs) != 13 || theirs.Inputs[3].Name != "past_key_values.0.key" || len(theirs.Outputs) != 11 {
		t.Errorf("interface: %d inputs (%v…), %d outputs", len(theirs.Inputs), theirs.Inputs[:4], len(theirs.Outputs))
	}
}

// TestOptimumExportPerplexity: eval --task ppl on PyTorch's with-past export and on its merged
// decoder equals our import's (same weights, same windows).
func TestOptimumExportPerplexity(t *testing.T) {
	e := torchfix.Stories260K(t)
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
