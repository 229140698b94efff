package pipeline

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const yamlRecipe = `
work: out
model: ${PIPE_TEST_MODEL:-m.onnx}
tokenizer: /abs/tok.bin
prune: {calib: c.jsonl}
adapt: {ranks: [8, 6, 4], alpha: 16, dropout: 0}
train: {data: t.jsonl, epochs: 1}
search: {strategy: hill-climb, data: v.jsonl, budget: 5}
eval:
  - {task: ppl, data: h.jsonl, seq_len: 128}
`

const jsonRecipe = `{"work": "out", "model": "${PIPE_TEST_MODEL:-m.onnx}", "tokenizer": "/abs/tok.bin",
 "prune": {"calib": "c.jsonl"}, "adapt": {"ranks": [8, 6, 4], "alpha": 16, "dropout": 0},
 "train": {"data": "t.jsonl", "epochs": 1},
 "search": {"strategy": "hill-climb", "data": "v.jsonl", "budget": 5},
 "eval": [{"task": "ppl", "data": "h.jsonl", "seq_len": 128}]}`

// TestParseRecipe: YAML and JSON give the same recipe; defaults are the CLI's; explicit zeros
// stay zero; paths resolve against the recipe's folder with ${VAR:-default}.
func TestParseRecipe(t *testing.T) {
	y, err := ParseRecipe([]byte(yamlRecipe), "/r")
	if err != nil {
		t.Fatal(err)
	}
	j, err := ParseRecipe([]byte(jsonRecipe), "/r")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(y, j) {
		t.Errorf("YAML and JSON differ:\n%+v\n%+v", y, j)
	}
	if y.Work != "/r/out" || y.Model != "/r/m.onnx" || y.Tokenizer != "/abs/tok.bin" || y.Eval[0].Data != "/r/h.jsonl" {
		t.Errorf("paths: work %s model %s tokenizer %s eval %s", y.Work, y.Model, y.Tokenizer, y.Eval[0].Data)
	}
	p, a, tr := y.Prune, y.Adapt, y.Train
	if p.Method != "wanda" || *p.Sparsity != 0.5 || p.Samples != 128 || p.SeqLen != 2048 || p.Pattern != "unstructured" {
		t.Errorf("prune defaults: %+v", p)
	}
	if *a.Dropout != 0 || a.Alpha != 16 || len(a.Targets) != 5 {
		t.Errorf("adapt: dropout %v alpha %v targets %v", *a.Dropout, a.Alpha, a.Targets)
	}
	if tr.Epochs != 1 || tr.LR != 3e-4 || tr.Batch != 16 || tr.MicroBatch != 4 || tr.Cutoff != 256 || *tr.Seed != 42 || *tr.MaxGradNorm != 1 || !*tr.TrainOnInputs {
		t.Errorf("train defaults: %+v", tr)
	}
	if y.Export.Merge != "none" || y.Export.DType != "fp32" || y.Eval[0].Name != "h" || y.Eval[0].Batch != 4 || y.Search.Metric != "loss" {
		t.Errorf("export %+v eval %+v search %+v", y.Export, y.Eval[0], y.Search)
	}
	t.Setenv("PIPE_TEST_MODEL", "/elsewhere/x.onnx")
	y, err = ParseRecipe([]byte(yamlRecipe), "/r")
	if err != nil || y.Model != "/elsewhere/x.onnx" {
		t.Errorf("env: model %q, %v", y.Model, err)
	}
}

// TestRecipeErrors: bad recipes fail naming the key.
func TestRecipeErrors(t *testing.T) {
	for _, c := range []struct{ text, want string }{
		{"work: o\nmodel: m\ntokenizer: t\ntrain: {data: d, epoch: 2}\neval: [{data: h}]", "field epoch not found"},
		{"work: o\nmodel: m\ntokenizer: t\ntrain: {data: d}", "eval: list at least one"},
		{"work: o\nmodel: m\ntrain: {data: d}\neval: [{data: h}]", "tokenizer is required"},
		{"work: o\nmodel: m\ntokenizer: t\ntrain: {data: d}\nprune: {sparsity: 0.5}\neval: [{data: h}]", "prune.calib is required"},
		{"work: o\nmodel: m\ntokenizer: t\ntrain: {data: d}\neval: [{data: h, task: bleu}]", `task "bleu"`},
		{"work: o\nmodel: m\ntokenizer: t\ntrain: {data: d}\neval: [{data: h}, {data: x/h}]", `name "h" used twice`},
		{"", "empty recipe"},
	} {
		_, err := ParseRecipe([]byte(c.text), "/r")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.text, err, c.want)
		}
	}
	if _, err := LoadRecipe(filepath.Join(t.TempDir(), "none.yaml")); err == nil || !strings.Contains(err.Error(), "none.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

func TestGroupDigits(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 292096: "292,096", -1234567: "-1,234,567"} {
		if got := groupDigits(n); got != want {
			t.Errorf("groupDigits(%d) = %s, want %s", n, got, want)
		}
	}
}

// TestMarkdown: the table rows as the summary prints them.
func TestMarkdown(t *testing.T) {
	s := &Summary{Work: "w", Stages: []StageTime{{Stage: "train", Seconds: 30.14}, {Stage: "prune", Seconds: 4.6, Cached: true}}, Seconds: 31,
		Tables: []Table{
			{Name: "held-out", Task: "ppl", Data: "/d/h.jsonl", Rows: []TableRow{{Model: "dense base", Loss: 3.85731, PPL: 47.3361, NonZero: 292096}}},
			{Name: "gsm8k", Task: "answer-loss", Data: "g.json", Rows: []TableRow{{Model: "50% + NLS", Loss: 6.64512, PPL: 769.03, NonZero: 178816, AdapterParams: 23760, TrainSeconds: 38.71}}},
		}}
	md := s.Markdown()
	for _, want := range []string{
		"| train | 30.1 |\n| prune (cached) | 4.6 |\n| **this run** | **31.0** |",
		"## held-out (ppl, `h.jsonl`)",
		"| dense base | 47.336 | 3.8573 | 292,096 | – | – |",
		"| model | answer-token loss (nats) | exp(loss) |",
		"| 50% + NLS | 6.6451 | 769.0 | 178,816 | 23,760 | 38.7s |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}
