package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/models/llama2c"
	"github.com/shears-ml/shears/onnx"
)

// fixture writes the stories260K model and small text files, and returns a recipe over them:
// Wanda 50%, ranks 8,6,4 (alpha 16), one short epoch, hill-climb with 2 evaluations, the
// LoRA baselines, held-out perplexity.
func fixture(t *testing.T) *Recipe {
	t.Helper()
	testkit.ORT(t)
	ckpt := testkit.StoriesShaped(t)
	tok := testkit.Tok512Shaped(t)
	dir := t.TempDir()
	m, err := llama2c.Import(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	model := filepath.Join(dir, "stories260K.onnx")
	if err := m.Save(model, onnx.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	names := []string{"Lily", "Tom", "Sue", "Ben", "Max", "Amy"}
	things := []string{"a red ball", "a big cake", "a little dog", "a shiny car", "a blue kite", "a funny hat"}
	write := func(name string, from, n int) {
		var b strings.Builder
		for i := from; i < from+n; i++ {
			fmt.Fprintf(&b, `{"text": "%s saw %s in the park. %s was very happy and played with it all day."}`+"\n",
				names[i%len(names)], things[(i/len(names))%len(things)], names[i%len(names)])
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("train.jsonl", 0, 16)
	write("val.jsonl", 16, 8)
	write("heldout.jsonl", 24, 12)
	recipe := fmt.Sprintf(`
work: work
model: %s
tokenizer: %s
prune: {calib: train.jsonl, samples: 4, seq_len: 64}
adapt: {ranks: [8, 6, 4], alpha: 16}
train: {data: train.jsonl, epochs: 1, lr: 1.0e-3, batch: 4, micro_batch: 2, cutoff: 32}
search: {strategy: hill-climb, data: val.jsonl, budget: 2}
baselines: {lora: true}
eval:
  - {name: held-out, data: heldout.jsonl, seq_len: 64}
`, model, tok)
	path := filepath.Join(dir, "recipe.yaml")
	if err := os.WriteFile(path, []byte(recipe), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := LoadRecipe(path)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func cached(s *Summary) map[string]bool {
	out := map[string]bool{}
	for _, st := range s.Stages {
		out[st.Stage] = st.Cached
	}
	return out
}

// TestRunResumable runs the whole pipeline, checks the rows' golden parameter counts, then
// shows that a second run skips every stage with equal numbers, and that changing one
// option reruns exactly the stages downstream of it.
func TestRunResumable(t *testing.T) {
	r := fixture(t)
	var log strings.Builder
	s1, err := Run(r, Options{Log: &log})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	tab := s1.Tables[0]
	want := []struct {
		label            string
		nonzero, adapter int64
	}{
		// stories260K: 5 blocks of 45,312 linear weights + embedding and head (32,768 each);
		// Wanda 50% halves the block linears. Adapters Σ r·(in+out) over q,k,v,up,down:
		// 792 per rank per block → 5·792·6 = 23,760 (heuristic) and 5·792·8 = 31,680 (r_max).
		{"dense base", 292096, 0},
		{"50% Wanda base", 178816, 0},
		{"50% Wanda + NLS (heuristic)", 178816, 23760},
		{"50% Wanda + NLS (searched: hill-climb)", 178816, -1},
		{"dense + LoRA r=8", 292096, 31680},
		{"50% Wanda + LoRA r=8", 178816, 31680},
	}
	if len(tab.Rows) != len(want) {
		t.Fatalf("%d rows, want %d: %+v", len(tab.Rows), len(want), tab.Rows)
	}
	// Below the vocabulary size for the trained model; near it (random logits) for the stand-in.
	maxPPL := 512.0
	if !testkit.TrainedStories(t) {
		maxPPL = 2048
	}
	for i, w := range want {
		row := tab.Rows[i]
		if row.Model != w.label || row.NonZero != w.nonzero || (w.adapter >= 0 && row.AdapterParams != w.adapter) {
			t.Errorf("row %d: %s nonzero %d adapter %d; want %s %d %d", i, row.Model, row.NonZero, row.AdapterParams, w.label, w.nonzero, w.adapter)
		}
		if !(row.PPL > 1 && row.PPL < maxPPL) || (i >= 2) != (row.TrainSeconds > 0) {
			t.Errorf("row %d (%s): ppl %v, training %vs", i, row.Model, row.PPL, row.TrainSeconds)
		}
	}
	// The searched configuration is hill-climb's: at least as good on validation as the
	// heuristic, and a valid selection of the run's groups.
	var sel struct {
		Ranks  map[string]int          `json:"ranks"`
		Metric struct{ Value float64 } `json:"metric"`
	}
	b, err := os.ReadFile(filepath.Join(r.Work, "search", "config.json"))
	if err != nil || json.Unmarshal(b, &sel) != nil || len(sel.Ranks) != 15 {
		t.Fatalf("search config: %v %s", err, b)
	}
	// Wanda must beat nothing here; the trained adapters must beat their base on held-out text.
	if tab.Rows[2].Loss >= tab.Rows[1].Loss || tab.Rows[4].Loss >= tab.Rows[0].Loss {
		t.Errorf("training did not lower the held-out loss: %+v", tab.Rows)
	}
	for _, f := range []string{"summary.md", "summary.json"} {
		if _, err := os.Stat(filepath.Join(r.Work, f)); err != nil {
			t.Error(err)
		}
	}

	// Second run: everything cached, identical numbers; serve writes the searched model as a
	// folder whose card carries the evaluation table.
	served := filepath.Join(t.TempDir(), "served")
	r.Serve = &RecipeServe{Folder: served}
	s2, err := Run(r, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for st, c := range cached(s2) {
		if !c {
			t.Errorf("second run: %s ran again", st)
		}
	}
	for i := range tab.Rows {
		if s2.Tables[0].Rows[i] != tab.Rows[i] {
			t.Errorf("second run row %d: %+v, first %+v", i, s2.Tables[0].Rows[i], tab.Rows[i])
		}
	}
	card, err := os.ReadFile(filepath.Join(served, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := fmt.Sprintf("| held-out perplexity | %.4g | 50%% Wanda + NLS (searched: hill-climb) (this model) |", tab.Rows[3].PPL)
	if !strings.Contains(string(card), row) || !strings.Contains(string(card), "| held-out perplexity | ") {
		t.Errorf("served card lacks the evaluation row %q:\n%s", row, card)
	}
	for _, f := range []string{"onnx/model.onnx", "config.json", "tokenizer.json"} {
		if _, err := os.Stat(filepath.Join(served, f)); err != nil {
			t.Errorf("served folder: %v", err)
		}
	}
	r.Serve = nil

	// A new search budget reruns the search, its export and its evaluation only.
	r.Search.Budget = 3
	s3, err := Run(r, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := cached(s3)
	for st, isCached := range c {
		rerun := st == "search" || st == "export-searched" || st == "eval-nls-searched"
		if isCached == rerun {
			t.Errorf("after a search change: %s cached=%v", st, isCached)
		}
	}
}

// TestRunTrainResume interrupts the training stage after its first step; the next Run
// resumes it from the checkpoint and ends with the uninterrupted run's adapter.
func TestRunTrainResume(t *testing.T) {
	r := fixture(t)
	r.Search, r.Baselines.LoRA = nil, false
	r.Train.LR, r.Train.Epochs = 1e-2, 2 // enough for the int4 codes to move (sub-step updates round back)
	r.Train.CheckpointEvery = 1
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := Run(r, Options{Context: ctx, Progress: func(e Event) {
		if e.Done == 1 {
			cancel()
		}
	}})
	if err == nil || !strings.Contains(err.Error(), "run the recipe again to resume") {
		t.Fatalf("interrupted run: %v", err)
	}
	var log strings.Builder
	s, err := Run(r, Options{Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "train: resuming") || cached(s)["train"] || !cached(s)["prune"] {
		t.Errorf("second run did not resume the train stage:\n%s", log.String())
	}
	resumed, err := os.ReadFile(filepath.Join(r.Work, "train", "run", AdapterFile))
	if err != nil {
		t.Fatal(err)
	}
	straight := *r
	straight.Work = r.Work + "-straight"
	if _, err := Run(&straight, Options{}); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(straight.Work, "train", "run", AdapterFile))
	if err != nil {
		t.Fatal(err)
	}
	if string(resumed) != string(want) {
		t.Errorf("resumed adapter (%d bytes) differs from the uninterrupted run's (%d bytes)", len(resumed), len(want))
	}
}

// TestRunQuantize runs the recipe with a quantize section (int4 RTN and GPTQ of the 50% base,
// QA-SparsePEFT on the GPTQ one): the quantized rows keep the sparse base's zeros (no more
// non-zeros than it), and the QA-SparsePEFT row, merged back to int4, beats its int4 base.
func TestRunQuantize(t *testing.T) {
	r := fixture(t)
	r.Search, r.Baselines.LoRA = nil, false
	r.Train.LR, r.Train.Epochs = 1e-2, 2 // enough for the int4 codes to move (sub-step updates round back)
	r.Quantize = &RecipeQuantize{Bits: 4, BlockSize: 32, Methods: []string{"rtn", "gptq"}, Calib: r.Prune.Calib, Samples: 4, SeqLen: 64, QA: "gptq"}
	if err := r.check(); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	s, err := Run(r, Options{Log: &log})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	rows := s.Tables[0].Rows
	labels := []string{"dense base", "50% Wanda base", "50% Wanda + NLS (heuristic)", "50% Wanda + int4 RTN", "50% Wanda + int4 GPTQ",
		"50% Wanda + int4 GPTQ + QA-SparsePEFT (heuristic, merged int4)"}
	if len(rows) != len(labels) {
		t.Fatalf("%d rows, want %d: %+v", len(rows), len(labels), rows)
	}
	for i, l := range labels {
		if rows[i].Model != l {
			t.Errorf("row %d: %q, want %q", i, rows[i].Model, l)
		}
		if i >= 3 && !(rows[i].NonZero <= rows[1].NonZero && rows[i].NonZero > rows[1].NonZero/2) {
			t.Errorf("%s: %d non-zero params, the sparse base has %d", l, rows[i].NonZero, rows[1].NonZero)
		}
	}
	if qa, base := rows[5], rows[4]; !(qa.Loss < base.Loss) || !(qa.TrainSeconds > 0) || qa.AdapterParams != 23760 {
		t.Errorf("QA-SparsePEFT row %+v does not beat its int4 base %+v", qa, base)
	}
}
