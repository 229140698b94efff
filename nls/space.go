package nls

import (
	"hash/fnv"
	"math/rand/v2"

	"github.com/shears-ml/shears/transform/lora"
)

// Stream tags keep the generators of different uses apart for the same seed.
const (
	streamOrder   = 0x6f72646572 // "order"
	streamRanks   = 0x72616e6b73 // "ranks"
	streamDropout = 0x64726f70   // "drop"
)

// Sample returns the ranks of global micro-batch t (0-based), one per group in s.Groups order:
// each group independently uniform over s.Ranks (METHOD §3: every micro-batch, no sandwich
// rule). It is a pure function of (seed, t), so a resumed run replays the same configurations.
func Sample(s *lora.Space, seed uint64, t int) []int {
	out := make([]int, len(s.Groups))
	if len(s.Ranks) == 1 {
		for i := range out {
			out[i] = s.Ranks[0]
		}
		return out
	}
	rng := rand.New(rand.NewPCG(seed^streamRanks, uint64(t)))
	for i := range out {
		out[i] = s.Ranks[rng.IntN(len(s.Ranks))]
	}
	return out
}

// Order is the data order of epoch e (0-based) over n examples: a permutation drawn from
// PCG(seed, e), independent of every other epoch.
func Order(seed uint64, epoch, n int) []int {
	return rand.New(rand.NewPCG(seed^streamOrder, uint64(epoch))).Perm(n)
}

// KeepMask fills keep with an inverted-dropout keep-mask for probability p: each element is
// 1/(1−p) with probability 1−p, else 0. The generator is PCG(seed, t, module), so the masks of a
// micro-batch do not depend on what ran before it.
func KeepMask(keep []float32, p float64, seed uint64, t int, module string) {
	if p <= 0 {
		for i := range keep {
			keep[i] = 1
		}
		return
	}
	h := fnv.New64a()
	h.Write([]byte(module))
	rng := rand.New(rand.NewPCG(seed^streamDropout^h.Sum64(), uint64(t)))
	v := float32(1 / (1 - p))
	for i := range keep {
		if rng.Float64() < p {
			keep[i] = 0
		} else {
			keep[i] = v
		}
	}
}
