package tokenizer

import (
	"container/heap"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Encode returns the ids of text without BOS or EOS. Added tokens written in the text
// (e.g. "</s>") become their ids, as in Hugging Face tokenizers; LoadGPT2 has none.
func (t *HF) Encode(text string) []int {
	var out []int
	sections := t.splitAdded(text)
	for i, s := range sections {
		if s.id >= 0 {
			out = append(out, s.id)
			continue
		}
		if s.text == "" {
			continue
		}
		norm := t.normalize(s.text)
		if norm == "" {
			continue
		}
		for _, w := range t.preTokenize(norm, i) {
			out = t.bpeWord(w, out)
		}
	}
	return out
}

type section struct {
	text string
	id   int // the added token's id, or -1 for text
}

// splitAdded cuts the added tokens out of text, leftmost and longest first, then applies
// their lstrip/rstrip by trimming whitespace off the neighbouring text.
func (t *HF) splitAdded(text string) []section {
	if len(t.added) == 0 {
		return []section{{text: text, id: -1}}
	}
	var out []section
	start := 0
	for i := 0; i < len(text); {
		var hit *addedToken
		for k, a := range t.added[text[i]] {
			if strings.HasPrefix(text[i:], a.Content) {
				hit = &t.added[text[i]][k]
				break
			}
		}
		if hit == nil {
			i++
			continue
		}
		if i > start {
			out = append(out, section{text: text[start:i], id: -1})
		}
		out = append(out, section{id: hit.ID})
		i += len(hit.Content)
		start = i
	}
	if start < len(text) {
		out = append(out, section{text: text[start:], id: -1})
	}
	for i, s := range out {
		if s.id < 0 {
			continue
		}
		a := t.addedByID[s.id]
		if a.LStrip && i > 0 && out[i-1].id < 0 {
			out[i-1].text = strings.TrimRightFunc(out[i-1].text, isJSSpace)
		}
		if a.RStrip && i+1 < len(out) && out[i+1].id < 0 {
			out[i+1].text = strings.TrimLeftFunc(out[i+1].text, isJSSpace)
		}
	}
	return out
}

func (t *HF) normalize(s string) string {
	for _, n := range t.normalizers {
		switch n.Type {
		case "Prepend":
			if s != "" {
				s = n.Prepend + s
			}
		case "Replace":
			s = strings.ReplaceAll(s, *n.Pattern.String, n.Content)
		case "Lowercase":
			s = strings.ToLower(s)
		case "Strip":
			if n.StripLeft {
				s = strings.TrimLeftFunc(s, isJSSpace)
			}
			if n.StripRight {
				s = strings.TrimRightFunc(s, isJSSpace)
			}
		}
	}
	return s
}

// preTokenize splits a normalized section into the words BPE merges within. sectionIndex
// counts all sections of the text, added tokens included (Metaspace's "first" scheme).
func (t *HF) preTokenize(s string, sectionIndex int) []string {
	words := []string{s}
	for _, p := range t.pretok {
		var next []string
		for _, w := range words {
			switch p.Type {
			case "ByteLevel":
				if p.AddPrefixSpace != nil && *p.AddPrefixSpace && !strings.HasPrefix(w, " ") {
					w = " " + w
				}
				if p.UseRegex == nil || *p.UseRegex {
					for _, piece := range gpt2Split(w) {
						next = append(next, byteLevelString(piece))
					}
				} else {
					next = append(next, byteLevelString(w))
				}
			case "Metaspace":
				next = append(next, metaspace(p, w, sectionIndex)...)
			}
		}
		words = next
	}
	return words
}

// metaspace replaces spaces with the replacement ("▁"), prepends one per the prepend
// scheme (always / first section only / never; older files say add_prefix_space), and, when
// split is set (the default), cuts before each replacement so every "▁word" is a word.
func metaspace(p part, w string, sectionIndex int) []string {
	w = strings.ReplaceAll(w, " ", p.Replacement)
	scheme := p.PrependScheme
	if scheme == "" {
		scheme = "always"
		if p.AddPrefixSpace != nil && !*p.AddPrefixSpace {
			scheme = "never"
		}
	}
	if !strings.HasPrefix(w, p.Replacement) && (scheme == "always" || scheme == "first" && sectionIndex == 0) {
		w = p.Replacement + w
	}
	if p.Split != nil && !*p.Split {
		return []string{w}
	}
	var out []string
	for w != "" {
		i := strings.Index(w[1:], p.Replacement)
		if i < 0 {
			out = append(out, w)
			break
		}
		out = append(out, w[:i+1])
		w = w[i+1:]
	}
	return out
}

// isJSSpace is JavaScript's \s (and String.trim's whitespace), which the reference
// implementations use; it differs from unicode.IsSpace at U+0085 and U+FEFF.
func isJSSpace(r rune) bool {
	switch r {
	case '\t', '\n', '\v', '\f', '\r', ' ', 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000, 0xFEFF:
		return true
	}
	return r >= 0x2000 && r <= 0x200A
}

// gpt2Split splits s as GPT-2's pattern
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// does, by hand because Go's regexp has no lookahead. The alternatives cover every
// character, so the pieces concatenate back to s. Invalid UTF-8 bytes count as "other".
func gpt2Split(s string) []string {
	const (
		space = iota
		letter
		number
		other
	)
	class := func(i int) (int, int) { // class and width of the rune at byte i
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			return other, 1
		case isJSSpace(r):
			return space, n
		case unicode.IsLetter(r):
			return letter, n
		case unicode.IsNumber(r):
			return number, n
		}
		return other, n
	}
	run := func(i, c int) int { // end of the run of class c starting at i
		for i < len(s) {
			ci, n := class(i)
			if ci != c {
				break
			}
			i += n
		}
		return i
	}
	var out []string
	for i := 0; i < len(s); {
		end := -1
		if s[i] == '\'' {
			for _, c := range []string{"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"} {
				if strings.HasPrefix(s[i:], c) {
					end = i + len(c)
					break
				}
			}
		}
		if end < 0 {
			start := i
			if s[i] == ' ' && i+1 < len(s) {
				if c, _ := class(i + 1); c != space {
					start = i + 1 // " ?" takes the space before a letter, number or other run
				}
			}
			if c, _ := class(start); c != space {
				end = run(start, c)
			} else {
				// \s+(?!\S): a whitespace run, less its last character when text follows
				// (that space then leads the next word); a lone space before text is \s+.
				end = run(i, space)
				if end < len(s) {
					last := end - 1
					for last > i && !utf8.RuneStart(s[last]) {
						last--
					}
					if last > i {
						end = last
					}
				}
			}
		}
		out = append(out, s[i:end])
		i = end
	}
	return out
}

