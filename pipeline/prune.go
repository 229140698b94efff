package pipeline

import (
	"fmt"
	"slices"
	"time"

	"github.com/shears-ml/shears/calibrate"
	"github.com/shears-ml/shears/data"
	"github.com/shears-ml/shears/deploy"
	"github.com/shears-ml/shears/models"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/tokenizer"
	"github.com/shears-ml/shears/transform/decoder"
	"github.com/shears-ml/shears/transform/layers"
	"github.com/shears-ml/shears/transform/prune"
	"github.com/shears-ml/shears/transform/quant"
)

// PruneOptions are the prune stage's options (the flags of "shears prune").
type PruneOptions struct {
	Model, Out string
	Method     string  // wanda (default) or magnitude
	Sparsity   float64 // fraction of each pruned layer's weights zeroed
	Pattern    string  // unstructured (default), 2:4, 4:8
	Calib      string  // calibration data (wanda)
	Tokenizer  string
	Samples    int
	SeqLen     int // capped to the model's context
	Seed       uint64
	OneShot    bool
	Include    string // regexps over node, weight or role
	Exclude    string
	External   bool // force external data (automatic when the input has it)
	Runtime    runtime.Options
	// Progress, when set, receives calibrate's calibration progress.
	Progress ProgressFunc
	// Output writes a model folder instead of a file (the calibration tokenizer goes with it
	// unless Output.Tokenizer names another); Warn receives what the folder lacks.
	Output Output
	Warn   func(string)
	// AllowNonFinite prunes a model whose weights hold NaN or Inf (refused by default).
	AllowNonFinite bool
}

// PruneReport is what the prune stage measured, read back from the written file.
type PruneReport struct {
	Model    string             `json:"model"`
	Output   string             `json:"output"`
	Method   string             `json:"method"`
	Pattern  string             `json:"pattern"`
	Target   float64            `json:"target_sparsity"`
	OneShot  bool               `json:"one_shot"`
	Samples  int                `json:"samples"`
	SeqLen   int                `json:"seq_len"`
	Layers   []LayerSparsity    `json:"layers"`
	Sparsity float64            `json:"sparsity"` // zeros / elements over the pruned layers
	Seconds  map[string]float64 `json:"seconds"`
	// Sessions is how many onnxruntime sessions calibration created (alike blocks share one).
	Sessions int `json:"calibration_sessions,omitempty"`
	// Folder is what a model folder holds (Output.Format folder only).
	Folder *deploy.Report `json:"folder,omitempty"`
}

// LayerSparsity is one pruned linear's sparsity.
type LayerSparsity struct {
	Name     string  `json:"name"`
	Weight   string  `json:"weight"`
	Block    int     `json:"block"`
	Role     string  `json:"role"`
	In       int64   `json:"in"`
	Out      int64   `json:"out"`
	Sparsity float64 `json:"sparsity"`
}

// Prune sparsifies the model's linear layers (Wanda or magnitude) and writes o.Out atomically.
// The runtime must be initialised (Runtime) when the method is wanda.
func Prune(o PruneOptions) (*PruneReport, error) {
	o.defaults()
	cfg, err := o.config()
	if err != nil {
		return nil, err
	}
	secs := map[string]float64{}
	t0 := time.Now()
	in, err := openWeightStage(weightStage{verb: "prune", model: o.Model, out: o.Out, output: o.Output, include: o.Include, exclude: o.Exclude, allowNonFinite: o.AllowNonFinite, warn: o.Warn})
	if err != nil {
		return nil, err
	}
	defer in.close()
	sink, m, targets := in.sink, in.m, in.targets
	if err := calibrate.Check(targets, cfg); err != nil {
		return nil, err
	}
	secs["load"] = time.Since(t0).Seconds()
	var stats calibrate.Stats
	var tm calibrate.Timing
	seqLen := o.SeqLen
	if cfg.Method == prune.Wanda {
		t0 = time.Now()
		var windows [][]int
		if windows, seqLen, err = calibrationWindows(m, "prune", o.Calib, o.Tokenizer, o.Samples, seqLen, o.Seed); err != nil {
			return nil, err
		}
		secs["data"] = time.Since(t0).Seconds()
		t0 = time.Now()
		stats, tm, err = calibrate.Calibrate(m, targets, cfg, windows, calibrate.Options{OneShot: o.OneShot, Runtime: o.Runtime, Progress: o.Progress})
		if err != nil {
			return nil, err
		}
		secs["calibrate"] = time.Since(t0).Seconds()
		secs["calibrate_sessions"] = tm.Session.Seconds()
		secs["calibrate_runs"] = tm.Run.Seconds()
	}
	t0 = time.Now()
	save := onnx.SaveOptions{ExternalData: o.External || m.HasExternal(), Transform: calibrate.Transform(targets, stats, cfg), Touches: calibrate.Touches(targets)}
	recordHistory(m)
	if err := m.Save(sink.path, sink.saveOptions(save)); err != nil {
		return nil, err
	}
	secs["prune_and_save"] = time.Since(t0).Seconds()
	// Report from the written file: what a user gets is what is measured.
	out, err := onnx.Load(sink.path)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	rep := &PruneReport{Sessions: tm.Sessions, Model: o.Model, Output: o.Out, Method: o.Method, Pattern: cfg.Pattern.String(), Target: cfg.Sparsity,
		OneShot: o.OneShot, Samples: o.Samples, SeqLen: seqLen, Seconds: secs}
	if cfg.Method != prune.Wanda {
		rep.Samples, rep.SeqLen = 0, 0
	}
	var zeros, total int64
	for _, l := range targets {
		z, n, err := layers.CountZeros(out, l)
		if err != nil {
			return nil, err
		}
		zeros, total = zeros+z, total+n
		rep.Layers = append(rep.Layers, LayerSparsity{Name: l.Node, Weight: l.Weight, Block: l.Block, Role: l.Role, In: l.In, Out: l.Out, Sparsity: float64(z) / float64(n)})
	}
	rep.Sparsity = float64(zeros) / float64(total)
	out.Close()
	if rep.Folder, err = sink.finish(o.Model, o.Tokenizer, o.Warn); err != nil {
		return nil, err
	}
	return rep, nil
}

