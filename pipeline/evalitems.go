package pipeline

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/shears-ml/shears/eval"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/runtime"
)

// EvalOptions configure Eval ("shears eval").
type EvalOptions struct {
	// Model is a .onnx file or a model folder (its onnx/model.onnx, and its tokenizer.json
	// when Tokenizer is empty).
	Model     string
	Task      string // ppl, gen or choice
	Data      string // ppl: .txt, .json or .jsonl documents; gen/choice: an LLM-Adapters test .json
	Tokenizer string // tokenizer file; required
	Limit     int    // the first Limit documents (ppl) or items (0 = all)
	// ppl: windows of SeqLen tokens (capped to the model's context), Batch windows per run,
	// the first MaxTokens tokens of the data at most (0 = all).
	SeqLen    int
	Batch     int
	MaxTokens int
	// DatasetType names the task (eval.TaskNames), overriding the one Data's file name gives.
	DatasetType   string
	Beams         int
	MaxNewTokens  int // gen: 0 = the task's budget
	LengthPenalty float64
	NoCache       bool   // gen: rerun the whole prefix every token
	ChoicePrefix  string // choice: text between the prompt and each label
	// Predictions, when set, receives one JSON record per item, written to a temporary file
	// renamed into place at the end (a failed run leaves none); WithPrompt adds the prompt.
	Predictions string
	WithPrompt  bool
	Runtime     RuntimeOptions
	// Progress (may be nil) is called after every item with the label of the run (task and
	// dataset), the items done and the accuracy so far.
	Progress ProgressFunc
}

// EvalReport is Eval's result: PPL for --task ppl; for gen and choice the summary ("shears
// eval --json" prints it) and the model's context length (0 when unknown), which truncated
// prompts were cut to.
type EvalReport struct {
	PPL     *EvalResult
	Summary *eval.Summary
	Context int
}

// DatasetTypes are the LLM-Adapters tasks EvalOptions.DatasetType accepts.
func DatasetTypes() []string { return eval.TaskNames() }

// Check refuses options that do not apply to the task, naming the flags (ErrUsage).
func (o EvalOptions) Check() error {
	switch o.Task {
	case "ppl", "gen", "choice":
	default:
		return fmt.Errorf("%w: --task %q is not supported (supported: ppl, gen, choice)", ErrUsage, o.Task)
	}
	if o.Data == "" {
		return fmt.Errorf("%w: --data FILE is required", ErrUsage)
	}
	return firstErr(atLeast("--limit", o.Limit, 0), atLeast("--max-tokens", o.MaxTokens, 0), atLeast("--beams", o.Beams, 1),
		atLeast("--max-new-tokens", o.MaxNewTokens, 0),
		usageIf(o.NoCache && o.Task != "gen", "--no-cache applies to --task gen"),
		usageIf(o.Predictions != "" && o.Task == "ppl", "--predictions applies to --task gen and choice, not ppl"))
}

// Eval measures a model: perplexity (Task "ppl", Perplexity) or the accuracy on an
// LLM-Adapters test file by generation ("gen") or by log-likelihood over the candidate labels
// ("choice"), with eval.ScoreItems.
func Eval(o EvalOptions) (*EvalReport, error) {
	if err := o.Check(); err != nil {
		return nil, err
	}
	o.Model, o.Tokenizer = resolveModel(o.Model, o.Tokenizer)
	if o.Task == "ppl" {
		tok, err := loadTokenizer(o.Tokenizer)
		if err != nil {
			return nil, err
		}
		res, err := Perplexity(o.Model, o.Data, tok, o.SeqLen, o.Batch, o.Limit, o.MaxTokens, o.Runtime)
		if err != nil {
			return nil, err
		}
		return &EvalReport{PPL: &res}, nil
	}
	return evalItems(o)
}

