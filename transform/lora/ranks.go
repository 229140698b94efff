package lora

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
