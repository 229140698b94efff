package nls

import "strconv"

// StepRecord is what one optimizer step did (a line of a run's metrics.jsonl).
type StepRecord struct {
	Step         int         `json:"step"`  // 1-based optimizer step of the run
	Epoch        int         `json:"epoch"` // 1-based
	MicroBatches int         `json:"micro_batches"`
	Loss         float64     `json:"loss"` // mean of the micro-batches' (unscaled) losses
	LR           float64     `json:"lr"`
	GradNorm     float64     `json:"grad_norm"` // global norm before clipping
	Tokens       int         `json:"tokens"`    // non-pad tokens of the step's sequences
	LossTokens   int         `json:"loss_tokens"`
	PaddedTokens int         `json:"padded_tokens"` // rows × padded length: the work done
	TokensPerS   float64     `json:"tokens_per_s"`  // Tokens over this step's wall time
	ElapsedS     float64     `json:"elapsed_s"`     // training time since the run began
	Ranks        RankSummary `json:"ranks"`
	// Skipped marks a step whose float16 gradients overflowed under loss scaling: no update,
	// the scale halved. LossScale is the scale after the step (mixed-precision runs only).
	Skipped   bool    `json:"skipped,omitempty"`
	LossScale float64 `json:"loss_scale,omitempty"`
}

// RankSummary summarises the ranks sampled over a step's micro-batches and groups.
type RankSummary struct {
	Mean   float64        `json:"mean"`
	Counts map[string]int `json:"counts"` // rank → (micro-batch, group) draws
}

// SampleRecord is one micro-batch and the sub-adapter it trained (a line of samples.jsonl).
type SampleRecord struct {
	T     int     `json:"t"`    // global micro-batch index, 0-based
	Step  int     `json:"step"` // the optimizer step it belongs to (1-based)
	Loss  float64 `json:"loss"`
	Len   int     `json:"len"`   // padded length (its step graph)
	Ranks []int   `json:"ranks"` // per group, in run.json's groups order
}

func summarise(ranks [][]int) RankSummary {
	s := RankSummary{Counts: map[string]int{}}
	n := 0
	for _, rs := range ranks {
		for _, r := range rs {
			s.Counts[strconv.Itoa(r)]++
			s.Mean += float64(r)
			n++
		}
	}
	if n > 0 {
		s.Mean /= float64(n)
	}
	return s
}