// evalItems is Eval for gen and choice.
func evalItems(o EvalOptions) (*EvalReport, error) {
	var task eval.Task
	var err error
	if o.DatasetType != "" {
		task, err = eval.LookupTask(o.DatasetType)
		err = flagErr("--dataset-type", err)
	} else {
		task, err = eval.DetectTask(o.Data)
		err = flagErr("--data", err)
	}
	if err != nil {
		return nil, err
	}
	if o.Task == "choice" && task.Kind == eval.Numeric {
		return nil, fmt.Errorf("%w: --task choice does not apply to %s (%s): its answers are numbers, not labels; use --task gen", ErrUsage, task.Name, filepath.Base(o.Data))
	}
	tok, err := loadTokenizer(o.Tokenizer)
	if err != nil {
		return nil, err
	}
	items, err := eval.ReadItems(o.Data)
	if err != nil {
		return nil, fmt.Errorf("--data: %w", err)
	}
	if o.Limit > 0 && o.Limit < len(items) {
		items = items[:o.Limit]
	}
	ctx, err := contextOf(o.Model)
	if err != nil {
		return nil, err
	}
	s, err := runtime.OpenFile(o.Model, o.Runtime)
	if err != nil {
		return nil, err
	}
	defer s.Close()

	var pred *predWriter
	if o.Predictions != "" {
		if pred, err = newPredWriter(o.Predictions); err != nil {
			return nil, err
		}
		defer pred.abort()
	}
	sum := eval.Summary{Task: o.Task, Dataset: task.Name, File: filepath.Base(o.Data)}
	c := eval.ItemsConfig{
		Gen:     o.Task == "gen",
		GenConf: eval.GenConfig{Beams: o.Beams, MaxNewTokens: o.MaxNewTokens, MaxContext: ctx, LengthPenalty: o.LengthPenalty, NoCache: o.NoCache},
		Choice:  eval.ChoiceConfig{Prefix: o.ChoicePrefix, MaxContext: ctx},
	}
	if c.Gen {
		sum.Decoding = c.GenConf.Decoding()
		if sum.Caching, err = eval.Caching(s, o.NoCache); err != nil {
			return nil, fmt.Errorf("%s: %w", o.Model, err)
		}
		sum.MaxNewTokens = o.MaxNewTokens
		if sum.MaxNewTokens == 0 {
			sum.MaxNewTokens = task.MaxNew()
		}
	} else {
		sum.Decoding = fmt.Sprintf("log-likelihood (sum; continuation %q + label)", o.ChoicePrefix)
	}
	label := o.Task + " " + task.Name
	start := time.Now()
	err = eval.ScoreItems(s, tok, task, items, c, &sum, func(rec eval.Record) error {
		if pred != nil {
			if o.WithPrompt {
				rec.Prompt = task.Prompt(items[rec.Index])
			}
			if err := pred.write(rec); err != nil {
				return err
			}
		}
		o.Progress.Report(Event{Stage: label, Done: rec.Index + 1, Total: len(items), Detail: fmt.Sprintf("acc %.3f", sum.Accuracy)})
		return nil
	})
	var ie *eval.ItemError
	if errors.As(err, &ie) {
		return nil, fmt.Errorf("item %d of %s: %w", ie.Index, o.Data, ie.Err)
	}
	if err != nil {
		return nil, err
	}
	sum.Seconds = time.Since(start).Seconds()
	if pred != nil {
		if err := pred.commit(); err != nil {
			return nil, err
		}
	}
	return &EvalReport{Summary: &sum, Context: ctx}, nil
}

// predWriter writes JSONL records to a temporary file renamed into place by commit, so a
// failed run leaves no half-written predictions.
type predWriter struct {
	path string
	f    *onnx.PendingFile
	w    *bufio.Writer
	enc  *json.Encoder
}

func newPredWriter(path string) (*predWriter, error) {
	f, err := onnx.CreatePending(path)
	if err != nil {
		return nil, fmt.Errorf("--predictions: %w", err)
	}
	w := bufio.NewWriter(f)
	return &predWriter{path: path, f: f, w: w, enc: json.NewEncoder(w)}, nil
}

func (p *predWriter) write(r eval.Record) error {
	if err := p.enc.Encode(r); err != nil {
		return fmt.Errorf("--predictions %s: %w", p.path, err)
	}
	return nil
}

func (p *predWriter) commit() error {
	err := p.w.Flush()
	if err == nil {
		err = p.f.Commit()
	}
	p.f.Abort()
	p.f = nil
	if err != nil {
		return fmt.Errorf("--predictions %s: %w", p.path, err)
	}
	return nil
}

// abort removes the temporary file unless commit ran.
func (p *predWriter) abort() {
	if p.f != nil {
		p.f.Abort()
		p.f = nil
	}
}
