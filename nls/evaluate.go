package nls

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shears-ml/shears/data"
	"github.com/shears-ml/shears/eval"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/tokenizer"
	"github.com/shears-ml/shears/transform/lora"
	"github.com/shears-ml/shears/transform/merge"
	"github.com/shears-ml/shears/transform/quant"
	"github.com/shears-ml/shears/transform/trainstep"
	"google.golang.org/protobuf/proto"
)

// Metric names a search's validation score and its direction.
type Metric struct {
	Name   string // written to CONFIG.json's "metric.name"
	Higher bool   // true when a higher value is better (accuracy), false for a loss
}

// The validation metrics a search can use.
var (
	MetricLoss     = Metric{Name: "val_loss"}
	MetricAccuracy = Metric{Name: "val_accuracy", Higher: true}
)

// Better reports whether a is strictly better than b under m.
func (m Metric) Better(a, b float64) bool {
	if m.Higher {
		return a > b
	}
	return a < b
}

// cost is the metric as a value to minimise (the search's first objective).
func (m Metric) cost(v float64) float64 {
	if m.Higher {
		return -v
	}
	return v
}

// Evaluation is one scored configuration: a line of search.jsonl.
type Evaluation struct {
	Index   int        `json:"index"` // 0-based order of first evaluation
	Ranks   []int      `json:"-"`     // per group, in Space.Groups order
	RankMap lora.Ranks `json:"ranks"`
	Metric  string     `json:"metric"`
	Value   float64    `json:"value"`
	Params  int64      `json:"adapter_params"`
	Seconds float64    `json:"seconds"`
	// Phase says why the search asked for it ("heuristic", "max", "neighbour", "generation 3", ...).
	Phase string `json:"phase,omitempty"`
}

// Run is a trained super-network in memory, what the evaluators score: the graph with the
// trained A and B in place, its lora metadata and the rank space the run sampled
// (pipeline.OpenRun loads one from a run directory).
type Run struct {
	Model *onnx.Model
	Meta  *lora.Meta
	Space *lora.Space
}

// ConfigKey is the canonical cache key of a configuration: its ranks in group order.
func ConfigKey(ranks []int) string {
	var b strings.Builder
	for i, r := range ranks {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(r))
	}
	return b.String()
}

// Evaluator scores configurations and remembers every score: asking again for a configuration
// returns the stored Evaluation without running anything (a search revisits configurations
// often, and the budget counts only new ones).
type Evaluator struct {
	Space  *lora.Space
	Metric Metric
	// Runs counts the configurations actually scored (cache misses).
	Runs int
	// Phase is recorded in the next new evaluations (set by the strategies).
	Phase string
	// OnEval, when set, is called after each new evaluation (progress bars).
	OnEval func(Evaluation)

	meta   *lora.Meta
	score  func(ranks lora.Ranks) (float64, error)
	cache  map[string]int // key → index into log
	log    []Evaluation
	closer func() error
}

// NewEvaluator wraps a scoring function (the metric of a configuration given as rank per group)
// with the cache and the log. NewLossEvaluator and NewAccuracyEvaluator are the two built in.
func NewEvaluator(space *lora.Space, meta *lora.Meta, metric Metric, score func(ranks lora.Ranks) (float64, error)) *Evaluator {
	return &Evaluator{Space: space, Metric: metric, meta: meta, score: score, cache: map[string]int{}}
}

// Params is the active adapter parameter count of a configuration (merge.Params).
func (e *Evaluator) Params(ranks []int) int64 { return e.meta.Params(e.Space.Map(ranks)) }

// Evaluate scores ranks (group order), from the cache when it was scored before.
func (e *Evaluator) Evaluate(ranks []int) (Evaluation, error) {
	if len(ranks) != len(e.Space.Groups) {
		return Evaluation{}, fmt.Errorf("nls: evaluate: %d ranks for %d groups", len(ranks), len(e.Space.Groups))
	}
	key := ConfigKey(ranks)
	if i, ok := e.cache[key]; ok {
		return e.log[i], nil
	}
	for i, r := range ranks {
		if !slices.Contains(e.Space.Ranks, r) {
			return Evaluation{}, fmt.Errorf("nls: evaluate: group %s: rank %d is not in the search space %v", e.Space.Groups[i], r, e.Space.Ranks)
		}
	}
	m := e.Space.Map(ranks)
	start := time.Now()
	v, err := e.score(m)
	if err != nil {
		return Evaluation{}, err
	}
	if math.IsNaN(v) {
		return Evaluation{}, fmt.Errorf("nls: evaluate: %s is NaN for ranks %s", e.Metric.Name, key)
	}
	e.Runs++
	ev := Evaluation{Index: len(e.log), Ranks: slices.Clone(ranks), RankMap: m, Metric: e.Metric.Name, Value: v,
		Params: e.Params(ranks), Seconds: time.Since(start).Seconds(), Phase: e.Phase}
	e.cache[key] = len(e.log)
	e.log = append(e.log, ev)
	if e.OnEval != nil {
		e.OnEval(ev)
	}
	return ev, nil
}

