package main

import (
	"fmt"

	"github.com/shears-ml/shears/tokenizer"
)

// loadTokenizer opens the tokenizer named by a --tokenizer flag.
func loadTokenizer(path string) (tokenizer.Tokenizer, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: --tokenizer is required", errUsage)
	}
	return tokenizer.Load(path)
}
