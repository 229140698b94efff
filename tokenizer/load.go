package tokenizer

import (
	"path/filepath"
	"strings"
)

// Load opens a tokenizer file by its name: a Hugging Face tokenizer.json (any name ending in
// .json) or a llama2.c tokenizer.bin (anything else).
func Load(path string) (Tokenizer, error) {
	if strings.EqualFold(filepath.Ext(path), ".json") {
		return LoadHF(path)
	}
	return LoadLlama2c(path)
}
