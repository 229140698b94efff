package main

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/pflag"

	"github.com/shears-ml/shears/pipeline"
)

type exportOpts struct {
	super     string
	config    string
	ranks     string
	out       string
	mode      string
	dtype     string
	peft      string
	baseModel string
	external  bool
	perLayer  bool
	json      bool
	output    outputFlags
}

func init() {
	register(&command{
		name:    "export",
		args:    "RUN_DIR|--super SUPER.onnx (--config CONFIG.json | --ranks heuristic|max|min) -o OUT.onnx [flags]",
		summary: "export a chosen sub-adapter: sparse base + adapter, or merged (dense / sparsity-keeping)",
		long: `Stage 4 of Shears. Takes the trained super-network (a run directory of "shears train", or the
super-network file with trained A and B via --super) and one sub-adapter (the ranks per group, from
the search's CONFIG.json or a preset) and writes a graph with the model's own inputs only:

  --merge none    the sparse base plus the sliced adapter A[:, :r], B[:r, :] at scale alpha / r_max
                  (Shears' deliverable; exact)
  --merge dense   W' = W + s·A_r·B_r: exact, but fills the base's zeros (the sparsity lost is reported)
  --merge sparse  W' = W + (W != 0) ⊙ s·A_r·B_r (SQFT SparsePEFT): keeps every zero; exact when the
                  super-network was adapted with --sparse-adapter, otherwise it changes the function
                  (the share of the update dropped per layer is reported)

CONFIG.json: {"ranks": {"layers.0.qkv": 24, "layers.0.up": 16, ...}, "strategy": "...",
"metric": {"name": "val_loss", "value": 1.9}} with every group; --ranks heuristic (the middle rank,
the reference default), max or min needs no file. --dtype fp16 stores the weight matrices as float16
behind Casts (inputs, outputs and arithmetic stay float32, so the CPU provider runs it). --peft DIR
also writes a Hugging Face PEFT adapter (adapter_config.json, adapter_model.safetensors) whose
lora_alpha / r equals the trained scale.

` + folderHelp + ` The card records the merge, the ranks and the search's score.

Examples:
  shears export runs/nls1 --ranks heuristic -o model.onnx --merge none
  shears export runs/nls1 --config search/best.json --merge sparse --format folder --tokenizer tok512.bin -o served/
  shears export --super super.trained.onnx --config search/best.json -o merged.onnx --merge sparse --dtype fp16
  shears export --super super.trained.onnx --ranks heuristic -o merged.onnx --merge dense --peft adapter/`,
		flags: func(fs *pflag.FlagSet) any {
			o := &exportOpts{}
			fs.StringVar(&o.super, "super", "", "the trained super-network (ONNX with trained A and B)")
			fs.StringVar(&o.config, "config", "", "CONFIG.json of the chosen sub-adapter (the search's output)")
			fs.StringVar(&o.ranks, "ranks", "", "rank preset instead of --config: heuristic, max or min")
			fs.StringVarP(&o.out, "output", "o", "", "output ONNX file (written atomically)")
			fs.StringVar(&o.mode, "merge", "none", "none, dense or sparse")
			fs.StringVar(&o.dtype, "dtype", "fp32", "weight storage of the output: fp32 or fp16")
			fs.StringVar(&o.peft, "peft", "", "also write a PEFT adapter (adapter_config.json + adapter_model.safetensors) to this folder")
			fs.StringVar(&o.baseModel, "base-model", "", "base_model_name_or_path recorded in the PEFT config")
			fs.BoolVar(&o.external, "external-data", false, "write weights to OUT.onnx.data (automatic when the input has external data)")
			fs.BoolVar(&o.perLayer, "per-layer", false, "print each merged weight's sparsity before and after")
			fs.BoolVar(&o.json, "json", false, "print the report as JSON")
			o.output.add(fs, true)
			return o
		},
		run: runExport,
	})
}

