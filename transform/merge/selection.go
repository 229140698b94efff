package merge

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/shears-ml/shears/transform/lora"
)

// Selection is one chosen sub-adapter: what a search writes (CONFIG.json) and what export
// reads. Only Ranks is required; the rest records where the choice came from.
type Selection struct {
	// Ranks maps every group of the super-network ("layers.0.qkv", "layers.0.up", ...) to its
	// active rank.
	Ranks lora.Ranks `json:"ranks"`
	// Strategy is how the ranks were chosen: "heuristic", "hill-climb", "evolution", "max",
	// "min", "manual", ...
	Strategy string `json:"strategy,omitempty"`
	// Metric is the score the search gave this configuration, when it scored one.
	Metric *Metric `json:"metric,omitempty"`
	// Params is the active adapter parameter count Σ r·(in + out).
	Params int64 `json:"adapter_params,omitempty"`
}

// Metric is a named score, e.g. {"name": "val_loss", "value": 1.93}.
type Metric struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
}

// ReadSelection reads a CONFIG.json. Unknown fields are allowed (a search may record more);
// a missing or empty "ranks" is an error.
func ReadSelection(path string) (*Selection, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("merge: read config: %w", err)
	}
	var s Selection
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("merge: config %s: not valid JSON: %w", path, err)
	}
	if len(s.Ranks) == 0 {
		return nil, fmt.Errorf(`merge: config %s: no "ranks" (want {"ranks": {"layers.0.qkv": 24, ...}, ...})`, path)
	}
	return &s, nil
}

// Check validates ranks against the super-network: every group present, no unknown group,
// each rank in 1..r_max. It returns the groups whose rank is outside the trained rank space
// (valid, but the super-network never trained them), sorted.
func Check(meta *lora.Meta, ranks lora.Ranks) (untrained []string, err error) {
	known := map[string]bool{}
	var missing []string
	for _, g := range meta.Groups {
		known[g.Name] = true
		r, ok := ranks[g.Name]
		if !ok {
			missing = append(missing, g.Name)
			continue
		}
		if r < 1 || r > meta.RMax {
			return nil, fmt.Errorf("merge: group %s: rank %d outside 1..%d (r_max)", g.Name, r, meta.RMax)
		}
		if !slices.Contains(meta.Ranks, r) {
			untrained = append(untrained, g.Name)
		}
	}
	var unknown []string
	for g := range ranks {
		if !known[g] {
			unknown = append(unknown, g)
		}
	}
	sort.Strings(unknown)
	if len(unknown) > 0 {
		return nil, fmt.Errorf("merge: no group %s in the super-network (groups look like %q)", strings.Join(quoteAll(unknown), ", "), meta.Groups[0].Name)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("merge: %d of %d groups have no rank (first: %s); a selection lists every group", len(missing), len(meta.Groups), missing[0])
	}
	return untrained, nil
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = fmt.Sprintf("%q", x)
	}
	return out
}

// Preset is the selection named by which: "heuristic" (the middle of the rank space, index
// (n−1)/2, METHOD §5), "max" (r_max) or "min" (the smallest rank), for every group.
func Preset(meta *lora.Meta, which string) (*Selection, error) {
	var r int
	switch which {
	case "heuristic":
		r = lora.HeuristicRank(meta.Ranks)
	case "max":
		r = meta.Ranks[0]
	case "min":
		r = meta.Ranks[len(meta.Ranks)-1]
	default:
		return nil, fmt.Errorf("merge: rank preset %q: want heuristic, max or min", which)
	}
	s := &Selection{Ranks: meta.Uniform(r), Strategy: which}
	s.Params = meta.Params(s.Ranks)
	return s, nil
}
