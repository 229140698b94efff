package data

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/shears-ml/shears/tokenizer"
)

// IgnoreIndex marks label positions excluded from the loss (PyTorch's −100).
const IgnoreIndex = -100

// Sequence is one tokenized training example.
type Sequence struct {
	IDs    []int
	Labels []int // same length as IDs; IgnoreIndex where the loss does not count
}

// TrainOptions follow the reference's tokenize / generate_and_tokenize_prompt.
type TrainOptions struct {
	Cutoff        int  // maximum tokens per sequence (reference: 256)
	TrainOnInputs bool // reference default true: the loss covers prompt + response
}

// Encode tokenizes text as the reference does: BOS + ids, truncated to cutoff, EOS appended
// iff the last token is not EOS and the length is below cutoff (a truncated sequence has no EOS).
func Encode(text string, tok tokenizer.Tokenizer, cutoff int, addEOS bool) []int {
	ids := append([]int{tok.BOS()}, tok.Encode(text)...)
	if cutoff > 0 && len(ids) > cutoff {
		ids = ids[:cutoff]
	}
	if addEOS && (len(ids) == 0 || ids[len(ids)-1] != tok.EOS()) && (cutoff <= 0 || len(ids) < cutoff) {
		ids = append(ids, tok.EOS())
	}
	return ids
}

// TrainSequences reads a training file and tokenizes every example:
//   - .json  LLM-Adapters records through the training template; with TrainOnInputs false the
//     first n labels are IgnoreIndex, n = the token length of the template filled with output ""
//   - .jsonl {"text": ...} records (or {"ids": [...]}, used as given, truncated to the cutoff)
//   - other  plain text, cut into consecutive chunks of Cutoff tokens (BOS + text, no EOS inside)
func TrainSequences(path string, tok tokenizer.Tokenizer, o TrainOptions) ([]Sequence, error) {
	if o.Cutoff < 2 {
		return nil, fmt.Errorf("train data %s: cutoff must be at least 2, got %d", path, o.Cutoff)
	}
	var out []Sequence
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json":
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read train data: %w", err)
		}
		var exs []Example
		if err := json.Unmarshal(raw, &exs); err != nil {
			return nil, fmt.Errorf("read train data %s: want a JSON array of {instruction, input, output, answer}: %w", path, err)
		}
		for _, e := range exs {
			ids := Encode(TrainPrompt(e), tok, o.Cutoff, true)
			labels := append([]int(nil), ids...)
			if !o.TrainOnInputs {
				prompt := e
				prompt.Output = ""
				n := len(Encode(TrainPrompt(prompt), tok, o.Cutoff, false))
				for i := 0; i < n && i < len(labels); i++ {
					labels[i] = IgnoreIndex
				}
			}
			out = append(out, Sequence{IDs: ids, Labels: labels})
		}
	default:
		docs, err := ReadDocuments(path)
		if err != nil {
			return nil, err
		}
		plain := !strings.EqualFold(filepath.Ext(path), ".jsonl")
		for i, d := range docs {
			if d.IDs != nil {
				if len(d.IDs) < 2 {
					return nil, fmt.Errorf("train data %s: record %d has %d id; a training record needs at least 2 (one next-token prediction)", path, i+1, len(d.IDs))
				}
				ids := d.IDs
				if len(ids) > o.Cutoff {
					ids = ids[:o.Cutoff]
				}
				out = append(out, Sequence{IDs: ids, Labels: append([]int(nil), ids...)})
				continue
			}
			if !plain {
				ids := Encode(d.Text, tok, o.Cutoff, true)
				out = append(out, Sequence{IDs: ids, Labels: append([]int(nil), ids...)})
				continue
			}
			ids := append([]int{tok.BOS()}, tok.Encode(d.Text)...)
			for start := 0; start+1 < len(ids); start += o.Cutoff {
				chunk := ids[start:min(start+o.Cutoff, len(ids))]
				out = append(out, Sequence{IDs: chunk, Labels: append([]int(nil), chunk...)})
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("train data %s: no examples", path)
	}
	return out, nil
}

// Batch is a padded micro-batch, row-major [len(IDs)/Len, Len].
type Batch struct {
	IDs    []int64
	Labels []int64
	Rows   int
	Len    int
	Tokens int // label positions that count toward the loss (after the shift by one)
}

// Pad builds a micro-batch padded on the right with pad (labels IgnoreIndex) to padLen
// tokens; padLen 0 pads to the longest sequence rounded up to a multiple of 8, as the
// reference's collator does. Graphs without an attention mask need right padding: the causal
// mask keeps real tokens from seeing the pads, and pads are excluded from the loss.
func Pad(seqs []Sequence, pad, padLen int) (Batch, error) {
	longest := 0
	for _, s := range seqs {
		longest = max(longest, len(s.IDs))
	}
	if padLen == 0 {
		padLen = (longest + 7) / 8 * 8
	}
	if longest > padLen {
		return Batch{}, fmt.Errorf("pad: a sequence of %d tokens does not fit %d", longest, padLen)
	}
	b := Batch{Rows: len(seqs), Len: padLen, IDs: make([]int64, 0, len(seqs)*padLen), Labels: make([]int64, 0, len(seqs)*padLen)}
	for _, s := range seqs {
		for t := 0; t < padLen; t++ {
			if t < len(s.IDs) {
				b.IDs = append(b.IDs, int64(s.IDs[t]))
				b.Labels = append(b.Labels, int64(s.Labels[t]))
				if t > 0 && s.Labels[t] != IgnoreIndex {
					b.Tokens++
				}
			} else {
				b.IDs = append(b.IDs, int64(pad))
				b.Labels = append(b.Labels, IgnoreIndex)
			}
		}
	}
	return b, nil
}
