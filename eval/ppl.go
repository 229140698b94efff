package eval

import (
	"fmt"
	"math"
)

// PPL is a perplexity result.
type PPL struct {
	PPL     float64 `json:"ppl"`
	NLL     float64 `json:"nll"`    // mean negative log-likelihood per predicted token (nats)
	Tokens  int     `json:"tokens"` // predicted tokens
	Windows int     `json:"windows"`
}

// Perplexity evaluates a token stream in non-overlapping windows of seqLen tokens (the last,
// shorter window included when it holds at least two tokens). Inside a window, token t+1 is
// predicted from tokens ≤ t, so a window of L tokens contributes L−1 predictions and no token
// is predicted across a window boundary. Log-softmax is computed in float64.
// batch windows of equal length run together.
func Perplexity(s Model, ids []int, seqLen, batch int) (PPL, error) {
	acc, err := NewPerplexityStream(s, seqLen, batch)
	if err != nil {
		return PPL{}, err
	}
	if err := acc.Add(ids...); err != nil {
		return PPL{}, err
	}
	return acc.Finish()
}

// PerplexityStream is Perplexity over a stream fed piece by piece: it scores each batch of
// full windows as soon as it has the tokens and keeps only the remainder, so a data file of
// any size is scored in the memory of one batch. The windows, their batches and the order of
// the sums are those of Perplexity on the whole stream, so the result is bit-identical.
type PerplexityStream struct {
	s             Model
	seqLen, batch int
	buf           []int
	nll           float64
	n, windows    int
	added         int
}

// NewPerplexityStream starts a stream for s.
func NewPerplexityStream(s Model, seqLen, batch int) (*PerplexityStream, error) {
	if seqLen < 2 {
		return nil, fmt.Errorf("perplexity: seq-len must be at least 2, got %d", seqLen)
	}
	return &PerplexityStream{s: s, seqLen: seqLen, batch: max(batch, 1)}, nil
}

// Add appends tokens, scoring every complete batch of full windows.
func (p *PerplexityStream) Add(ids ...int) error {
	p.buf = append(p.buf, ids...)
	p.added += len(ids)
	full := p.seqLen * p.batch
	off := 0
	for len(p.buf)-off >= full {
		if err := p.score(p.buf[off : off+full]); err != nil {
			return err
		}
		off += full
	}
	if off > 0 {
		p.buf = append(p.buf[:0], p.buf[off:]...)
	}
	return nil
}

// score runs ids cut into windows of seqLen (the last one shorter when ids is), equal-length
// windows batched together.
func (p *PerplexityStream) score(ids []int) error {
	var windows [][]int
	for start := 0; start+1 < len(ids); start += p.seqLen {
		windows = append(windows, ids[start:min(start+p.seqLen, len(ids))])
	}
	for i := 0; i < len(windows); {
		j := i + 1
		for j < len(windows) && j-i < p.batch && len(windows[j]) == len(windows[i]) {
			j++
		}
		sum, cnt, err := WindowNLL(p.s, windows[i:j])
		if err != nil {
			return err
		}
		p.nll += sum
		p.n += cnt
		i = j
	}
	p.windows += len(windows)
	return nil
}

// Finish scores what remains and returns the result.
func (p *PerplexityStream) Finish() (PPL, error) {
	if err := p.score(p.buf); err != nil {
		return PPL{}, err
	}
	p.buf = nil
	if p.windows == 0 {
		return PPL{}, fmt.Errorf("perplexity: need at least 2 tokens, got %d", p.added)
	}
	return PPL{PPL: math.Exp(p.nll / float64(p.n)), NLL: p.nll / float64(p.n), Tokens: p.n, Windows: p.windows}, nil
}

// WindowNLL runs equal-length windows as one batch and returns the summed next-token negative
// log-likelihood and the number of predictions.
func WindowNLL(s Model, windows [][]int) (float64, int, error) {
	b, l := len(windows), len(windows[0])
	feeds, err := Feeds(s.Inputs(), windows, nil)
	if err != nil {
		return 0, 0, err
	}
	res, err := s.Run(feeds, []string{"logits"})
	if err != nil {
		return 0, 0, err
	}
	logits := res["logits"]
	v := int(logits.Shape[2])
	var sum float64
	for bi, w := range windows {
		for t := 0; t+1 < l; t++ {
			row := logits.F32[(bi*l+t)*v : (bi*l+t+1)*v]
			sum += nllOf(row, w[t+1])
		}
	}
	return sum, b * (l - 1), nil
}

// nllOf is −log softmax(row)[target], in float64. The max is taken in float32 (exact) with a
// plain comparison: math.Max's NaN and signed-zero handling cost more than the exps.
func nllOf(row []float32, target int) float64 {
	m := row[0]
	for _, x := range row[1:] {
		if x > m {
			m = x
		}
	}
	maxV := float64(m)
	var z float64
	for _, x := range row {
		z += math.Exp(float64(x) - maxV)
	}
	return -(float64(row[target]) - maxV - math.Log(z))
}
