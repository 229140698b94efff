package lora

import (
	"fmt"
	"slices"
)

// Ranks is one rank configuration of a super-network: the active rank of every adapter group,
// by group name ("layers.0.qkv" → 24). It is the one shape the concept has from training
// (Meta) through search (nls views it in group order) to export (merge.Selection); on disk it
// is the JSON object {"layers.0.qkv": 24, ...}, as before the type existed.
type Ranks map[string]int

// Uniform maps every group to rank r.
func (meta *Meta) Uniform(r int) Ranks {
	out := Ranks{}
	for _, g := range meta.Groups {
		out[g.Name] = r
	}
	return out
}

// Heuristic is the zero-cost sub-adapter of METHOD §5: HeuristicRank of the rank space for
// every group.
func (meta *Meta) Heuristic() Ranks { return meta.Uniform(HeuristicRank(meta.Ranks)) }

// Params is the active adapter parameter count Σ r·(in + out) at ranks (a group missing from
// ranks counts zero).
func (meta *Meta) Params(ranks Ranks) int64 {
	var n int64
	for _, m := range meta.Modules {
		n += m.Params(ranks[m.Group])
	}
	return n
}

// Clone is a copy of r that the caller may change (never nil, so it encodes as {}).
func (r Ranks) Clone() Ranks {
	out := make(Ranks, len(r))
	for k, v := range r {
		out[k] = v
	}
	return out
}

// Space is the rank search space of a super-network restricted to the ranks a run samples:
// one rank choice per group (each decoder layer has its own copy of each group kind), in the
// super-network's group order. A configuration in this order ([]int, what sampling and search
// work on) and the same configuration as Ranks (by group name, what merge and CONFIG.json
// use) are two views of one thing: Map and Slice convert.
type Space struct {
	Groups []string // group names in the super-network's order ("layers.0.qkv", ...)
	Masks  []string // their rank-mask inputs
	Ranks  []int    // the ranks sampled, descending
	RMax   int
}

// Space is the space of meta restricted to ranks (nil: the super-network's own rank space).
// A single rank fixes every group: plain LoRA at that rank on the same graph.
func (meta *Meta) Space(ranks []int) (*Space, error) {
	if meta == nil || len(meta.Groups) == 0 {
		return nil, fmt.Errorf("lora: space: the super-network has no adapter groups")
	}
	if len(ranks) == 0 {
		ranks = meta.Ranks
	}
	rs := slices.Clone(ranks)
	slices.SortFunc(rs, func(a, b int) int { return b - a })
	for i, r := range rs {
		if r < 1 || r > meta.RMax {
			return nil, fmt.Errorf("lora: rank %d is outside 1..r_max %d of the super-network", r, meta.RMax)
		}
		if i > 0 && rs[i-1] == r {
			return nil, fmt.Errorf("lora: rank %d listed twice", r)
		}
	}
	s := &Space{Ranks: rs, RMax: meta.RMax}
	for _, g := range meta.Groups {
		s.Groups = append(s.Groups, g.Name)
		s.Masks = append(s.Masks, g.Mask)
	}
	return s, nil
}

// HeuristicRank is the space's zero-cost rank: HeuristicRank of its ranks.
func (s *Space) HeuristicRank() int { return HeuristicRank(s.Ranks) }

// Heuristic is the zero-cost sub-adapter of METHOD §5: HeuristicRank for every group.
func (s *Space) Heuristic() Ranks { return s.Map(s.Uniform(s.HeuristicRank())) }

// Map turns ranks in group order into the rank per group name.
func (s *Space) Map(ranks []int) Ranks {
	out := make(Ranks, len(ranks))
	for i, g := range s.Groups {
		out[g] = ranks[i]
	}
	return out
}

// Slice turns a rank per group name into ranks in group order; every group must be present.
func (s *Space) Slice(ranks Ranks) ([]int, error) {
	out := make([]int, len(s.Groups))
	for i, g := range s.Groups {
		r, ok := ranks[g]
		if !ok {
			return nil, fmt.Errorf("lora: configuration has no rank for group %s", g)
		}
		out[i] = r
	}
	if len(ranks) != len(s.Groups) {
		return nil, fmt.Errorf("lora: configuration names %d groups, the space has %d", len(ranks), len(s.Groups))
	}
	return out, nil
}

// Uniform is rank r for every group, in group order.
func (s *Space) Uniform(r int) []int {
	out := make([]int, len(s.Groups))
	for i := range out {
		out[i] = r
	}
	return out
}
