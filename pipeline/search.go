package pipeline

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/shears-ml/shears/data"
	"github.com/shears-ml/shears/eval"
	"github.com/shears-ml/shears/models"
	"github.com/shears-ml/shears/nls"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/tokenizer"
	"github.com/shears-ml/shears/transform/merge"
)

// The search strategies (METHOD §5), the metrics and the files a search writes next to its
// CONFIG.json unless told otherwise.
const (
	StrategyHeuristic = nls.StrategyHeuristic
	StrategyHillClimb = nls.StrategyHillClimb
	StrategyEvolution = nls.StrategyEvolution

	MetricLoss     = "loss"
	MetricAccuracy = "accuracy"

	SearchLogFile  = "search.jsonl"
	SearchPlotFile = "search.png"

	// DefaultBeams is the generation beam count accuracy uses unless told otherwise: the
	// reference's evaluation (LLM-Adapters, num_beams = 4), so accuracies compare with the
	// paper's.
	DefaultBeams = 4
)

// Evaluation is one scored sub-adapter: a line of search.jsonl and the report's best, heuristic
// and front entries.
type Evaluation = nls.Evaluation

// Strategies lists the search strategies, in the order the help names them.
func Strategies() []string { return nls.Strategies() }

// SearchOptions are the search stage's options (the flags of "shears search"): a trained run,
// validation data, a strategy and where the results go.
type SearchOptions struct {
	RunDir    string // a run directory of Train
	Data      string // validation data (held out from training)
	Tokenizer string // "": the run's
	// Metric is MetricLoss (default: mean token cross-entropy of Data read as training data,
	// with the run's cutoff and train-on-inputs) or MetricAccuracy (Data is an LLM-Adapters
	// test-style file; its task is detected from the name unless Task is set).
	Metric string
	Task   string
	Limit  int // use the first Limit sequences / items (0: all)
	Cutoff int // loss: tokens per sequence (0: the run's)
	Batch  int // loss: sequences per forward pass (0: 8)
	// Beams is the beam count of accuracy's generation: 0 is DefaultBeams (the reference's 4),
	// 1 greedy (faster, not comparable with the paper's accuracies).
	Beams int
	// Choice scores the label tasks' candidates by log-likelihood (eval.ChoiceItem) instead of
	// generating: faster, but not the reference's measure. Numeric tasks always generate.
	Choice bool
	// ChoicePrefix goes between prompt and label when accuracy scores labels.
	ChoicePrefix string

	Strategy string // StrategyHeuristic (default), StrategyHillClimb or StrategyEvolution
	// Budget is the most new configurations evaluated (0: 1, 100 hill-climb, 200 evolution).
	Budget int
	Seed   uint64
	// Population is evolution's population size (0: Budget/20 within 4..16).
	Population int
	// MaxParams, when > 0, makes evolution pick the best metric among the front's
	// configurations with at most that many active adapter parameters.
	MaxParams int64

	Runtime runtime.Options
	Config  string // CONFIG.json to write (required)
	Log     string // search.jsonl ("": next to Config)
	Plot    string // the PNG ("": next to Config; "-": none)

	// Progress, when set, is told of every new evaluation (Detail: the best metric so far).
	Progress ProgressFunc
	// Warn, when set, receives warnings (a run that has not finished).
	Warn func(string)
}

// SearchReport is what a search did; its JSON is the "shears search --json" document.
type SearchReport struct {
	Strategy    string       `json:"strategy"`
	Metric      string       `json:"metric"`
	Evaluations int          `json:"evaluations"`
	Budget      int          `json:"budget"`
	Stop        string       `json:"stop"`
	Units       int          `json:"validation_units"` // sequences (loss) or items (accuracy)
	Best        Evaluation   `json:"best"`
	Heuristic   *Evaluation  `json:"heuristic,omitempty"`
	Moves       int          `json:"moves,omitempty"` // hill-climbing's accepted moves
	Generations int          `json:"generations,omitempty"`
	Front       []Evaluation `json:"pareto_front,omitempty"`
	// Params of the uniform configurations, for comparison: max, heuristic, min.
	Params map[string]int64 `json:"uniform_params"`
	Config string           `json:"config"`
	Log    string           `json:"log"`
	Plot   string           `json:"plot,omitempty"`
	// Notes are caveats worth printing (validation data equal to the training data, ...).
	Notes []string `json:"notes,omitempty"`
}

// SearchConfig is the CONFIG.json a search writes: merge.Selection (what export reads) and
// where it came from.
type SearchConfig struct {
	merge.Selection
	Evaluations int     `json:"evaluations"`
	Budget      int     `json:"budget"`
	Seed        uint64  `json:"seed"`
	Run         string  `json:"run"`
	Data        string  `json:"validation_data"`
	Heuristic   *Point  `json:"heuristic,omitempty"`
	Front       []Point `json:"pareto_front,omitempty"`
}

