package eval

import (
	"fmt"
	"math"
	"sort"
)

// BeamOptions controls BeamSearch.
type BeamOptions struct {
	Beams      int   // live hypotheses per step (the reference: 4); 1 is greedy decoding
	MaxTokens  int   // new tokens at most
	Stop       []int // ids that finish a hypothesis (EOS); the stop id is not returned
	MaxContext int   // the model's context length; 0 = unlimited
	// LengthPenalty is the exponent on the hypothesis length (prompt included) that divides
	// a finished hypothesis's summed log-probability; Hugging Face's default, which the
	// reference keeps, is 1.
	LengthPenalty float64
	// NoCache reruns every beam's whole sequence each step even when the model has a KV cache
	// (the reference the cached path is checked and timed against).
	NoCache bool
}

// Hypothesis is a beam search result.
type Hypothesis struct {
	IDs     []int   // new ids (prompt and stop id excluded)
	LogProb float64 // summed log-probability of the new ids, the stop id included when it ended
	Score   float64 // LogProb / len^LengthPenalty, len = prompt + new ids (stop id excluded)
	Stopped bool    // ended by a stop id (not by MaxTokens or MaxContext)
}

type hyp struct {
	ids     []int // prompt + new ids
	sum     float64
	score   float64
	stopped bool
}

// BeamSearch is Hugging Face's beam search (generate with num_beams, do_sample false,
// early_stopping false), batch size 1. The live beams run as one batch: with a KV cache the
// prompt runs once and each step feeds every beam its last token, the cache rows gathered
// along the batch axis to follow the chosen beams; without one (or NoCache) each step reruns
// every beam's whole prefix, O(length²) attention. Each step scores
// every live beam's continuations by summed log-probability (log-softmax in float64), takes
// the best 2·Beams, sends a stop id among the best Beams to the finished list (scored
// sum / len^LengthPenalty) and keeps the best Beams others as the next beams. The search ends
// when Beams hypotheses are finished and none of the live ones can beat the worst of them, or
// at MaxTokens / MaxContext, when the live beams join the finished list. Ties go to the lower
// beam, then the lower id, so Beams = 1 is exactly greedy decoding.
func BeamSearch(s Model, prompt []int, o BeamOptions) (Hypothesis, error) {
	if len(prompt) == 0 {
		return Hypothesis{}, fmt.Errorf("beam search: empty prompt (start from BOS)")
	}
	if o.Beams < 1 {
		return Hypothesis{}, fmt.Errorf("beam search: beams must be at least 1, got %d", o.Beams)
	}
	norm := func(sum float64, n int) float64 { return sum / math.Pow(float64(n), o.LengthPenalty) }
	live := []hyp{{ids: append([]int(nil), prompt...)}}
	var fin []hyp // at most Beams, best kept
	addFinished := func(h hyp) {
		if len(fin) < o.Beams || h.score > fin[len(fin)-1].score {
			fin = append(fin, h)
			sort.SliceStable(fin, func(a, b int) bool { return fin[a].score > fin[b].score })
			if len(fin) > o.Beams {
				fin = fin[:o.Beams]
			}
		}
	}
	d, err := newDecoder(s, o.NoCache)
	if err != nil {
		return Hypothesis{}, fmt.Errorf("beam search: %w", err)
	}
	done := false
	var lp []float64
	tokens, src := [][]int{prompt}, []int(nil) // the next step's new tokens, and the beams they extend
	for step := 0; step < o.MaxTokens; step++ {
		cur := len(live[0].ids)
		if o.MaxContext > 0 && cur >= o.MaxContext {
			break
		}
		if src != nil {
			if err := d.reorder(src); err != nil {
				return Hypothesis{}, fmt.Errorf("beam search: %w", err)
			}
		}
		logits, v, err := d.step(tokens)
		if err != nil {
			return Hypothesis{}, fmt.Errorf("beam search: %w", err)
		}
		type cand struct {
			beam, tok int
			score     float64
		}
		k := 2 * o.Beams
		var cands []cand
		if cap(lp) < v {
			lp = make([]float64, v)
		}
		lp = lp[:v]
		for b, h := range live {
			logSoftmax(logits[b*v:(b+1)*v], lp)
			// The overall best k lie among each beam's best k.
			top := topK(lp, k)
			for _, t := range top {
				cands = append(cands, cand{b, t, h.sum + lp[t]})
			}
		}
		sort.SliceStable(cands, func(a, b int) bool {
			ca, cb := cands[a], cands[b]
			if ca.score != cb.score {
				return ca.score > cb.score
			}
			if ca.beam != cb.beam {
				return ca.beam < cb.beam
			}
			return ca.tok < cb.tok
		})
		if len(cands) > k {
			cands = cands[:k]
		}
		var next []hyp
		tokens, src = tokens[:0], src[:0]
		for rank, c := range cands {
			if contains(o.Stop, c.tok) {
				if rank < o.Beams {
					ids := live[c.beam].ids
					addFinished(hyp{ids: ids, sum: c.score, score: norm(c.score, len(ids)), stopped: true})
				}
				continue
			}
			ids := append(append(make([]int, 0, cur+1), live[c.beam].ids...), c.tok)
			next = append(next, hyp{ids: ids, sum: c.score})
			tokens, src = append(tokens, []int{c.tok}), append(src, c.beam)
			if len(next) == o.Beams {
				break
			}
		}
		if len(next) == 0 {
			done = true
			break
		}
		live = next
		// transformers 4.3x: the bound and finished scores both divide by the length before
		// this step's token.
		if len(fin) >= o.Beams && fin[len(fin)-1].score >= norm(cands[0].score, cur) {
			done = true
			break
		}
	}
	if !done {
		for _, h := range live {
			h.score = norm(h.sum, len(h.ids))
			addFinished(h)
		}
	}
	best := fin[0]
	return Hypothesis{
		IDs:     append([]int{}, best.ids[len(prompt):]...),
		LogProb: best.sum,
		Score:   best.score,
		Stopped: best.stopped,
	}, nil
}

// logSoftmax writes log softmax(row) into dst, in float64.
func logSoftmax(row []float32, dst []float64) {
	maxV := math.Inf(-1)
	for _, x := range row {
		if float64(x) > maxV {
			maxV = float64(x)
		}
	}
	var z float64
	for _, x := range row {
		z += math.Exp(float64(x) - maxV)
	}
	lz := maxV + math.Log(z)
	for i, x := range row {
		dst[i] = float64(x) - lz
	}
}

// topK returns the indices of the k largest values, largest first, lower index on ties.
func topK(v []float64, k int) []int {
	k = min(k, len(v))
	idx := make([]int, 0, k+1)
	for i, x := range v {
		if len(idx) == k && x <= v[idx[k-1]] {
			continue
		}
		// insert i keeping idx sorted by value desc (stable: earlier index first on ties)
		j := len(idx)
		idx = append(idx, i)
		for j > 0 && v[idx[j-1]] < x {
			idx[j] = idx[j-1]
			j--
		}
		idx[j] = i
		if len(idx) > k {
			idx = idx[:k]
		}
	}
	return idx
}
