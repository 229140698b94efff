package nls

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/shears-ml/shears/data"
	"github.com/shears-ml/shears/eval"
	"github.com/shears-ml/shears/models"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/tokenizer"
	"github.com/shears-ml/shears/transform/lora"
	"github.com/shears-ml/shears/transform/merge"
)

// Files a search writes next to its CONFIG.json (unless told otherwise).
const (
	SearchLogFile  = "search.jsonl"
	SearchPlotFile = "search.png"
)

// DefaultBeams is the generation beam count accuracy uses unless told otherwise: the
// reference's evaluation (LLM-Adapters, num_beams = 4), so accuracies compare with the paper's.
const DefaultBeams = 4

// SearchJob is one "shears search": a trained run, validation data, a strategy and where the
// results go. The CLI and the pipeline both run searches through RunSearch.
type SearchJob struct {
	Run       *Run
	Data      string // validation data
	Tokenizer string // "": the run's
	// Metric is "loss" (default: mean token cross-entropy of Data read as training data, with
	// the run's cutoff and train-on-inputs) or "accuracy" (Data is an LLM-Adapters test-style
	// file; its task is detected from the name unless Task is set).
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
	// ChoicePrefix goes between prompt and label when accuracy scores labels (eval.ChoiceConfig).
	ChoicePrefix string
	Search       SearchOptions
	Runtime      runtime.Options

	Config string // CONFIG.json to write (required)
	Log    string // search.jsonl ("": next to Config)
	Plot   string // the PNG ("": next to Config; "-": none)

	// Progress, when set, is called after every new evaluation with the number done and the
	// budget.
	Progress func(ev Evaluation, done, budget int)
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

// SearchReport is what RunSearch did.
type SearchReport struct {
	*SearchResult
	Config, Log, Plot string
	Units             int // validation sequences (loss) or items (accuracy)
	// Params of the uniform configurations, for comparison.
	MaxParams, HeuristicParams, MinParams int64
	// Caveats worth printing (validation data equal to the training data, ...).
	Notes []string
}

// RunSearch loads the validation data, builds the evaluator (one session for the loss), runs
// the strategy and writes CONFIG.json, the evaluation log and the plot (each atomically).
func RunSearch(j SearchJob) (*SearchReport, error) {
	if j.Run == nil {
		return nil, fmt.Errorf("nls: search: no run")
	}
	if j.Config == "" {
		return nil, fmt.Errorf("nls: search: no output CONFIG.json given")
	}
	if j.Search.Strategy == "" {
		j.Search.Strategy = StrategyHeuristic
	}
	if j.Search.Budget == 0 {
		j.Search.Budget = DefaultBudget(j.Search.Strategy)
	}
	dir := filepath.Dir(j.Config)
	if j.Log == "" {
		j.Log = filepath.Join(dir, SearchLogFile)
	}
	if j.Plot == "" {
		j.Plot = filepath.Join(dir, SearchPlotFile)
	}
	if j.Tokenizer == "" {
		j.Tokenizer = j.Run.Config.Tokenizer
	}
	tok, err := tokenizer.Load(j.Tokenizer)
	if err != nil {
		return nil, fmt.Errorf("nls: search: %w", err)
	}
	rep := &SearchReport{Config: j.Config, Log: j.Log}
	if j.Plot != "-" {
		rep.Plot = j.Plot
	}
	if abs, err := filepath.Abs(j.Data); err == nil && abs == j.Run.Config.Data {
		rep.Notes = append(rep.Notes, "the validation data is the training data: the metric rewards memorisation; hold out a split")
	}
	var e *Evaluator
	switch j.Metric {
	case "", "loss":
		cutoff := j.Cutoff
		if cutoff == 0 {
			cutoff = j.Run.Config.Hyper.Cutoff
		}
		seqs, err := data.TrainSequences(j.Data, tok, data.TrainOptions{Cutoff: cutoff, TrainOnInputs: j.Run.Config.Hyper.TrainOnInputs})
		if err != nil {
			return nil, fmt.Errorf("nls: search: validation data: %w", err)
		}
		if j.Limit > 0 && j.Limit < len(seqs) {
			seqs = seqs[:j.Limit]
		}
		rep.Units = len(seqs)
		if e, err = NewLossEvaluator(j.Run, seqs, EvalOptions{Batch: j.Batch, Pad: tok.Pad(), Runtime: j.Runtime}); err != nil {
			return nil, err
		}
	case "accuracy":
		task, err := eval.DetectTask(j.Data)
		if j.Task != "" {
			task, err = eval.LookupTask(j.Task)
		}
		if err != nil {
			return nil, fmt.Errorf("nls: search: %w", err)
		}
		items, err := eval.ReadItems(j.Data)
		if err != nil {
			return nil, fmt.Errorf("nls: search: %w", err)
		}
		if j.Limit > 0 && j.Limit < len(items) {
			items = items[:j.Limit]
		}
		rep.Units = len(items)
		ctx := models.ContextLength(j.Run.Model)
		beams := j.Beams
		if beams == 0 {
			beams = DefaultBeams
		}
		gen := !j.Choice || task.Kind == eval.Numeric
		if !gen {
			rep.Notes = append(rep.Notes, "accuracy by log-likelihood of the labels (--choice), not the reference's generation")
		} else if beams == 1 {
			rep.Notes = append(rep.Notes, "greedy generation (--beams 1): accuracies are not comparable with the reference's 4-beam ones")
		}
		e, err = NewAccuracyEvaluator(j.Run, tok, AccuracyOptions{Task: task, Items: items, Gen: gen,
			Choice: eval.ChoiceConfig{Prefix: j.ChoicePrefix, MaxContext: ctx}, GenConf: eval.GenConfig{MaxContext: ctx, Beams: beams}, Runtime: j.Runtime})
		if err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("nls: search: metric %q: want loss or accuracy", j.Metric)
	}
	defer e.Close()
	if j.Progress != nil {
		e.OnEval = func(ev Evaluation) { j.Progress(ev, e.Runs, j.Search.Budget) }
	}
	res, err := Search(e, j.Search)
	if err != nil {
		return nil, err
	}
	rep.SearchResult = res
	sp := j.Run.Space
	rep.MaxParams = e.Params(sp.Uniform(sp.Ranks[0]))
	rep.HeuristicParams = e.Params(sp.Uniform(lora.HeuristicRank(sp.Ranks)))
	rep.MinParams = e.Params(sp.Uniform(sp.Ranks[len(sp.Ranks)-1]))

	cfg := SearchConfig{Selection: *res.Selection(), Evaluations: len(res.Evaluations), Budget: res.Budget, Seed: j.Search.Seed,
		Run: j.Run.Dir, Data: j.Data}
	if res.Heuristic.RankMap != nil {
		cfg.Heuristic = &Point{res.Heuristic.Value, res.Heuristic.Params, res.Heuristic.Index}
	}
	for _, f := range res.Front {
		cfg.Front = append(cfg.Front, Point{f.Value, f.Params, f.Index})
	}
	for _, d := range []string{dir, filepath.Dir(j.Log), filepath.Dir(rep.Plot)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("nls: search: %w", err)
		}
	}
	if err := WriteSearchLog(j.Log, res.Evaluations); err != nil {
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
		return nil, fmt.Errorf("nls: search: %w", err)
	}
	if err := onnx.WriteFileAtomic(j.Config, append(b, '\n')); err != nil {
		return nil, fmt.Errorf("nls: search: %w", err)
	}
	return rep, nil
}