// Point is a configuration's place in the metric–parameters plane.
type Point struct {
	Value  float64 `json:"value"`
	Params int64   `json:"adapter_params"`
	Index  int     `json:"index"` // its line in search.jsonl
}

// checkSearch validates the options a user gives (usage errors name the flag).
func (o *SearchOptions) check() error {
	switch {
	case o.RunDir == "":
		return fmt.Errorf("%w: give the run directory RUN_DIR of \"shears train\"", ErrUsage)
	case o.Data == "":
		return fmt.Errorf("%w: --data VAL is required (validation data held out from training)", ErrUsage)
	case o.Config == "":
		return fmt.Errorf("%w: -o CONFIG.json is required", ErrUsage)
	case !slices.Contains(Strategies(), o.Strategy):
		return fmt.Errorf("%w: --strategy %q: want heuristic, hill-climb or evolution", ErrUsage, o.Strategy)
	case o.Metric != MetricLoss && o.Metric != MetricAccuracy:
		return fmt.Errorf("%w: --metric %q: want loss or accuracy", ErrUsage, o.Metric)
	case o.Budget < 0 || o.Limit < 0 || o.Batch < 1:
		return fmt.Errorf("%w: --budget and --limit must not be negative, --batch at least 1", ErrUsage)
	}
	return nil
}

