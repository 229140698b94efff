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
}

// Generate extends prompt one token at a time by running the whole prefix (the graphs have
// no KV-cache inputs) and returns the new ids. onToken, if set, sees each id as it is chosen.
func Generate(s Model, prompt []int, o GenOptions, onToken func(id int)) ([]int, error) {
	if len(prompt) == 0 {
		return nil, fmt.Errorf("generate: empty prompt (start from BOS)")
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x5eed))
	ids := append([]int(nil), prompt...)
	var out []int
	for step := 0; step < o.MaxTokens; step++ {
		if o.MaxContext > 0 && len(ids) >= o.MaxContext {
			break
		}
		logits, err := LastLogits(s, ids)
		if err != nil {
			return out, err
		}
		next := pick(logits, o, rng)
		if contains(o.Stop, next) {
			break
		}
		ids = append(ids, next)
		out = append(out, next)
		if onToken != nil {
			onToken(next)
		}
	}
	return out, nil
}

// LastLogits runs ids as one sequence and returns the logits at its last position.
func LastLogits(s Model, ids []int) ([]float32, error) {
	feeds, err := Feeds(s.Inputs(), [][]int{ids}, nil)
	if err != nil {
		return nil, err
	}
	res, err := s.Run(feeds, []string{"logits"})
	if err != nil {
		return nil, err
	}
	l := res["logits"]
	if len(l.Shape) != 3 || l.Shape[1] != int64(len(ids)) {
		return nil, fmt.Errorf("generate: logits shape %v, want [1, %d, vocab]", l.Shape, len(ids))
	}
	v := int(l.Shape[2])
	return l.F32[(len(ids)-1)*v : len(ids)*v], nil
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

// InputNames lists a session's input names.
func InputNames(s Model) []string {
	var out []string
	for _, in := range s.Inputs() {
		out = append(out, in.Name)
	}
	return out
}
