package data

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/tokenizer"
)

// The templates must equal the reference strings byte for byte (METHOD.md §4).
func TestPromptsByteForByte(t *testing.T) {
	i20, i24, i28 := strings.Repeat(" ", 20), strings.Repeat(" ", 24), strings.Repeat(" ", 28)
	got := TrainPrompt(Example{Instruction: "Add 2 and 3.", Output: "5"})
	want := "Below is an instruction that describes a task. Write a response that appropriately completes the request.  \n\n" +
		i20 + "### Instruction:\n" + i20 + "Add 2 and 3.\n\n" + i20 + "### Response:\n" + i20 + "5"
	if got != want {
		t.Errorf("train prompt:\n%q\nwant\n%q", got, want)
	}
	got = TrainPrompt(Example{Instruction: "I", Input: "X", Output: "O"})
	want = "Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request. \n\n" +
		i20 + "### Instruction:\n" + i20 + "I\n\n" + i20 + "### Input:\n" + i20 + "X\n\n" + i20 + "### Response:\n" + i20 + "O"
	if got != want {
		t.Errorf("train prompt with input:\n%q\nwant\n%q", got, want)
	}
	got = EvalPrompt("Q?", false)
	want = "Below is an instruction that describes a task. Write a response that appropriately completes the request. \n\n" +
		i28 + "### Instruction:\n" + i28 + "Q?\n\n" + i28 + "### Response:\n" + i28
	if got != want {
		t.Errorf("math eval prompt:\n%q\nwant\n%q", got, want)
	}
	got = EvalPrompt("Q?", true)
	want = strings.ReplaceAll(want, i28, i24)
	if got != want || strings.Contains(got, i28) {
		t.Errorf("commonsense eval prompt:\n%q", got)
	}
}