// Cached reports whether ranks were scored already (a search uses it to spend its budget on new
// configurations only).
func (e *Evaluator) Cached(ranks []int) bool {
	_, ok := e.cache[ConfigKey(ranks)]
	return ok
}

// Evaluations are every configuration scored, in order.
func (e *Evaluator) Evaluations() []Evaluation { return slices.Clone(e.log) }

// Close releases the session behind the evaluator.
func (e *Evaluator) Close() error {
	if e.closer == nil {
		return nil
	}
	err := e.closer()
	e.closer = nil
	return err
}

// EvalOptions configure the built-in evaluators.
type EvalOptions struct {
	Batch   int // sequences per forward pass (default 8)
	Pad     int // the pad token id (right padding; pads never count)
	Runtime runtime.Options
}

// NewLossEvaluator scores configurations by the mean token cross-entropy over the counted
// labels of seqs (data.TrainSequences; labels −100 do not count), on one session of the
// super-network opened once: the rank masks are inputs, so a configuration is only a different
// feed. The causal-LM loss (trainstep.AddCausalLMLoss) is appended to a copy of the graph, so
// only a scalar per batch leaves onnxruntime. Sequences are sorted by length and batched, each
// batch padded on the right to a multiple of 8; a batch's mean loss is weighted by its counted
// tokens. Dropout, when the graph has its keep-mask inputs, is off (all ones).
func NewLossEvaluator(run *Run, seqs []data.Sequence, o EvalOptions) (*Evaluator, error) {
	if len(seqs) == 0 {
		return nil, fmt.Errorf("nls: loss evaluator: no validation sequences")
	}
	if o.Batch < 1 {
		o.Batch = 8
	}
	// A copy: run.Model stays the super-network the caller exports from.
	m := &onnx.Model{Proto: proto.Clone(run.Model.Proto).(*onnxpb.ModelProto), Dir: run.Model.Dir}
	defer m.Close()
	if err := trainstep.AddCausalLMLoss(m, trainstep.LossNames{}); err != nil {
		return nil, fmt.Errorf("nls: loss evaluator: %w", err)
	}
	if _, err := quant.FoldKept(m); err != nil { // see train.New
		return nil, fmt.Errorf("nls: loss evaluator: %w", err)
	}
	raw, err := m.Marshal()
	if err != nil {
		return nil, fmt.Errorf("nls: loss evaluator: %w", err)
	}
	sess, err := runtime.OpenBytes(raw, run.Model.Dir, o.Runtime)
	if err != nil {
		return nil, fmt.Errorf("nls: loss evaluator: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			sess.Close()
		}
	}()
	batches, err := lossBatches(seqs, o.Batch, o.Pad)
	if err != nil {
		return nil, fmt.Errorf("nls: loss evaluator: %w", err)
	}
	// Batch-invariant inputs: dropout keep-masks are all ones (their shape follows the batch).
	dropIn := map[string]int64{}
	if run.Meta.Train {
		for _, mod := range run.Meta.Modules {
			dropIn[mod.Dropout] = mod.In
		}
	}
	score := func(ranks lora.Ranks) (float64, error) {
		masks, err := run.Meta.Masks(ranks)
		if err != nil {
			return 0, fmt.Errorf("nls: loss evaluator: %w", err)
		}
		extra := map[string]*runtime.Tensor{}
		for name, v := range masks {
			extra[name] = runtime.F32([]int64{int64(len(v))}, v)
		}
		var sum float64
		var tokens int
		for _, b := range batches {
			extra[trainstep.LabelsName] = runtime.I64([]int64{int64(b.batch.Rows), int64(b.batch.Len)}, b.batch.Labels)
			for name, in := range dropIn {
				ones := make([]float32, int64(b.batch.Rows*b.batch.Len)*in)
				for i := range ones {
					ones[i] = 1
				}
				extra[name] = runtime.F32([]int64{int64(b.batch.Rows), int64(b.batch.Len), in}, ones)
			}
			feeds, err := eval.Feeds(sess.Inputs(), b.rows, extra)
			if err != nil {
				return 0, fmt.Errorf("nls: loss evaluator: %w", err)
			}
			res, err := sess.Run(feeds, []string{trainstep.LossName})
			if err != nil {
				return 0, fmt.Errorf("nls: loss evaluator: %w", err)
			}
			l := res[trainstep.LossName]
			if len(l.F32) != 1 {
				return 0, fmt.Errorf("nls: loss evaluator: loss output has %d values", len(l.F32))
			}
			sum += float64(l.F32[0]) * float64(b.batch.Tokens)
			tokens += b.batch.Tokens
		}
		return sum / float64(tokens), nil
	}
	e := NewEvaluator(run.Space, run.Meta, MetricLoss, score)
	e.closer = sess.Close
	ok = true
	return e, nil
}

type lossBatch struct {
	batch data.Batch
	rows  [][]int // the padded ids, for eval.Feeds
}

