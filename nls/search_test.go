package nls

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/shears-ml/shears/data"
	"github.com/shears-ml/shears/eval"
	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/tokenizer"
	"github.com/shears-ml/shears/transform/lora"
	"github.com/shears-ml/shears/transform/merge"
	"google.golang.org/protobuf/proto"
)

// searchRun is a Run without training: the stories260K super-network (magnitude 50%, ranks
// 8,6,4, alpha 16) with every B set to seeded random values, so that every rank of every group
// changes the function. It also returns 16 math_data.json validation sequences (cutoff 96).
func searchRun(t *testing.T) (*Run, []data.Sequence, tokenizer.Tokenizer) {
	t.Helper()
	testkit.ORT(t)
	dir := t.TempDir()
	_, super := superNet(t, dir, 0)
	m, err := onnx.Load(super)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	meta, err := lora.ReadConfig(m)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for _, mod := range meta.Modules {
		b := m.Initializer(mod.B)
		v := make([]float32, len(b.GetRawData())/4)
		for i := range v {
			v[i] = float32(0.05 * rng.NormFloat64())
		}
		if err := onnx.SetFloat32s(b, v); err != nil {
			t.Fatal(err)
		}
	}
	sp, err := meta.Space(nil)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(tokPath(t))
	if err != nil {
		t.Fatal(err)
	}
	val := subset(t, dir, "data/llm-adapters/math_data.json", 3000, 16)
	seqs, err := data.TrainSequences(val, tok, data.TrainOptions{Cutoff: 96, TrainOnInputs: true})
	if err != nil {
		t.Fatal(err)
	}
	return &Run{Model: m, Meta: meta, Space: sp}, seqs, tok
}

