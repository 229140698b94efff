package nls

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"

	"github.com/shears-ml/shears/transform/lora"
)

// Stream tags keep the generators of different uses apart for the same seed.
const (
	streamOrder   = 0x6f72646572 // "order"
	streamRanks   = 0x72616e6b73 // "ranks"
	streamDropout = 0x64726f70   // "drop"
)

// Space is the rank search space of a super-network: one rank choice per group (each decoder
// layer has its own copy of each group kind), drawn from Ranks.
type Space struct {
	Groups []string // group names in the super-network's order ("layers.0.qkv", ...)
	Masks  []string // their rank-mask inputs
	Ranks  []int    // the ranks sampled, descending
	RMax   int
}

// NewSpace is the space of meta restricted to ranks (nil: the super-network's own rank space).
// A single rank fixes every group: plain LoRA at that rank on the same graph.
func NewSpace(meta *lora.Meta, ranks []int) (*Space, error) {
	if meta == nil || len(meta.Groups) == 0 {
		return nil, fmt.Errorf("nls: space: the super-network has no adapter groups")
	}
	if len(ranks) == 0 {
		ranks = meta.Ranks
	}
	rs := slices.Clone(ranks)
	slices.SortFunc(rs, func(a, b int) int { return b - a })
	for i, r := range rs {
		if r < 1 || r > meta.RMax {
			return nil, fmt.Errorf("nls: rank %d is outside 1..r_max %d of the super-network", r, meta.RMax)
		}
		if i > 0 && rs[i-1] == r {
			return nil, fmt.Errorf("nls: rank %d listed twice", r)
		}
	}
	s := &Space{Ranks: rs, RMax: meta.RMax}
	for _, g := range meta.Groups {
		s.Groups = append(s.Groups, g.Name)
		s.Masks = append(s.Masks, g.Mask)
	}
	return s, nil
}

// Sample returns the ranks of global micro-batch t (0-based), one per group in Groups order:
// each group independently uniform over Ranks (METHOD §3: every micro-batch, no sandwich rule).
// It is a pure function of (seed, t), so a resumed run replays the same configurations.
func (s *Space) Sample(seed uint64, t int) []int {
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

// Heuristic is the zero-cost sub-adapter of METHOD §5: index (n−1)/2 of the descending rank
// list for every group.
func (s *Space) Heuristic() lora.Ranks {
	r := lora.HeuristicRank(s.Ranks)
	out := lora.Ranks{}
	for _, g := range s.Groups {
		out[g] = r
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
