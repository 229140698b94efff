package nls

import (
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/shears-ml/shears/transform/merge"
)

// The search strategies (METHOD §5).
const (
	StrategyHeuristic = "heuristic"
	StrategyHillClimb = "hill-climb"
	StrategyEvolution = "evolution"
)

// Strategies lists the strategy names Search accepts.
func Strategies() []string { return []string{StrategyHeuristic, StrategyHillClimb, StrategyEvolution} }

// streamSearch keeps the search's generator apart from training's for the same seed.
const streamSearch = 0x736561726368 // "search"

// SearchOptions configure Search.
type SearchOptions struct {
	Strategy string
	// Budget is the most new configurations evaluated (cache hits are free). 0: the
	// strategy's default (DefaultBudget).
	Budget int
	Seed   uint64
	// Population is evolution's population size (0: Budget/20 within 4..16; LoNAS used 5–8
	// with 200 evaluations).
	Population int
	// MaxParams, when > 0, makes evolution pick the best metric among the front's
	// configurations with at most that many active adapter parameters.
	MaxParams int64
}

// DefaultBudget is the evaluation budget of a strategy when none is given: 1 for the heuristic,
// 100 for hill-climbing, 200 for evolution (LoNAS's num_evals).
func DefaultBudget(strategy string) int {
	switch strategy {
	case StrategyHillClimb:
		return 100
	case StrategyEvolution:
		return 200
	}
	return 1
}

// SearchResult is what a search found.
type SearchResult struct {
	Strategy string
	Metric   Metric
	Budget   int
	Best     Evaluation
	// Heuristic is the evaluation of the middle-rank configuration (every strategy scores it).
	Heuristic Evaluation
	// Path is hill-climbing's trajectory: the start and each accepted move.
	Path []Evaluation
	// Front is evolution's Pareto front over every configuration it evaluated (metric vs
	// adapter parameters), by parameters ascending.
	Front []Evaluation
	// Evaluations is every configuration scored, in order.
	Evaluations []Evaluation
	// Generations run by evolution.
	Generations int
	// Stop says why the search ended: "heuristic", "local optimum", "budget", "no new configurations".
	Stop string
}

// Selection is the result as CONFIG.json (merge.Selection).
func (r *SearchResult) Selection() *merge.Selection {
	return &merge.Selection{Ranks: r.Best.RankMap, Strategy: r.Strategy,
		Metric: &merge.Metric{Name: r.Metric.Name, Value: r.Best.Value}, Params: r.Best.Params}
}

// Search runs one strategy on an evaluator:
//
//   - heuristic: index (n−1)/2 of the descending rank list for every group (METHOD §5), scored
//     once for the report.
//   - hill-climb: from the heuristic, first-improvement local search. The neighbours of a
//     configuration move one group one step up or down the rank list; they are tried in an
//     order drawn from the seed, and the first one that is better (a strictly better metric, or
//     the same metric with fewer parameters) becomes the current configuration. It stops at a
//     configuration no neighbour improves (a local optimum) or when the budget is spent, and
//     never returns anything worse than its start. First-improvement rather than best: a step
//     costs one evaluation when an improvement is near instead of 2·groups.
//   - evolution: NSGA-II over (metric, active adapter parameters). The first population is the
//     maximal, heuristic and minimal configurations (LoNAS scores max and heuristic first) and
//     uniform random ones; each generation breeds a population of children (binary tournament
//     on front rank and crowding distance, uniform crossover, each gene moved one rank step with
//     probability 1/groups, at least one), and keeps the best of parents and children by front
//     rank then crowding. The front returned is non-dominated over every evaluation; the pick
//     is its best metric (among configurations within MaxParams when set).
func Search(e *Evaluator, o SearchOptions) (*SearchResult, error) {
	if o.Budget == 0 {
		o.Budget = DefaultBudget(o.Strategy)
	}
	if o.Budget < 1 {
		return nil, fmt.Errorf("nls: search: budget %d: need at least 1 evaluation", o.Budget)
	}
	res := &SearchResult{Strategy: o.Strategy, Metric: e.Metric, Budget: o.Budget}
	s := &searcher{e: e, budget: o.Budget, runs0: e.Runs}
	var err error
	switch o.Strategy {
	case StrategyHeuristic:
		e.Phase = "heuristic"
		res.Heuristic, err = e.Evaluate(s.heuristic())
		res.Best, res.Stop = res.Heuristic, "heuristic"
	case StrategyHillClimb:
		err = s.hillClimb(res, o.Seed)
	case StrategyEvolution:
		err = s.evolution(res, o)
	default:
		return nil, fmt.Errorf("nls: search: unknown strategy %q (want %v)", o.Strategy, Strategies())
	}
	if err != nil {
		return nil, err
	}
	res.Evaluations = e.Evaluations()
	return res, nil
}