func lossEvaluator(t *testing.T, r *Run, seqs []data.Sequence, tok tokenizer.Tokenizer) *Evaluator {
	t.Helper()
	e, err := NewLossEvaluator(r, seqs, EvalOptions{Batch: 8, Pad: tok.Pad(), Runtime: runtime.Options{Threads: 2}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// One stories260K super-network serves every check of the real evaluator.
func TestSearchOnStories(t *testing.T) {
	r, seqs, tok := searchRun(t)
	sp := r.Space
	mixed := make([]int, len(sp.Groups))
	for i := range mixed {
		mixed[i] = sp.Ranks[i%len(sp.Ranks)]
	}

	t.Run("loss equals the exported model's", func(t *testing.T) {
		e := lossEvaluator(t, r, seqs, tok)
		for _, ranks := range [][]int{mixed, sp.Uniform(8)} {
			ev, err := e.Evaluate(ranks)
			if err != nil {
				t.Fatal(err)
			}
			// Independent path: the sliced export (no rank-mask inputs), each sequence alone
			// and unpadded, next-token NLL in float64 by eval.WindowNLL.
			sub, _, err := merge.Export(r.Model, sp.Map(ranks), merge.None)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := sub.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			s, err := runtime.OpenBytes(raw, sub.Dir, runtime.Options{Threads: 2})
			if err != nil {
				t.Fatal(err)
			}
			var sum float64
			var n int
			for _, q := range seqs {
				v, c, err := eval.WindowNLL(s, [][]int{q.IDs})
				if err != nil {
					t.Fatal(err)
				}
				sum, n = sum+v, n+c
			}
			s.Close()
			want := sum / float64(n)
			t.Logf("ranks %s: evaluator %.7f, exported model %.7f (%d tokens), %.3fs", ConfigKey(ranks), ev.Value, want, n, ev.Seconds)
			if !(math.Abs(ev.Value-want) <= 1e-5) {
				t.Fatalf("ranks %s: evaluator loss %.7f, exported model %.7f", ConfigKey(ranks), ev.Value, want)
			}
		}
	})

	t.Run("dropout inputs are fed ones", func(t *testing.T) {
		want, err := lossEvaluator(t, r, seqs, tok).Evaluate(mixed)
		if err != nil {
			t.Fatal(err)
		}
		m := &onnx.Model{Proto: proto.Clone(r.Model.Proto).(*onnxpb.ModelProto), Dir: r.Model.Dir}
		if err := lora.AddDropout(m); err != nil {
			t.Fatal(err)
		}
		meta, err := lora.ReadConfig(m)
		if err != nil || !meta.Train {
			t.Fatalf("train graph: %v", err)
		}
		got, err := lossEvaluator(t, &Run{Model: m, Meta: meta, Space: sp}, seqs, tok).Evaluate(mixed)
		if err != nil {
			t.Fatal(err)
		}
		if !(math.Abs(got.Value-want.Value) <= 1e-6) {
			t.Fatalf("train graph %.7f, inference graph %.7f", got.Value, want.Value)
		}
	})

	t.Run("cache", func(t *testing.T) {
		e := lossEvaluator(t, r, seqs, tok)
		calls := 0
		inner := e.score
		e.score = func(m lora.Ranks) (float64, error) { calls++; return inner(m) }
		a, err := e.Evaluate(mixed)
		if err != nil {
			t.Fatal(err)
		}
		b, err := e.Evaluate(slices.Clone(mixed))
		if err != nil {
			t.Fatal(err)
		}
		c, err := e.Evaluate(sp.Uniform(4))
		if err != nil {
			t.Fatal(err)
		}
		if calls != 2 || e.Runs != 2 || a.Value != b.Value || a.Index != b.Index || c.Index != 1 || len(e.Evaluations()) != 2 {
			t.Fatalf("session passes %d, runs %d, values %v %v, indices %d %d %d", calls, e.Runs, a.Value, b.Value, a.Index, b.Index, c.Index)
		}
		if want := r.Meta.Params(sp.Map(sp.Uniform(4))); c.Params != want || want == 0 {
			t.Fatalf("params %d, want %d", c.Params, want)
		}
		if _, err := e.Evaluate(sp.Uniform(5)); err == nil {
			t.Fatal("rank 5 (outside 8,6,4) was scored")
		}
	})

	t.Run("hill-climb never worse than its start", func(t *testing.T) {
		for _, seed := range []uint64{1, 2, 3} {
			e := lossEvaluator(t, r, seqs, tok)
			res, err := Search(e, SearchOptions{Strategy: StrategyHillClimb, Budget: 12, Seed: seed})
			if err != nil {
				t.Fatal(err)
			}
			h := res.Heuristic
			if h.Index != 0 || !slices.Equal(h.Ranks, sp.Uniform(6)) {
				t.Fatalf("seed %d: the start is %s (index %d), not the heuristic", seed, ConfigKey(h.Ranks), h.Index)
			}
			if res.Best.Value > h.Value || e.Runs > 12 {
				t.Fatalf("seed %d: best %.5f worse than the start %.5f (%d runs)", seed, res.Best.Value, h.Value, e.Runs)
			}
			for i := 1; i < len(res.Path); i++ {
				a, b := res.Path[i-1], res.Path[i]
				steps := 0
				for g := range a.Ranks {
					d := slices.Index(sp.Ranks, a.Ranks[g]) - slices.Index(sp.Ranks, b.Ranks[g])
					steps += max(d, -d)
				}
				if steps != 1 || b.Value > a.Value {
					t.Fatalf("seed %d: move %d changes %d rank steps, %.5f → %.5f", seed, i, steps, a.Value, b.Value)
				}
			}
			t.Logf("seed %d: heuristic %.5f → %.5f after %d moves, %d evaluations (%s); params %d → %d",
				seed, h.Value, res.Best.Value, len(res.Path)-1, e.Runs, res.Stop, h.Params, res.Best.Params)
		}
	})

	t.Run("evolution", func(t *testing.T) {
		e := lossEvaluator(t, r, seqs, tok)
		res, err := Search(e, SearchOptions{Strategy: StrategyEvolution, Budget: 24, Population: 4, Seed: 5})
		if err != nil {
			t.Fatal(err)
		}
		evs := res.Evaluations
		if e.Runs != 24 || len(evs) != 24 || res.Generations < 5 {
			t.Fatalf("%d runs, %d evaluations, %d generations", e.Runs, len(evs), res.Generations)
		}
		if !slices.Equal(evs[0].Ranks, sp.Uniform(8)) || !slices.Equal(evs[1].Ranks, sp.Uniform(6)) || evs[1].Index != res.Heuristic.Index {
			t.Fatalf("first evaluations %s, %s: want max then heuristic", ConfigKey(evs[0].Ranks), ConfigKey(evs[1].Ranks))
		}
		checkFront(t, res.Metric, res.Front, evs)
		inFront := slices.ContainsFunc(res.Front, func(f Evaluation) bool { return f.Index == res.Best.Index })
		best := slices.MinFunc(evs, func(a, b Evaluation) int { return cmp.Compare(a.Value, b.Value) })
		if !inFront || res.Best.Value != best.Value {
			t.Fatalf("pick %.5f (in front %v), best evaluated %.5f", res.Best.Value, inFront, best.Value)
		}
		t.Logf("evolution: %d generations, front of %d; max %.5f, heuristic %.5f, best %.5f at %d params (max %d)",
			res.Generations, len(res.Front), evs[0].Value, evs[1].Value, res.Best.Value, res.Best.Params, evs[0].Params)

	})
}

// checkFront: no evaluation dominates a front point, and every evaluation off the front is
// dominated by (or equal in both objectives to) a front point.
func checkFront(t *testing.T, m Metric, front, all []Evaluation) {
	t.Helper()
	if len(front) == 0 {
		t.Fatal("empty front")
	}
	on := map[int]bool{}
	for _, f := range front {
		on[f.Index] = true
		for _, e := range all {
			if Dominates(m, e, f) {
				t.Fatalf("front point %d (%.5f, %d) is dominated by %d (%.5f, %d)", f.Index, f.Value, f.Params, e.Index, e.Value, e.Params)
			}
		}
	}
	for _, e := range all {
		if on[e.Index] {
			continue
		}
		if !slices.ContainsFunc(front, func(f Evaluation) bool {
			return Dominates(m, f, e) || (f.Value == e.Value && f.Params == e.Params)
		}) {
			t.Fatalf("evaluation %d (%.5f, %d) is neither on nor behind the front", e.Index, e.Value, e.Params)
		}
	}
}

// fakeSpace is a space of g groups over ranks, with a Meta whose modules make a group of rank r
// cost r·(in+out) = r·100 parameters.
func fakeSpace(t *testing.T, g int, ranks []int) (*lora.Space, *lora.Meta) {
	t.Helper()
	meta := &lora.Meta{Ranks: ranks, RMax: ranks[0]}
	for i := 0; i < g; i++ {
		name := "layers." + string(rune('0'+i)) + ".qkv"
		meta.Groups = append(meta.Groups, lora.Group{Name: name, Mask: "mask." + name})
		meta.Modules = append(meta.Modules, lora.Module{Name: name, Group: name, In: 60, Out: 40})
	}
	sp, err := meta.Space(nil)
	if err != nil {
		t.Fatal(err)
	}
	return sp, meta
}

// The heuristic is index (n−1)/2 of the descending rank list: 24 of 32,24,16 (the reference's
// space) and 6 of 8,6,4, with one evaluation.
func TestHeuristicStrategy(t *testing.T) {
	for _, c := range []struct{ ranks []int }{{[]int{32, 24, 16}}, {[]int{8, 6, 4}}, {[]int{16, 12, 8, 4}}} {
		sp, meta := fakeSpace(t, 4, c.ranks)
		calls := 0
		e := NewEvaluator(sp, meta, MetricLoss, func(m lora.Ranks) (float64, error) { calls++; return 1, nil })
		res, err := Search(e, SearchOptions{Strategy: StrategyHeuristic})
		if err != nil {
			t.Fatal(err)
		}
		want := map[int]int{32: 24, 8: 6, 16: 12}[c.ranks[0]]
		if !slices.Equal(res.Best.Ranks, sp.Uniform(want)) || calls != 1 || res.Best.Params != int64(4*want*100) {
			t.Fatalf("ranks %v: heuristic %v (%d params), %d evaluations", c.ranks, res.Best.Ranks, res.Best.Params, calls)
		}
		sel := res.Selection()
		if sel.Strategy != "heuristic" || sel.Metric.Name != "val_loss" || sel.Ranks["layers.0.qkv"] != want || sel.Params != res.Best.Params {
			t.Fatalf("selection %+v", sel)
		}
	}
}

// On a separable score (each group's rank index against a target), hill-climbing reaches the
// optimum, moving one step at a time, and never evaluates more than its budget.
func TestHillClimbSeparable(t *testing.T) {
	sp, meta := fakeSpace(t, 6, []int{32, 24, 16})
	target := []int{32, 16, 16, 24, 32, 16}
	score := func(m lora.Ranks) (float64, error) {
		var s float64
		for i, g := range sp.Groups {
			d := float64(m[g]-target[i]) / 8
			s += d * d
		}
		return s, nil
	}
	e := NewEvaluator(sp, meta, MetricLoss, score)
	res, err := Search(e, SearchOptions{Strategy: StrategyHillClimb, Budget: 100, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Best.Ranks, target) || res.Best.Value != 0 || res.Stop != "local optimum" || len(res.Path) != 6 {
		t.Fatalf("best %v (%.1f) after %d moves, stop %q", res.Best.Ranks, res.Best.Value, len(res.Path)-1, res.Stop)
	}
	// With a budget of 4 it stops early, still no worse than the heuristic.
	e = NewEvaluator(sp, meta, MetricLoss, score)
	res, err = Search(e, SearchOptions{Strategy: StrategyHillClimb, Budget: 4, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if e.Runs != 4 || res.Stop != "budget" || res.Best.Value > res.Heuristic.Value {
		t.Fatalf("budget 4: %d runs, stop %q, %.1f vs %.1f", e.Runs, res.Stop, res.Best.Value, res.Heuristic.Value)
	}
	// Accuracy (higher is better) climbs the other way.
	e = NewEvaluator(sp, meta, MetricAccuracy, func(m lora.Ranks) (float64, error) { v, _ := score(m); return -v, nil })
	if res, err = Search(e, SearchOptions{Strategy: StrategyHillClimb, Budget: 100, Seed: 4}); err != nil || !slices.Equal(res.Best.Ranks, target) {
		t.Fatalf("accuracy: %v, %v", res.Best.Ranks, err)
	}
}

// A hand-made two-objective set: the front, the NSGA-II ranks and the crowding distances.
func TestParetoByHand(t *testing.T) {
	pts := []objectives{{1, 300}, {2, 200}, {3, 100}, {2.5, 250}, {3, 300}, {1, 400}}
	if got := nondominatedSort(pts); !slices.Equal(got, []int{0, 0, 0, 1, 2, 1}) {
		t.Fatalf("ranks %v", got)
	}
	d := crowding(pts, []int{0, 1, 2})
	// Middle point: cost gap (3−1)/(3−1) = 1 plus params gap (300−100)/(300−100) = 1.
	if !math.IsInf(d[0], 1) || !math.IsInf(d[2], 1) || d[1] != 2 {
		t.Fatalf("crowding %v", d)
	}
	var evs []Evaluation
	for i, p := range pts {
		evs = append(evs, Evaluation{Index: i, Ranks: []int{i}, Value: p.cost, Params: p.params})
	}
	front := ParetoFront(MetricLoss, evs)
	var idx []int
	for _, f := range front {
		idx = append(idx, f.Index)
	}
	if !slices.Equal(idx, []int{2, 1, 0}) {
		t.Fatalf("front %v", idx)
	}
	// As accuracies (higher better) the front is different: 3 at 100 params dominates all.
	front = ParetoFront(MetricAccuracy, evs)
	if len(front) != 1 || front[0].Index != 2 {
		t.Fatalf("accuracy front %+v", front)
	}
	if s := survivors(MetricLoss, append(evs, evs[0]), 4); len(s) != 4 || s[0].Index != 0 || s[1].Index != 2 || s[2].Index != 1 || s[3].Index != 3 {
		t.Fatalf("survivors %+v", s)
	}
}

// Evolution on a fake score: the front is non-dominated, seeded with max and heuristic, and
// --max-params picks within the limit.
func TestEvolutionFake(t *testing.T) {
	sp, meta := fakeSpace(t, 5, []int{32, 24, 16})
	score := func(m lora.Ranks) (float64, error) { // more rank, lower loss, diminishing
		var s float64
		for i, g := range sp.Groups {
			s += float64(i+1) / float64(m[g])
		}
		return s, nil
	}
	e := NewEvaluator(sp, meta, MetricLoss, score)
	limit := int64(5 * 24 * 100)
	res, err := Search(e, SearchOptions{Strategy: StrategyEvolution, Budget: 60, Seed: 9, MaxParams: limit})
	if err != nil {
		t.Fatal(err)
	}
	evs := res.Evaluations
	if len(evs) != 60 || ConfigKey(evs[0].Ranks) != ConfigKey(sp.Uniform(32)) || ConfigKey(evs[1].Ranks) != ConfigKey(sp.Uniform(24)) || ConfigKey(evs[2].Ranks) != ConfigKey(sp.Uniform(16)) {
		t.Fatalf("%d evaluations, first %v %v %v", len(evs), evs[0].Ranks, evs[1].Ranks, evs[2].Ranks)
	}
	checkFront(t, MetricLoss, res.Front, evs)
	// The pick is the best evaluated configuration within the limit (the heuristic is one).
	for _, ev := range evs {
		if ev.Params <= limit && ev.Value < res.Best.Value {
			t.Fatalf("pick %v (%.4f) but %v scored %.4f within %d params", res.Best.Ranks, res.Best.Value, ev.Ranks, ev.Value, limit)
		}
	}
	if res.Best.Params > limit || res.Best.Value > res.Heuristic.Value {
		t.Fatalf("pick %d params %.4f; heuristic %.4f", res.Best.Params, res.Best.Value, res.Heuristic.Value)
	}
	t.Logf("front %d points after %d generations; pick %v %.4f vs heuristic %.4f", len(res.Front), res.Generations, res.Best.Ranks, res.Best.Value, res.Heuristic.Value)
	// The same seed replays the same search; another seed does not.
	again, err := Search(NewEvaluator(sp, meta, MetricLoss, score), SearchOptions{Strategy: StrategyEvolution, Budget: 60, Seed: 9, MaxParams: limit})
	if err != nil {
		t.Fatal(err)
	}
	other, err := Search(NewEvaluator(sp, meta, MetricLoss, score), SearchOptions{Strategy: StrategyEvolution, Budget: 60, Seed: 10, MaxParams: limit})
	if err != nil {
		t.Fatal(err)
	}
	same, differ := true, false
	for i := range evs {
		same = same && ConfigKey(again.Evaluations[i].Ranks) == ConfigKey(evs[i].Ranks)
		differ = differ || ConfigKey(other.Evaluations[i].Ranks) != ConfigKey(evs[i].Ranks)
	}
	if !same || !differ {
		t.Fatalf("seed 9 twice: same %v; seed 10 differs %v", same, differ)
	}
	if _, err := Search(NewEvaluator(sp, meta, MetricLoss, score), SearchOptions{Strategy: StrategyEvolution, Budget: 10, MaxParams: 10}); err == nil {
		t.Fatal("max-params below every configuration was accepted")
	}
	if _, err := Search(e, SearchOptions{Strategy: "random"}); err == nil {
		t.Fatal("unknown strategy accepted")
	}
}

// The one-session accuracy path (rank masks held fixed) scores each item exactly as the
// sliced export of that configuration does.
func TestAccuracyOneSessionMatchesExport(t *testing.T) {
	r, _, tok := searchRun(t)
	task, err := eval.LookupTask("boolq")
	if err != nil {
		t.Fatal(err)
	}
	items, err := eval.ReadItems(testkit.Dataset(t, "boolq-test.json"))
	if err != nil {
		t.Fatal(err)
	}
	items = items[:6]
	raw, err := r.Model.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	super, err := runtime.OpenBytes(raw, r.Model.Dir, runtime.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer super.Close()
	for _, ranks := range []map[string]int{r.Space.Heuristic(), r.Meta.Uniform(r.Meta.Ranks[len(r.Meta.Ranks)-1])} {
		masks, err := r.Meta.Masks(ranks)
		if err != nil {
			t.Fatal(err)
		}
		fixed := map[string]*runtime.Tensor{}
		for name, m := range masks {
			fixed[name] = runtime.F32([]int64{int64(len(m))}, m)
		}
		masked := eval.WithInputs(super, fixed)
		sub, _, err := merge.Export(r.Model, ranks, merge.None)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := sub.Marshal()
		exp, err := runtime.OpenBytes(b, r.Model.Dir, runtime.Options{Threads: 2})
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			a, err1 := eval.ChoiceItem(masked, tok, task, it, eval.ChoiceConfig{})
			e, err2 := eval.ChoiceItem(exp, tok, task, it, eval.ChoiceConfig{})
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			if a.Prediction != e.Prediction || !(math.Abs(a.Candidates[0].Sum-e.Candidates[0].Sum) <= 1e-4) {
				t.Errorf("ranks %v: masked %+v, export %+v", ranks, a, e)
			}
		}
		exp.Close()
	}
}
