// Package tokenizer turns text into token ids and back for the models shears trains and
// evaluates.
//
// It owns the Tokenizer interface and its implementations: the llama2.c tokenizer.bin
// format (Llama2c), which encodes exactly as llama2.c's run.c does, so ids match the
// reference checkpoints, and Hugging Face tokenizer.json files with a BPE model (HF: the
// byte-level GPT-2 family and the SentencePiece-style LLaMA family with byte fallback; also
// GPT-2's original encoder.json + vocab.bpe through LoadGPT2), whose ids are tested against
// the JS implementations those files ship with (testdata/gen). Load picks by file name.
//
// Llama2c.ToHF writes the other direction: a tokenizer.json + tokenizer_config.json that
// encodes and decodes every text to llama2.c's ids (checked against transformers.js on real
// text), so model folders carry a tokenizer every runtime reads; a vocabulary without an exact
// equivalent is ErrNotConvertible.
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