type searcher struct {
	e      *Evaluator
	budget int
	runs0  int
}

func (s *searcher) spent() int { return s.e.Runs - s.runs0 }

// canEvaluate: a cached configuration is free; a new one needs budget left.
func (s *searcher) canEvaluate(ranks []int) bool { return s.e.Cached(ranks) || s.spent() < s.budget }

func (s *searcher) heuristic() []int { return s.e.Space.Uniform(s.e.Space.HeuristicRank()) }

// improves: strictly better metric, or the same metric with fewer parameters.
func (s *searcher) improves(a, b Evaluation) bool {
	m := s.e.Metric
	return m.Better(a.Value, b.Value) || (a.Value == b.Value && a.Params < b.Params)
}

// index of each rank in the descending rank list.
func (s *searcher) rankIndex(r int) int { return slices.Index(s.e.Space.Ranks, r) }

func (s *searcher) hillClimb(res *SearchResult, seed uint64) error {
	sp := s.e.Space
	s.e.Phase = "heuristic"
	cur, err := s.e.Evaluate(s.heuristic())
	if err != nil {
		return err
	}
	res.Heuristic, res.Path = cur, []Evaluation{cur}
	type move struct{ g, d int }
	var moves []move
	for g := range sp.Groups {
		moves = append(moves, move{g, -1}, move{g, +1})
	}
	s.e.Phase = "neighbour"
	for step := 0; ; step++ {
		rng := rand.New(rand.NewPCG(seed^streamSearch, uint64(step)))
		rng.Shuffle(len(moves), func(i, j int) { moves[i], moves[j] = moves[j], moves[i] })
		improved := false
		for _, mv := range moves {
			k := s.rankIndex(cur.Ranks[mv.g]) + mv.d
			if k < 0 || k >= len(sp.Ranks) {
				continue
			}
			nb := slices.Clone(cur.Ranks)
			nb[mv.g] = sp.Ranks[k]
			if !s.canEvaluate(nb) {
				res.Best, res.Stop = cur, "budget"
				return nil
			}
			ev, err := s.e.Evaluate(nb)
			if err != nil {
				return err
			}
			if s.improves(ev, cur) {
				cur, improved = ev, true
				res.Path = append(res.Path, ev)
				break
			}
		}
		if !improved {
			res.Best, res.Stop = cur, "local optimum"
			return nil
		}
	}
}

