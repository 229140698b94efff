package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/shears-ml/shears/internal/dirlock"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/tokenizer"
	"github.com/shears-ml/shears/transform/lora"
	"github.com/shears-ml/shears/transform/merge"
)

// Options control Run.
type Options struct {
	// Log receives one line per stage (started, skipped, done); nil discards.
	Log io.Writer
	// Progress, when set, is told of every optimizer step of a training stage (Event.Stage
	// names the recipe's stage: "train", "train-lora-dense", ...).
	Progress ProgressFunc
	// StageDone, when set, is called after every stage (run or skipped).
	StageDone func(StageTime)
	// Context, when cancelled, stops a training stage after its current step with a
	// checkpoint (a later Run resumes it) and makes Run return its error.
	Context context.Context
}

// runner carries one Run's state.
type runner struct {
	r      *Recipe
	o      Options
	ro     runtime.Options
	tok    tokenizer.Tokenizer
	files  fileHashes
	stages []StageTime
}

// model is one row of the summary: a deliverable model and where it came from.
type model struct {
	Key     string  // file-name safe: dense, sparse, nls-heuristic, ...
	Label   string  // the row's name
	Path    string  // the ONNX file evaluated
	ID      string  // the producing stage's execution id (or the file's content hash)
	Base    string  // the base model whose non-zeros count
	Adapter int64   // active adapter parameters
	TrainS  float64 // training seconds (0 for none)
}

// Run runs the recipe's stages in order, skipping those already done with the same options
// and inputs, then evaluates every model and writes summary.md and summary.json in the work
// directory.
func Run(r *Recipe, o Options) (*Summary, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Context == nil {
		o.Context = context.Background()
	}
	if err := os.MkdirAll(r.Work, 0o755); err != nil {
		return nil, fmt.Errorf("work directory: %w", err)
	}
	// One process per work directory: a second "shears run" (a changed recipe included) never
	// trains or deletes stages under a live one (issue 14 case 7).
	lock, err := dirlock.Acquire(r.Work, "shears run")
	if err != nil {
		return nil, fmt.Errorf("work directory %w", err)
	}
	defer lock.Release()
	ro, err := r.Runtime.Load()
	if err != nil {
		return nil, err
	}
	tok, err := tokenizer.Load(r.Tokenizer)
	if err != nil {
		return nil, err
	}
	rn := &runner{r: r, o: o, ro: ro, tok: tok, files: fileHashes{}}
	start := time.Now()
	rows, err := rn.stagesAll()
	if err != nil {
		return nil, err
	}
	sum, err := rn.evaluate(rows)
	if err != nil {
		return nil, err
	}
	sum.Seconds = time.Since(start).Seconds()
	if err := sum.write(r.Work); err != nil {
		return nil, err
	}
	if r.Serve != nil && r.Serve.Folder != "" {
		if err := rn.serve(r.Serve.Folder, rows, sum); err != nil {
			return nil, err
		}
	}
	return sum, nil
}

