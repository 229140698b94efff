package pipeline

import (
	"fmt"
	"path/filepath"

	"github.com/shears-ml/shears/deploy"
	"github.com/shears-ml/shears/nls"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/transform/convert"
	"github.com/shears-ml/shears/transform/lora"
	"github.com/shears-ml/shears/transform/merge"
)

// ExportOptions are the export stage's options (the flags of "shears export").
type ExportOptions struct {
	RunDir string // a run directory of nls.Train, or
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

// ExportResult is what an export wrote.
type ExportResult struct {
	Source    string
	Selection *merge.Selection
	// Untrained lists groups whose rank lies outside the trained rank space.
	Untrained []string
	// Final is false when a run directory had not finished (its latest checkpoint was used).
	Final bool
	Steps int
	*merge.Report
	// Folder is what a model folder holds (Output.Format folder only).
	Folder *deploy.Report `json:"folder,omitempty"`
}

// Export writes one sub-adapter of a trained super-network as a graph with the model's own
// inputs only: unmerged, dense-merged or sparsity-keeping merged (transform/merge).
func Export(o ExportOptions) (*ExportResult, error) {
	if (o.RunDir == "") == (o.Super == "") {
		return nil, fmt.Errorf("export: give a run directory or a super-network file (one of them)")
	}
	if o.Out == "" {
		return nil, fmt.Errorf("export: no output file given")
	}
	if o.Selection == nil && (o.Config == "") == (o.Ranks == "") {
		return nil, fmt.Errorf("export: give exactly one of a CONFIG.json and a rank preset (heuristic, max, min)")
	}
	if o.Merge == "" {
		o.Merge = string(merge.None)
	}
	mode, err := merge.ParseMode(o.Merge)
	if err != nil {
		return nil, fmt.Errorf("export: merge: %w", err)
	}
	if o.DType == "" {
		o.DType = "fp32"
	}
	if o.DType != "fp32" && o.DType != "fp16" {
		return nil, fmt.Errorf("export: dtype %q: want fp32 or fp16", o.DType)
	}
	sink, err := o.Output.begin(o.Out)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	defer sink.abort()
	res := &ExportResult{Source: o.Super, Final: true}
	var sup *onnx.Model
	if o.RunDir != "" {
		run, err := nls.LoadRun(o.RunDir)
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
		for _, f := range []string{nls.RunFile, nls.CheckpointFile, nls.AdapterFile, nls.MetricsFile, nls.SamplesFile} {
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
		sel.Params = merge.Params(meta, sel.Ranks)
	}
	res.Selection = sel
	out, rep, err := merge.Export(sup, sel.Ranks, mode)
	if err != nil {
		return nil, err
	}
	res.Report = rep
	so := onnx.SaveOptions{ExternalData: o.External || sup.HasExternal()}
	if o.DType == "fp16" {
		// Weight-only fp16 (transform/convert): the linears and embeddings are stored as fp16
		// behind Casts, so the file halves and the CPU provider still runs it; zeros stay zeros.
		plan, err := convert.NewPlan(out, convert.Options{DType: onnxpb.TensorProto_FLOAT16})
		if err != nil {
			return nil, err
		}
		if err := plan.Rewrite(out); err != nil {
			return nil, err
		}
		so = plan.SaveOptions(so)
	}
	if o.PEFT != "" {
		if _, err := merge.WritePEFT(o.PEFT, sup, sel.Ranks, o.BaseModel); err != nil {
			return nil, err
		}
	}
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
