package eval

import (
	"fmt"

	"github.com/shears-ml/shears/data"
	"github.com/shears-ml/shears/tokenizer"
)

// Record is the outcome of one evaluation item (one line of --predictions).
type Record struct {
	Index      int            `json:"index"`
	Prompt     string         `json:"prompt,omitempty"`
	Response   string         `json:"response"`
	Prediction string         `json:"prediction"`
	Answer     string         `json:"answer"`
	Correct    bool           `json:"correct"`
	Tokens     int            `json:"new_tokens,omitempty"` // generated tokens (gen)
	Candidates []ChoiceResult `json:"candidates,omitempty"` // scored labels (choice)
	// CorrectMean is whether the best label by mean log-probability is the answer (choice).
	CorrectMean bool `json:"correct_mean,omitempty"`
	Truncated   int  `json:"truncated,omitempty"` // prompt tokens dropped to fit the context
}

// ChoiceResult is one candidate label's score.
type ChoiceResult struct {
	Label string `json:"label"`
	ContScore
}

// GenConfig controls GenItem.
type GenConfig struct {
	Beams         int // ≤ 1: greedy decoding
	MaxNewTokens  int // 0: the task's default (256 math, 32 commonsense)
	MaxContext    int // the model's context length; 0 = unlimited
	LengthPenalty float64
	NoCache       bool // rerun the whole sequence every step even with a KV cache (for timing)
}

// MaxNew is the reference's max_new_tokens for the task: 256 for math, 32 for commonsense.
func (t Task) MaxNew() int {
	if t.Math {
		return 256
	}
	return 32
}

// Prompt is the item's evaluation prompt: the math template for math tasks, the
// commonsense one (24-space indent) otherwise.
func (t Task) Prompt(it Item) string { return data.EvalPrompt(it.Instruction, !t.Math) }

// Decoding names the decoding GenItem uses, for the output.
func (c GenConfig) Decoding() string {
	if c.Beams > 1 {
		return fmt.Sprintf("beam search (%d beams, length penalty %g)", c.Beams, c.LengthPenalty)
	}
	return "greedy"
}

// GenItem generates a response for one item as the reference does (BOS + eval prompt,
// generation until EOS or the token budget), decodes the whole sequence, extracts the text
// after "### Response:" and parses it with the task's rule. A prompt longer than the context
// loses its first tokens (BOS kept) so that at least one new token fits.
func GenItem(s Model, tok tokenizer.Tokenizer, t Task, it Item, c GenConfig) (Record, error) {
	prompt := append([]int{tok.BOS()}, tok.Encode(t.Prompt(it))...)
	rec := Record{Answer: it.Answer}
	if c.MaxContext > 1 && len(prompt) >= c.MaxContext {
		rec.Truncated = len(prompt) - (c.MaxContext - 1)
		prompt = append([]int{prompt[0]}, prompt[1+rec.Truncated:]...)
	}
	maxNew := c.MaxNewTokens
	if maxNew <= 0 {
		maxNew = t.MaxNew()
	}
	var ids []int
	if c.Beams > 1 {
		h, err := BeamSearch(s, prompt, BeamOptions{Beams: c.Beams, MaxTokens: maxNew, Stop: []int{tok.EOS()}, MaxContext: c.MaxContext, LengthPenalty: c.LengthPenalty, NoCache: c.NoCache})
		if err != nil {
			return rec, err
		}
		ids = h.IDs
	} else {
		var err error
		ids, err = Generate(s, prompt, GenOptions{MaxTokens: maxNew, Stop: []int{tok.EOS()}, MaxContext: c.MaxContext, NoCache: c.NoCache}, nil)
		if err != nil {
			return rec, err
		}
	}
	rec.Tokens = len(ids)
	full := tok.Decode(append(append([]int(nil), prompt...), ids...))
	resp, ok := ExtractResponse(full)
	if !ok {
		// The marker did not survive decoding (e.g. lost to truncation): use the new text.
		resp = ExtractResponseOf(tok.Decode(ids))
	}
	rec.Response = resp
	pred, correct, err := t.Correct(resp, it.Answer)
	if err != nil {
		return rec, err
	}
	rec.Prediction, rec.Correct = pred, correct
	return rec, nil
}