// stagesAll runs prune → adapt → train → search → export (and the baselines) and returns
// the rows to evaluate.
func (rn *runner) stagesAll() ([]model, error) {
	r := rn.r
	modelID, err := rn.files.of(r.Model)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	dense := model{Key: "dense", Label: "dense base", Path: r.Model, ID: modelID, Base: r.Model}
	rows := []model{dense}
	base := dense
	if p := r.Prune; p != nil {
		out := rn.path("prune", "model.onnx")
		in, err := rn.inputs(map[string]string{"model": modelID}, map[string]string{"tokenizer": r.Tokenizer, "calib": p.Calib})
		if err != nil {
			return nil, err
		}
		var rep PruneReport
		id, err := rn.do("prune", p, in, []string{out}, &rep, func(bool) (any, error) {
			return Prune(PruneOptions{Model: r.Model, Out: out, Method: p.Method, Sparsity: *p.Sparsity, Pattern: p.Pattern,
				Calib: p.Calib, Tokenizer: r.Tokenizer, Samples: p.Samples, SeqLen: p.SeqLen, Seed: p.Seed, OneShot: p.OneShot,
				Include: p.Include, Exclude: p.Exclude, Runtime: rn.ro})
		})
		if err != nil {
			return nil, err
		}
		base = model{Key: "sparse", Label: sparseLabel(p) + " base", Path: out, ID: id, Base: out}
		rows = append(rows, base)
	}
	prefix := "dense"
	if r.Prune != nil {
		prefix = sparseLabel(r.Prune)
	}

	super, superID, err := rn.adapt("adapt", base)
	if err != nil {
		return nil, err
	}
	runDir, runID, trainS, err := rn.train("train", super, superID, nil)
	if err != nil {
		return nil, err
	}
	heur, err := rn.export("export-heuristic", runDir, runID, &merge.Selection{Strategy: "heuristic"})
	if err != nil {
		return nil, err
	}
	heur.Key, heur.Label, heur.Base, heur.TrainS = "nls-heuristic", prefix+" + NLS (heuristic)", base.Path, trainS
	rows = append(rows, heur)
	if s := r.Search; s != nil && s.Strategy != "heuristic" {
		sel, selID, err := rn.search(runDir, runID)
		if err != nil {
			return nil, err
		}
		m, err := rn.export("export-searched", runDir, runID+"/"+selID, sel)
		if err != nil {
			return nil, err
		}
		m.Key, m.Label, m.Base, m.TrainS = "nls-searched", fmt.Sprintf("%s + NLS (searched: %s)", prefix, s.Strategy), base.Path, trainS
		rows = append(rows, m)
	}
	if q := r.Quantize; q != nil {
		qrows, err := rn.quantized(q, base, prefix)
		if err != nil {
			return nil, err
		}
		rows = append(rows, qrows...)
	}
	if r.Baselines.LoRA {
		rmax := r.Adapt.Ranks[0]
		lora := []int{rmax}
		dsuper, dsuperID, err := rn.adapt("adapt-dense", dense)
		if err != nil {
			return nil, err
		}
		for _, v := range []struct {
			key, label, super, id string
			base                  model
		}{
			{"lora-dense", fmt.Sprintf("dense + LoRA r=%d", rmax), dsuper, dsuperID, dense},
			{"lora-sparse", fmt.Sprintf("%s + LoRA r=%d", prefix, rmax), super, superID, base},
		} {
			if v.key == "lora-sparse" && r.Prune == nil {
				continue // the same as lora-dense
			}
			dir, id, secs, err := rn.train("train-"+v.key, v.super, v.id, lora)
			if err != nil {
				return nil, err
			}
			m, err := rn.export("export-"+v.key, dir, id, &merge.Selection{Strategy: "max"})
			if err != nil {
				return nil, err
			}
			m.Key, m.Label, m.Base, m.TrainS = v.key, v.label, v.base.Path, secs
			rows = append(rows, m)
		}
	}
	return rows, nil
}

func sparseLabel(p *RecipePrune) string {
	method := p.Method
	if method == MethodWanda {
		method = "Wanda"
	}
	s := fmt.Sprintf("%g%% %s", 100**p.Sparsity, method)
	if p.Pattern != DefaultPattern {
		s += " " + p.Pattern
	}
	return s
}

// adapt inserts the super-adapters into base.
func (rn *runner) adapt(stage string, base model) (string, string, error) {
	a := rn.r.Adapt
	out := rn.path(stage, "super.onnx")
	cfg := lora.Config{Targets: a.Targets, Ranks: a.Ranks, Alpha: a.Alpha, Groups: a.Groups, Dropout: *a.Dropout, Seed: a.Seed, SparseAdapter: a.SparseAdapter}
	var res struct {
		Modules int              `json:"modules"`
		Groups  int              `json:"groups"`
		Params  map[string]int64 `json:"params"`
	}
	id, err := rn.do(stage, a, map[string]string{"base": base.ID}, []string{out}, &res, func(bool) (any, error) {
		rep, err := Adapt(AdaptOptions{Model: base.Path, Out: out, LoRA: cfg, Include: a.Include, Exclude: a.Exclude})
		if err != nil {
			return nil, err
		}
		res.Modules, res.Groups, res.Params = rep.Modules, len(rep.MaskInputs), rep.Params
		return res, nil
	})
	return out, id, err
}

