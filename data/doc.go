// Package data reads the datasets shears trains, calibrates and evaluates on: LLM-Adapters JSON
// arrays ({"instruction","input","output","answer"}), JSONL ({"text": ...} or pre-tokenized
// {"ids": [...]}) and plain text. It owns the reference prompt templates (byte for byte, see
// METHOD.md §4), calibration sampling (random windows, seeded) and the token streams used by
// perplexity. Tokenization goes through the tokenizer.Tokenizer interface.
package data
