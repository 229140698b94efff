package tokenizer

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Load opens a tokenizer file by its format: a llama2.c tokenizer.bin (any name not ending in
// .json). Hugging Face tokenizer.json support is planned (issue: tokenizers).
func Load(path string) (Tokenizer, error) {
	if strings.EqualFold(filepath.Ext(path), ".json") {
		return nil, fmt.Errorf("tokenizer %s: Hugging Face tokenizer.json is not supported yet (use a llama2.c tokenizer.bin)", path)
	}
	return LoadLlama2c(path)
}