// lossBatches sorts the sequences by length (least padding) and pads each batch; sequences
// with nothing to count are dropped, and none at all is an error.
func lossBatches(seqs []data.Sequence, size, pad int) ([]lossBatch, error) {
	var keep []data.Sequence
	for _, s := range seqs {
		for t := 1; t < len(s.Labels); t++ {
			if s.Labels[t] != data.IgnoreIndex {
				keep = append(keep, s)
				break
			}
		}
	}
	if len(keep) == 0 {
		return nil, fmt.Errorf("no validation sequence has a label to count")
	}
	slices.SortStableFunc(keep, func(a, b data.Sequence) int { return len(a.IDs) - len(b.IDs) })
	var out []lossBatch
	for i := 0; i < len(keep); i += size {
		b, err := data.Pad(keep[i:min(i+size, len(keep))], pad, 0)
		if err != nil {
			return nil, err
		}
		rows := make([][]int, b.Rows)
		for r := range rows {
			rows[r] = make([]int, b.Len)
			for t := range rows[r] {
				rows[r][t] = int(b.IDs[r*b.Len+t])
			}
		}
		out = append(out, lossBatch{batch: b, rows: rows})
	}
	return out, nil
}

// AccuracyOptions configure NewAccuracyEvaluator.
type AccuracyOptions struct {
	Task  eval.Task
	Items []eval.Item
	// Gen selects generation (GenConf: beams, the task's answer parsing); otherwise the
	// candidates are scored by log-likelihood (eval.ChoiceItem). Numeric tasks need Gen.
	Gen     bool
	Choice  eval.ChoiceConfig
	GenConf eval.GenConfig
	Runtime runtime.Options
}

// NewAccuracyEvaluator scores configurations by task accuracy through the eval package. One
// session of the super-network serves every configuration: its rank-mask inputs are held fixed
// per configuration (eval.WithInputs), so the evaluations see only the model's own inputs. A
// train graph (with dropout keep-mask inputs) is instead exported per configuration
// (merge.Export, no merge) and opened as its own session.
func NewAccuracyEvaluator(run *Run, tok tokenizer.Tokenizer, o AccuracyOptions) (*Evaluator, error) {
	if len(o.Items) == 0 {
		return nil, fmt.Errorf("nls: accuracy evaluator: no validation items")
	}
	if !o.Gen && o.Task.Kind == eval.Numeric {
		return nil, fmt.Errorf("nls: accuracy evaluator: %s has numeric answers; score it by generation", o.Task.Name)
	}
	// One session of the super-network serves every configuration through its rank-mask
	// inputs. A train graph (dropout keep-mask inputs) is scored through a sliced export per
	// configuration instead.
	var super *runtime.Session
	if !run.Meta.Train {
		m := run.Model
		// A QA super-network's kept linears are folded (see train.New) in a copy: run.Model
		// stays as loaded. Other models are marshalled as they are, without the copy.
		if recs, err := quant.ReadLowered(m); err != nil {
			return nil, fmt.Errorf("nls: accuracy evaluator: %w", err)
		} else if len(recs) > 0 {
			m = &onnx.Model{Proto: proto.Clone(run.Model.Proto).(*onnxpb.ModelProto), Dir: run.Model.Dir}
			defer m.Close()
			if _, err := quant.FoldKept(m); err != nil {
				return nil, fmt.Errorf("nls: accuracy evaluator: %w", err)
			}
		}
		raw, err := m.Marshal()
		if err != nil {
			return nil, fmt.Errorf("nls: accuracy evaluator: %w", err)
		}
		if super, err = runtime.OpenBytes(raw, run.Model.Dir, o.Runtime); err != nil {
			return nil, fmt.Errorf("nls: accuracy evaluator: %w", err)
		}
	}
	model := func(ranks lora.Ranks) (eval.Model, func(), error) {
		if super != nil {
			masks, err := run.Meta.Masks(ranks)
			if err != nil {
				return nil, nil, err
			}
			fixed := map[string]*runtime.Tensor{}
			for name, m := range masks {
				fixed[name] = runtime.F32([]int64{int64(len(m))}, m)
			}
			return eval.WithInputs(super, fixed), func() {}, nil
		}
		sub, _, err := merge.Export(run.Model, ranks, merge.None)
		if err != nil {
			return nil, nil, err
		}
		raw, err := sub.Marshal()
		sub.Close()
		if err != nil {
			return nil, nil, err
		}
		s, err := runtime.OpenBytes(raw, run.Model.Dir, o.Runtime)
		if err != nil {
			return nil, nil, err
		}
		return s, func() { s.Close() }, nil
	}
	score := func(ranks lora.Ranks) (float64, error) {
		s, done, err := model(ranks)
		if err != nil {
			return 0, fmt.Errorf("nls: accuracy evaluator: %w", err)
		}
		defer done()
		var sum eval.Summary
		c := eval.ItemsConfig{Gen: o.Gen, GenConf: o.GenConf, Choice: o.Choice}
		if err := eval.ScoreItems(s, tok, o.Task, o.Items, c, &sum, nil); err != nil {
			return 0, fmt.Errorf("nls: accuracy evaluator: %w", err)
		}
		return sum.Accuracy, nil
	}
	e := NewEvaluator(run.Space, run.Meta, MetricAccuracy, score)
	if super != nil {
		e.closer = super.Close
	}
	return e, nil
}
