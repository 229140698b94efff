package data

import (
	"errors"
	"fmt"
	"io"
)

// Document is one unit of text from a dataset file: either text to tokenize or ready ids.
type Document struct {
	Text string
	IDs  []int // set for pre-tokenized JSONL records; Text is then empty
}

// ReadDocuments reads every document of a dataset file, by extension:
//   - .json  an LLM-Adapters array; each record becomes its filled training prompt
//   - .jsonl one JSON object per line with "text" (string) or "ids" (array of token ids)
//   - other  plain text, one document per paragraph (documents are separated by blank lines;
//     a paragraph over MaxTextDocument bytes is cut into pieces of that size)
//
// It holds them all: stages that need only the first documents or tokens use OpenDocuments or
// ReadTokens, which read lazily.
func ReadDocuments(path string) ([]Document, error) {
	r, err := OpenDocuments(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var docs []Document
	for {
		d, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		docs = append(docs, d)
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("read dataset %s: no documents (empty file?)", path)
	}
	return docs, nil
}
