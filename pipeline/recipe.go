package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/shears-ml/shears/transform/lora"
)

// Recipe is a "shears run" recipe: one pipeline over one base model. Sections left out of the
// file keep the CLI defaults; a stage runs when its section is present (prune, search,
// baselines) or always (adapt, train, export, eval). Relative paths are taken from the
// recipe file's folder, and $VAR, ${VAR} and ${VAR:-default} in paths are expanded from the environment.
type Recipe struct {
	Work      string        `yaml:"work" json:"work"`           // the work directory: every stage's outputs
	Model     string        `yaml:"model" json:"model"`         // the base ONNX model (dense)
	Tokenizer string        `yaml:"tokenizer" json:"tokenizer"` // tokenizer.Load path
	Runtime   RuntimeConfig `yaml:"runtime" json:"runtime"`
	Prune     *RecipePrune  `yaml:"prune" json:"prune,omitempty"`
	// Quantize adds rows for the (pruned) base quantized to MatMulNBits, and optionally one for
	// QA-SparsePEFT trained on one of them.
	Quantize *RecipeQuantize `yaml:"quantize" json:"quantize,omitempty"`
	Adapt    RecipeAdapt     `yaml:"adapt" json:"adapt"`
	Train    RecipeTrain     `yaml:"train" json:"train"`
	Search   *RecipeSearch   `yaml:"search" json:"search,omitempty"`
	Export   RecipeExport    `yaml:"export" json:"export"`
	// Serve, when set, writes the Shears model as a model folder at the end of the run.
	Serve     *RecipeServe `yaml:"serve,omitempty" json:"serve,omitempty"`
	Baselines RecipeBase   `yaml:"baselines" json:"baselines"`
	Eval      []RecipeEval `yaml:"eval" json:"eval"`
}

// RecipePrune is "shears prune"'s options.
type RecipePrune struct {
	Method   string   `yaml:"method" json:"method"`
	Sparsity *float64 `yaml:"sparsity" json:"sparsity"`
	Pattern  string   `yaml:"pattern" json:"pattern"`
	Calib    string   `yaml:"calib" json:"calib"`
	Samples  int      `yaml:"samples" json:"samples"`
	SeqLen   int      `yaml:"seq_len" json:"seq_len"`
	Seed     uint64   `yaml:"seed" json:"seed"`
	OneShot  bool     `yaml:"one_shot" json:"one_shot"`
	Include  string   `yaml:"include" json:"include"`
	Exclude  string   `yaml:"exclude" json:"exclude"`
}

// RecipeQuantize is "shears quantize"'s options for the quantized rows: one model per method,
// quantized from the prune stage's output (or the dense model without a prune section).
type RecipeQuantize struct {
	Bits      int      `yaml:"bits" json:"bits"`             // 4 (default) or 8
	BlockSize int      `yaml:"block_size" json:"block_size"` // 32 (default), 64, 128
	Symmetric bool     `yaml:"symmetric" json:"symmetric"`
	Methods   []string `yaml:"methods" json:"methods"` // rtn, gptq (default [rtn])
	Calib     string   `yaml:"calib" json:"calib"`     // gptq calibration data (default prune.calib)
	Samples   int      `yaml:"samples" json:"samples"`
	SeqLen    int      `yaml:"seq_len" json:"seq_len"`
	Seed      uint64   `yaml:"seed" json:"seed"`
	// QA names the method whose model also gets QA-SparsePEFT: adapt and train as the recipe's
	// own (NLS), exported at the heuristic ranks with a sparse merge back to MatMulNBits.
	QA string `yaml:"qa" json:"qa"`
}

// RecipeAdapt is "shears adapt"'s options.
type RecipeAdapt struct {
	Targets       []string `yaml:"targets" json:"targets"`
	Ranks         []int    `yaml:"ranks" json:"ranks"`
	Alpha         float64  `yaml:"alpha" json:"alpha"`
	Groups        string   `yaml:"groups" json:"groups"`
	Dropout       *float64 `yaml:"dropout" json:"dropout"`
	Seed          uint64   `yaml:"seed" json:"seed"`
	SparseAdapter bool     `yaml:"sparse_adapter" json:"sparse_adapter"`
	Include       string   `yaml:"include" json:"include"`
	Exclude       string   `yaml:"exclude" json:"exclude"`
}

