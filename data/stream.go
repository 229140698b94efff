package data

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/shears-ml/shears/tokenizer"
)

// MaxTextDocument is the most bytes of plain text one document holds: a longer paragraph (a
// file without blank lines) is cut there, so reading a document never needs more memory than
// this however large the file.
const MaxTextDocument = 1 << 20

// DocReader reads a dataset file one document at a time (see ReadDocuments for the formats),
// so a caller that needs only some documents, or only some tokens, never holds the file.
type DocReader struct {
	path string
	f    *os.File
	r    *bufio.Reader
	kind string // "json", "jsonl" or "text"
	dec  *json.Decoder
	line int // jsonl: lines read
	n    int // documents returned
}

// OpenDocuments opens path for reading documents lazily. Close it when done.
func OpenDocuments(path string) (*DocReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read dataset: %w", err)
	}
	d := &DocReader{path: path, f: f, r: bufio.NewReaderSize(f, 1<<16), kind: "text"}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json":
		d.kind = "json"
		d.dec = json.NewDecoder(d.r)
		tok, err := d.dec.Token()
		if err != nil || tok != json.Delim('[') {
			f.Close()
			return nil, fmt.Errorf("read dataset %s: want a JSON array of {instruction, input, output, answer}", path)
		}
	case ".jsonl":
		d.kind = "jsonl"
	}
	return d, nil
}

// Close releases the file.
func (d *DocReader) Close() error { return d.f.Close() }

// Next returns the next document, or io.EOF after the last one.
func (d *DocReader) Next() (Document, error) {
	doc, err := d.next()
	if err == nil {
		d.n++
	}
	return doc, err
}

func (d *DocReader) next() (Document, error) {
	switch d.kind {
	case "json":
		if !d.dec.More() {
			return Document{}, io.EOF
		}
		var e Example
		if err := d.dec.Decode(&e); err != nil {
			return Document{}, fmt.Errorf("read dataset %s: record %d: want {instruction, input, output, answer}: %w", d.path, d.n+1, err)
		}
		return Document{Text: TrainPrompt(e)}, nil
	case "jsonl":
		for {
			b, err := d.r.ReadBytes('\n')
			if len(b) == 0 && err != nil {
				if errors.Is(err, io.EOF) {
					return Document{}, io.EOF
				}
				return Document{}, fmt.Errorf("read dataset %s: %w", d.path, err)
			}
			d.line++
			b = bytes.TrimSpace(b)
			if len(b) == 0 {
				continue
			}
			var rec struct {
				Text *string `json:"text"`
				IDs  []int   `json:"ids"`
			}
			if err := json.Unmarshal(b, &rec); err != nil {
				return Document{}, fmt.Errorf("read dataset %s:%d: %w", d.path, d.line, err)
			}
			switch {
			case rec.IDs != nil && len(rec.IDs) == 0:
				return Document{}, fmt.Errorf("read dataset %s:%d: record has an empty \"ids\" array (it would train with loss 0)", d.path, d.line)
			case rec.IDs != nil:
				return Document{IDs: rec.IDs}, nil
			case rec.Text != nil:
				return Document{Text: *rec.Text}, nil
			default:
				return Document{}, fmt.Errorf("read dataset %s:%d: record has neither \"text\" nor \"ids\"", d.path, d.line)
			}
		}
	}
	// Plain text: documents are separated by blank lines; a paragraph longer than
	// MaxTextDocument is cut into pieces of at most that.
	var buf strings.Builder
	for {
		line, err := d.r.ReadSlice('\n')
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
			return Document{}, fmt.Errorf("read dataset %s: %w", d.path, err)
		}
		blank := len(bytes.TrimSpace(line)) == 0 && !errors.Is(err, bufio.ErrBufferFull)
		if blank {
			if buf.Len() > 0 {
				return Document{Text: strings.TrimRight(buf.String(), "\r\n")}, nil
			}
		} else {
			buf.Write(line)
			if buf.Len() >= MaxTextDocument {
				return Document{Text: buf.String()}, nil
			}
		}
		if errors.Is(err, io.EOF) {
			if buf.Len() > 0 {
				return Document{Text: strings.TrimRight(buf.String(), "\r\n")}, nil
			}
			return Document{}, io.EOF
		}
	}
}

// TokenSet is the beginning of a dataset, tokenized: at most a given number of documents and
// tokens, read lazily (the rest of the file is never read).
type TokenSet struct {
	Docs      [][]int // BOS + text ids, or the pre-tokenized ids as given
	Pre       []bool  // Docs[i] came pre-tokenized ({"ids": [...]})
	Tokens    int     // len of all Docs together
	Truncated bool    // the file holds more than was read (Limit or MaxTokens reached)
}

// ReadOptions bound what ReadTokens reads.
type ReadOptions struct {
	Limit     int // documents at most (0 = all)
	MaxTokens int // tokens at most (0 = all); the last document is cut to fit
}

// ReadTokens reads and tokenizes the first documents of path within o's bounds. tok may be nil
// when every document is pre-tokenized; a text document without one is an error naming it.
func ReadTokens(path string, tok tokenizer.Tokenizer, o ReadOptions) (*TokenSet, error) {
	r, err := OpenDocuments(path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	ts := &TokenSet{}
	for {
		if (o.Limit > 0 && len(ts.Docs) >= o.Limit) || (o.MaxTokens > 0 && ts.Tokens >= o.MaxTokens) {
			if _, err := r.Next(); err == nil {
				ts.Truncated = true
			}
			break
		}
		d, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if d.IDs == nil && tok == nil {
			return nil, fmt.Errorf("record %d of %s has text, not ids: give a tokenizer, or pre-tokenize every record as {\"ids\": [...]}", r.n, path)
		}
		ids := Tokens(d, tok)
		if o.MaxTokens > 0 && ts.Tokens+len(ids) > o.MaxTokens {
			ids, ts.Truncated = ids[:o.MaxTokens-ts.Tokens], true
		}
		ts.Docs = append(ts.Docs, ids)
		ts.Pre = append(ts.Pre, d.IDs != nil)
		ts.Tokens += len(ids)
	}
	if len(ts.Docs) == 0 {
		return nil, fmt.Errorf("read dataset %s: no documents (empty file?)", path)
	}
	return ts, nil
}
