package nls

import (
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/shears-ml/shears/data"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/train"
	"github.com/shears-ml/shears/transform/lora"
	"github.com/shears-ml/shears/transform/trainstep"
)

// ChooseBuckets picks the padded lengths of the step graphs from the padded lengths of every
// micro-batch of a run: all distinct lengths when there are at most k, else the k lengths that
// minimise Σ bucket(len) over the micro-batches (each padded to the smallest bucket that holds
// it), by dynamic programming over the sorted distinct lengths. The largest length is always a
// bucket.
func ChooseBuckets(lengths []int, k int) []int {
	count := map[int]int{}
	for _, l := range lengths {
		count[l]++
	}
	var ls []int
	for l := range count {
		ls = append(ls, l)
	}
	sort.Ints(ls)
	if len(ls) <= k {
		return ls
	}
	n := len(ls)
	// prefix[i] = micro-batches with length among ls[:i]
	prefix := make([]int64, n+1)
	for i, l := range ls {
		prefix[i+1] = prefix[i] + int64(count[l])
	}
	// cost[j][i]: best cost of covering ls[:i] with j buckets, the last one at ls[i-1].
	inf := int64(math.MaxInt64)
	cost := make([][]int64, k+1)
	from := make([][]int, k+1)
	for j := range cost {
		cost[j] = make([]int64, n+1)
		from[j] = make([]int, n+1)
		for i := range cost[j] {
			cost[j][i] = inf
		}
	}
	cost[0][0] = 0
	for j := 1; j <= k; j++ {
		for i := 1; i <= n; i++ {
			for p := j - 1; p < i; p++ { // the last bucket covers ls[p:i]
				if cost[j-1][p] == inf {
					continue
				}
				c := cost[j-1][p] + int64(ls[i-1])*(prefix[i]-prefix[p])
				if c < cost[j][i] {
					cost[j][i], from[j][i] = c, p
				}
			}
		}
	}
	var out []int
	for j, i := k, n; j > 0 && i > 0; j-- {
		out = append(out, ls[i-1])
		i = from[j][i]
	}
	slices.Reverse(out)
	return out
}

// bucketFor is the smallest bucket ≥ l.
func bucketFor(buckets []int, l int) (int, error) {
	i := sort.SearchInts(buckets, l)
	if i == len(buckets) {
		return 0, fmt.Errorf("nls: a micro-batch of %d tokens exceeds the largest bucket %d", l, buckets[len(buckets)-1])
	}
	return buckets[i], nil
}

// param is one trainable tensor and its optimizer state, owned by the engine.
type param struct {
	name    string
	dims    []int64
	value   []float32
	m, v    []float32
	acc     []float32
	version int // bumped on every update; runners hold a copy of some version
}

// engine runs micro-batches on per-length step graphs that share one set of parameters.
type engine struct {
	model   *onnx.Model // the train graph (dropout inputs when p > 0)
	meta    *lora.Meta
	micro   int
	opts    train.Options
	params  []*param
	byName  map[string]*param
	runners map[int]*runner
	order   []int // buckets in the order their runners were opened
	builds  int

	// Loss scaling (a float16 backward): one scaler for all buckets, handed to the runner of each
	// micro-batch; an overflow in any micro-batch skips the whole optimizer step.
	scaling  bool
	scaler   train.LossScaler
	overflow bool
	skipped  int // optimizer steps skipped for overflow (AdamW counts only the steps taken)
}

type runner struct {
	r        *train.Runner
	versions []int
}

func newEngine(model *onnx.Model, meta *lora.Meta, micro int, opts train.Options) (*engine, error) {
	e := &engine{model: model, meta: meta, micro: micro, opts: opts, byName: map[string]*param{}, runners: map[int]*runner{},
		scaler: opts.LossScaler}
	if e.scaler == (train.LossScaler{}) {
		e.scaler = train.DefaultLossScaler()
	}
	for _, mod := range meta.Modules {
		for _, name := range []string{mod.A, mod.B} {
			t := model.Initializer(name)
			if t == nil {
				return nil, fmt.Errorf("nls: module %s: the super-network has no initializer %q", mod.Name, name)
			}
			v, err := model.Float32s(t)
			if err != nil {
				return nil, fmt.Errorf("nls: module %s: %w", mod.Name, err)
			}
			n := len(v)
			p := &param{name: name, dims: onnx.Dims(t), value: v, m: make([]float32, n), v: make([]float32, n), acc: make([]float32, n)}
			e.params = append(e.params, p)
			e.byName[name] = p
		}
	}
	return e, nil
}

