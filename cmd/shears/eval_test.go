package main

import (
	"bufio"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shears-ml/shears/eval"
	"github.com/shears-ml/shears/internal/testkit"
)

// evalFixture imports stories260K into a temporary folder and returns the folder, the model,
// the tokenizer, the shared LLM-Adapters dataset file and a predictions path in the folder.
func evalFixture(t *testing.T, dataset string) (dir, model, tok, data, pred string) {
	t.Helper()
	dir = t.TempDir()
	model = importStories(t, dir)
	tok = testkit.Tok512Shaped(t)
	data = testkit.Dataset(t, dataset)
	return dir, model, tok, data, filepath.Join(dir, "pred.jsonl")
}

func TestEvalGenGSM8K(t *testing.T) {
	_, model, tok, gsm, pred := evalFixture(t, "gsm8k-test.json")
	o, e, code := shears(t, "eval", model, "--task", "gen", "--data", gsm, "--tokenizer", tok,
		"--limit", "3", "--max-new-tokens", "12", "--beams", "1", "--json", "--predictions", pred, "--with-prompt", "--threads", "2")
	if code != 0 {
		t.Fatalf("eval gen: %s", e)
	}
	var sum map[string]any
	if err := json.Unmarshal([]byte(o), &sum); err != nil {
		t.Fatalf("%v: %s", err, o)
	}
	for k, want := range map[string]any{"task": "gen", "dataset": "gsm8k", "file": "gsm8k-test.json", "items": 3.0, "decoding": "greedy", "max_new_tokens": 12.0} {
		if sum[k] != want {
			t.Errorf("%s = %v, want %v", k, sum[k], want)
		}
	}
	for _, k := range []string{"correct", "accuracy", "seconds", "truncated_items"} {
		if _, ok := sum[k]; !ok {
			t.Errorf("summary lacks %q: %s", k, o)
		}
	}
	recs := readRecords(t, pred)
	items, err := eval.ReadItems(gsm)
	if err != nil {
		t.Fatal(err)
	}
	task, _ := eval.LookupTask("gsm8k")
	correct := 0
	for i, r := range recs {
		if r.Index != i || r.Answer != items[i].Answer || r.Prompt != task.Prompt(items[i]) || r.Tokens == 0 || r.Tokens > 12 {
			t.Errorf("record %d: %+v", i, r)
		}
		// The record's prediction is the numeric rule applied to its response.
		p, ok, _ := task.Correct(r.Response, r.Answer)
		if p != r.Prediction || ok != r.Correct {
			t.Errorf("record %d: prediction %q/%v, rule gives %q/%v", i, r.Prediction, r.Correct, p, ok)
		}
		if r.Correct {
			correct++
		}
	}
	if len(recs) != 3 || sum["correct"] != float64(correct) || !(math.Abs(sum["accuracy"].(float64)-float64(correct)/3) <= 1e-12) {
		t.Errorf("%d records, %d correct; summary %v", len(recs), correct, sum)
	}
	if _, err := os.Stat(pred + ".tmp"); !os.IsNotExist(err) {
		t.Errorf("temporary predictions file left behind")
	}

	// Beam search with 4 beams is the default (the reference's); the text summary names it.
	o, e, code = shears(t, "eval", model, "--task", "gen", "--data", gsm, "--tokenizer", tok,
		"--limit", "1", "--max-new-tokens", "4", "--threads", "2")
	if code != 0 || !strings.Contains(o, "beam search (4 beams") || !strings.Contains(o, "gen gsm8k: accuracy") {
		t.Errorf("beam summary %q (%s)", o, e)
	}
}

func readRecords(t *testing.T, path string) []eval.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []eval.Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var r eval.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, r)
	}
	return out
}