// trainResult is a training stage's record.
type trainResult struct {
	Steps      int     `json:"steps"`
	FirstLoss  float64 `json:"first_loss"`
	LastLoss   float64 `json:"last_loss"`
	TokensPerS float64 `json:"tokens_per_s"`
	TrainS     float64 `json:"train_seconds"` // over the whole run, resumes included
}

// train runs NLS (ranks nil: the whole rank space) or plain LoRA (one rank) on super.
func (rn *runner) train(stage, super, superID string, ranks []int) (string, string, float64, error) {
	t := rn.r.Train
	dir := rn.path(stage, "run")
	in, err := rn.inputs(map[string]string{"super": superID}, map[string]string{"data": t.Data, "tokenizer": rn.r.Tokenizer})
	if err != nil {
		return "", "", 0, err
	}
	opts := struct {
		RecipeTrain
		Ranks []int `json:"ranks"`
	}{t, ranks}
	var res trainResult
	id, err := rn.do(stage, opts, in, []string{filepath.Join(dir, AdapterFile)}, &res, func(resume bool) (any, error) {
		to := DefaultTrainOptions()
		to.Super, to.Data, to.Tokenizer, to.Out = super, t.Data, rn.r.Tokenizer, dir
		to.Epochs, to.LR, to.Batch, to.MicroBatch, to.Cutoff = t.Epochs, t.LR, t.Batch, t.MicroBatch, t.Cutoff
		to.Seed, to.Warmup, to.WeightDecay, to.MaxGradNorm, to.TrainOnInputs = *t.Seed, t.Warmup, t.WeightDecay, *t.MaxGradNorm, *t.TrainOnInputs
		to.Bucket, to.MaxGraphs, to.CheckpointEvery, to.Ranks = t.Bucket, t.MaxGraphs, t.CheckpointEvery, ranks
		to.Runtime, to.Context = rn.ro, rn.o.Context
		_, statErr := os.Stat(filepath.Join(dir, CheckpointFile))
		to.Resume = resume && statErr == nil
		if !to.Resume {
			if err := dirlock.RemoveAll(dir); err != nil {
				return nil, err
			}
		} else {
			fmt.Fprintf(rn.o.Log, "  %s: resuming %s from its checkpoint\n", stage, dir)
		}
		if rn.o.Progress != nil {
			to.Progress = func(e Event) {
				e.Stage = stage
				rn.o.Progress(e)
			}
		}
		out, err := Train(to)
		if err != nil {
			return nil, err
		}
		if out.Stopped {
			return nil, fmt.Errorf("%s: stopped after step %d of %d; run the recipe again to resume", stage, out.Steps, out.Total)
		}
		res = trainResult{Steps: out.Steps, FirstLoss: out.FirstLoss, LastLoss: out.LastLoss, TokensPerS: out.TokensPerS, TrainS: out.TrainS}
		return res, nil
	})
	return dir, id, res.TrainS, err
}