// loadLinears loads a model and finds its linear layers, all and those the include / exclude
// regexps select.
func loadLinears(path, include, exclude string) (*onnx.Model, []layers.Linear, []layers.Linear, error) {
	m, err := onnx.Load(path)
	if err != nil {
		return nil, nil, nil, err
	}
	// A merged decoder's linears live in its branches: they are found in the with-past one
	// (node names and weights are the same in both).
	branch, err := decoder.Branch(m)
	if err != nil {
		m.Close()
		return nil, nil, nil, err
	}
	all, err := layers.Find(branch)
	if err == nil {
		var sel []layers.Linear
		if sel, err = layers.Select(all, include, exclude); err == nil {
			return m, all, sel, nil
		}
	}
	m.Close()
	return nil, nil, nil, err
}

// calibrationWindows draws the calibration windows (Wanda's and GPTQ's): samples windows of
// seqLen tokens, capped to the model's context, which it returns with the windows. With no
// tokenizer the data must be pre-tokenized ({"ids": [...]} records), as train accepts.
func calibrationWindows(m *onnx.Model, stage, calib, tokPath string, samples, seqLen int, seed uint64) ([][]int, int, error) {
	if ctx := models.ContextLength(m); ctx > 0 && seqLen > ctx {
		seqLen = ctx
	}
	var tok tokenizer.Tokenizer
	var err error
	if tokPath != "" {
		if tok, err = tokenizer.Load(tokPath); err != nil {
			return nil, 0, err
		}
	}
	// Read lazily, only as far as the budget: memory and time do not grow with the file.
	co := data.CalibOptions{Samples: samples, SeqLen: seqLen, Seed: seed}
	ts, err := data.ReadTokens(calib, tok, data.ReadOptions{MaxTokens: data.CalibrationBudget(co)})
	if err != nil {
		if tok == nil {
			return nil, 0, fmt.Errorf("%s: calibration data: no tokenizer given: %w", stage, err)
		}
		return nil, 0, fmt.Errorf("%s: calibration data: %w", stage, err)
	}
	if vocab := models.VocabSize(m); vocab > 0 {
		for i, ids := range ts.Docs {
			if !ts.Pre[i] {
				continue
			}
			for _, id := range ids {
				if id < 0 || int64(id) >= vocab {
					return nil, 0, fmt.Errorf("%s: calibration data %s: record %d has id %d, outside the model's vocabulary [0, %d)", stage, calib, i+1, id, vocab)
				}
			}
		}
	}
	eos := -1
	if tok != nil {
		eos = tok.EOS()
	}
	windows, err := data.CalibrationWindowsOf(ts, eos, co)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: calibration data %s: %w", stage, calib, err)
	}
	return windows, seqLen, nil
}

// MethodWanda is the prune method that calibrates on data (the --method default).
const MethodWanda = string(prune.Wanda)

// Check validates the options before any work (Prune checks them again at its entry): a bad
// value names its flag and is a usage error (ErrUsage).
func (o PruneOptions) Check() error {
	o.defaults()
	_, err := o.config()
	return err
}

