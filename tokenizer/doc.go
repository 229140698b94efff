// Package tokenizer turns text into token ids and back for the models shears trains and
// evaluates.
//
// It owns the Tokenizer interface and its implementations: today the llama2.c
// tokenizer.bin format (Llama2c), which encodes exactly as llama2.c's run.c does, so ids
// match the reference checkpoints; Hugging Face tokenizer.json comes later behind the same
// interface.
//
// Conventions: Encode never adds BOS or EOS (callers decide, as datasets and prompts differ);
// Decode skips the BOS, EOS and pad ids and turns byte-fallback tokens (<0xHH>) into raw
// bytes. Loaders return errors naming the file; nothing here panics on bad input.
package tokenizer

// Tokenizer maps text to ids and back.
type Tokenizer interface {
	// Encode returns the ids of text, without BOS or EOS.
	Encode(text string) []int
	// Decode returns the text of ids; special ids (BOS, EOS, pad) produce nothing.
	Decode(ids []int) string
	BOS() int
	EOS() int
	Pad() int
	VocabSize() int
}