// ExtractResponseOf strips text that has no marker of its own, cutting at a marker the model
// emitted.
func ExtractResponseOf(text string) string {
	r, _ := ExtractResponse(responseMarker + text)
	return r
}

// ChoiceConfig controls ChoiceItem.
type ChoiceConfig struct {
	// Prefix goes between the eval prompt and each label, e.g. "the correct answer is " (the
	// training responses' wording). It is part of the context, not scored.
	Prefix     string
	MaxContext int
}

// ChoiceItem scores every candidate label of the item (Task.Candidates) as a continuation of
// the eval prompt + Prefix (ChoiceTokens, ScoreContinuations) and predicts the one with the highest summed log-probability
// (ties: the earlier label). CorrectMean records the same by mean log-probability.
func ChoiceItem(s Model, tok tokenizer.Tokenizer, t Task, it Item, c ChoiceConfig) (Record, error) {
	if t.Kind == Numeric {
		return Record{}, fmt.Errorf("eval: --task choice does not apply to %s: its answers are numbers, not labels (use --task gen)", t.Name)
	}
	labels := t.Candidates(it.Instruction)
	seqs, k, dropped, err := ChoiceTokens(tok, t.Prompt(it)+c.Prefix, labels, c.MaxContext)
	if err != nil {
		return Record{}, err
	}
	scores, err := ScoreContinuations(s, seqs, k)
	if err != nil {
		return Record{}, err
	}
	rec := Record{Answer: it.Answer, Truncated: dropped}
	best, bestMean := 0, 0
	for i, sc := range scores {
		rec.Candidates = append(rec.Candidates, ChoiceResult{Label: labels[i], ContScore: sc})
		if sc.Sum > scores[best].Sum {
			best = i
		}
		if sc.Mean > scores[bestMean].Mean {
			bestMean = i
		}
	}
	rec.Prediction = labels[best]
	rec.Correct = labels[best] == it.Answer
	rec.CorrectMean = labels[bestMean] == it.Answer
	return rec, nil
}

// Summary is the result of a gen or choice evaluation.
type Summary struct {
	Task         string  `json:"task"`    // gen or choice
	Dataset      string  `json:"dataset"` // the task's canonical name
	File         string  `json:"file"`
	Items        int     `json:"items"`
	Correct      int     `json:"correct"`
	Accuracy     float64 `json:"accuracy"`
	Decoding     string  `json:"decoding"`          // greedy, beam search (…), or log-likelihood (sum)
	Caching      string  `json:"caching,omitempty"` // gen: "kv cache" or "recompute" (Caching)
	MaxNewTokens int     `json:"max_new_tokens,omitempty"`
	// CorrectMean / AccuracyMean: choice by mean instead of summed log-probability.
	CorrectMean  *int     `json:"correct_mean,omitempty"`
	AccuracyMean *float64 `json:"accuracy_mean,omitempty"`
	Truncated    int      `json:"truncated_items"` // items whose prompt lost tokens to the context
	NewTokens    int      `json:"new_tokens,omitempty"`
	Seconds      float64  `json:"seconds"`
}

// Add counts one record.
func (s *Summary) Add(r Record) {
	s.Items++
	if r.Correct {
		s.Correct++
	}
	if r.Truncated > 0 {
		s.Truncated++
	}
	s.NewTokens += r.Tokens
	if r.Candidates != nil {
		if s.CorrectMean == nil {
			s.CorrectMean, s.AccuracyMean = new(int), new(float64)
		}
		if r.CorrectMean {
			*s.CorrectMean++
		}
		*s.AccuracyMean = float64(*s.CorrectMean) / float64(s.Items)
	}
	s.Accuracy = float64(s.Correct) / float64(s.Items)
}