func (o *PruneOptions) defaults() {
	if o.Method == "" {
		o.Method = MethodWanda
	}
	if o.Pattern == "" {
		o.Pattern = DefaultPattern
	}
}

// config is the checked pruning configuration of defaulted options.
func (o PruneOptions) config() (prune.Config, error) {
	if o.Out == "" {
		return prune.Config{}, usageIf(true, "-o OUT.onnx is required")
	}
	pat, err := prune.ParsePattern(o.Pattern)
	if err != nil {
		return prune.Config{}, fmt.Errorf("%w: --pattern: %v", ErrUsage, err)
	}
	cfg := prune.Config{Method: prune.Method(o.Method), Sparsity: o.Sparsity, Pattern: pat}
	if err := cfg.Check(); err != nil {
		return prune.Config{}, fmt.Errorf("%w: --method/--sparsity/--pattern: %v", ErrUsage, err)
	}
	if cfg.Method == prune.Wanda && o.Calib == "" {
		return prune.Config{}, usageIf(true, `wanda needs --calib FILE (with --tokenizer TOK unless the file is pre-tokenized {"ids": [...]} .jsonl), or use --method magnitude`)
	}
	return cfg, nil
}

// weightStage names what prune and quantize share before their own work: the input model,
// its linears, the output, and the checks that must pass before any calibration starts.
type weightStage struct {
	verb, model, out, include, exclude string
	output                             Output
	allowNonFinite                     bool
	warn                               func(string)
	includeHead                        bool // the LM head is a target too
}

// quantizedRefusal is each stage's refusal of a MatMulNBits model, with %s for the node.
var quantizedRefusal = map[string]string{
	"prune":    "the model is quantized (node %s is a MatMulNBits); prune first, then quantize (prune the float model and run shears quantize on the result)",
	"quantize": "already quantized (node %s is a MatMulNBits); quantize the float model",
}

// weightInput is an opened weight stage: the output begun, the model loaded, its targets.
type weightInput struct {
	sink    *sink
	m       *onnx.Model
	targets []layers.Linear
}

// close aborts an unfinished output and closes the model.
func (w *weightInput) close() {
	w.sink.abort()
	w.m.Close()
}

// openWeightStage begins the output, loads the model and its target linears, and checks that
// the output aliases no input, the opset, the weights' finiteness, that the model is not
// already quantized and that there is a target. On success the caller owns (and must close) it.
func openWeightStage(w weightStage) (*weightInput, error) {
	sink, err := w.output.begin(w.out)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", w.verb, err)
	}
	m, all, targets, err := loadLinears(w.model, w.include, w.exclude)
	if err == nil && w.includeHead {
		for _, l := range all {
			if l.Head && !slices.ContainsFunc(targets, func(t layers.Linear) bool { return t.Node == l.Node }) {
				targets = append(targets, l)
			}
		}
	}
	if err == nil {
		err = checkWeightStage(w, sink, m)
	}
	if err == nil && len(targets) == 0 {
		err = fmt.Errorf("%s %s: no linear layers to %s (found %d linears, none inside decoder blocks or matching --include)", w.verb, w.model, w.verb, len(all))
	}
	if err != nil {
		if m != nil {
			m.Close()
		}
		sink.abort()
		return nil, err
	}
	return &weightInput{sink: sink, m: m, targets: targets}, nil
}

func checkWeightStage(w weightStage, sink *sink, m *onnx.Model) error {
	if err := sink.check(m); err != nil {
		return err
	}
	if err := CheckModelOutput(w.out, m, "the model to "+w.verb); err != nil {
		return fmt.Errorf("%s: %w", w.verb, err)
	}
	if err := CheckOpset(m, w.model, MinOpset, w.verb); err != nil {
		return err
	}
	if err := CheckFinite(m, w.model, w.allowNonFinite, w.warn); err != nil {
		return fmt.Errorf("%s: %w", w.verb, err)
	}
	if has, node := quant.HasQuantized(m); has {
		return fmt.Errorf("%s %s: "+quantizedRefusal[w.verb], w.verb, w.model, node)
	}
	// A QA super-network holds its quantized base lowered (float weights plus grids, and the
	// unadapted linears' packed integers dequantized by standard operators): no MatMulNBits
	// for the check above, yet quantized all the same.
	if recs, err := quant.ReadLowered(m); err != nil || len(recs) > 0 {
		if err != nil {
			return fmt.Errorf("%s %s: %w", w.verb, w.model, err)
		}
		return fmt.Errorf("%s %s: the model is a QA-SparsePEFT super-network (its linear %s is a quantized one lowered for training); %s the float model, then quantize and adapt, or export the super-network first",
			w.verb, w.model, recs[0].Node, w.verb)
	}
	return nil
}