func runExport(env *cliEnv, o any, args []string) error {
	opts := o.(*exportOpts)
	if len(args) > 1 {
		return fmt.Errorf("%w: give the run directory RUN_DIR or --super SUPER.onnx (one of them)", errUsage)
	}
	runDir := ""
	if len(args) == 1 {
		runDir = args[0]
	}
	out, err := opts.output.output()
	if err != nil {
		return err
	}
	out.Card.Base = opts.super
	if runDir != "" {
		out.Card.Base = runDir
	}
	r, err := pipeline.Export(pipeline.ExportOptions{RunDir: runDir, Super: opts.super, Config: opts.config, Ranks: opts.ranks,
		Out: opts.out, Merge: opts.mode, DType: opts.dtype, PEFT: opts.peft, BaseModel: opts.baseModel, External: opts.external,
		Warn: warner(env, "export"), Output: out})
	if err != nil {
		return err
	}
	if !r.Final {
		fmt.Fprintf(env.stderr, "warning: %s had not finished; exported its latest checkpoint (step %d)\n", runDir, r.Steps)
	}
	if len(r.Untrained) > 0 {
		// Issue 14: a rank outside the space (5 or 1 in 8,6,4) was taken silently.
		g := r.Untrained[0]
		fmt.Fprintf(env.stderr, "warning: %d groups use a rank outside the trained rank space, so those sub-adapters were never sampled in training (first: %s at rank %d)\n",
			len(r.Untrained), g, r.Selection.Ranks[g])
	}
	if opts.json {
		return printJSON(env, r)
	}
	printExportSummary(env, r, opts.perLayer)
	printFolder(env, r.Folder)
	return nil
}

func printExportSummary(env *cliEnv, r *pipeline.ExportResult, perLayer bool) {
	// Ranks: how many groups at each rank.
	count := map[int]int{}
	for _, v := range r.Selection.Ranks {
		count[v]++
	}
	var rs []int
	for k := range count {
		rs = append(rs, k)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(rs)))
	var parts []string
	for _, k := range rs {
		parts = append(parts, fmt.Sprintf("%d groups at r=%d", count[k], k))
	}
	strategy := r.Selection.Strategy
	if strategy == "" {
		strategy = "config"
	}
	fmt.Fprintf(env.stdout, "sub-adapter (%s): %s; %d adapter parameters; scale %g\n", strategy, strings.Join(parts, ", "), r.Selection.Params, r.Scale)
	if r.Mode != pipeline.MergeNone && perLayer {
		tw := tabwriter.NewWriter(env.stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprint(tw, "weight\trank\tsparsity before\tafter\tΔW dropped\t\n")
		for _, l := range r.Layers {
			fmt.Fprintf(tw, "%s\t%d\t%.2f%%\t%.2f%%\t%.1f%%\t\n", l.Weight, l.Rank,
				100*float64(l.ZerosBefore)/float64(l.Total), 100*float64(l.ZerosAfter)/float64(l.Total), 100*l.Dropped)
		}
		tw.Flush()
	}
	fmt.Fprintf(env.stdout, "merge %s: adapted weights' sparsity %.2f%% → %.2f%%", r.Mode, 100*r.SparsityBefore(), 100*r.SparsityAfter())
	switch {
	case r.Mode == pipeline.MergeDense && r.ZerosAfter < r.ZerosBefore:
		fmt.Fprintf(env.stdout, " (%d zeros filled: the dense merge loses the sparsity)\n", r.ZerosBefore-r.ZerosAfter)
	case !r.Exact:
		fmt.Fprintln(env.stdout, " (kept; the adapter was trained without the mask, so the export differs from the super-network: see ΔW dropped)")
	default:
		fmt.Fprintln(env.stdout)
	}
	if q := r.Quantized; q != nil {
		kept := "every zero kept"
		if !q.ZerosKept {
			kept = "WARNING: some zeros did not stay zero"
		}
		how := "merged weights requantized"
		if r.Mode == pipeline.MergeNone {
			how = "base requantized, float sparse adapters beside it"
		}
		fmt.Fprintf(env.stdout, "quantized base (QA-SparsePEFT): %d linears back on the base's MatMulNBits grid, %s; %s; |W' − Q(W')| ≤ %.2f steps; %d of %d blocks refit (merged weights left the base's range; scale ≤ %.2f× the base's)\n",
			len(q.Layers), how, kept, q.MaxSteps, q.RefitBlocks, q.Blocks, max(1, q.MaxScaleRatio))
	}
	fmt.Fprintf(env.stdout, "wrote %s (%s, inputs as the base model's)", r.Output, r.DType)
	if r.PEFT != "" {
		fmt.Fprintf(env.stdout, " and the PEFT adapter in %s", r.PEFT)
	}
	fmt.Fprintln(env.stdout)
}
