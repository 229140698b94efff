package deploy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/shears-ml/shears/tokenizer"
)

// Files of a Hugging Face tokenizer that travel with it when present.
var tokenizerFiles = []string{"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}

// placeTokenizer puts the tokenizer into the folder and returns its special ids and a line
// saying where it came from. path is a tokenizer.json (copied with the files beside it) or a
// llama2.c tokenizer.bin (converted); "" takes the files from the model's source folder. A
// tokenizer that cannot be converted, or none at all, leaves the folder without one and warns.
func (f *Folder) placeTokenizer(path, sourceDir string, maxLen int, warn func(string)) (ids, string, error) {
	none := ids{-1, -1, -1}
	switch {
	case path == "" && sourceDir != "":
		if _, err := os.Stat(filepath.Join(sourceDir, "tokenizer.json")); err != nil {
			warn(fmt.Sprintf("the model's source folder %s has no tokenizer.json: the folder is written without a tokenizer (give --tokenizer)", sourceDir))
			return none, "none", nil
		}
		return f.copyHFTokenizer(filepath.Join(sourceDir, "tokenizer.json"))
	case path == "":
		warn("no tokenizer given (--tokenizer) and the model records no source folder: the folder is written without a tokenizer")
		return none, "none", nil
	case strings.EqualFold(filepath.Ext(path), ".json"):
		return f.copyHFTokenizer(path)
	}
	tok, err := tokenizer.LoadLlama2c(path)
	if err != nil {
		return none, "", fmt.Errorf("deploy: %w", err)
	}
	got := ids{tok.BOS(), tok.EOS(), tok.Pad()}
	files, err := tok.ToHF(maxLen)
	if errors.Is(err, tokenizer.ErrNotConvertible) {
		warn(fmt.Sprintf("%s: %v; the folder is written without tokenizer.json", path, err))
		return got, "none (" + filepath.Base(path) + " cannot be converted)", nil
	}
	if err != nil {
		return none, "", fmt.Errorf("deploy: %s: %w", path, err)
	}
	if err := f.writeFile("tokenizer.json", files.TokenizerJSON); err != nil {
		return none, "", err
	}
	if err := f.writeFile("tokenizer_config.json", files.ConfigJSON); err != nil {
		return none, "", err
	}
	return got, "converted from " + path, nil
}

// copyHFTokenizer copies a tokenizer.json and the tokenizer files beside it; the special ids
// come from our loader when it reads the file (a model type it does not read is still copied).
func (f *Folder) copyHFTokenizer(path string) (ids, string, error) {
	got := ids{-1, -1, -1}
	if tok, err := tokenizer.LoadHF(path); err == nil {
		got = ids{tok.BOS(), tok.EOS(), tok.Pad()}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return got, "", fmt.Errorf("deploy: tokenizer: %w", err)
	}
	if err := f.writeFile("tokenizer.json", data); err != nil {
		return got, "", err
	}
	dir := filepath.Dir(path)
	for _, name := range tokenizerFiles[1:] {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if os.IsNotExist(err) && name == "tokenizer_config.json" {
			// transformers.js and transformers read it with the tokenizer: the generic class.
			b, err = marshalJSON(map[string]any{"tokenizer_class": "PreTrainedTokenizerFast"})
		}
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return got, "", fmt.Errorf("deploy: tokenizer: %w", err)
		}
		if err := f.writeFile(name, b); err != nil {
			return got, "", err
		}
	}
	return got, "copied from " + path, nil
}