func (s *searcher) evolution(res *SearchResult, o SearchOptions) error {
	sp := s.e.Space
	n := len(sp.Groups)
	pop := o.Population
	if pop == 0 {
		pop = min(max(o.Budget/20, 4), 16)
	}
	if pop < 2 {
		return fmt.Errorf("nls: search: population %d: need at least 2", pop)
	}
	rng := rand.New(rand.NewPCG(o.Seed^streamSearch, 1<<32))
	var parents []Evaluation
	add := func(ranks []int, phase string) (bool, error) {
		if !s.canEvaluate(ranks) {
			return false, nil
		}
		s.e.Phase = phase
		ev, err := s.e.Evaluate(ranks)
		if err != nil {
			return false, err
		}
		if phase == "heuristic" {
			res.Heuristic = ev
		}
		for _, p := range parents {
			if ConfigKey(p.Ranks) == ConfigKey(ev.Ranks) {
				return true, nil
			}
		}
		parents = append(parents, ev)
		return true, nil
	}
	seeds := [][]int{sp.Uniform(sp.Ranks[0]), s.heuristic(), sp.Uniform(sp.Ranks[len(sp.Ranks)-1])}
	for i, r := range seeds {
		if _, err := add(r, []string{"max", "heuristic", "min"}[i]); err != nil {
			return err
		}
	}
	for tries := 0; len(parents) < pop && tries < 50*pop && s.spent() < s.budget; tries++ {
		r := make([]int, n)
		for g := range r {
			r[g] = sp.Ranks[rng.IntN(len(sp.Ranks))]
		}
		if s.e.Cached(r) {
			continue
		}
		if _, err := add(r, "random"); err != nil {
			return err
		}
	}
	res.Stop = "budget"
	for gen := 1; s.spent() < s.budget; gen++ {
		obj := make([]objectives, len(parents))
		for i, p := range parents {
			obj[i] = objOf(s.e.Metric, p)
		}
		rank := nondominatedSort(obj)
		crowd := crowdingAll(obj, rank)
		pick := func() Evaluation { // binary tournament
			a, b := rng.IntN(len(parents)), rng.IntN(len(parents))
			if rank[b] < rank[a] || (rank[b] == rank[a] && crowd[b] > crowd[a]) {
				a = b
			}
			return parents[a]
		}
		var children []Evaluation
		fresh := 0
		for c := 0; c < pop && s.spent() < s.budget; c++ {
			var child []int
			for try := 0; try < 20; try++ {
				p, q := pick(), pick()
				child = make([]int, n)
				for g := range child {
					child[g] = p.Ranks[g]
					if rng.IntN(2) == 1 {
						child[g] = q.Ranks[g]
					}
				}
				s.mutate(child, rng)
				if !s.e.Cached(child) {
					break
				}
			}
			if !s.e.Cached(child) {
				fresh++
			}
			s.e.Phase = fmt.Sprintf("generation %d", gen)
			ev, err := s.e.Evaluate(child)
			if err != nil {
				return err
			}
			children = append(children, ev)
		}
		res.Generations = gen
		parents = survivors(s.e.Metric, append(parents, children...), pop)
		if fresh == 0 {
			res.Stop = "no new configurations"
			break
		}
	}
	res.Front = ParetoFront(s.e.Metric, s.e.Evaluations())
	best := -1
	for i, f := range res.Front {
		if o.MaxParams > 0 && f.Params > o.MaxParams {
			continue
		}
		if best < 0 || s.improves(f, res.Front[best]) {
			best = i
		}
	}
	if best < 0 {
		return fmt.Errorf("nls: search: no evaluated configuration has at most %d adapter parameters (the smallest front point has %d)", o.MaxParams, res.Front[0].Params)
	}
	res.Best = res.Front[best]
	return nil
}

// mutate moves each gene one rank step (up or down, staying in the list) with probability
// 1/len, and at least one gene.
func (s *searcher) mutate(r []int, rng *rand.Rand) {
	sp := s.e.Space
	if len(sp.Ranks) < 2 {
		return
	}
	step := func(g int) {
		k := s.rankIndex(r[g])
		switch {
		case k == 0:
			k = 1
		case k == len(sp.Ranks)-1:
			k--
		case rng.IntN(2) == 0:
			k--
		default:
			k++
		}
		r[g] = sp.Ranks[k]
	}
	moved := false
	for g := range r {
		if rng.IntN(len(r)) == 0 {
			step(g)
			moved = true
		}
	}
	if !moved {
		step(rng.IntN(len(r)))
	}
}

// crowdingAll is the crowding distance of every point within its own front.
func crowdingAll(obj []objectives, rank []int) []float64 {
	fronts := map[int][]int{}
	for i, r := range rank {
		fronts[r] = append(fronts[r], i)
	}
	out := make([]float64, len(obj))
	for _, idx := range fronts {
		for i, d := range crowding(obj, idx) {
			out[i] = d
		}
	}
	return out
}

// survivors keeps k distinct configurations of pool: by front rank, then by crowding distance
// (larger first), then by order of evaluation.
func survivors(m Metric, pool []Evaluation, k int) []Evaluation {
	var uniq []Evaluation
	seen := map[string]bool{}
	for _, p := range pool {
		if key := ConfigKey(p.Ranks); !seen[key] {
			seen[key] = true
			uniq = append(uniq, p)
		}
	}
	obj := make([]objectives, len(uniq))
	for i, p := range uniq {
		obj[i] = objOf(m, p)
	}
	rank := nondominatedSort(obj)
	crowd := crowdingAll(obj, rank)
	idx := make([]int, len(uniq))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case rank[a] != rank[b]:
			return rank[a] - rank[b]
		case crowd[a] > crowd[b]:
			return -1
		case crowd[a] < crowd[b]:
			return 1
		}
		return uniq[a].Index - uniq[b].Index
	})
	out := make([]Evaluation, 0, k)
	for _, i := range idx[:min(k, len(idx))] {
		out = append(out, uniq[i])
	}
	return out
}
