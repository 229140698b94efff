package tokenizer

import (
	"encoding/json"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
)

// convertedTexts are the texts a converted tokenizer is checked on: the corpus lines, real
// text from ../shared when present (gsm8k questions, TinyStories-like prose), and random
// strings with whitespace runs, accents, CJK, emoji and byte fallback. Text naming the
// special tokens is left out: tokenizer.json cuts "<s>" out as BOS where llama2.c spells it.
func convertedTexts(t *testing.T, real bool) []string {
	texts := append([]string{"", "a", " ", "  two  spaces ", storyText, "Tom had 3 apples.\n\nHe gave 2 away!"},
		strings.Split(testkit.TokCorpus, "\n")...)
	if real {
		if p := filepath.Join(repoRoot(t), "..", "shared", "data", "llm-adapters", "gsm8k-test.json"); fileExists(p) {
			var items []struct {
				Instruction string `json:"instruction"`
				Answer      string `json:"answer"`
			}
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(data, &items); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < len(items) && i < 150; i++ {
				texts = append(texts, items[i].Instruction)
			}
		}
	}
	rng := rand.New(rand.NewSource(11))
	for i := 0; i < 150; i++ {
		texts = append(texts, randomText(rng, rng.Intn(60)))
	}
	out := texts[:0]
	for _, s := range texts {
		if !strings.Contains(s, "<s>") && !strings.Contains(s, "</s>") && !strings.Contains(s, "<unk>") {
			out = append(out, s)
		}
	}
	return out
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// checkConverted converts tok and checks, on every text, that llama2.c's encoder, our HF
// loader reading the written tokenizer.json and (when installed) transformers.js give the same
// ids, and that each decodes them back to the text.
func checkConverted(t *testing.T, tok *Llama2c, texts []string) {
	t.Helper()
	files, err := tok.ToHF(512)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), files.TokenizerJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), files.ConfigJSON, 0o644); err != nil {
		t.Fatal(err)
	}
	hf, err := LoadHF(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	if hf.BOS() != tok.BOS() || hf.EOS() != tok.EOS() || hf.VocabSize() != tok.VocabSize() {
		t.Fatalf("specials: HF bos %d eos %d vocab %d, llama2.c %d %d %d", hf.BOS(), hf.EOS(), hf.VocabSize(), tok.BOS(), tok.EOS(), tok.VocabSize())
	}
	want := make([][]int, len(texts))
	for i, s := range texts {
		want[i] = tok.Encode(s)
		if got := hf.Encode(s); !equalInts(got, want[i]) {
			t.Errorf("HF loader encodes %q as %v, llama2.c as %v", s, got, want[i])
		}
		if got := hf.Decode(want[i]); got != s {
			t.Errorf("HF loader decodes %q back as %q", s, got)
		}
		if got := tok.Decode(append([]int{tok.BOS()}, want[i]...)); got != s {
			t.Errorf("llama2.c decodes %q back as %q", s, got)
		}
	}
	in, _ := json.Marshal(texts)
	var js []struct {
		IDs     []int  `json:"ids"`
		Decoded string `json:"decoded"`
	}
	if err := json.Unmarshal(testkit.RunTransformersJS(t, "tokenize.mjs", in, dir), &js); err != nil {
		t.Fatal(err)
	}
	if len(js) != len(texts) {
		t.Fatalf("transformers.js returned %d results for %d texts", len(js), len(texts))
	}
	for i, s := range texts {
		if !equalInts(js[i].IDs, want[i]) {
			t.Errorf("transformers.js encodes %q as %v, llama2.c as %v", s, js[i].IDs, want[i])
		}
		if js[i].Decoded != s {
			t.Errorf("transformers.js decodes %q back as %q", s, js[i].Decoded)
		}
	}
	t.Logf("%d texts, %d tokens: llama2.c, HF loader and transformers.js agree", len(texts), countIDs(want))
}

func countIDs(v [][]int) int {
	n := 0
	for _, x := range v {
		n += len(x)
	}
	return n
}

// TestToHFGenerated converts a tokenizer trained here (no ../shared needed).
func TestToHFGenerated(t *testing.T) {
	tok, err := LoadLlama2c(testkit.Tokenizer(t, 400))
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() < 300 {
		t.Fatalf("generated vocabulary has only %d tokens", tok.VocabSize())
	}
	checkConverted(t, tok, convertedTexts(t, false))
}

// TestToHFStories converts stories260K's tok512.bin and checks it on real text.
func TestToHFStories(t *testing.T) {
	checkConverted(t, loadTok512(t), convertedTexts(t, true))
}

func TestToHFNotConvertible(t *testing.T) {
	vocab, scores := testkit.TokPieces(400)
	swap := func(f func(v []string, s []float32)) ([]string, []float32) {
		v, s := append([]string(nil), vocab...), append([]float32(nil), scores...)
		f(v, s)
		return v, s
	}
	cases := map[string]struct {
		v    []string
		s    []float32
		want string
	}{}
	add := func(name, want string, f func(v []string, s []float32)) {
		v, s := swap(f)
		cases[name] = struct {
			v    []string
			s    []float32
			want string
		}{v, s, want}
	}
	add("byte token moved", `token 3 is "x", but byte fallback needs "<0x00>"`, func(v []string, s []float32) { v[3] = "x" })
	add("duplicate", `tokens 259 and 260 are both`, func(v []string, s []float32) { v[260] = v[259] })
	add("space mark", `token 259 "a▁" already contains "▁"`, func(v []string, s []float32) { v[259] = "a▁" })
	add("score tie", `share the merge score`, func(v []string, s []float32) {
		for i := 260; i < len(s); i++ {
			if len(v[i]) > 1 {
				s[i] = s[259] // a multi-character piece scored like the first merge
				return
			}
		}
	})
	for name, c := range cases {
		path := filepath.Join(t.TempDir(), "tok.bin")
		if err := os.WriteFile(path, testkit.EncodeTok(c.v, c.s), 0o644); err != nil {
			t.Fatal(err)
		}
		tok, err := LoadLlama2c(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		_, err = tok.ToHF(0)
		if !errors.Is(err, ErrNotConvertible) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want ErrNotConvertible saying %q", name, err, c.want)
		}
	}
}
