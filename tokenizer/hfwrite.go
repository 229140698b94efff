package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// ErrNotConvertible marks a tokenizer that has no equivalent tokenizer.json: converting it
// would give a file that encodes some text to other ids. Callers that can do without the
// file (a model folder) branch on it with errors.Is and warn.
var ErrNotConvertible = errors.New("tokenizer cannot be converted to tokenizer.json")

// spaceMark is SentencePiece's visible space, which tokenizer.json pieces use for " ".
const spaceMark = "▁"

// Names the converted vocabulary gives llama2.c's three special ids (Hugging Face LLaMA's).
var llama2cSpecialNames = [3]string{"<unk>", "<s>", "</s>"}

// HFFiles is a tokenizer as Hugging Face stores it: tokenizer.json and tokenizer_config.json.
type HFFiles struct {
	TokenizerJSON []byte
	ConfigJSON    []byte
}

// ToHF converts a llama2.c tokenizer to the tokenizer.json form of Hugging Face's LLaMA
// tokenizer: a BPE model with byte fallback over the same ids (spaces spelled "▁"), the
// Prepend("▁") + Replace(" " → "▁") normalizer for llama2.c's dummy-prefix space, and the
// merges derived from the scores. llama2.c merges the adjacent pair whose concatenation is
// the best-scoring piece; a BPE tokenizer merges the pair of lowest rank; so every split of
// every piece into two pieces becomes a merge, ranked by the piece's score (best first).
// transformers.js, tokenizers and our HF loader then give llama2.c's ids (tested on real
// text). modelMaxLength, when positive, is recorded in tokenizer_config.json.
//
// One case cannot be expressed by ranks: a piece reachable from two different pairs that are
// both present at once (as "aaa" from [a, aa, a]); llama2.c takes the leftmost, a BPE file the
// lower-ranked. Pairs of one piece are ranked shorter left part first, which is llama2.c's
// choice whenever the two share a middle token shorter than the ends.
//
// A vocabulary that has no such equivalent is an error wrapping ErrNotConvertible naming
// the piece: byte tokens that are not <0x00>..<0xFF> at ids 3..258, a piece that is empty,
// spelled twice, or already containing "▁", or two mergeable pieces with equal scores (llama2.c
// breaks that tie by position, a BPE file by rank).
func (t *Llama2c) ToHF(modelMaxLength int) (*HFFiles, error) {
	n := len(t.vocab)
	fail := func(format string, a ...any) (*HFFiles, error) {
		return nil, fmt.Errorf("%w: %s", ErrNotConvertible, fmt.Sprintf(format, a...))
	}
	names := make([]string, n)
	ids := make(map[string]int, n)
	for id, piece := range t.vocab {
		var name string
		switch {
		case id < 3:
			name = llama2cSpecialNames[id]
		case id < 3+256:
			want := fmt.Sprintf("<0x%02X>", id-3)
			if piece != want {
				return fail("token %d is %q, but byte fallback needs %q there (llama2.c maps byte b to id b+3)", id, piece, want)
			}
			name = piece
		default:
			if piece == "" {
				return fail("token %d is empty", id)
			}
			if strings.Contains(piece, spaceMark) {
				return fail("token %d %q already contains %q, which tokenizer.json uses for a space", id, piece, spaceMark)
			}
			if !utf8.ValidString(piece) {
				return fail("token %d %q is not valid UTF-8", id, piece)
			}
			name = strings.ReplaceAll(piece, " ", spaceMark)
		}
		if prev, dup := ids[name]; dup {
			return fail("tokens %d and %d are both %q", prev, id, name)
		}
		ids[name], names[id] = id, name
	}

	// Merges: every split of a mergeable piece into two (non-special, non-byte) pieces.
	type mergeRule struct {
		left, right string
		score       float32
		id          int
	}
	var rules []mergeRule
	byScore := map[float32]int{}
	for id := 3 + 256; id < n; id++ {
		score := t.scores[id]
		if !(score > minMergeScore) {
			continue // llama2.c never merges into it
		}
		name := names[id]
		found := false
		for k := 1; k < len(name); k++ {
			l, r := name[:k], name[k:]
			if !utf8.ValidString(l) || !utf8.ValidString(r) {
				continue
			}
			li, okL := ids[l]
			ri, okR := ids[r]
			if !okL || !okR || li < 3+256 || ri < 3+256 {
				continue
			}
			rules = append(rules, mergeRule{left: l, right: r, score: score, id: id})
			found = true
		}
		if !found {
			continue
		}
		if other, tie := byScore[score]; tie {
			return fail("tokens %d %q and %d %q share the merge score %g (llama2.c breaks such ties by position, tokenizer.json by rank)",
				other, t.vocab[other], id, t.vocab[id], score)
		}
		byScore[score] = id
	}
	sort.SliceStable(rules, func(i, j int) bool {
		a, b := rules[i], rules[j]
		if a.score != b.score {
			return a.score > b.score
		}
		if a.id != b.id {
			return a.id < b.id
		}
		return len(a.left) < len(b.left)
	})
	merges := make([][2]string, len(rules))
	for i, r := range rules {
		merges[i] = [2]string{r.left, r.right}
	}

	vocab := make(orderedVocab, n)
	for id, name := range names {
		vocab[id] = name
	}
	type added struct {
		ID         int    `json:"id"`
		Content    string `json:"content"`
		SingleWord bool   `json:"single_word"`
		LStrip     bool   `json:"lstrip"`
		RStrip     bool   `json:"rstrip"`
		Normalized bool   `json:"normalized"`
		Special    bool   `json:"special"`
	}
	var addedTokens []added
	for id, name := range llama2cSpecialNames {
		addedTokens = append(addedTokens, added{ID: id, Content: name, Special: true})
	}
	str := func(s string) map[string]string { return map[string]string{"String": s} }
	tok := map[string]any{
		"version":      "1.0",
		"truncation":   nil,
		"padding":      nil,
		"added_tokens": addedTokens,
		"normalizer": map[string]any{"type": "Sequence", "normalizers": []any{
			map[string]any{"type": "Prepend", "prepend": spaceMark},
			map[string]any{"type": "Replace", "pattern": str(" "), "content": spaceMark},
		}},
		"pre_tokenizer": nil,
		"post_processor": map[string]any{
			"type": "TemplateProcessing",
			"single": []any{
				map[string]any{"SpecialToken": map[string]any{"id": "<s>", "type_id": 0}},
				map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}},
			},
			"pair": []any{
				map[string]any{"SpecialToken": map[string]any{"id": "<s>", "type_id": 0}},
				map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}},
				map[string]any{"SpecialToken": map[string]any{"id": "<s>", "type_id": 1}},
				map[string]any{"Sequence": map[string]any{"id": "B", "type_id": 1}},
			},
			"special_tokens": map[string]any{"<s>": map[string]any{"id": "<s>", "ids": []int{llama2cBOS}, "tokens": []string{"<s>"}}},
		},
		"decoder": map[string]any{"type": "Sequence", "decoders": []any{
			map[string]any{"type": "Replace", "pattern": str(spaceMark), "content": " "},
			map[string]any{"type": "ByteFallback"},
			map[string]any{"type": "Fuse"},
			map[string]any{"type": "Strip", "content": " ", "start": 1, "stop": 0},
		}},
		"model": map[string]any{
			"type":                      "BPE",
			"dropout":                   nil,
			"unk_token":                 "<unk>",
			"continuing_subword_prefix": nil,
			"end_of_word_suffix":        nil,
			"fuse_unk":                  true,
			"byte_fallback":             true,
			"ignore_merges":             false,
			"vocab":                     vocab,
			"merges":                    merges,
		},
	}
	tokJSON, err := marshalJSON(tok)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: tokenizer.json: %w", err)
	}
	specialDecoder := map[string]any{}
	for id, name := range llama2cSpecialNames {
		specialDecoder[fmt.Sprint(id)] = map[string]any{"content": name, "lstrip": false, "normalized": false, "rstrip": false, "single_word": false, "special": true}
	}
	cfg := map[string]any{
		"add_bos_token":                 true,
		"add_eos_token":                 false,
		"added_tokens_decoder":          specialDecoder,
		"bos_token":                     "<s>",
		"eos_token":                     "</s>",
		"unk_token":                     "<unk>",
		"pad_token":                     nil,
		"clean_up_tokenization_spaces":  false,
		"legacy":                        true,
		"spaces_between_special_tokens": false,
		"tokenizer_class":               "LlamaTokenizer",
	}
	if modelMaxLength > 0 {
		cfg["model_max_length"] = modelMaxLength
	}
	cfgJSON, err := marshalJSON(cfg)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: tokenizer_config.json: %w", err)
	}
	return &HFFiles{TokenizerJSON: tokJSON, ConfigJSON: cfgJSON}, nil
}

// orderedVocab marshals as a JSON object of piece → id in id order (tokenizer.json's habit),
// so the file is deterministic and readable.
type orderedVocab []string

func (v orderedVocab) MarshalJSON() ([]byte, error) {
	var b strings.Builder
	b.WriteByte('{')
	for id, name := range v {
		if id > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(name)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		fmt.Fprintf(&b, ":%d", id)
	}
	b.WriteByte('}')
	return []byte(b.String()), nil
}

// marshalJSON writes v indented, without escaping <, > and & (pieces such as "<s>" stay
// readable), ending in a newline.
func marshalJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
