package lora

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Config chooses what to adapt and the rank space. The zero value of a field means its default.
type Config struct {
	// Targets are the roles of the adapted linears (transform/layers roles: q k v o gate up
	// down, or a family's own). Default q, k, v, up, down: the reference LLaMA setting. On a
	// model with one fused qkv linear (GPT-2's c_attn) and no separate q, k, v, the three
	// together select that linear (target "qkv").
	Targets []string
	// Ranks is the elastic rank space, strictly descending; r_max = Ranks[0]. Default 32, 24, 16.
	Ranks []int
	// Alpha is the LoRA alpha; the scale is Alpha / r_max for every active rank. Default 64.
	Alpha float64
	// Groups lists the modules of one layer that share one rank: comma-separated groups, each a
	// "+"-joined list of roles; "qkv" stands for q+k+v unless "qkv" is itself a target role.
	// Targets no group names get a group of their own. Default "qkv,up+gate,down", from which
	// roles that are not targets are dropped (an explicit spec naming one is an error).
	Groups string
	// Dropout is the probability p of the adapter-input dropout in train graphs, in [0, 1).
	Dropout float64
	// Seed seeds the initialisation of A.
	Seed uint64
	// SparseAdapter builds SQFT's SparsePEFT adapter path, y = x·W + x·(M ⊙ (s·(A⊙m)·B)) with
	// M = (W ≠ 0) computed in the graph, so the adapter never writes where the base is zero and a
	// sparsity-keeping merge (transform/merge, --merge sparse) is exact. It materialises the dense
	// [in, out] ΔW every step: more compute than the low-rank path.
	SparseAdapter bool
	// AdapterDType is the type of A and B on a float16/bfloat16 base: AdapterFP32 ("" or "fp32",
	// the default: A, B and the adapter's arithmetic in float32, x cast up once per shared input
	// and the delta cast down before the Add) or AdapterBase (the linear's own type, no Casts).
	// A float32 base always gets float32 adapters.
	AdapterDType string
}

// Adapter types (Config.AdapterDType).
const (
	AdapterFP32 = "fp32"
	AdapterBase = "base"
)

// Defaults of Config.
var (
	DefaultTargets = []string{"q", "k", "v", "up", "down"}
	DefaultRanks   = []int{32, 24, 16}
)

// Default alpha and group spec (the reference LLaMA setting, METHOD §2).
const (
	DefaultAlpha  = 64.0
	DefaultGroups = "qkv,up+gate,down"
)

// withDefaults returns c with zero fields set to their defaults and slices copied.
func (c Config) withDefaults() Config {
	if len(c.Targets) == 0 {
		c.Targets = DefaultTargets
	}
	if len(c.Ranks) == 0 {
		c.Ranks = DefaultRanks
	}
	if c.Alpha == 0 {
		c.Alpha = DefaultAlpha
	}
	c.Targets = slices.Clone(c.Targets)
	c.Ranks = slices.Clone(c.Ranks)
	return c
}

// check validates everything that does not depend on the model.
func (c Config) check() error {
	if len(c.Ranks) == 0 {
		return fmt.Errorf("lora: no ranks")
	}
	for i, r := range c.Ranks {
		if r <= 0 {
			return fmt.Errorf("lora: ranks %v: rank %d is not positive", c.Ranks, r)
		}
		if i > 0 && r >= c.Ranks[i-1] {
			return fmt.Errorf("lora: ranks %v must be strictly descending (r_max first), e.g. 32,24,16", c.Ranks)
		}
	}
	if !(c.Alpha > 0) || math.IsInf(c.Alpha, 0) {
		return fmt.Errorf("lora: alpha %v must be a positive finite number", c.Alpha)
	}
	if !(c.Dropout >= 0 && c.Dropout < 1) {
		return fmt.Errorf("lora: dropout %v must be in [0, 1)", c.Dropout)
	}
	if c.AdapterDType != "" && c.AdapterDType != AdapterFP32 && c.AdapterDType != AdapterBase {
		return fmt.Errorf("lora: adapter dtype %q: want fp32 or base", c.AdapterDType)
	}
	seen := map[string]bool{}
	for _, t := range c.Targets {
		if t == "" {
			return fmt.Errorf("lora: targets %v: empty role", c.Targets)
		}
		if seen[t] {
			return fmt.Errorf("lora: targets %v: role %q listed twice", c.Targets, t)
		}
		seen[t] = true
	}
	return nil
}

