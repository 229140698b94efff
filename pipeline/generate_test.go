package pipeline

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/tokenizer"
)

// Generate's greedy ids are, step by step, the argmax of a full forward pass over the prompt
// and the ids so far (testkit.RunLogits, no cache, independent of eval's decoders); the KV
// cache and --no-cache give the same ids; the streamed text is the decoded prompt and ids.
func TestGenerateGreedyIsTheFullForwardArgmax(t *testing.T) {
	r := fixture(t)
	var streamed strings.Builder
	o := GenerateOptions{Model: r.Model, Tokenizer: r.Tokenizer, Prompt: "Lily saw", MaxTokens: 6, Beams: 1, IgnoreEOS: true,
		Runtime: runtime.Options{Threads: 1}, Text: func(s string) { streamed.WriteString(s) }}
	rep, err := Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.IDs) != 6 || rep.Caching != "kv cache" || rep.Decoding != "greedy" {
		t.Fatalf("report %+v", rep)
	}
	tok, err := tokenizer.Load(r.Tokenizer)
	if err != nil {
		t.Fatal(err)
	}
	prompt := append([]int{tok.BOS()}, tok.Encode("Lily saw")...)
	if rep.PromptTokens != len(prompt) {
		t.Fatalf("prompt tokens %d, want %d", rep.PromptTokens, len(prompt))
	}
	if got, want := streamed.String(), tok.Decode(append(append([]int{}, prompt...), rep.IDs...)); got != want {
		t.Fatalf("streamed %q, want %q", got, want)
	}
	if rep.Text != tok.Decode(rep.IDs) {
		t.Fatalf("text %q, want %q", rep.Text, tok.Decode(rep.IDs))
	}
	m, err := onnx.Load(r.Model)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	seq := append([]int{}, prompt...)
	for step, id := range rep.IDs {
		ids := make([]int64, len(seq))
		for i, v := range seq {
			ids[i] = int64(v)
		}
		_, logits := testkit.RunLogits(t, m, 1, ids, nil)
		vocab := len(logits) / len(seq)
		last := logits[(len(seq)-1)*vocab:]
		best, bestV := 0, float32(math.Inf(-1))
		for i, v := range last {
			if v > bestV {
				best, bestV = i, v
			}
		}
		if best != id {
			t.Fatalf("step %d: generated %d, the full forward's argmax is %d", step, id, best)
		}
		seq = append(seq, id)
	}

	// The same ids without the cache; prompt ids need no tokenizer when no text is asked for.
	o.NoCache, o.Text, o.Tokenizer, o.Prompt, o.PromptIDs = true, nil, "", "", prompt
	o.Model = r.Model
	rep2, err := Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	if rep2.Caching != "recompute" || rep2.Text != "" || !slices.Equal(rep2.IDs, rep.IDs) {
		t.Fatalf("no-cache report %+v, want ids %v", rep2, rep.IDs)
	}
}

// Each stage's Check names the flag a bad value came from and marks it a usage error.
func TestStageChecksNameTheFlag(t *testing.T) {
	gen := GenerateOptions{MaxTokens: 4, Beams: 1}
	ev := EvalOptions{Task: "ppl", Data: "d.txt", Beams: 4}
	gc := GradcheckOptions{Wrt: "norm", Batch: 2, Seq: 8, Samples: 4}
	for name, err := range map[string]error{
		"generate": gen.Check(), "eval": ev.Check(), "gradcheck": gc.Check(), "output": Output{Format: "folder", Force: true}.Check(),
	} {
		if err != nil {
			t.Errorf("%s: good options refused: %v", name, err)
		}
	}
	bad := []struct {
		err  error
		flag string
	}{
		{GenerateOptions{MaxTokens: -1, Beams: 1}.Check(), "--max-tokens"},
		{GenerateOptions{Beams: 0}.Check(), "--beams"},
		{GenerateOptions{Beams: 2, Temperature: 1}.Check(), "--temperature"},
		{GenerateOptions{Beams: 1, Prompt: "x", PromptIDs: []int{1}}.Check(), "--prompt-ids"},
		{EvalOptions{Task: "bleu", Data: "d", Beams: 1}.Check(), "--task"},
		{EvalOptions{Task: "ppl", Beams: 1}.Check(), "--data"},
		{EvalOptions{Task: "gen", Data: "d", Beams: 1, Limit: -1}.Check(), "--limit"},
		{EvalOptions{Task: "ppl", Data: "d", Beams: 1, NoCache: true}.Check(), "--no-cache"},
		{EvalOptions{Task: "ppl", Data: "d", Beams: 1, Predictions: "p.jsonl"}.Check(), "--predictions"},
		{GradcheckOptions{Batch: 1, Seq: 2, Samples: 1}.Check(), "--wrt"},
		{GradcheckOptions{Wrt: "(", Batch: 1, Seq: 2, Samples: 1}.Check(), "--wrt"},
		{GradcheckOptions{Wrt: "x", Batch: 1, Seq: 1, Samples: 1}.Check(), "--seq-len"},
		{Output{Format: "zip"}.Check(), "--format"},
		{Output{Force: true}.Check(), "--force"},
	}
	for i, b := range bad {
		if !errors.Is(b.err, ErrUsage) || !strings.Contains(b.err.Error(), b.flag) {
			t.Errorf("case %d: %v, want a usage error naming %s", i, b.err, b.flag)
		}
	}
	if _, err := Generate(GenerateOptions{Model: "m.onnx", MaxTokens: 1, Beams: 1}); !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "--tokenizer") {
		t.Errorf("generate from text without a tokenizer: %v", err)
	}
}

// The one JSON form: indented, newline-terminated, NaN and Inf as null and said so.
func TestMarshalJSONWritesNonFiniteAsNull(t *testing.T) {
	b, nonFinite, err := MarshalJSON(map[string]float64{"loss": math.NaN(), "ppl": 2})
	if err != nil || !nonFinite || string(b) != "{\n  \"loss\": null,\n  \"ppl\": 2\n}\n" {
		t.Fatalf("%q %v %v", b, nonFinite, err)
	}
	b, nonFinite, err = MarshalJSON(struct {
		A int `json:"a"`
	}{1})
	if err != nil || nonFinite || string(b) != "{\n  \"a\": 1\n}\n" {
		t.Fatalf("%q %v %v", b, nonFinite, err)
	}
	if got := DeviceList(); got != "cpu, cuda, tensorrt or webgpu" {
		t.Fatalf("device list %q", got)
	}
}