func stories(t *testing.T) tokenizer.Tokenizer {
	t.Helper()
	tok, err := tokenizer.LoadLlama2c(testkit.Tok512Shaped(t))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestTrainSequencesCutoffEOSAndMasking(t *testing.T) {
	tok := stories(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "d.json")
	os.WriteFile(path, []byte(`[{"instruction":"Say hi.","input":"","output":"Hi there.","answer":"x"},
		{"instruction":"`+strings.Repeat("long words ", 200)+`","input":"","output":"end","answer":"y"}]`), 0o644)
	seqs, err := TrainSequences(path, tok, TrainOptions{Cutoff: 256, TrainOnInputs: true})
	if err != nil {
		t.Fatal(err)
	}
	short, long := seqs[0], seqs[1]
	if short.IDs[0] != tok.BOS() || short.IDs[len(short.IDs)-1] != tok.EOS() {
		t.Errorf("short: want BOS … EOS, got %v…%v", short.IDs[0], short.IDs[len(short.IDs)-1])
	}
	if len(long.IDs) != 256 || long.IDs[255] == tok.EOS() {
		t.Errorf("long: %d tokens, last %d; want 256 with no EOS", len(long.IDs), long.IDs[255])
	}
	for i := range short.IDs {
		if short.Labels[i] != short.IDs[i] {
			t.Fatal("train_on_inputs: labels must equal ids")
		}
	}
	masked, _ := TrainSequences(path, tok, TrainOptions{Cutoff: 256})
	n := len(Encode(TrainPrompt(Example{Instruction: "Say hi."}), tok, 256, false))
	for i, l := range masked[0].Labels {
		if (i < n) != (l == IgnoreIndex) {
			t.Fatalf("label %d = %d; the first %d labels must be ignored, the rest kept", i, l, n)
		}
	}
}

func TestPadRightTo8(t *testing.T) {
	b, err := Pad([]Sequence{{IDs: []int{1, 5, 6}, Labels: []int{1, 5, 6}}, {IDs: []int{1, 7, 8, 9, 2}, Labels: []int{-100, -100, 8, 9, 2}}}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if b.Len != 8 || b.Rows != 2 || len(b.IDs) != 16 {
		t.Fatalf("batch %+v", b)
	}
	if b.IDs[3] != 0 || b.Labels[3] != IgnoreIndex || b.Labels[8] != IgnoreIndex {
		t.Errorf("padding wrong: %v %v", b.IDs, b.Labels)
	}
	if b.Tokens != 2+3 {
		t.Errorf("counted tokens %d, want 5", b.Tokens)
	}
	if _, err := Pad([]Sequence{{IDs: make([]int, 9), Labels: make([]int, 9)}}, 0, 8); err == nil {
		t.Error("overlong sequence accepted")
	}
}

func TestCalibrationWindows(t *testing.T) {
	tok := stories(t)
	dir := t.TempDir()
	ids := filepath.Join(dir, "c.jsonl")
	os.WriteFile(ids, []byte("{\"ids\":[1,2,3,4]}\n{\"ids\":[5,6,7,8]}\n{\"ids\":[9,9]}\n{\"ids\":[4,3,2,1]}\n"), 0o644)
	docs, err := ReadDocuments(ids)
	if err != nil {
		t.Fatal(err)
	}
	w, err := CalibrationWindows(docs, tok, CalibOptions{Samples: 2, SeqLen: 4})
	if err != nil || len(w) != 2 || w[0][0] != 1 || w[1][0] != 5 {
		t.Fatalf("pre-tokenized windows in file order: %v %v", w, err)
	}
	text := filepath.Join(dir, "c.txt")
	os.WriteFile(text, []byte(strings.Repeat("Once upon a time there was a cat. ", 40)), 0o644)
	docs, _ = ReadDocuments(text)
	a, _ := CalibrationWindows(docs, tok, CalibOptions{Samples: 3, SeqLen: 16, Seed: 7})
	b, _ := CalibrationWindows(docs, tok, CalibOptions{Samples: 3, SeqLen: 16, Seed: 7})
	c, _ := CalibrationWindows(docs, tok, CalibOptions{Samples: 3, SeqLen: 16, Seed: 8})
	if len(a) != 3 || len(a[0]) != 16 || !equal(a, b) || equal(a, c) {
		t.Errorf("windows not seeded/deterministic: %v %v %v", a, b, c)
	}
	empty := filepath.Join(dir, "e.txt")
	os.WriteFile(empty, []byte("  \n"), 0o644)
	if _, err := ReadDocuments(empty); err == nil || !strings.Contains(err.Error(), "e.txt") {
		t.Errorf("empty file: %v", err)
	}
}

func equal(a, b [][]int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i]) != len(b[i]) {
			return false
		}
		for j := range a[i] {
			if a[i][j] != b[i][j] {
				return false
			}
		}
	}
	return true
}

// Short pre-tokenized records need no tokenizer: they are joined as given (no EOS inserted) and
// windows are cut from the stream; a text record is refused by PreTokenized, naming it.
func TestCalibrationWindowsPreTokenizedNoTokenizer(t *testing.T) {
	docs := []Document{{IDs: []int{1, 10, 11}}, {IDs: []int{1, 20, 21, 22}}, {IDs: []int{1, 30}}}
	if err := PreTokenized(docs, "c.jsonl"); err != nil {
		t.Fatal(err)
	}
	w, err := CalibrationWindows(docs, nil, CalibOptions{Samples: 5, SeqLen: 5, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	stream := []int{1, 10, 11, 1, 20, 21, 22, 1, 30}
	for _, x := range w {
		found := false
		for s := 0; s+5 <= len(stream); s++ {
			if slices.Equal(stream[s:s+5], x) {
				found = true
			}
		}
		if !found {
			t.Errorf("window %v is not a slice of the joined ids %v", x, stream)
		}
	}
	err = PreTokenized([]Document{{IDs: []int{1}}, {Text: "hi"}}, "c.jsonl")
	if err == nil || !strings.Contains(err.Error(), "record 2 of c.jsonl has text") {
		t.Errorf("PreTokenized with a text record: %v", err)
	}
}
