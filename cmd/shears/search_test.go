package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/pipeline"
	"github.com/shears-ml/shears/transform/merge"
)

// A short NLS run on 12 ARC-Easy examples, then searches scored on 8 other ones: the heuristic's
// table, hill-climbing's CONFIG.json (read back by merge and by "shears export"), its log and
// plot; and usage errors.
func TestSearchCLI(t *testing.T) {
	super, d, tok := trainSetup(t)
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	if _, e, code := shears(t, "train", super, "--data", d, "--tokenizer", tok, "--out", run, "--epochs", "1", "--batch", "4",
		"--micro-batch", "4", "--cutoff", "48", "--lr", "3e-3", "--threads", "2", "--no-progress"); code != 0 {
		t.Fatalf("train: %s", e)
	}
	val := arcSlice(t, dir, "val.json", 100, 108)

	h := filepath.Join(dir, "h", "heuristic.json")
	out, e, code := shears(t, "search", run, "--data", val, "--strategy", "heuristic", "-o", h, "--threads", "2", "--plot", "-", "--no-progress")
	if code != 0 {
		t.Fatalf("search heuristic: %s", e)
	}
	flat := strings.Join(strings.Fields(out), " ")
	for _, want := range []string{"strategy heuristic", "evaluations 1 of budget 1 (heuristic)", "on 8 validation units",
		"adapter params 23760 (75% of max)", "15 groups at r=6", "max / heuristic / min 31680 / 23760 / 15840"} {
		if !strings.Contains(flat, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}

	cfgPath := filepath.Join(dir, "hc", "config.json")
	out, e, code = shears(t, "search", run, "--data", val, "--tokenizer", tok, "--strategy", "hill-climb", "--budget", "6",
		"--seed", "3", "-o", cfgPath, "--threads", "2", "--json", "--no-progress")
	if code != 0 {
		t.Fatalf("search hill-climb: %s", e)
	}
	var rep pipeline.SearchReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if rep.Evaluations != 6 || rep.Heuristic == nil || rep.Best.Value > rep.Heuristic.Value || rep.Units != 8 || rep.Metric != "val_loss" {
		t.Fatalf("report %s", out)
	}
	sel, err := merge.ReadSelection(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if sel.Strategy != "hill-climb" || sel.Metric.Name != "val_loss" || sel.Metric.Value != rep.Best.Value || sel.Params != rep.Best.Params || len(sel.Ranks) != 15 {
		t.Fatalf("CONFIG.json %+v vs best %+v", sel, rep.Best)
	}
	var cfg pipeline.SearchConfig
	raw, _ := os.ReadFile(cfgPath)
	if err := json.Unmarshal(raw, &cfg); err != nil || cfg.Evaluations != 6 || cfg.Heuristic == nil || cfg.Heuristic.Value != rep.Heuristic.Value {
		t.Fatalf("CONFIG.json extras %+v: %v", cfg, err)
	}
	f, err := os.Open(filepath.Join(dir, "hc", "search.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines := 0
	for sc := bufio.NewScanner(f); sc.Scan(); lines++ {
		var ev pipeline.Evaluation
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || ev.Index != lines || len(ev.RankMap) != 15 {
			t.Fatalf("log line %d: %v %s", lines, err, sc.Text())
		}
	}
	if lines != 6 {
		t.Fatalf("%d log lines", lines)
	}
	if st, err := os.Stat(filepath.Join(dir, "hc", "search.png")); err != nil || st.Size() < 1000 {
		t.Fatalf("plot: %v", err)
	}
	if _, e, code := shears(t, "export", run, "--config", cfgPath, "-o", filepath.Join(dir, "sub.onnx")); code != 0 {
		t.Fatalf("export of the searched config: %s", e)
	}

	// Accuracy on 4 ARC-Easy test items, 3 evaluations: by log-likelihood of the labels (--choice),
	// then by the default 4-beam generation on 2 items.
	arc := filepath.Join(dir, "ARC-Easy-test.json")
	if raw, err = os.ReadFile(testkit.Dataset(t, "ARC-Easy-test.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(arc, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	accPath := filepath.Join(dir, "acc", "config.json")
	out, e, code = shears(t, "search", run, "--data", arc, "--metric", "accuracy", "--choice", "--limit", "4", "--strategy", "hill-climb",
		"--budget", "3", "-o", accPath, "--threads", "2", "--json", "--no-progress")
	if code != 0 {
		t.Fatalf("search --metric accuracy: %s", e)
	}
	rep = pipeline.SearchReport{}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if v := rep.Best.Value * 4; rep.Metric != "val_accuracy" || rep.Units != 4 || rep.Evaluations != 3 || v != float64(int(v)) || rep.Best.Value < rep.Heuristic.Value {
		t.Fatalf("accuracy report %s", out)
	}
	t.Logf("accuracy on 4 items: heuristic %.2f, best %.2f", rep.Heuristic.Value, rep.Best.Value)
	out, e, code = shears(t, "search", run, "--data", arc, "--metric", "accuracy", "--limit", "2", "--strategy", "heuristic",
		"-o", filepath.Join(dir, "gen", "config.json"), "--threads", "2", "--json", "--no-progress")
	if code != 0 {
		t.Fatalf("search --metric accuracy (4-beam generation): %s", e)
	}
	rep = pipeline.SearchReport{}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if v := rep.Best.Value * 2; rep.Units != 2 || v != float64(int(v)) || strings.Contains(out, "log-likelihood") || strings.Contains(out, "greedy") {
		t.Fatalf("generation accuracy report %s", out)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"search", run, "-o", cfgPath}, "--data VAL is required"},
		{[]string{"search", run, "--data", val, "-o", cfgPath, "--strategy", "random"}, `--strategy "random"`},
		{[]string{"search", run, "--data", val, "-o", cfgPath, "--metric", "bleu"}, `--metric "bleu"`},
		{[]string{"search", run, "--data", val}, "-o CONFIG.json is required"},
	} {
		if _, e, code := shears(t, c.args...); code != 2 || !strings.Contains(e, c.want) {
			t.Errorf("%v: code %d, %q", c.args, code, e)
		}
	}
	if _, e, code := shears(t, "search", dir, "--data", val, "-o", filepath.Join(dir, "x.json")); code != 1 || !strings.Contains(e, "run.json") {
		t.Errorf("search of a non-run: code %d, %q", code, e)
	}
}
