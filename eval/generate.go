package eval

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
)

// GenOptions controls Generate. Temperature 0 means greedy decoding (argmax, lowest id on ties).
type GenOptions struct {
	MaxTokens   int
	Temperature float64
	TopK        int    // 0 = the whole vocabulary
	Seed        uint64 // sampling seed
	Stop        []int  // ids that end generation (typically EOS); the stop id is not returned
	MaxContext  int    // the model's context length; 0 = unlimited
	// NoCache reruns the whole sequence for every token even when the model has a KV cache:
	// the reference the cached path is checked and timed against.
	NoCache bool
}

// Generate extends prompt one token at a time and returns the new ids. A model with a KV cache
// runs the prompt once and then one token per step, the cache carried from step to step; one
// without (or NoCache) reruns the whole prefix every step. onToken, if set, sees each id as it
// is chosen.
func Generate(s Model, prompt []int, o GenOptions, onToken func(id int)) ([]int, error) {
	if len(prompt) == 0 {
		return nil, fmt.Errorf("generate: empty prompt (start from BOS)")
	}
	d, err := newDecoder(s, o.NoCache)
	if err != nil {
		return nil, fmt.Errorf("generate: %w", err)
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x5eed))
	next := prompt
	var out []int
	for step := 0; step < o.MaxTokens; step++ {
		if o.MaxContext > 0 && d.length()+len(next) >= o.MaxContext {
			break
		}
		logits, _, err := d.step([][]int{next})
		if err != nil {
			return out, fmt.Errorf("generate: %w", err)
		}
		id := pick(logits, o, rng)
		if contains(o.Stop, id) {
			break
		}
		out = append(out, id)
		next = []int{id}
		if onToken != nil {
			onToken(id)
		}
	}
	return out, nil
}

func pick(logits []float32, o GenOptions, rng *rand.Rand) int {
	if o.Temperature <= 0 {
		best := 0
		for i, x := range logits {
			if x > logits[best] {
				best = i
			}
		}
		return best
	}
	idx := make([]int, len(logits))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return logits[idx[a]] > logits[idx[b]] })
	if o.TopK > 0 && o.TopK < len(idx) {
		idx = idx[:o.TopK]
	}
	maxL := float64(logits[idx[0]])
	p := make([]float64, len(idx))
	var sum float64
	for i, id := range idx {
		p[i] = math.Exp((float64(logits[id]) - maxL) / o.Temperature)
		sum += p[i]
	}
	r := rng.Float64() * sum
	for i, id := range idx {
		r -= p[i]
		if r <= 0 {
			return id
		}
	}
	return idx[len(idx)-1]
}

func contains(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