func TestEvalChoiceBoolQ(t *testing.T) {
	_, model, tok, boolq, pred := evalFixture(t, "boolq-test.json")
	o, e, code := shears(t, "eval", model, "--task", "choice", "--data", boolq, "--tokenizer", tok,
		"--limit", "4", "--json", "--predictions", pred, "--threads", "2")
	if code != 0 {
		t.Fatalf("eval choice: %s", e)
	}
	var sum eval.Summary
	if err := json.Unmarshal([]byte(o), &sum); err != nil {
		t.Fatal(err)
	}
	recs := readRecords(t, pred)
	if sum.Task != "choice" || sum.Dataset != "boolq" || sum.Items != 4 || len(recs) != 4 || sum.AccuracyMean == nil {
		t.Fatalf("summary %+v, %d records", sum, len(recs))
	}
	correct, correctMean := 0, 0
	for _, r := range recs {
		if len(r.Candidates) != 2 || r.Candidates[0].Label != "true" || r.Candidates[1].Label != "false" {
			t.Fatalf("candidates %+v", r.Candidates)
		}
		best, bestMean := r.Candidates[0], r.Candidates[0]
		if r.Candidates[1].Sum > best.Sum {
			best = r.Candidates[1]
		}
		if r.Candidates[1].Mean > bestMean.Mean {
			bestMean = r.Candidates[1]
		}
		if r.Prediction != best.Label || r.Correct != (best.Label == r.Answer) || r.CorrectMean != (bestMean.Label == r.Answer) {
			t.Errorf("record %+v", r)
		}
		if r.Correct {
			correct++
		}
		if r.CorrectMean {
			correctMean++
		}
	}
	if sum.Correct != correct || *sum.CorrectMean != correctMean || sum.Accuracy != float64(correct)/4 {
		t.Errorf("summary %+v; records give %d / %d correct", sum, correct, correctMean)
	}
}

func TestEvalErrors(t *testing.T) {
	dir, model, tok, gsm, pred := evalFixture(t, "gsm8k-test.json")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--task", "choice", "--data", gsm}, "does not apply to gsm8k"},
		{[]string{"--task", "gen", "--data", filepath.Join(dir, "math_data.json")}, "--dataset-type"},
		{[]string{"--task", "gen", "--data", gsm, "--dataset-type", "squad"}, `unknown dataset type "squad"`},
		{[]string{"--task", "gen", "--data", gsm, "--beams", "0"}, "--beams must be >= 1"},
		{[]string{"--task", "mmlu", "--data", gsm}, `--task "mmlu" is not supported`},
		{[]string{"--task", "gen", "--data", filepath.Join(dir, "gsm8k-missing.json")}, "gsm8k-missing.json"},
	} {
		args := append([]string{"eval", model, "--tokenizer", tok, "--predictions", pred}, c.args...)
		_, e, code := shears(t, args...)
		if code == 0 || !strings.Contains(e, c.want) {
			t.Errorf("%v: code %d, stderr %q; want it to mention %q", c.args, code, e, c.want)
		}
		if _, err := os.Stat(pred); !os.IsNotExist(err) {
			t.Errorf("%v: predictions file written on failure", c.args)
		}
	}
}

func TestEvalPPLLimit(t *testing.T) {
	_, model, tok, boolq, _ := evalFixture(t, "boolq-test.json")
	run := func(limit string) eval.PPL {
		o, e, code := shears(t, "eval", model, "--task", "ppl", "--data", boolq, "--tokenizer", tok, "--seq-len", "128", "--limit", limit, "--json", "--threads", "2")
		if code != 0 {
			t.Fatalf("ppl: %s", e)
		}
		var p eval.PPL
		if err := json.Unmarshal([]byte(o), &p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a, b := run("5"), run("10")
	// Five training prompts of boolq are a few hundred tokens; ten are about twice as many.
	if a.Tokens < 100 || b.Tokens < a.Tokens+100 || a.PPL <= 1 || math.IsInf(a.PPL, 0) {
		t.Errorf("--limit 5: %+v; --limit 10: %+v", a, b)
	}
}
