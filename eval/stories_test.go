package eval

import (
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/models"
	"github.com/shears-ml/shears/models/llama2c"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/tokenizer"
)

// stories opens the shared stories260K checkpoint (imported in memory) with its tokenizer
// and context length.
func stories(t testing.TB) (*runtime.Session, tokenizer.Tokenizer, int) {
	t.Helper()
	ckpt := testkit.StoriesShaped(t)
	tokPath := testkit.Tok512Shaped(t)
	testkit.ORT(t)
	m, err := llama2c.Import(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	ctx := models.ContextLength(m)
	s := openModel(t, m)
	tok, err := tokenizer.Load(tokPath)
	if err != nil {
		t.Fatal(err)
	}
	return s, tok, ctx
}

func TestBeamOneIsGreedyOnStories(t *testing.T) {
	s, tok, ctx := stories(t)
	prompt := append([]int{tok.BOS()}, tok.Encode("Once upon a time, Lily")...)
	g, err := Generate(s, prompt, GenOptions{MaxTokens: 40, Stop: []int{tok.EOS()}, MaxContext: ctx}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := BeamSearch(s, prompt, BeamOptions{Beams: 1, MaxTokens: 40, Stop: []int{tok.EOS()}, MaxContext: ctx, LengthPenalty: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(g) < 10 || !reflect.DeepEqual(h.IDs, g) {
		t.Errorf("1 beam %v\n greedy %v", h.IDs, g)
	}
	// Four beams find a continuation at least as likely as greedy's when both run out of
	// tokens (no EOS) — not guaranteed in general, but the log-prob must be finite and ≤ 0.
	h4, err := BeamSearch(s, prompt, BeamOptions{Beams: 4, MaxTokens: 20, Stop: []int{tok.EOS()}, MaxContext: ctx, LengthPenalty: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(h4.IDs) == 0 || h4.LogProb > 0 || math.IsInf(h4.LogProb, 0) {
		t.Errorf("4 beams: %+v", h4)
	}
	t.Logf("greedy: %q", tok.Decode(g))
	t.Logf("4 beams: %q (log-prob %.3f)", tok.Decode(h4.IDs), h4.LogProb)
}

// plainLogProb scores seq[k:] from one unbatched, unpadded forward run.
func plainLogProb(t *testing.T, s *runtime.Session, seq []int, k int) float64 {
	t.Helper()
	feeds, err := Feeds(s.Inputs(), [][]int{seq}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Run(feeds, []string{"logits"})
	if err != nil {
		t.Fatal(err)
	}
	l := res["logits"]
	v := int(l.Shape[2])
	var sum float64
	for p := k; p < len(seq); p++ {
		row := l.F32[(p-1)*v : p*v]
		var z float64
		for _, x := range row {
			z += math.Exp(float64(x))
		}
		sum += float64(row[seq[p]]) - math.Log(z)
	}
	return sum
}

func TestChoiceMatchesPlainForwardOnStories(t *testing.T) {
	s, tok, ctx := stories(t)
	siqa, _ := LookupTask("siqa")
	it := Item{Instruction: "Please choose the correct answer to the question: Tom was hungry. What will Tom want to do next?\n\nAnswer1: eat food Answer2: sleep Answer3: run away\n\nAnswer format: answer1/answer2/answer3", Answer: "answer1"}
	rec, err := ChoiceItem(s, tok, siqa, it, ChoiceConfig{Prefix: "the correct answer is ", MaxContext: ctx})
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Candidates) != 3 {
		t.Fatalf("candidates %+v, want answer1..3", rec.Candidates)
	}
	seqs, k, _, err := ChoiceTokens(tok, siqa.Prompt(it)+"the correct answer is ", []string{"answer1", "answer2", "answer3"}, ctx)
	if err != nil {
		t.Fatal(err)
	}
	best := 0
	for i, c := range rec.Candidates {
		want := plainLogProb(t, s, seqs[i], k)
		if !(math.Abs(c.Sum-want) <= 1e-4) || c.Tokens != len(seqs[i])-k || !(math.Abs(c.Mean-c.Sum/float64(c.Tokens)) <= 1e-12) {
			t.Errorf("%s: %+v, plain forward sum %.6f over %d tokens", c.Label, c.ContScore, want, len(seqs[i])-k)
		}
		if c.Sum > rec.Candidates[best].Sum {
			best = i
		}
		t.Logf("%s: sum %.4f mean %.4f (%d tokens)", c.Label, c.Sum, c.Mean, c.Tokens)
	}
	if rec.Prediction != rec.Candidates[best].Label || rec.Correct != (rec.Prediction == "answer1") {
		t.Errorf("prediction %q correct %v, best %q", rec.Prediction, rec.Correct, rec.Candidates[best].Label)
	}
	// The shared context is the tokenized prompt (up to the seam) and every candidate
	// differs only after it.
	context := append([]int{tok.BOS()}, tok.Encode(siqa.Prompt(it)+"the correct answer is ")...)
	if k > len(context) || k < len(context)-2 || !reflect.DeepEqual(seqs[0][:k], context[:k]) {
		t.Errorf("shared %d tokens; the tokenized context has %d", k, len(context))
	}
	for i := range seqs {
		if got := tok.Decode(seqs[i][k:]); !strings.HasSuffix(got, rec.Candidates[i].Label) || len(got) > len(rec.Candidates[i].Label)+1 {
			t.Errorf("candidate %d scores %q", i, got)
		}
	}
	gsm, _ := LookupTask("gsm8k")
	if _, err := ChoiceItem(s, tok, gsm, Item{Instruction: "1+1?", Answer: "2"}, ChoiceConfig{}); err == nil || !strings.Contains(err.Error(), "numbers") {
		t.Errorf("choice on gsm8k: err = %v", err)
	}
}

func TestGenItemOnStories(t *testing.T) {
	s, tok, ctx := stories(t)
	gsm, _ := LookupTask("gsm8k")
	it := Item{Instruction: "Tom has 3 apples and buys 4 more. How many apples does he have?", Answer: "7"}
	rec, err := GenItem(s, tok, gsm, it, GenConfig{MaxNewTokens: 24, MaxContext: ctx})
	if err != nil {
		t.Fatal(err)
	}
	// Redo the pipeline by hand: greedy ids → decode everything → extract → parse.
	prompt := append([]int{tok.BOS()}, tok.Encode(gsm.Prompt(it))...)
	ids, err := Generate(s, prompt, GenOptions{MaxTokens: 24, Stop: []int{tok.EOS()}, MaxContext: ctx}, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, ok := ExtractResponse(tok.Decode(append(prompt, ids...)))
	if !ok {
		t.Fatal("decoded prompt lost its ### Response: marker")
	}
	pred, correct, _ := gsm.Correct(resp, "7")
	if rec.Response != resp || rec.Prediction != pred || rec.Correct != correct || rec.Tokens != len(ids) || rec.Truncated != 0 {
		t.Errorf("record %+v; by hand response %q prediction %q correct %v tokens %d", rec, resp, pred, correct, len(ids))
	}
	t.Logf("response %q → %s", rec.Response, rec.Prediction)
	// A prompt longer than the context keeps BOS and its last context−1 tokens.
	long := Item{Instruction: strings.Repeat("Tom has an apple. ", 200), Answer: "1"}
	rec, err = GenItem(s, tok, gsm, long, GenConfig{MaxNewTokens: 4, MaxContext: ctx})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Truncated == 0 || rec.Tokens != 1 {
		t.Errorf("long prompt: truncated %d, new tokens %d; want > 0 and 1", rec.Truncated, rec.Tokens)
	}
}

func TestChoiceTokensTruncates(t *testing.T) {
	tok, err := tokenizer.Load(testkit.Tok512Shaped(t))
	if err != nil {
		t.Fatal(err)
	}
	context := strings.Repeat("Tom ran to the park. ", 10) + "the correct answer is "
	full, k0, _, err := ChoiceTokens(tok, context, []string{"true", "false"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	seqs, k, dropped, err := ChoiceTokens(tok, context, []string{"true", "false"}, 20)
	if err != nil {
		t.Fatal(err)
	}
	longest := max(len(full[0]), len(full[1]))
	if dropped != longest-20 || k != k0-dropped {
		t.Fatalf("dropped %d (want %d), k %d (want %d)", dropped, longest-20, k, k0-dropped)
	}
	for i, q := range seqs {
		// BOS, then the last tokens of the untruncated sequence.
		if len(q) > 20 || q[0] != tok.BOS() || !reflect.DeepEqual(q[1:], full[i][1+dropped:]) {
			t.Errorf("seq %d = %v; untruncated %v", i, q, full[i])
		}
	}
	if _, _, _, err := ChoiceTokens(tok, context, []string{"true", "false"}, 3); err == nil || !strings.Contains(err.Error(), "context 3") {
		t.Errorf("context too small for the candidates: err = %v", err)
	}
}
