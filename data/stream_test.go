package data

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 14 case 3: a .txt file is documents separated by blank lines (it was one document, so
// --limit and --samples bounded nothing), read lazily; a paragraph without end is cut at
// MaxTextDocument so one document never holds the file.
func TestTextIsSplitAtBlankLinesAndReadLazily(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.txt")
	os.WriteFile(p, []byte("first para\nline two\n\n\n  \nsecond\r\n\r\nthird\n"), 0o644)
	docs, err := ReadDocuments(p)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range docs {
		got = append(got, d.Text)
	}
	if strings.Join(got, "|") != "first para\nline two|second|third" {
		t.Fatalf("documents %q", got)
	}
	ids := ReadOptions{Limit: 2}
	ts, err := ReadTokens(filepath.Join(dir, "ids.jsonl"), nil, ids)
	if err == nil || !strings.Contains(err.Error(), "ids.jsonl") {
		t.Fatalf("missing file: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "ids.jsonl"), []byte("{\"ids\":[1,2,3]}\n{\"ids\":[4,5]}\n{\"ids\":[6]}\n"), 0o644)
	if ts, err = ReadTokens(filepath.Join(dir, "ids.jsonl"), nil, ids); err != nil {
		t.Fatal(err)
	}
	if len(ts.Docs) != 2 || ts.Tokens != 5 || !ts.Truncated {
		t.Fatalf("limit 2: %+v", ts)
	}
	if ts, err = ReadTokens(filepath.Join(dir, "ids.jsonl"), nil, ReadOptions{MaxTokens: 4}); err != nil {
		t.Fatal(err)
	}
	if ts.Tokens != 4 || len(ts.Docs[1]) != 1 || !ts.Truncated {
		t.Fatalf("max tokens 4: %+v", ts)
	}
	if _, err := ReadTokens(p, nil, ReadOptions{}); err == nil || !strings.Contains(err.Error(), "record 1 of") {
		t.Fatalf("text without a tokenizer: %v", err)
	}

	// 3 MB without a blank line: pieces of at most MaxTextDocument; the reader stops after the
	// first when asked for one.
	big := filepath.Join(dir, "big.txt")
	line := strings.Repeat("word ", 20) + "\n"
	os.WriteFile(big, []byte(strings.Repeat(line, 3<<20/len(line))), 0o644)
	r, err := OpenDocuments(big)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	d, err := r.Next()
	if err != nil || len(d.Text) < MaxTextDocument || len(d.Text) > MaxTextDocument+len(line) {
		t.Fatalf("first piece of a long paragraph: %d bytes, %v", len(d.Text), err)
	}
	all, err := ReadDocuments(big)
	if err != nil || len(all) != 3 {
		t.Fatalf("3 MB paragraph: %d documents, %v", len(all), err)
	}
}