// Search picks a sub-adapter of a trained run: it loads the run and the validation data,
// builds the evaluator (one session of the super-network), runs the strategy and writes
// CONFIG.json, the evaluation log and the plot (each atomically).
func Search(o SearchOptions) (*SearchReport, error) {
	if o.Strategy == "" {
		o.Strategy = StrategyHeuristic
	}
	if o.Metric == "" {
		o.Metric = MetricLoss
	}
	if o.Batch == 0 {
		o.Batch = 8
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	if o.Budget == 0 {
		o.Budget = nls.DefaultBudget(o.Strategy)
	}
	run, err := OpenRun(o.RunDir)
	if err != nil {
		return nil, err
	}
	defer run.Model.Close()
	if !run.Final && o.Warn != nil {
		o.Warn(fmt.Sprintf("%s has not finished; searching its latest checkpoint (step %d)", o.RunDir, run.Steps))
	}
	dir := filepath.Dir(o.Config)
	if o.Log == "" {
		o.Log = filepath.Join(dir, SearchLogFile)
	}
	if o.Plot == "" {
		o.Plot = filepath.Join(dir, SearchPlotFile)
	}
	if o.Tokenizer == "" {
		o.Tokenizer = run.Config.Tokenizer
	}
	tok, err := tokenizer.Load(o.Tokenizer)
	if err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	rep := &SearchReport{Strategy: o.Strategy, Config: o.Config, Log: o.Log}
	if o.Plot != "-" {
		rep.Plot = o.Plot
	}
	if abs, err := filepath.Abs(o.Data); err == nil && abs == run.Config.Data {
		rep.Notes = append(rep.Notes, "the validation data is the training data: the metric rewards memorisation; hold out a split")
	}
	e, err := searchEvaluator(o, run, tok, rep)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	if o.Progress != nil {
		var best *nls.Evaluation
		e.OnEval = func(ev nls.Evaluation) {
			if best == nil || e.Metric.Better(ev.Value, best.Value) {
				best = &ev
			}
			o.Progress(Event{Stage: "search " + o.Strategy, Done: e.Runs, Total: o.Budget, Detail: fmt.Sprintf("best %s %.4f", e.Metric.Name, best.Value)})
		}
	}
	res, err := nls.Search(e, nls.SearchOptions{Strategy: o.Strategy, Budget: o.Budget, Seed: o.Seed, Population: o.Population, MaxParams: o.MaxParams})
	if err != nil {
		return nil, err
	}
	sp := run.Space
	rep.Metric, rep.Evaluations, rep.Budget, rep.Stop = res.Metric.Name, len(res.Evaluations), res.Budget, res.Stop
	rep.Best, rep.Generations, rep.Front = res.Best, res.Generations, res.Front
	rep.Params = map[string]int64{"max": e.Params(sp.Uniform(sp.Ranks[0])),
		"heuristic": e.Params(sp.Uniform(sp.HeuristicRank())), "min": e.Params(sp.Uniform(sp.Ranks[len(sp.Ranks)-1]))}
	if res.Heuristic.RankMap != nil {
		h := res.Heuristic
		rep.Heuristic = &h
	}
	if len(res.Path) > 0 {
		rep.Moves = len(res.Path) - 1
	}
	cfg := SearchConfig{Selection: *res.Selection(), Evaluations: len(res.Evaluations), Budget: res.Budget, Seed: o.Seed,
		Run: run.Dir, Data: o.Data}
	if res.Heuristic.RankMap != nil {
		cfg.Heuristic = &Point{res.Heuristic.Value, res.Heuristic.Params, res.Heuristic.Index}
	}
	for _, f := range res.Front {
		cfg.Front = append(cfg.Front, Point{f.Value, f.Params, f.Index})
	}
	for _, d := range []string{dir, filepath.Dir(o.Log), filepath.Dir(rep.Plot)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("search: %w", err)
		}
	}
	if err := WriteSearchLog(o.Log, res.Evaluations); err != nil {
		return nil, err
	}
	if rep.Plot != "" {
		title := fmt.Sprintf("shears search: %s, %d evaluations", res.Strategy, len(res.Evaluations))
		if err := PlotSearch(rep.Plot, title, res); err != nil {
			return nil, err
		}
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	if err := onnx.WriteFileAtomic(o.Config, append(b, '\n')); err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	return rep, nil
}

// searchEvaluator reads the validation data and builds the metric's evaluator on the run;
// it records the units and notes in rep.
func searchEvaluator(o SearchOptions, run *TrainedRun, tok tokenizer.Tokenizer, rep *SearchReport) (*nls.Evaluator, error) {
	if o.Metric == MetricLoss {
		cutoff := o.Cutoff
		if cutoff == 0 {
			cutoff = run.Config.Hyper.Cutoff
		}
		seqs, err := data.TrainSequences(o.Data, tok, data.TrainOptions{Cutoff: cutoff, TrainOnInputs: run.Config.Hyper.TrainOnInputs})
		if err != nil {
			return nil, fmt.Errorf("search: validation data: %w", err)
		}
		if o.Limit > 0 && o.Limit < len(seqs) {
			seqs = seqs[:o.Limit]
		}
		rep.Units = len(seqs)
		return nls.NewLossEvaluator(&run.Run, seqs, nls.EvalOptions{Batch: o.Batch, Pad: tok.Pad(), Runtime: o.Runtime})
	}
	task, err := eval.DetectTask(o.Data)
	if o.Task != "" {
		task, err = eval.LookupTask(o.Task)
	}
	if err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	items, err := eval.ReadItems(o.Data)
	if err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	if o.Limit > 0 && o.Limit < len(items) {
		items = items[:o.Limit]
	}
	rep.Units = len(items)
	ctx := models.ContextLength(run.Model)
	beams := o.Beams
	if beams == 0 {
		beams = DefaultBeams
	}
	gen := !o.Choice || task.Kind == eval.Numeric
	if !gen {
		rep.Notes = append(rep.Notes, "accuracy by log-likelihood of the labels (--choice), not the reference's generation")
	} else if beams == 1 {
		rep.Notes = append(rep.Notes, "greedy generation (--beams 1): accuracies are not comparable with the reference's 4-beam ones")
	}
	return nls.NewAccuracyEvaluator(&run.Run, tok, nls.AccuracyOptions{Task: task, Items: items, Gen: gen,
		Choice: eval.ChoiceConfig{Prefix: o.ChoicePrefix, MaxContext: ctx}, GenConf: eval.GenConfig{MaxContext: ctx, Beams: beams}, Runtime: o.Runtime})
}

// search picks a sub-adapter of the trained run with the recipe's strategy (Search, as
// "shears search" does) and writes search/config.json, search.jsonl and the plot.
func (rn *runner) search(runDir, runID string) (*merge.Selection, string, error) {
	s := rn.r.Search
	out := rn.path("search", "config.json")
	in, err := rn.inputs(map[string]string{"run": runID}, map[string]string{"data": s.Data, "tokenizer": rn.r.Tokenizer})
	if err != nil {
		return nil, "", err
	}
	var sel merge.Selection
	id, err := rn.do("search", s, in, []string{out}, &sel, func(bool) (any, error) {
		rep, err := Search(SearchOptions{RunDir: runDir, Data: s.Data, Tokenizer: rn.r.Tokenizer, Metric: s.Metric,
			Beams: s.Beams, Choice: s.Choice, Limit: s.Limit, Cutoff: s.Cutoff, Batch: s.Batch, Runtime: rn.ro, Config: out,
			Strategy: s.Strategy, Budget: s.Budget, Seed: s.Seed})
		if err != nil {
			return nil, err
		}
		for _, n := range rep.Notes {
			rn.logf("   note: %s\n", n)
		}
		return merge.ReadSelection(out)
	})
	if err != nil {
		return nil, "", err
	}
	return &sel, id, nil
}
