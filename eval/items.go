package eval

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
)

// Item is one evaluation record of an LLM-Adapters test file. Only instruction and answer
// matter: the test files' output fields are not gold rationales (METHOD.md §4).
type Item struct {
	Instruction string
	Answer      string
}

// ReadItems reads an LLM-Adapters test file (a JSON array of {instruction, input, output,
// answer}). An answer may be a JSON string or number; a number keeps its literal text.
func ReadItems(path string) ([]Item, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("eval: read items: %w", err)
	}
	var recs []struct {
		Instruction *string         `json:"instruction"`
		Answer      json.RawMessage `json:"answer"`
	}
	if err := json.Unmarshal(raw, &recs); err != nil {
		return nil, fmt.Errorf("eval: read items %s: want a JSON array of {instruction, answer, ...}: %w", path, err)
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("eval: read items %s: no records", path)
	}
	items := make([]Item, len(recs))
	for i, r := range recs {
		if r.Instruction == nil {
			return nil, fmt.Errorf("eval: read items %s: record %d has no \"instruction\"", path, i)
		}
		a, err := answerText(r.Answer)
		if err != nil {
			return nil, fmt.Errorf("eval: read items %s: record %d: %w", path, i, err)
		}
		items[i] = Item{Instruction: *r.Instruction, Answer: a}
	}
	return items, nil
}

func answerText(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", fmt.Errorf("no \"answer\"")
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("answer: %w", err)
		}
		return s, nil
	}
	if _, err := strconv.ParseFloat(string(raw), 64); err != nil {
		return "", fmt.Errorf("answer %s is neither a string nor a number", raw)
	}
	return string(raw), nil
}
