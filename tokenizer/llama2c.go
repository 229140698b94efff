package tokenizer

import (
	"bufio"
	"container/heap"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
)

// Llama2c is the tokenizer of llama2.c (tokenizer.bin / tok512.bin): a SentencePiece BPE
// vocabulary flattened to strings and merge scores. Ids 0, 1, 2 are <unk> (also the pad id),
// BOS and EOS; byte b falls back to id b+3.
type Llama2c struct {
	vocab       []string
	scores      []float32
	lookup      map[string]int
	maxTokenLen int
}

// Llama2c's fixed special ids (llama2.c hard-codes them too).
const (
	llama2cUnk = 0
	llama2cBOS = 1
	llama2cEOS = 2
)

// minMergeScore is llama2.c's initial best score: pairs scoring at or below it never merge.
const minMergeScore = -1e10

// maxLlama2cTokenLen bounds max_token_len so a corrupt header cannot make us allocate a lot.
const maxLlama2cTokenLen = 1 << 16

// LoadLlama2c reads a llama2.c tokenizer file: int32 max_token_len, then per token a
// float32 score, an int32 byte length and the bytes. The file does not store the token
// count; every record up to the end of the file is a token.
func LoadLlama2c(path string) (*Llama2c, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	defer f.Close()
	t, err := readLlama2c(bufio.NewReader(f))
	if err != nil {
		return nil, fmt.Errorf("tokenizer %s: %w", path, err)
	}
	return t, nil
}

func readLlama2c(r io.Reader) (*Llama2c, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("truncated header (want 4 bytes of max_token_len): %w", err)
	}
	maxLen := int32(binary.LittleEndian.Uint32(hdr[:]))
	if maxLen <= 0 || maxLen > maxLlama2cTokenLen {
		return nil, fmt.Errorf("bad max_token_len %d (want 1..%d)", maxLen, maxLlama2cTokenLen)
	}
	t := &Llama2c{lookup: map[string]int{}, maxTokenLen: int(maxLen)}
	var rec [8]byte
	buf := make([]byte, maxLen)
	for id := 0; ; id++ {
		n, err := io.ReadFull(r, rec[:])
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("token %d: truncated record (%d of 8 header bytes)", id, n)
		}
		score := math.Float32frombits(binary.LittleEndian.Uint32(rec[:4]))
		l := int32(binary.LittleEndian.Uint32(rec[4:]))
		if l < 0 || l > maxLen {
			return nil, fmt.Errorf("token %d: bad length %d (max_token_len %d)", id, l, maxLen)
		}
		if _, err := io.ReadFull(r, buf[:l]); err != nil {
			return nil, fmt.Errorf("token %d: truncated text (want %d bytes)", id, l)
		}
		s := string(buf[:l])
		t.vocab = append(t.vocab, s)
		t.scores = append(t.scores, score)
		if _, dup := t.lookup[s]; !dup { // first id wins for duplicate strings
			t.lookup[s] = id
		}
	}
	if len(t.vocab) < 3+256 {
		return nil, fmt.Errorf("only %d tokens: a llama2.c vocabulary has <unk>, BOS, EOS and 256 byte tokens first", len(t.vocab))
	}
	return t, nil
}

// BOS returns 1, llama2.c's begin-of-sequence id.
func (t *Llama2c) BOS() int { return llama2cBOS }

// EOS returns 2.
func (t *Llama2c) EOS() int { return llama2cEOS }

// Pad returns 0 (<unk>): the vocabulary has no pad token and llama2.c pads with 0.
func (t *Llama2c) Pad() int { return llama2cUnk }

// VocabSize returns the number of tokens in the file.
func (t *Llama2c) VocabSize() int { return len(t.vocab) }

// MaxTokenLen returns the longest token's byte length, from the file header.
func (t *Llama2c) MaxTokenLen() int { return t.maxTokenLen }

// Piece returns token id's text and score as stored ("" and false when out of range).
func (t *Llama2c) Piece(id int) (string, float32, bool) {
	if id < 0 || id >= len(t.vocab) {
		return "", 0, false
	}
	return t.vocab[id], t.scores[id], true
}

// initial returns llama2.c's starting tokens for text: the dummy-prefix space, then one
// token per UTF-8 code point, or one byte token (byte+3) per byte of a code point that is
// not in the vocabulary. Code points are cut as llama2.c does (a lead byte and up to three
// continuation bytes), so invalid UTF-8 falls back to bytes the same way.
func (t *Llama2c) initial(text string) []int {
	if text == "" {
		return nil
	}
	ids := make([]int, 0, len(text)+1)
	ids = t.appendPiece(ids, " ")
	start := 0
	for i := 0; i < len(text); i++ {
		if text[i]&0xC0 != 0x80 {
			start = i
		}
		if i+1 < len(text) && text[i+1]&0xC0 == 0x80 && i+1-start < 4 {
			continue
		}
		ids = t.appendPiece(ids, text[start:i+1])
		start = i + 1
	}
	return ids
}

