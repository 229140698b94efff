package nls

import (
	"cmp"
	"math"
	"slices"
)

// The two objectives of the search, both minimised: the validation metric as a cost (a loss, or
// minus an accuracy) and the active adapter parameters.
type objectives struct {
	cost   float64
	params int64
}

func objOf(m Metric, e Evaluation) objectives { return objectives{m.cost(e.Value), e.Params} }

// dominates: a is no worse than b in both objectives and better in one.
func (a objectives) dominates(b objectives) bool {
	return a.cost <= b.cost && a.params <= b.params && (a.cost < b.cost || a.params < b.params)
}

// Dominates reports whether a Pareto-dominates b under metric m and the parameter count.
func Dominates(m Metric, a, b Evaluation) bool { return objOf(m, a).dominates(objOf(m, b)) }

// ParetoFront is the non-dominated subset of evals (duplicates of one configuration counted
// once), sorted by adapter parameters ascending.
func ParetoFront(m Metric, evals []Evaluation) []Evaluation {
	var out []Evaluation
	seen := map[string]bool{}
	for i, a := range evals {
		k := ConfigKey(a.Ranks)
		if seen[k] {
			continue
		}
		dominated := false
		for j, b := range evals {
			if i != j && Dominates(m, b, a) {
				dominated = true
				break
			}
		}
		if !dominated {
			seen[k] = true
			out = append(out, a)
		}
	}
	slices.SortStableFunc(out, func(a, b Evaluation) int {
		return cmp.Or(cmp.Compare(a.Params, b.Params), cmp.Compare(a.Index, b.Index))
	})
	return out
}

// nondominatedSort splits points into fronts (NSGA-II's fast non-dominated sort) and returns
// each point's front number, 0 = non-dominated.
func nondominatedSort(obj []objectives) []int {
	n := len(obj)
	rank := make([]int, n)
	count := make([]int, n) // how many points dominate i
	dom := make([][]int, n) // the points i dominates
	var cur []int
	for i := range obj {
		for j := range obj {
			if obj[i].dominates(obj[j]) {
				dom[i] = append(dom[i], j)
			} else if obj[j].dominates(obj[i]) {
				count[i]++
			}
		}
		if count[i] == 0 {
			cur = append(cur, i)
		}
	}
	for f := 0; len(cur) > 0; f++ {
		var next []int
		for _, i := range cur {
			rank[i] = f
			for _, j := range dom[i] {
				if count[j]--; count[j] == 0 {
					next = append(next, j)
				}
			}
		}
		cur = next
	}
	return rank
}

// crowding is NSGA-II's crowding distance of the points idx (one front): per objective, the
// normalised gap between each point's neighbours; the extremes get +Inf.
func crowding(obj []objectives, idx []int) map[int]float64 {
	d := map[int]float64{}
	for _, i := range idx {
		d[i] = 0
	}
	if len(idx) <= 2 {
		for _, i := range idx {
			d[i] = math.Inf(1)
		}
		return d
	}
	for _, f := range []func(o objectives) float64{
		func(o objectives) float64 { return o.cost },
		func(o objectives) float64 { return float64(o.params) },
	} {
		s := slices.Clone(idx)
		slices.SortStableFunc(s, func(a, b int) int {
			x, y := f(obj[a]), f(obj[b])
			switch {
			case x < y:
				return -1
			case x > y:
				return 1
			}
			return a - b
		})
		lo, hi := f(obj[s[0]]), f(obj[s[len(s)-1]])
		d[s[0]], d[s[len(s)-1]] = math.Inf(1), math.Inf(1)
		if hi == lo {
			continue
		}
		for k := 1; k < len(s)-1; k++ {
			d[s[k]] += (f(obj[s[k+1]]) - f(obj[s[k-1]])) / (hi - lo)
		}
	}
	return d
}
