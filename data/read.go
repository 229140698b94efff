package data

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Document is one unit of text from a dataset file: either text to tokenize or ready ids.
type Document struct {
	Text string
	IDs  []int // set for pre-tokenized JSONL records; Text is then empty
}

// ReadDocuments reads a dataset file by extension:
//   - .json  an LLM-Adapters array; each record becomes its filled training prompt
//   - .jsonl one JSON object per line with "text" (string) or "ids" (array of token ids)
//   - other  plain text, one document
func ReadDocuments(path string) ([]Document, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read dataset: %w", err)
	}
	var docs []Document
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json":
		var exs []Example
		if err := json.Unmarshal(raw, &exs); err != nil {
			return nil, fmt.Errorf("read dataset %s: want a JSON array of {instruction, input, output, answer}: %w", path, err)
		}
		for _, e := range exs {
			docs = append(docs, Document{Text: TrainPrompt(e)})
		}
	case ".jsonl":
		sc := bufio.NewScanner(bytes.NewReader(raw))
		sc.Buffer(make([]byte, 1<<20), 1<<30)
		line := 0
		for sc.Scan() {
			line++
			b := bytes.TrimSpace(sc.Bytes())
			if len(b) == 0 {
				continue
			}
			var rec struct {
				Text *string `json:"text"`
				IDs  []int   `json:"ids"`
			}
			if err := json.Unmarshal(b, &rec); err != nil {
				return nil, fmt.Errorf("read dataset %s:%d: %w", path, line, err)
			}
			switch {
			case rec.IDs != nil:
				docs = append(docs, Document{IDs: rec.IDs})
			case rec.Text != nil:
				docs = append(docs, Document{Text: *rec.Text})
			default:
				return nil, fmt.Errorf("read dataset %s:%d: record has neither \"text\" nor \"ids\"", path, line)
			}
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("read dataset %s: %w", path, err)
		}
	default:
		if len(bytes.TrimSpace(raw)) > 0 {
			docs = append(docs, Document{Text: string(raw)})
		}
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("read dataset %s: no documents (empty file?)", path)
	}
	return docs, nil
}
