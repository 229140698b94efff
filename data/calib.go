package data

import (
	"fmt"
	"math/rand/v2"

	"github.com/shears-ml/shears/tokenizer"
)

// CalibOptions sets calibration sampling (Wanda's reference: 128 samples × the model's context, seed 0).
type CalibOptions struct {
	Samples int
	SeqLen  int
	Seed    uint64
}

// Tokens tokenizes a document as the reference does: BOS + text ids (pre-tokenized ids as given).
// tok may be nil when d is pre-tokenized (see PreTokenized).
func Tokens(d Document, tok tokenizer.Tokenizer) []int {
	if d.IDs != nil {
		return d.IDs
	}
	return append([]int{tok.BOS()}, tok.Encode(d.Text)...)
}

// PreTokenized checks that every document of path is pre-tokenized ({"ids": [...]} records), so
// a stage can run without a tokenizer; the error names the first record with text.
func PreTokenized(docs []Document, path string) error {
	for i, d := range docs {
		if d.IDs == nil {
			return fmt.Errorf("record %d of %s has text, not ids: give a tokenizer, or pre-tokenize every record as {\"ids\": [...]}", i+1, path)
		}
	}
	if len(docs) == 0 {
		return fmt.Errorf("%s holds no records", path)
	}
	return nil
}

// CalibrationWindows draws o.Samples windows of exactly o.SeqLen tokens from docs (tokenized
// here; tok may be nil when every document is pre-tokenized): CalibrationWindowsOf on them.
func CalibrationWindows(docs []Document, tok tokenizer.Tokenizer, o CalibOptions) ([][]int, error) {
	ts := &TokenSet{}
	for _, d := range docs {
		ids := Tokens(d, tok)
		ts.Docs = append(ts.Docs, ids)
		ts.Pre = append(ts.Pre, d.IDs != nil)
		ts.Tokens += len(ids)
	}
	eos := -1
	if tok != nil {
		eos = tok.EOS()
	}
	return CalibrationWindowsOf(ts, eos, o)
}

// CalibrationBudget is the default number of tokens a calibration reads from its data file:
// 16 times what the windows hold, and at least 1M tokens, so small datasets are read whole and
// large files only as far as that (memory and time independent of the file's size).
func CalibrationBudget(o CalibOptions) int { return max(1<<20, 16*o.Samples*o.SeqLen) }

// CalibrationWindowsOf draws o.Samples windows of exactly o.SeqLen tokens.
//
//   - Pre-tokenized records of exactly SeqLen ids are the windows themselves, taken in file order
//     (deterministic calibration, e.g. to reproduce another tool's samples).
//   - Otherwise, as Wanda does with C4: pick a random document longer than SeqLen and a random
//     window inside it, repeating until Samples windows are drawn.
//   - When no document is long enough (instruction datasets have short records), the documents
//     are joined into one stream (each BOS … EOS) and windows are drawn from random offsets of it.
//     Pre-tokenized records are joined as they are (their ids carry whatever BOS/EOS they need).
//
// eos is the tokenizer's EOS (unused when every document is pre-tokenized).
func CalibrationWindowsOf(ts *TokenSet, eos int, o CalibOptions) ([][]int, error) {
	if o.Samples <= 0 || o.SeqLen <= 1 {
		return nil, fmt.Errorf("calibration: need samples > 0 and seq-len > 1, got %d × %d", o.Samples, o.SeqLen)
	}
	var exact [][]int
	for i, ids := range ts.Docs {
		if ts.Pre[i] && len(ids) == o.SeqLen {
			exact = append(exact, ids)
		}
	}
	if len(exact) > 0 {
		if len(exact) < o.Samples {
			return nil, fmt.Errorf("calibration: %d pre-tokenized windows of %d ids, want %d", len(exact), o.SeqLen, o.Samples)
		}
		return exact[:o.Samples], nil
	}
	var long []int
	for i, ids := range ts.Docs {
		if len(ids) > o.SeqLen {
			long = append(long, i)
		}
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0xca11b))
	out := make([][]int, 0, o.Samples)
	if len(long) > 0 {
		for len(out) < o.Samples {
			ids := ts.Docs[long[rng.IntN(len(long))]]
			start := rng.IntN(len(ids) - o.SeqLen)
			out = append(out, append([]int(nil), ids[start:start+o.SeqLen]...))
		}
		return out, nil
	}
	joined := make([]int, 0, ts.Tokens+len(ts.Docs))
	for i, ids := range ts.Docs {
		joined = append(joined, ids...)
		if !ts.Pre[i] {
			joined = append(joined, eos)
		}
	}
	if len(joined) < o.SeqLen {
		return nil, fmt.Errorf("calibration: the data holds %d tokens, fewer than one window of %d", len(joined), o.SeqLen)
	}
	for len(out) < o.Samples {
		start := rng.IntN(len(joined) - o.SeqLen + 1)
		out = append(out, append([]int(nil), joined[start:start+o.SeqLen]...))
	}
	return out, nil
}

// Stream joins the documents into one token stream (each BOS … EOS), for perplexity.
func Stream(docs []Document, tok tokenizer.Tokenizer) []int {
	var out []int
	for _, d := range docs {
		out = append(out, Tokens(d, tok)...)
		if len(docs) > 1 {
			out = append(out, tok.EOS())
		}
	}
	return out
}