// quantized runs the quantize section: one MatMulNBits model per method from base, and the
// QA-SparsePEFT row (adapt, train, heuristic export merged sparse) on the model of method q.QA.
func (rn *runner) quantized(q *RecipeQuantize, base model, prefix string) ([]model, error) {
	var rows []model
	for _, method := range q.Methods {
		stage := "quantize-" + method
		out := rn.path(stage, "model.onnx")
		files := map[string]string{}
		if method == QuantGPTQ {
			files = map[string]string{"tokenizer": rn.r.Tokenizer, "calib": q.Calib}
		}
		in, err := rn.inputs(map[string]string{"base": base.ID}, files)
		if err != nil {
			return nil, err
		}
		opts := struct {
			RecipeQuantize
			Method string `json:"method"`
		}{*q, method}
		opts.Methods, opts.QA = nil, ""
		var rep QuantizeReport
		id, err := rn.do(stage, opts, in, []string{out}, &rep, func(bool) (any, error) {
			return Quantize(QuantizeOptions{Model: base.Path, Out: out, Bits: q.Bits, BlockSize: q.BlockSize, Method: method,
				Symmetric: q.Symmetric, Calib: q.Calib, Tokenizer: rn.r.Tokenizer, Samples: q.Samples, SeqLen: q.SeqLen, Seed: q.Seed, Runtime: rn.ro})
		})
		if err != nil {
			return nil, err
		}
		label := fmt.Sprintf("%s + int%d %s", prefix, q.Bits, strings.ToUpper(method))
		qm := model{Key: fmt.Sprintf("int%d-%s", q.Bits, method), Label: label, Path: out, ID: id, Base: out}
		rows = append(rows, qm)
		if q.QA != method {
			continue
		}
		super, superID, err := rn.adapt("adapt-qa", qm)
		if err != nil {
			return nil, err
		}
		runDir, runID, trainS, err := rn.train("train-qa", super, superID, nil)
		if err != nil {
			return nil, err
		}
		m, err := rn.exportAs("export-qa", runDir, runID, &merge.Selection{Strategy: "heuristic"}, RecipeExport{Merge: "sparse", DType: "fp32"})
		if err != nil {
			return nil, err
		}
		m.Key, m.Label, m.Base, m.TrainS = "qa-"+method, label+" + QA-SparsePEFT (heuristic, merged int"+fmt.Sprint(q.Bits)+")", m.Path, trainS
		rows = append(rows, m)
	}
	return rows, nil
}

// export writes the sub-adapter sel of a run (sel.Ranks nil: the preset named by Strategy).
func (rn *runner) export(stage, runDir, runID string, sel *merge.Selection) (model, error) {
	return rn.exportAs(stage, runDir, runID, sel, rn.r.Export)
}

// exportAs is export with the given export options instead of the recipe's.
func (rn *runner) exportAs(stage, runDir, runID string, sel *merge.Selection, e RecipeExport) (model, error) {
	out := rn.path(stage, "model.onnx")
	var res struct {
		Adapter  int64      `json:"adapter_params"`
		Ranks    lora.Ranks `json:"ranks"`
		Sparsity [2]float64 `json:"sparsity_before_after"`
	}
	opts := struct {
		RecipeExport
		Preset string `json:"preset,omitempty"`
	}{e, ""}
	if sel.Ranks == nil {
		opts.Preset = sel.Strategy
	}
	id, err := rn.do(stage, opts, map[string]string{"run": runID}, []string{out}, &res, func(bool) (any, error) {
		eo := ExportOptions{RunDir: runDir, Out: out, Merge: e.Merge, DType: e.DType}
		if sel.Ranks == nil {
			eo.Ranks = sel.Strategy
		} else {
			eo.Selection = sel
		}
		x, err := Export(eo)
		if err != nil {
			return nil, err
		}
		res.Adapter, res.Ranks = x.Selection.Params, x.Selection.Ranks
		res.Sparsity = [2]float64{x.SparsityBefore(), x.SparsityAfter()}
		return res, nil
	})
	return model{Path: out, ID: id, Adapter: res.Adapter}, err
}

// path is a file of a stage's folder in the work directory.
func (rn *runner) path(stage, name string) string { return filepath.Join(rn.r.Work, stage, name) }

