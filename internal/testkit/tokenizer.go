package testkit

// A generated tokenizer: a small llama2.c tokenizer.bin trained here by byte-pair merging on a
// fixed English text, so tests of tokenizer conversion and model folders need nothing from
// ../shared.

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TokCorpus is the text the tokenizer is trained on; tests encode it and other text.
const TokCorpus = `Once upon a time, there was a little girl named Lily. She loved to play outside in the park
with her dog, Max. One day, Lily found a shiny red ball under a big tree. "Look, Max!" she said.
"It is a magic ball!" Max barked and wagged his tail. They played all day until the sun went down.
Tom had 3 apples and gave 2 to his friend. How many apples does Tom have now? He has 1 apple left.
The weather was cold, so the children wore warm coats, hats and boots when they went to school.
Mom made soup for dinner; everyone said it was the best soup they had ever eaten.`

// TokPieces returns the vocabulary and scores of a llama2.c tokenizer with up to size tokens:
// <unk>, BOS, EOS and the 256 byte tokens (llama2.c's fixed layout), then the corpus's code
// points, then merges of the most frequent adjacent pair (ties by first appearance), each
// scored below the previous one, as SentencePiece's BPE trainer scores them; when the corpus
// runs out of pairs, unused pieces fill the vocabulary to size.
func TokPieces(size int) ([]string, []float32) {
	vocab := []string{"<unk>", "\n<s>\n", "\n</s>\n"}
	for b := 0; b < 256; b++ {
		vocab = append(vocab, fmt.Sprintf("<0x%02X>", b))
	}
	scores := make([]float32, len(vocab))
	seen := map[string]bool{}
	var chars []string
	for _, r := range " " + TokCorpus {
		if s := string(r); !seen[s] && r != '\n' {
			seen[s] = true
			chars = append(chars, s)
		}
	}
	sort.Strings(chars)
	// Words as sequences of pieces, each with llama2.c's leading space.
	var words [][]string
	for _, w := range strings.Fields(TokCorpus) {
		var p []string
		for _, r := range " " + w {
			p = append(p, string(r))
		}
		words = append(words, p)
	}
	var merged []string
	for len(vocab)+len(chars)+len(merged) < size {
		count := map[[2]string]int{}
		first := map[[2]string]int{}
		order := 0
		for _, w := range words {
			for i := 0; i+1 < len(w); i++ {
				k := [2]string{w[i], w[i+1]}
				if _, ok := first[k]; !ok {
					first[k] = order
					order++
				}
				count[k]++
			}
		}
		var best [2]string
		bestN := 0
		for k, n := range count {
			if n > bestN || (n == bestN && first[k] < first[best]) {
				best, bestN = k, n
			}
		}
		if bestN < 2 || seen[best[0]+best[1]] {
			break
		}
		piece := best[0] + best[1]
		seen[piece] = true
		merged = append(merged, piece)
		for wi, w := range words {
			var out []string
			for i := 0; i < len(w); i++ {
				if i+1 < len(w) && w[i] == best[0] && w[i+1] == best[1] {
					out = append(out, piece)
					i++
					continue
				}
				out = append(out, w[i])
			}
			words[wi] = out
		}
	}
	for i, m := range merged {
		vocab = append(vocab, m)
		scores = append(scores, -float32(i))
	}
	for i, c := range chars {
		vocab = append(vocab, c)
		scores = append(scores, -float32(len(merged)+i))
	}
	// Pad to size with pieces no text reaches, so a model of vocabulary size decodes every id.
	for i := 0; len(vocab) < size; i++ {
		vocab = append(vocab, fmt.Sprintf("<unused%d>", i))
		scores = append(scores, -float32(len(merged)+len(chars)+i))
	}
	return vocab, scores
}

// EncodeTok returns the bytes of a llama2.c tokenizer file with these pieces and scores.
func EncodeTok(vocab []string, scores []float32) []byte {
	maxLen := 1
	for _, p := range vocab {
		maxLen = max(maxLen, len(p))
	}
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, uint32(maxLen))
	for i, p := range vocab {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(scores[i]))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(p)))
		b = append(b, p...)
	}
	return b
}

// Tokenizer writes a trained tokenizer of up to size tokens as tokenizer.bin in a temporary
// folder and returns its path.
func Tokenizer(t testing.TB, size int) string {
	t.Helper()
	vocab, scores := TokPieces(size)
	path := filepath.Join(t.TempDir(), "tokenizer.bin")
	if err := os.WriteFile(path, EncodeTok(vocab, scores), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
