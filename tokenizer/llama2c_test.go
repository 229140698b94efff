package tokenizer

import (
	"encoding/binary"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
)

func repoRoot(t *testing.T) string { return testkit.RepoRoot(t) }

func sharedPath(t *testing.T, rel string) string { return testkit.Shared(t, rel) }

func loadTok512(t *testing.T) *Llama2c {
	t.Helper()
	tok, err := LoadLlama2c(sharedPath(t, "models/stories260K/tok512.bin"))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

const storyText = "Once upon a time, there was a little girl named Lily. She loved to play"

var storyIDs = []int{403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337}

func TestLlama2cLoad(t *testing.T) {
	tok := loadTok512(t)
	if tok.VocabSize() != 512 || tok.MaxTokenLen() != 7 || tok.BOS() != 1 || tok.EOS() != 2 || tok.Pad() != 0 {
		t.Fatalf("vocab %d max %d bos %d eos %d pad %d", tok.VocabSize(), tok.MaxTokenLen(), tok.BOS(), tok.EOS(), tok.Pad())
	}
	for id, want := range map[int]string{0: "<unk>", 1: "\n<s>\n", 3: "<0x00>", 258: "<0xFF>", 259: " t", 403: " Once", 410: " "} {
		if got, _, _ := tok.Piece(id); got != want {
			t.Errorf("piece %d = %q, want %q", id, got, want)
		}
	}
	if _, s, _ := tok.Piece(260); s != -1 {
		t.Errorf("score of 260 = %v, want -1", s)
	}
}

func TestLlama2cDecodeStory(t *testing.T) {
	tok := loadTok512(t)
	// Without BOS the dummy-prefix space of " Once" stays.
	if got := tok.Decode(storyIDs); got != " "+storyText {
		t.Errorf("decode = %q", got)
	}
	// After BOS, as llama2.c prints a generation, the leading space is stripped.
	withBOS := append([]int{1}, storyIDs...)
	if got := tok.Decode(withBOS); got != storyText {
		t.Errorf("decode after BOS = %q", got)
	}
	// EOS and pad produce nothing; the space strip applies only right after BOS.
	if got := tok.Decode([]int{0, 403, 2, 1, 410, 407}); got != " Once upon" {
		t.Errorf("decode with specials = %q", got)
	}
}

func TestLlama2cEncodeStory(t *testing.T) {
	tok := loadTok512(t)
	got := tok.Encode(storyText)
	if !equalInts(got, storyIDs) {
		t.Fatalf("encode = %v\nwant     %v", got, storyIDs)
	}
	if len(tok.Encode("")) != 0 {
		t.Error("empty text gave tokens")
	}
}

func TestLlama2cByteFallbackRoundTrip(t *testing.T) {
	tok := loadTok512(t)
	for _, s := range []string{"café", "naïve résumé", "🦀 crab", "你好，世界", "a\x00b", "tab\there\nnew line", "é"} {
		ids := tok.Encode(s)
		if got := tok.Decode(ids); got != " "+s {
			t.Errorf("round trip %q: %q (ids %v)", s, got, ids)
		}
		if got := tok.Decode(append([]int{1}, ids...)); got != s {
			t.Errorf("round trip after BOS %q: %q", s, got)
		}
	}
	// é is a token (485); ü is not, so its UTF-8 bytes 0xC3 0xBC fall back to ids b+3.
	if ids := tok.Encode("é"); !equalInts(ids, []int{410, 485}) {
		t.Errorf("encode é = %v", ids)
	}
	if ids := tok.Encode("ü"); !equalInts(ids, []int{410, 0xC3 + 3, 0xBC + 3}) {
		t.Errorf("encode ü = %v", ids)
	}
}

// naiveEncode is llama2.c's encode written independently: byte-by-byte code point
// grouping, then a full rescan for the best pair after every merge.
func naiveEncode(vocab []string, scores []float32, text string) []int {
	find := func(s string) int {
		for i, v := range vocab {
			if v == s {
				return i
			}
		}
		return -1
	}
	if text == "" {
		return nil
	}
	var toks []int
	add := func(buf []byte) {
		if id := find(string(buf)); id >= 0 {
			toks = append(toks, id)
			return
		}
		for _, c := range buf {
			toks = append(toks, int(c)+3)
		}
	}
	add([]byte(" "))
	var buf []byte
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c&0xC0 != 0x80 {
			buf = buf[:0]
		}
		buf = append(buf, c)
		if i+1 < len(text) && text[i+1]&0xC0 == 0x80 && len(buf) < 4 {
			continue
		}
		add(buf)
		buf = buf[:0]
	}
	for {
		best, bestID, bestIdx := float32(-1e10), -1, -1
		for i := 0; i+1 < len(toks); i++ {
			id := find(vocab[toks[i]] + vocab[toks[i+1]])
			if id >= 0 && scores[id] > best {
				best, bestID, bestIdx = scores[id], id, i
			}
		}
		if bestIdx < 0 {
			return toks
		}
		toks[bestIdx] = bestID
		toks = append(toks[:bestIdx+1], toks[bestIdx+2:]...)
	}
}