// inputs merges upstream ids with the content hashes of files (empty paths skipped).
func (rn *runner) inputs(ids map[string]string, files map[string]string) (map[string]string, error) {
	in := map[string]string{}
	for k, v := range ids {
		in[k] = v
	}
	for k, p := range files {
		if p == "" {
			continue
		}
		h, err := rn.files.of(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		in[k] = h
	}
	return in, nil
}

// do runs one stage unless its manifest says it is done with the same hash and its outputs
// exist; result receives the stage's result either way. fn gets resume = true when the last
// attempt at this very stage (same hash) did not finish; otherwise the stage's folder starts
// empty. It returns the execution id downstream stages hash.
func (rn *runner) do(stage string, options any, inputs map[string]string, outputs []string, result any, fn func(resume bool) (any, error)) (string, error) {
	dir := filepath.Join(rn.r.Work, stage)
	hash, err := stageHash(stage, options, inputs)
	if err != nil {
		return "", err
	}
	m, err := readManifest(dir)
	if err != nil {
		return "", err
	}
	if m != nil && m.Hash == hash && exist(outputs) {
		if err := json.Unmarshal(m.Result, result); err != nil {
			return "", fmt.Errorf("%s: %s: result: %w", stage, filepath.Join(dir, manifestFile), err)
		}
		fmt.Fprintf(rn.o.Log, "== %s: done before with the same options and inputs (%.1fs then); skipped\n", stage, m.Seconds)
		rn.record(StageTime{Stage: stage, Seconds: m.Seconds, Cached: true})
		return m.ID, nil
	}
	pending, _ := os.ReadFile(filepath.Join(dir, pendingFile))
	resume := string(pending) == hash
	if !resume {
		if err := dirlock.RemoveAll(dir); err != nil {
			return "", fmt.Errorf("%s: %w", stage, err)
		}
	} else {
		os.Remove(filepath.Join(dir, manifestFile))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("%s: %w", stage, err)
	}
	if err := onnx.WriteFileAtomic(filepath.Join(dir, pendingFile), []byte(hash)); err != nil {
		return "", err
	}
	fmt.Fprintf(rn.o.Log, "== %s\n", stage)
	t0 := time.Now()
	res, err := fn(resume)
	if err != nil {
		return "", fmt.Errorf("%s: %w", stage, err)
	}
	secs := time.Since(t0).Seconds()
	raw, err := json.Marshal(res)
	if err != nil {
		return "", fmt.Errorf("%s: result: %w", stage, err)
	}
	if err := json.Unmarshal(raw, result); err != nil {
		return "", fmt.Errorf("%s: result: %w", stage, err)
	}
	done := time.Now().UTC()
	idSum, _ := stageHash(stage, done.Format(time.RFC3339Nano), map[string]string{"hash": hash})
	rel := make([]string, len(outputs))
	for i, p := range outputs {
		if rel[i], err = filepath.Rel(rn.r.Work, p); err != nil {
			rel[i] = p
		}
	}
	man := Manifest{Version: manifestVersion, Stage: stage, Hash: hash, ID: idSum, Options: options, Inputs: inputs,
		Outputs: rel, Seconds: secs, Done: done, Result: raw}
	if err := WriteJSON(filepath.Join(dir, manifestFile), man); err != nil {
		return "", err
	}
	os.Remove(filepath.Join(dir, pendingFile))
	fmt.Fprintf(rn.o.Log, "   %s done in %.1fs\n", stage, secs)
	rn.record(StageTime{Stage: stage, Seconds: secs})
	return idSum, nil
}

func (rn *runner) record(s StageTime) {
	rn.stages = append(rn.stages, s)
	if rn.o.StageDone != nil {
		rn.o.StageDone(s)
	}
}

func exist(paths []string) bool {
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	return true
}

// evalKey is a file-name safe form of a row key or evaluation name.
func evalKey(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '-'
	}, s)
}

func (rn *runner) logf(format string, a ...any) { fmt.Fprintf(rn.o.Log, format, a...) }