// RecipeTrain is "shears train"'s options (pointers where zero is a valid setting that
// differs from the default).
type RecipeTrain struct {
	Data            string   `yaml:"data" json:"data"`
	Epochs          int      `yaml:"epochs" json:"epochs"`
	LR              float64  `yaml:"lr" json:"lr"`
	Batch           int      `yaml:"batch" json:"batch"`
	MicroBatch      int      `yaml:"micro_batch" json:"micro_batch"`
	Cutoff          int      `yaml:"cutoff" json:"cutoff"`
	Seed            *uint64  `yaml:"seed" json:"seed"`
	Warmup          int      `yaml:"warmup" json:"warmup"`
	WeightDecay     float64  `yaml:"weight_decay" json:"weight_decay"`
	MaxGradNorm     *float64 `yaml:"max_grad_norm" json:"max_grad_norm"`
	TrainOnInputs   *bool    `yaml:"train_on_inputs" json:"train_on_inputs"`
	Bucket          int      `yaml:"bucket" json:"bucket"`
	MaxGraphs       int      `yaml:"max_graphs" json:"max_graphs"`
	CheckpointEvery int      `yaml:"checkpoint_every" json:"checkpoint_every"`
}

// RecipeSearch is "shears search"'s options.
type RecipeSearch struct {
	Strategy string `yaml:"strategy" json:"strategy"` // heuristic, hill-climb or evolution
	Data     string `yaml:"data" json:"data"`         // validation data
	Budget   int    `yaml:"budget" json:"budget"`     // evaluations at most (0 = the strategy's default)
	Metric   string `yaml:"metric" json:"metric"`     // loss (default) or accuracy
	Beams    int    `yaml:"beams" json:"beams"`       // accuracy: generation beams (0: 4, the reference's; 1: greedy)
	Choice   bool   `yaml:"choice" json:"choice"`     // accuracy on label tasks: log-likelihood instead of generation
	Cutoff   int    `yaml:"cutoff" json:"cutoff"`     // loss: tokens per sequence (0: the run's)
	Batch    int    `yaml:"batch" json:"batch"`       // loss: sequences per forward pass (0: 8)
	Limit    int    `yaml:"limit" json:"limit"`       // first N sequences / items (0: all)
	Seed     uint64 `yaml:"seed" json:"seed"`
}

// RecipeExport is "shears export"'s options for every exported model.
type RecipeExport struct {
	Merge string `yaml:"merge" json:"merge"` // none (default), dense, sparse
	DType string `yaml:"dtype" json:"dtype"` // fp32 (default), fp16
}

// RecipeServe writes the run's Shears model (the searched export, else the heuristic one) as a
// model folder for serving runtimes (deploy), its card carrying the run's evaluation tables.
type RecipeServe struct {
	Folder string `yaml:"folder" json:"folder"` // replaced on every run
}

// RecipeBase asks for the comparison rows of the Shears paper.
type RecipeBase struct {
	// LoRA also trains plain LoRA at r_max (one rank, same adapt and train options) on the
	// dense and on the sparse base.
	LoRA bool `yaml:"lora" json:"lora"`
}

// RecipeEval is one evaluation set, measured on every model of the summary.
type RecipeEval struct {
	Name   string `yaml:"name" json:"name"`
	Task   string `yaml:"task" json:"task"` // ppl (default) or answer-loss
	Data   string `yaml:"data" json:"data"`
	SeqLen int    `yaml:"seq_len" json:"seq_len"` // ppl window (capped to the context; default 2048)
	Batch  int    `yaml:"batch" json:"batch"`     // ppl windows per run (default 4)
	Limit  int    `yaml:"limit" json:"limit"`     // first N documents / items (0 = all)
}

// LoadRecipe reads a YAML or JSON recipe (JSON is YAML), rejecting unknown keys, fills the
// defaults and resolves paths.
func LoadRecipe(path string) (*Recipe, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("recipe: %w", err)
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("recipe: %w", err)
	}
	r, err := ParseRecipe(b, dir)
	if err != nil {
		return nil, fmt.Errorf("recipe %s: %w", path, err)
	}
	return r, nil
}