// byteToUnicode is GPT-2's reversible map from bytes to printable characters: printable
// Latin-1 bytes map to themselves, the rest to U+0100 onwards in byte order.
var byteToUnicode, unicodeToByte = func() ([256]rune, map[rune]byte) {
	var fwd [256]rune
	back := make(map[rune]byte, 256)
	n := 0
	for b := 0; b < 256; b++ {
		if b >= '!' && b <= '~' || b >= 0xA1 && b <= 0xAC || b >= 0xAE && b <= 0xFF {
			fwd[b] = rune(b)
		} else {
			fwd[b] = rune(256 + n)
			n++
		}
		back[fwd[b]] = byte(b)
	}
	return fwd, back
}()

func byteLevelString(s string) string {
	var sb strings.Builder
	sb.Grow(2 * len(s))
	for i := 0; i < len(s); i++ {
		sb.WriteRune(byteToUnicode[s[i]])
	}
	return sb.String()
}

// bpeWord appends the ids of one pre-tokenized word: its characters, merged pair by pair
// (lowest rank first, leftmost on ties) until no adjacent pair has a merge; characters not
// in the vocabulary never merge and end up as <0xHH> byte tokens (byte_fallback) or unk.
func (t *HF) bpeWord(w string, out []int) []int {
	if t.ignoreMerges {
		if id, ok := t.ids[w]; ok {
			return append(out, id)
		}
	}
	type sym struct {
		id         int32 // -1: a character outside the vocabulary
		start, end int   // its bytes in w
		prev, next int
		gen        int // bumped when the symbol changes or dies
	}
	syms := make([]sym, 0, len(w))
	for i := 0; i < len(w); {
		_, n := utf8.DecodeRuneInString(w[i:])
		id := int32(-1)
		if v, ok := t.ids[w[i:i+n]]; ok {
			id = int32(v)
		}
		syms = append(syms, sym{id: id, start: i, end: i + n, prev: len(syms) - 1, next: len(syms) + 1})
		i += n
	}
	if len(syms) == 0 {
		return out
	}
	syms[len(syms)-1].next = -1
	h := &rankHeap{}
	push := func(l int) {
		if l < 0 || syms[l].next < 0 {
			return
		}
		r := syms[l].next
		if syms[l].id < 0 || syms[r].id < 0 {
			return
		}
		if m, ok := t.merges[[2]int32{syms[l].id, syms[r].id}]; ok {
			heap.Push(h, rankedPair{rank: m.rank, left: l, right: r, id: m.id, genL: syms[l].gen, genR: syms[r].gen})
		}
	}
	for i := range syms {
		push(i)
	}
	for h.Len() > 0 {
		p := heap.Pop(h).(rankedPair)
		l, r := &syms[p.left], &syms[p.right]
		if l.gen != p.genL || r.gen != p.genR || l.next != p.right {
			continue // stale: a side merged since this pair was queued
		}
		l.id, l.end, l.next = p.id, r.end, r.next
		l.gen++
		r.gen++
		if l.next >= 0 {
			syms[l.next].prev = p.left
		}
		push(l.prev)
		push(p.left)
	}
	lastUnk := false
	for i := 0; i >= 0; i = syms[i].next {
		s := syms[i]
		if s.id >= 0 {
			out = append(out, int(s.id))
			lastUnk = false
			continue
		}
		if t.byteFallback && t.allBytes(w[s.start:s.end]) {
			for j := s.start; j < s.end; j++ {
				out = append(out, t.byteIDs[w[j]])
			}
			lastUnk = false
			continue
		}
		if t.unk >= 0 && !(t.fuseUnk && lastUnk) {
			out = append(out, t.unk)
		}
		lastUnk = t.unk >= 0
	}
	return out
}

func (t *HF) allBytes(s string) bool {
	for i := 0; i < len(s); i++ {
		if t.byteIDs[s[i]] < 0 {
			return false
		}
	}
	return true
}

// rankedPair is a candidate merge; the heap pops the lowest rank, then the leftmost.
type rankedPair struct {
	rank, id    int32
	left, right int
	genL, genR  int
}

type rankHeap []rankedPair

func (h rankHeap) Len() int { return len(h) }
func (h rankHeap) Less(i, j int) bool {
	if h[i].rank != h[j].rank {
		return h[i].rank < h[j].rank
	}
	return h[i].left < h[j].left
}
func (h rankHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *rankHeap) Push(x any)   { *h = append(*h, x.(rankedPair)) }
func (h *rankHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