func (t *Llama2c) appendPiece(ids []int, s string) []int {
	if id, ok := t.lookup[s]; ok {
		return append(ids, id)
	}
	for i := 0; i < len(s); i++ {
		ids = append(ids, int(s[i])+3)
	}
	return ids
}

// Encode returns the ids of text as llama2.c's encode does with bos=0, eos=0: the initial
// tokens, then repeatedly the adjacent pair whose concatenation is a token with the highest
// score is merged (the leftmost pair on ties) until no pair is a token.
//
// It runs in O(n log n) with a heap instead of llama2.c's O(n²) rescans; the merge order is
// the same, because a pair's key (score, position of its left token) never changes while
// both tokens survive, and positions keep their order as tokens merge.
func (t *Llama2c) Encode(text string) []int {
	ids := t.initial(text)
	n := len(ids)
	if n < 2 {
		return ids
	}
	// Doubly linked list over the initial positions; a merged token keeps its left position.
	prev := make([]int, n)
	next := make([]int, n)
	gen := make([]int, n) // bumped when the token at a position changes or dies
	for i := range ids {
		prev[i], next[i] = i-1, i+1
	}
	next[n-1] = -1
	h := &pairHeap{}
	push := func(l int) {
		if l < 0 || next[l] < 0 {
			return
		}
		r := next[l]
		id, ok := t.lookup[t.vocab[ids[l]]+t.vocab[ids[r]]]
		if !ok || !(t.scores[id] > minMergeScore) {
			return // llama2.c starts its best score at -1e10 and never merges at or below it (or NaN)
		}
		heap.Push(h, pair{score: t.scores[id], left: l, right: r, id: id, genL: gen[l], genR: gen[r]})
	}
	for i := 0; i+1 < n; i++ {
		push(i)
	}
	for h.Len() > 0 {
		p := heap.Pop(h).(pair)
		if gen[p.left] != p.genL || gen[p.right] != p.genR || next[p.left] != p.right {
			continue // stale: one side merged or died since this pair was queued
		}
		ids[p.left] = p.id
		gen[p.left]++
		gen[p.right]++ // dead
		next[p.left] = next[p.right]
		if next[p.left] >= 0 {
			prev[next[p.left]] = p.left
		}
		push(prev[p.left])
		push(p.left)
	}
	out := make([]int, 0, n)
	for i := 0; i >= 0; i = next[i] {
		out = append(out, ids[i])
	}
	return out
}

type pair struct {
	score       float32
	left, right int
	id          int
	genL, genR  int
}

type pairHeap []pair

func (h pairHeap) Len() int { return len(h) }
func (h pairHeap) Less(i, j int) bool {
	if h[i].score != h[j].score {
		return h[i].score > h[j].score
	}
	return h[i].left < h[j].left
}
func (h pairHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pairHeap) Push(x any)   { *h = append(*h, x.(pair)) }
func (h *pairHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Decode returns the text of ids as llama2.c prints it: a piece right after BOS loses its
// leading space (SentencePiece's dummy prefix), <0xHH> pieces are the raw byte HH, and the
// BOS, EOS and pad ids, like ids outside the vocabulary, produce nothing. Without a leading
// BOS the dummy-prefix space is kept: Decode(Encode(s)) == " " + s for non-empty s.
func (t *Llama2c) Decode(ids []int) string {
	var out []byte
	prev := -1
	for _, id := range ids {
		p := prev
		prev = id
		if id < 0 || id >= len(t.vocab) || id == llama2cBOS || id == llama2cEOS || id == llama2cUnk {
			continue
		}
		piece := t.vocab[id]
		if p == llama2cBOS && len(piece) > 0 && piece[0] == ' ' {
			piece = piece[1:]
		}
		if b, ok := byteToken(piece); ok {
			out = append(out, b)
			continue
		}
		out = append(out, piece...)
	}
	return string(out)
}

// byteToken parses "<0xHH>" (hex digits of either case, as sscanf's %02hhX accepts).
func byteToken(s string) (byte, bool) {
	if len(s) != 6 || s[:3] != "<0x" || s[5] != '>' {
		return 0, false
	}
	hi, ok1 := hexVal(s[3])
	lo, ok2 := hexVal(s[4])
	return hi<<4 | lo, ok1 && ok2
}

func hexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

var _ Tokenizer = (*Llama2c)(nil)