// ParseRecipe parses recipe text; relative paths are taken from dir.
func ParseRecipe(b []byte, dir string) (*Recipe, error) {
	var r Recipe
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&r); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("empty recipe")
		}
		return nil, err
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err == nil {
		if err := wholeNumbers(&root, reflect.TypeOf(r), ""); err != nil {
			return nil, err
		}
	}
	r.defaults()
	for _, p := range r.paths() {
		if *p != "" {
			*p = expand(*p)
			if !filepath.IsAbs(*p) {
				*p = filepath.Join(dir, *p)
			}
		}
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	return &r, nil
}

// paths are the recipe's file and folder fields.
func (r *Recipe) paths() []*string {
	ps := []*string{&r.Work, &r.Model, &r.Tokenizer, &r.Runtime.ORTLib, &r.Train.Data}
	if r.Prune != nil {
		ps = append(ps, &r.Prune.Calib)
	}
	if r.Quantize != nil {
		ps = append(ps, &r.Quantize.Calib)
	}
	if r.Search != nil {
		ps = append(ps, &r.Search.Data)
	}
	if r.Serve != nil {
		ps = append(ps, &r.Serve.Folder)
	}
	for i := range r.Eval {
		ps = append(ps, &r.Eval[i].Data)
	}
	return ps
}

// defaults fills what the file left out with the CLI defaults.
func (r *Recipe) defaults() {
	if r.Runtime.Device == "" {
		r.Runtime.Device = DefaultDevice
	}
	if p := r.Prune; p != nil {
		if p.Method == "" {
			p.Method = MethodWanda
		}
		if p.Sparsity == nil {
			p.Sparsity = ptr(0.5)
		}
		if p.Pattern == "" {
			p.Pattern = DefaultPattern
		}
		p.Samples = or(p.Samples, DefaultCalibSamples)
		p.SeqLen = or(p.SeqLen, DefaultCalibSeqLen)
	}
	if q := r.Quantize; q != nil {
		q.Bits = or(q.Bits, DefaultBits)
		q.BlockSize = or(q.BlockSize, DefaultBlockSize)
		if len(q.Methods) == 0 {
			q.Methods = []string{QuantRTN}
		}
		if q.Calib == "" && r.Prune != nil {
			q.Calib = r.Prune.Calib // resolved with the other paths
		}
		q.Samples = or(q.Samples, DefaultCalibSamples)
		q.SeqLen = or(q.SeqLen, DefaultCalibSeqLen)
	}
	a := &r.Adapt
	if len(a.Targets) == 0 {
		a.Targets = lora.DefaultTargets
	}
	if len(a.Ranks) == 0 {
		a.Ranks = lora.DefaultRanks
	}
	if a.Alpha == 0 {
		a.Alpha = lora.DefaultAlpha
	}
	if a.Dropout == nil {
		a.Dropout = ptr(0.1)
	}
	d := DefaultTrainOptions()
	t := &r.Train
	t.Epochs = or(t.Epochs, d.Epochs)
	if t.LR == 0 {
		t.LR = d.LR
	}
	t.Batch = or(t.Batch, d.Batch)
	t.MicroBatch = or(t.MicroBatch, d.MicroBatch)
	t.Cutoff = or(t.Cutoff, d.Cutoff)
	if t.Seed == nil {
		t.Seed = ptr(d.Seed)
	}
	if t.MaxGradNorm == nil {
		t.MaxGradNorm = ptr(d.MaxGradNorm)
	}
	if t.TrainOnInputs == nil {
		t.TrainOnInputs = ptr(d.TrainOnInputs)
	}
	t.Bucket = or(t.Bucket, d.Bucket)
	t.MaxGraphs = or(t.MaxGraphs, d.MaxGraphs)
	if s := r.Search; s != nil {
		if s.Strategy == "" {
			s.Strategy = "heuristic"
		}
		if s.Metric == "" {
			s.Metric = "loss"
		}
	}
	if r.Export.Merge == "" {
		r.Export.Merge = "none"
	}
	if r.Export.DType == "" {
		r.Export.DType = "fp32"
	}
	for i := range r.Eval {
		e := &r.Eval[i]
		if e.Task == "" {
			e.Task = "ppl"
		}
		e.SeqLen = or(e.SeqLen, DefaultEvalSeqLen)
		e.Batch = or(e.Batch, 4)
		if e.Name == "" {
			e.Name = strings.TrimSuffix(filepath.Base(e.Data), filepath.Ext(e.Data))
		}
	}
}