func TestLlama2cEncodeMatchesNaive(t *testing.T) {
	tok := loadTok512(t)
	rng := rand.New(rand.NewSource(7))
	words := strings.Fields("Once upon a time there was little girl named Lily She loved to play the the and , . ! ? é 你 🦀 ee aa th he in")
	alphabet := []string{"a", "e", "t", "h", " ", " ", "o", "n", "s", ".", ",", "é", "ü", "中", "🙂", "\xff", "\xc3", "\x80", "T", "L"}
	for k := 0; k < 300; k++ {
		var sb strings.Builder
		n := rng.Intn(40)
		for i := 0; i < n; i++ {
			if rng.Intn(2) == 0 {
				sb.WriteString(words[rng.Intn(len(words))])
				if rng.Intn(3) > 0 {
					sb.WriteByte(' ')
				}
			} else {
				sb.WriteString(alphabet[rng.Intn(len(alphabet))])
			}
		}
		s := sb.String()
		got := tok.Encode(s)
		want := naiveEncode(tok.vocab, tok.scores, s)
		if !equalInts(got, want) {
			t.Fatalf("string %q:\nheap  %v\nnaive %v", s, got, want)
		}
		if dec := tok.Decode(got); s != "" && dec != " "+s {
			t.Fatalf("round trip %q gave %q", s, dec)
		}
	}
}

// writeTok writes a llama2.c tokenizer file with the given header and records.
func writeTok(t *testing.T, maxLen int32, pieces []string) string {
	t.Helper()
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, uint32(maxLen))
	for i, p := range pieces {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(-float32(i)))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	path := filepath.Join(t.TempDir(), "tok.bin")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func basePieces() []string {
	p := []string{"<unk>", "\n<s>\n", "\n</s>\n"}
	for b := 0; b < 256; b++ {
		p = append(p, "<0x"+strings.ToUpper(strconv.FormatInt(int64(b)|0x100, 16)[1:])+">")
	}
	return append(p, " ", "a", " a")
}

func TestLlama2cLoadErrors(t *testing.T) {
	good := writeTok(t, 6, basePieces())
	tok, err := LoadLlama2c(good)
	if err != nil {
		t.Fatal(err)
	}
	if got := tok.Encode("a"); !equalInts(got, []int{261}) {
		t.Errorf("synthetic encode %v", got)
	}
	data, _ := os.ReadFile(good)
	cases := map[string]struct {
		data []byte
		want string
	}{
		"truncated text":   {data[:len(data)-1], "truncated text"},
		"truncated record": {data[:len(data)-5], "truncated record"},
		"short header":     {data[:2], "truncated header"},
		"bad max":          {append([]byte{0, 0, 0, 0}, data[4:]...), "bad max_token_len 0"},
		"too few tokens":   {data[:4+8+5], "only 1 tokens"},
	}
	for name, c := range cases {
		p := filepath.Join(t.TempDir(), "bad.bin")
		if err := os.WriteFile(p, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadLlama2c(p)
		if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one naming %s and %q", name, err, p, c.want)
		}
	}
	// A token longer than max_token_len is a bad length.
	_, err = LoadLlama2c(writeTok(t, 3, basePieces()))
	if err == nil || !strings.Contains(err.Error(), "token 0: bad length 5") {
		t.Errorf("bad length: %v", err)
	}
	if _, err := LoadLlama2c(filepath.Join(t.TempDir(), "none.bin")); err == nil || !strings.Contains(err.Error(), "none.bin") {
		t.Errorf("missing file: %v", err)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
