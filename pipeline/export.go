package pipeline

import (
	"fmt"
	"path/filepath"

	"github.com/shears-ml/shears/deploy"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/transform/convert"
	"github.com/shears-ml/shears/transform/decoder"
	"github.com/shears-ml/shears/transform/lora"
	"github.com/shears-ml/shears/transform/merge"
	"github.com/shears-ml/shears/transform/quant"
)

// ExportOptions are the export stage's options (the flags of "shears export").
type ExportOptions struct {
	RunDir string // a run directory of Train, or
	Super  string // a super-network file with trained A and B
	Config string // CONFIG.json of the sub-adapter, or
	Ranks  string // a preset: heuristic, max or min
	// Selection, when set, is used as given (Config and Ranks are then ignored).
	Selection *merge.Selection
	Out       string
	Merge     string // none (default), dense or sparse
	DType     string // fp32 (default) or fp16
	PEFT      string // also write a PEFT adapter folder
	BaseModel string // base_model_name_or_path of the PEFT config
	External  bool
	// CopyBase: with --merge none the export refers to the base's external data file (as the
	// super-network does) unless CopyBase is set; merged exports are always self-contained.
	CopyBase bool
	Warn     func(string)
	// Output writes a model folder instead of a file (self-contained: CopyBase is implied).
	Output Output
}

// MergeMode is how an export treats the adapter: kept beside the base (MergeNone), merged
// densely (MergeDense) or merged keeping the base's zeros (MergeSparse).
type MergeMode = merge.Mode

// The merge modes of Export.
const (
	MergeNone   = merge.None
	MergeDense  = merge.Dense
	MergeSparse = merge.Sparse
)

// Selection is one chosen sub-adapter (CONFIG.json): the rank of every group, with the
// strategy and score that chose it.
type Selection = merge.Selection

// ExportResult is what an export wrote; its JSON is the "shears export --json" document.
type ExportResult struct {
	Source    string     `json:"super"` // the run directory or super-network exported
	Output    string     `json:"output"`
	DType     string     `json:"dtype"`
	PEFT      string     `json:"peft,omitempty"`
	Selection *Selection `json:"selection"`
	// Untrained lists groups whose rank lies outside the trained rank space.
	Untrained []string `json:"untrained_groups,omitempty"`
	// Final is false when a run directory had not finished (its latest checkpoint was used).
	Final bool `json:"-"`
	Steps int  `json:"-"`
	*merge.Report
	// Folder is what a model folder holds (Output.Format folder only).
	Folder *deploy.Report `json:"folder,omitempty"`
	// Quantized describes a QA-SparsePEFT export: the linears put back on the base's grid as
	// MatMulNBits (nil for a float run).
	Quantized *QuantizedExport `json:"quantized,omitempty"`
}

// QuantizedExport is the quantized part of an export of a QA-SparsePEFT run.
type QuantizedExport struct {
	Layers []quant.Raised `json:"layers"`
	// ZerosKept: every zero of the merged float weights (the base's zeros; a sparse merge adds
	// none) dequantizes to exactly 0.
	ZerosKept bool `json:"zeros_kept"`
	// MaxSteps is the largest |W' − dequant(Q(W'))| / scale over all weights (≤ 0.5), W' the
	// merged float weight the unmerged export computes with. RefitBlocks of Blocks got a grid
	// of their own because W' left the base's range there (quant.Requantize; the QA train graph
	// used the same grids), their scale at most MaxScaleRatio × the base's.
	MaxSteps      float64 `json:"max_steps"`
	Weights       int64   `json:"weights"`
	RefitBlocks   int64   `json:"refit_blocks"`
	Blocks        int64   `json:"blocks"`
	MaxScaleRatio float64 `json:"max_scale_ratio,omitempty"`
}

// quantizedExport puts a QA-SparsePEFT export back into MatMulNBits form: with a sparse merge
// every lowered linear (adapted or not) is requantized on the base's own grid (a block whose
// merged weights left it refit, as the train graph did); with none the
// base is requantized and each adapter becomes x·(M ⊙ s·A_r·B_r) with M read from the
// quantized base itself (quant.DequantReads), so the export holds no float base weights.
func quantizedExport(out, sup *onnx.Model, mode merge.Mode) (*QuantizedExport, error) {
	if mode == merge.None {
		if err := lora.UnfakeQA(out); err != nil {
			return nil, err
		}
	}
	raised, err := quant.Raise(out, sup)
	if err != nil {
		return nil, err
	}
	if mode == merge.None {
		if err := quant.DequantReads(out, raised); err != nil {
			return nil, err
		}
	}
	q := &QuantizedExport{Layers: raised, ZerosKept: true}
	for _, r := range raised {
		q.ZerosKept = q.ZerosKept && r.ZerosKept
		q.MaxSteps = max(q.MaxSteps, r.MaxSteps)
		q.MaxScaleRatio = max(q.MaxScaleRatio, r.MaxScaleRatio)
		q.RefitBlocks += r.RefitBlocks
		q.Blocks += r.Blocks
		q.Weights += r.Weights
	}
	return q, nil
}