func (e *engine) trainable() []string {
	out := make([]string, len(e.params))
	for i, p := range e.params {
		out[i] = p.name
	}
	return out
}

// runnerFor returns (building on first use) the runner of padded length l.
func (e *engine) runnerFor(l int) (*runner, error) {
	if r, ok := e.runners[l]; ok {
		return r, nil
	}
	st, err := trainstep.Build(e.model, trainstep.Config{Batch: e.micro, Seq: l, Trainable: e.trainable()})
	if err != nil {
		return nil, fmt.Errorf("nls: step graph for length %d: %w", l, err)
	}
	tr, err := train.New(st, e.opts)
	if err != nil {
		return nil, fmt.Errorf("nls: step graph for length %d: %w", l, err)
	}
	e.scaling = e.scaling || tr.LossScaling()
	r := &runner{r: tr, versions: make([]int, len(e.params))}
	for i := range r.versions {
		r.versions[i] = -1
	}
	e.runners[l] = r
	e.order = append(e.order, l)
	e.builds++
	return r, nil
}

// microBatch runs one micro-batch with the given ranks (per group, Space order) and dropout
// position t, adds scale × its gradients to the accumulators, and returns its loss.
func (e *engine) microBatch(b data.Batch, ranks []int, space *lora.Space, seed uint64, t int, scale float64) (float64, error) {
	r, err := e.runnerFor(b.Len)
	if err != nil {
		return 0, err
	}
	for i, p := range e.params {
		if r.versions[i] == p.version {
			continue
		}
		dst, err := r.r.Param(p.name)
		if err != nil {
			return 0, err
		}
		copy(dst, p.value)
		r.versions[i] = p.version
	}
	for i, mask := range space.Masks {
		in, err := r.r.Input(mask)
		if err != nil {
			return 0, fmt.Errorf("nls: rank mask of group %s: %w", space.Groups[i], err)
		}
		copy(in.F32, lora.RankMask(space.RMax, ranks[i]))
	}
	if e.meta.Dropout > 0 {
		for _, mod := range e.meta.Modules {
			in, err := r.r.Input(mod.Dropout)
			if err != nil {
				return 0, fmt.Errorf("nls: dropout mask of module %s: %w", mod.Name, err)
			}
			KeepMask(in.F32, e.meta.Dropout, seed, t, mod.Name)
		}
	}
	if r.r.LossScaling() {
		if err := r.r.SetScaler(e.scaler); err != nil {
			return 0, err
		}
	}
	loss, err := r.r.Accumulate(b.IDs, b.Labels, scale)
	if err != nil {
		return 0, err
	}
	e.overflow = e.overflow || r.r.Overflowed()
	for _, p := range e.params {
		g, err := r.r.Grad(p.name)
		if err != nil {
			return 0, err
		}
		for k, x := range g {
			p.acc[k] += x
		}
	}
	r.r.ZeroGrad()
	return loss, nil
}

// apply clips the accumulated gradients to the global norm and takes AdamW step number step
// (1-based), as train.Runner.Apply does for a single runner. It returns the norm before
// clipping; a non-finite norm leaves the parameters unchanged and is an error.
//
// With loss scaling, a step whose scaled gradients overflowed is skipped: the accumulators are
// cleared, the scale halves, and skipped is true (norm 0).
func (e *engine) apply(lr float64, step int) (norm float64, skipped bool, err error) {
	if e.scaling {
		over := e.overflow
		e.overflow = false
		if e.scaler.Update(over) {
			for _, p := range e.params {
				clear(p.acc)
			}
			e.skipped++
			return 0, true, nil
		}
	}
	step -= e.skipped
	var s float64
	for _, p := range e.params {
		for _, x := range p.acc {
			s += float64(x) * float64(x)
		}
	}
	norm = math.Sqrt(s)
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		return norm, false, fmt.Errorf("nls: gradient norm is %v at step %d; parameters left unchanged", norm, step)
	}
	coef := float32(1)
	if c := e.opts.MaxGradNorm; c > 0 && c/(norm+1e-6) < 1 {
		coef = float32(c / (norm + 1e-6))
	}
	for _, p := range e.params {
		if coef != 1 {
			for k := range p.acc {
				p.acc[k] *= coef
			}
		}
		train.AdamWUpdate(e.opts.AdamW, p.value, p.acc, p.m, p.v, lr, step)
		clear(p.acc)
		p.version++
	}
	return norm, false, nil
}

func (e *engine) close() {
	for _, l := range e.order {
		e.runners[l].r.Close()
	}
	e.runners = map[int]*runner{}
	e.order = nil
}