// check reports missing required fields by their recipe key.
func (r *Recipe) check() error {
	need := map[string]string{"work": r.Work, "model": r.Model, "tokenizer": r.Tokenizer, "train.data": r.Train.Data}
	if r.Prune != nil && r.Prune.Method == MethodWanda {
		need["prune.calib"] = r.Prune.Calib
	}
	if r.Search != nil && r.Search.Strategy != "heuristic" {
		need["search.data"] = r.Search.Data
	}
	for _, k := range []string{"work", "model", "tokenizer", "train.data", "prune.calib", "search.data"} {
		if v, ok := need[k]; ok && v == "" {
			return fmt.Errorf("%s is required", k)
		}
	}
	if q := r.Quantize; q != nil {
		seen := map[string]bool{}
		for _, m := range q.Methods {
			if err := (QuantizeOptions{Out: "-", Bits: q.Bits, BlockSize: q.BlockSize, Method: m, Calib: q.Calib, Tokenizer: r.Tokenizer}).Check(); err != nil {
				return fmt.Errorf("quantize.methods: %w", err)
			}
			if seen[m] {
				return fmt.Errorf("quantize.methods: %s listed twice", m)
			}
			seen[m] = true
		}
		if q.QA != "" && !seen[q.QA] {
			return fmt.Errorf("quantize.qa: %q is not one of quantize.methods %v", q.QA, q.Methods)
		}
	}
	if len(r.Eval) == 0 {
		return fmt.Errorf("eval: list at least one evaluation set ({name, task, data})")
	}
	names := map[string]bool{}
	for i, e := range r.Eval {
		switch {
		case e.Data == "":
			return fmt.Errorf("eval[%d]: data is required", i)
		case e.Task != "ppl" && e.Task != "answer-loss":
			return fmt.Errorf("eval[%d] (%s): task %q: want ppl or answer-loss", i, e.Name, e.Task)
		case names[e.Name]:
			return fmt.Errorf("eval[%d]: name %q used twice", i, e.Name)
		}
		names[e.Name] = true
	}
	return nil
}

// expand replaces $VAR, ${VAR} and ${VAR:-default} (default when VAR is unset or empty) from
// the environment.
func expand(s string) string {
	return os.Expand(s, func(v string) string {
		name, def, ok := strings.Cut(v, ":-")
		if val := os.Getenv(name); val != "" || !ok {
			return val
		}
		return def
	})
}

func ptr[T any](v T) *T { return &v }

func or(v, d int) int {
	if v == 0 {
		return d
	}
	return v
}

// wholeNumbers walks the recipe's YAML alongside the Recipe type and refuses a fractional
// number given for an integer field: yaml.v3 truncates it silently ("epochs: 1.7" became 1).
func wholeNumbers(n *yaml.Node, t reflect.Type, at string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if err := wholeNumbers(c, t, at); err != nil {
				return err
			}
		}
	case yaml.MappingNode:
		if t.Kind() != reflect.Struct {
			return nil
		}
		fields := map[string]reflect.Type{}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			fields[name] = f.Type
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			if ft, ok := fields[key]; ok {
				if err := wholeNumbers(n.Content[i+1], ft, strings.TrimPrefix(at+"."+key, ".")); err != nil {
					return err
				}
			}
		}
	case yaml.SequenceNode:
		if t.Kind() != reflect.Slice && t.Kind() != reflect.Array {
			return nil
		}
		for i, c := range n.Content {
			if err := wholeNumbers(c, t.Elem(), fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
	case yaml.ScalarNode:
		switch t.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			if f, err := strconv.ParseFloat(n.Value, 64); n.Tag == "!!float" && (err != nil || f != math.Trunc(f)) {
				return fmt.Errorf("recipe line %d: %s: %s is not a whole number", n.Line, at, n.Value)
			}
		}
	}
	return nil
}
