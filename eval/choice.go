package eval

import (
	"fmt"

	"github.com/shears-ml/shears/tokenizer"
)

// ContScore is the log-likelihood of one continuation.
type ContScore struct {
	Sum    float64 `json:"sum"`    // summed log-probability of the continuation tokens
	Mean   float64 `json:"mean"`   // Sum / Tokens
	Tokens int     `json:"tokens"` // continuation tokens scored
}

// ScoreContinuations scores seqs[i][k:] given seqs[i][:k] for every i: the sum of
// log softmax(logits at t−1)[seqs[i][t]] over t ≥ k, in float64. The sequences run as one
// batch, right-padded to the longest: the models are causal, so padding after a position
// does not change its logits.
func ScoreContinuations(s Model, seqs [][]int, k int) ([]ContScore, error) {
	if len(seqs) == 0 {
		return nil, fmt.Errorf("score continuations: no sequences")
	}
	if k < 1 {
		return nil, fmt.Errorf("score continuations: the shared context must hold at least one token (BOS), got %d", k)
	}
	n := 0
	for i, q := range seqs {
		if len(q) <= k {
			return nil, fmt.Errorf("score continuations: sequence %d has no tokens after the %d context tokens", i, k)
		}
		n = max(n, len(q))
	}
	batch := make([][]int, len(seqs))
	for i, q := range seqs {
		p := append(make([]int, 0, n), q...)
		for len(p) < n {
			p = append(p, q[0])
		}
		batch[i] = p
	}
	feeds, err := Feeds(s.Inputs(), batch, nil)
	if err != nil {
		return nil, err
	}
	res, err := s.Run(feeds, []string{"logits"})
	if err != nil {
		return nil, fmt.Errorf("score continuations: %w", err)
	}
	l := res["logits"]
	if len(l.Shape) != 3 || l.Shape[0] != int64(len(seqs)) || l.Shape[1] != int64(n) {
		return nil, fmt.Errorf("score continuations: logits shape %v, want [%d, %d, vocab]", l.Shape, len(seqs), n)
	}
	v := int(l.Shape[2])
	out := make([]ContScore, len(seqs))
	for i, q := range seqs {
		var sum float64
		for t := k; t < len(q); t++ {
			sum -= nllOf(l.F32[(i*n+t-1)*v:(i*n+t)*v], q[t])
		}
		m := len(q) - k
		out[i] = ContScore{Sum: sum, Mean: sum / float64(m), Tokens: m}
	}
	return out, nil
}

// ChoiceTokens tokenizes context+cont for each continuation as one string (the continuation
// continues the context's text, so a tokenizer may merge across the seam, e.g. a trailing
// space into "▁answer") and returns the sequences with the length k of the token prefix they
// all share with the tokenized context alone: the tokens after k, seam included, are what
// ScoreContinuations scores, so every candidate is scored given the same context tokens.
// When the longest sequence exceeds maxContext (> 0) the same number of tokens is dropped
// from the front of every sequence (after BOS) and dropped reports it.
func ChoiceTokens(tok tokenizer.Tokenizer, context string, conts []string, maxContext int) (seqs [][]int, k, dropped int, err error) {
	ctx := append([]int{tok.BOS()}, tok.Encode(context)...)
	k = len(ctx)
	longest := 0
	for _, c := range conts {
		q := append([]int{tok.BOS()}, tok.Encode(context+c)...)
		k = min(k, commonPrefix(ctx, q))
		longest = max(longest, len(q))
		seqs = append(seqs, q)
	}
	for i, q := range seqs {
		if len(q) <= k {
			return nil, 0, 0, fmt.Errorf("choice: candidate %q adds no tokens to the context", conts[i])
		}
	}
	if maxContext > 0 && longest > maxContext {
		dropped = longest - maxContext
		if k-dropped < 1 {
			return nil, 0, 0, fmt.Errorf("choice: candidates need %d tokens after the context, more than the model's context %d", longest-k, maxContext)
		}
		for i, q := range seqs {
			seqs[i] = append([]int{q[0]}, q[1+dropped:]...) // BOS stays, as in GenItem
		}
		k -= dropped
	}
	return seqs, k, dropped, nil
}

func commonPrefix(a, b []int) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}
