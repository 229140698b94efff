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
	if seqLen < 2 {
		return PPL{}, fmt.Errorf("perplexity: seq-len must be at least 2, got %d", seqLen)
	}
	if batch < 1 {
		batch = 1
	}
	var windows [][]int
	for start := 0; start+1 < len(ids); start += seqLen {
		end := min(start+seqLen, len(ids))
		windows = append(windows, ids[start:end])
	}
	if len(windows) == 0 {
		return PPL{}, fmt.Errorf("perplexity: need at least 2 tokens, got %d", len(ids))
	}
	var nll float64
	var n int
	for i := 0; i < len(windows); {
		j := i + 1
		for j < len(windows) && j-i < batch && len(windows[j]) == len(windows[i]) {
			j++
		}
		sum, cnt, err := WindowNLL(s, windows[i:j])
		if err != nil {
			return PPL{}, err
		}
		nll += sum
		n += cnt
		i = j
	}
	return PPL{PPL: math.Exp(nll / float64(n)), NLL: nll / float64(n), Tokens: n, Windows: len(windows)}, nil
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