// check validates the options (usage errors name the flag) and fills the defaults.
func (o *ExportOptions) check() (merge.Mode, error) {
	if (o.RunDir == "") == (o.Super == "") {
		return "", fmt.Errorf("%w: give the run directory RUN_DIR or --super SUPER.onnx (one of them)", ErrUsage)
	}
	if o.Out == "" {
		return "", fmt.Errorf("%w: -o OUT.onnx is required", ErrUsage)
	}
	if o.Selection == nil && (o.Config == "") == (o.Ranks == "") {
		return "", fmt.Errorf("%w: give exactly one of --config CONFIG.json and --ranks heuristic|max|min", ErrUsage)
	}
	if o.Merge == "" {
		o.Merge = string(merge.None)
	}
	mode, err := merge.ParseMode(o.Merge)
	if err != nil {
		return "", fmt.Errorf("%w: --merge: %v", ErrUsage, err)
	}
	if o.DType == "" {
		o.DType = "fp32"
	}
	if o.DType != "fp32" && o.DType != "fp16" {
		return "", fmt.Errorf("%w: --dtype %q: want fp32 or fp16", ErrUsage, o.DType)
	}
	return mode, nil
}

// Export writes one sub-adapter of a trained super-network as a graph with the model's own
// inputs only: unmerged, dense-merged or sparsity-keeping merged (transform/merge).
func Export(o ExportOptions) (*ExportResult, error) {
	mode, err := o.check()
	if err != nil {
		return nil, err
	}
	sink, err := o.Output.begin(o.Out)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	defer sink.abort()
	res := &ExportResult{Source: o.Super, Final: true, Output: o.Out, DType: o.DType, PEFT: o.PEFT}
	var sup *onnx.Model
	if o.RunDir != "" {
		run, err := OpenRun(o.RunDir)
		if err != nil {
			return nil, err
		}
		sup, res.Source, res.Final, res.Steps = run.Model, o.RunDir, run.Final, run.Steps
	} else if sup, err = onnx.Load(o.Super); err != nil {
		return nil, err
	}
	defer sup.Close()
	if err := sink.check(sup); err != nil {
		return nil, err
	}
	ins := modelInputs(sup, "the super-network", nil)
	if o.RunDir != "" {
		for _, f := range []string{RunFile, CheckpointFile, AdapterFile, MetricsFile, SamplesFile} {
			ins[filepath.Join(o.RunDir, f)] = "a file of the run"
		}
	}
	if err := CheckOutputs(append(modelOutputs(o.Out), o.PEFT), ins); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	meta, err := lora.ReadConfig(sup)
	if err != nil {
		return nil, err
	}
	sel := o.Selection
	switch {
	case sel != nil:
		c := *sel
		sel = &c
	case o.Config != "":
		sel, err = merge.ReadSelection(o.Config)
	default:
		sel, err = merge.Preset(meta, o.Ranks)
	}
	if err != nil {
		return nil, err
	}
	if res.Untrained, err = merge.Check(meta, sel.Ranks); err != nil {
		if o.Config != "" {
			return nil, fmt.Errorf("%s: %w", o.Config, err)
		}
		return nil, err
	}
	if sel.Params == 0 {
		sel.Params = meta.Params(sel.Ranks)
	}
	res.Selection = sel
	if meta.QuantAware {
		if mode == merge.Dense {
			return nil, fmt.Errorf("export: %s was trained on a quantized base (QA-SparsePEFT): a dense merge would fill its zeros; use --merge sparse (a MatMulNBits model on the base's grid) or none", res.Source)
		}
		if o.DType != "fp32" || o.PEFT != "" {
			return nil, fmt.Errorf("export: a quantized run exports MatMulNBits models only (no --dtype fp16, no PEFT folder)")
		}
	}
	// A merged decoder exports both branches, planned the same way, with one copy of the
	// weights. The merged weights are computed as the model is written (plan.SaveOptions), one
	// at a time, as prune and convert stream theirs.
	var plan *merge.Plan
	out, err := decoder.EachBranch(sup, func(b *onnx.Model, cache bool) (*onnx.Model, error) {
		p, err := merge.Prepare(b, sel.Ranks, mode)
		if err != nil {
			return nil, err
		}
		if cache {
			plan = p
		}
		return p.Model, nil
	})
	if err != nil {
		return nil, err
	}
	res.Report = plan.Report
	so := onnx.SaveOptions{ExternalData: o.External || sup.HasExternal()}
	if meta.QuantAware {
		// Quantizing reads the merged weights: merge them in memory first (QA-SparsePEFT runs).
		if err := plan.Apply(out); err != nil {
			return nil, err
		}
		if res.Quantized, err = quantizedExport(out, sup, mode); err != nil {
			return nil, fmt.Errorf("export: %w", err)
		}
	} else {
		so = plan.SaveOptions(so)
	}
	if o.DType == "fp16" {
		// Weight-only fp16 (transform/convert): the linears and embeddings are stored as fp16
		// behind Casts, so the file halves and the CPU provider still runs it; zeros stay zeros.
		cp, err := convert.NewPlan(out, convert.Options{DType: onnxpb.TensorProto_FLOAT16})
		if err != nil {
			return nil, err
		}
		if err := cp.Rewrite(out); err != nil {
			return nil, err
		}
		so = cp.SaveOptions(so)
	}
	if o.PEFT != "" {
		if _, err := merge.WritePEFT(o.PEFT, sup, sel.Ranks, o.BaseModel); err != nil {
			return nil, err
		}
	}
	recordHistory(out)
	share := mode == merge.None && o.DType == "fp32" && !o.CopyBase && !sink.folderMode()
	if err := ShareSave(out, sink.path, sink.saveOptions(so), share, o.Warn); err != nil {
		return nil, err
	}
	if m := sel.Metric; m != nil {
		strategy := sel.Strategy
		if strategy == "" {
			strategy = "config"
		}
		sink.out.Card.Eval = append(sink.out.Card.Eval, deploy.EvalRow{Name: m.Name, Value: m.Value, Note: "the sub-adapter search's score (" + strategy + ")"})
	}
	if res.Folder, err = sink.finish(res.Source, "", o.Warn); err != nil {
		return nil, err
	}
	return res, nil
}