// RMax is the largest rank, Ranks[0] (after defaults).
func (c Config) RMax() int { return c.withDefaults().Ranks[0] }

// Scale is alpha / r_max, the fixed scale of every sub-adapter.
func (c Config) Scale() float64 {
	d := c.withDefaults()
	return d.Alpha / float64(d.Ranks[0])
}

// HeuristicRank is the zero-cost heuristic's rank: index (n−1)/2 of the descending rank list
// (24 for 32, 24, 16), as the reference does (METHOD §5).
func HeuristicRank(ranks []int) int {
	if len(ranks) == 0 {
		return 0
	}
	return ranks[(len(ranks)-1)/2]
}

// groupKind is one group of a layer: its name ("qkv", "up_gate", "down") and roles.
type groupKind struct {
	Name  string
	Roles []string
}

// parseGroups turns the group spec into group kinds over the target roles.
func parseGroups(spec string, targets []string) ([]groupKind, error) {
	explicit := spec != ""
	if !explicit {
		spec = DefaultGroups
	}
	isTarget := map[string]bool{}
	for _, t := range targets {
		isTarget[t] = true
	}
	owner := map[string]string{}
	var kinds []groupKind
	for _, tok := range strings.Split(spec, ",") {
		tok = strings.TrimSpace(tok)
		if tok == "" {
			return nil, fmt.Errorf("lora: groups %q: empty group (groups are comma-separated, roles in a group joined by +)", spec)
		}
		var roles []string
		for _, part := range strings.Split(tok, "+") {
			part = strings.TrimSpace(part)
			var expanded []string
			switch {
			case part == "":
				return nil, fmt.Errorf("lora: groups %q: group %q has an empty role", spec, tok)
			case isTarget[part]:
				expanded = []string{part}
			case part == "qkv":
				expanded = []string{"q", "k", "v"}
			default:
				expanded = []string{part}
			}
			for _, r := range expanded {
				if !isTarget[r] {
					if explicit {
						return nil, fmt.Errorf("lora: groups %q: group %q names role %q, which is not a target (targets: %s)",
							spec, tok, r, strings.Join(targets, ","))
					}
					continue
				}
				if o, dup := owner[r]; dup {
					return nil, fmt.Errorf("lora: groups %q: role %q is in two groups (%q and %q)", spec, r, o, tok)
				}
				owner[r] = tok
				roles = append(roles, r)
			}
		}
		if len(roles) > 0 {
			kinds = append(kinds, groupKind{Name: kindName(roles), Roles: roles})
		}
	}
	for _, t := range targets {
		if _, ok := owner[t]; !ok {
			kinds = append(kinds, groupKind{Name: kindName([]string{t}), Roles: []string{t}})
		}
	}
	return kinds, nil
}

// kindName names a group by its roles: "qkv" for exactly q, k, v, else the roles joined by "_".
func kindName(roles []string) string {
	if slices.Equal(roles, []string{"q", "k", "v"}) {
		return "qkv"
	}
	return strings.Join(roles, "_")
}

// RankMask returns the rank mask for active rank r of an r_max super-adapter: 1 for k < r,
// 0 after. r is clamped to [0, rMax].
func RankMask(rMax, r int) []float32 {
	if rMax < 0 {
		rMax = 0
	}
	m := make([]float32, rMax)
	for k := 0; k < r && k < rMax; k++ {
		m[k] = 1
	}
	return m
}
