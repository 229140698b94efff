package tokenizer

import "strings"

// Decode returns the text of ids through the file's decoder chain (ByteLevel, or Replace
// "▁"→" ", ByteFallback, Fuse, Strip for LLaMA). BOS, EOS, pad, every added token marked
// special and ids outside the vocabulary produce nothing. Unlike Hugging Face, bytes that
// are not valid UTF-8 are kept raw rather than replaced by U+FFFD, so decoding a token at a
// time and concatenating gives the same bytes as decoding all at once.
func (t *HF) Decode(ids []int) string {
	tokens := make([]string, 0, len(ids))
	for _, id := range ids {
		if id < 0 || id >= len(t.vocab) || t.skipDecode[id] || t.vocab[id] == "" {
			continue
		}
		tokens = append(tokens, t.vocab[id])
	}
	if !t.hasDecoder {
		return strings.Join(tokens, " ")
	}
	for _, d := range t.decoders {
		tokens = t.decodeStep(d, tokens)
	}
	return strings.Join(tokens, "")
}

// decodeStep applies one decoder to the token list, as Hugging Face's decode_chain does.
func (t *HF) decodeStep(d part, tokens []string) []string {
	switch d.Type {
	case "ByteLevel":
		for i, tok := range tokens {
			if t.isAdded(tok) {
				continue // added tokens are plain text, not byte-level
			}
			if b, ok := fromByteLevel(tok); ok {
				tokens[i] = b
			}
		}
	case "Replace":
		for i, tok := range tokens {
			tokens[i] = strings.ReplaceAll(tok, *d.Pattern.String, d.Content)
		}
	case "ByteFallback":
		out := make([]string, 0, len(tokens))
		var run []byte
		for _, tok := range tokens {
			if b, ok := byteToken(tok); ok {
				run = append(run, b)
				continue
			}
			if run != nil {
				out = append(out, string(run))
				run = nil
			}
			out = append(out, tok)
		}
		if run != nil {
			out = append(out, string(run))
		}
		tokens = out
	case "Fuse":
		tokens = []string{strings.Join(tokens, "")}
	case "Strip":
		for i, tok := range tokens {
			for n := 0; n < d.Start && strings.HasPrefix(tok, d.Content) && d.Content != ""; n++ {
				tok = tok[len(d.Content):]
			}
			for n := 0; n < d.Stop && strings.HasSuffix(tok, d.Content) && d.Content != ""; n++ {
				tok = tok[:len(tok)-len(d.Content)]
			}
			tokens[i] = tok
		}
	case "Metaspace":
		for i, tok := range tokens {
			tok = strings.ReplaceAll(tok, d.Replacement, " ")
			if i == 0 && d.PrependScheme != "never" && !(d.PrependScheme == "" && d.AddPrefixSpace != nil && !*d.AddPrefixSpace) {
				tok = strings.TrimPrefix(tok, " ")
			}
			tokens[i] = tok
		}
	}
	return tokens
}

func (t *HF) isAdded(tok string) bool {
	id, ok := t.ids[tok]
	if !ok {
		return false
	}
	_, ok = t.addedByID[id]
	return ok
}

// fromByteLevel maps a byte-level token back to its bytes; false if a character is not in
// GPT-2's table (the token is then kept as written, as Hugging Face does).
func fromByteLevel(tok string) (string, bool) {
	b := make([]byte, 0, len(tok))
	for _, r := range tok {
		c, ok := unicodeToByte[r]
		if !ok {
			return "", false
		}
		b = append(b, c)
	}
	return string(b), true
}
