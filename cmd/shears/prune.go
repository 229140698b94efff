package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/pflag"

	"github.com/shears-ml/shears/pipeline"
)

type pruneOpts struct {
	allowNonFinite bool
	rt             runtimeFlags
	cal            calibFlags
	targets        targetFlags
	out            string
	method         string
	sparsity       float64
	pattern        string
	oneShot        bool
	report         string
	external       bool
	json           bool
	output         outputFlags
}

func init() {
	register(&command{
		name:       "prune",
		args:       "MODEL.onnx -o OUT.onnx --sparsity S [--calib FILE --tokenizer TOK] [flags]",
		positional: "MODEL.onnx",
		summary:    "sparsify the linear layers with Wanda (default) or magnitude pruning",
		long: `Stage 1 of Shears. Wanda scores every weight by |W[i,j]|·‖X_i‖₂, the input feature's norm
over calibration data, and zeroes the k = floor(in·s) lowest-scoring inputs of every output
(unstructured), or N of every M consecutive inputs (--pattern 2:4 / 4:8, which fixes s = N/M).
The statistics come from onnxruntime: by default block by block, each block calibrated on the
outputs of the already-pruned blocks, as Wanda does; --one-shot takes all of them from one pass
over the dense model (faster, a labelled deviation). Targets are the linear layers inside the
decoder blocks (see "shears inspect"); the LM head and embeddings are never pruned unless
--include names them. Zeros are written into the weights; external data stays external.

Calibration windows: --samples windows of --seq-len tokens (capped to the model's context)
drawn with --seed from --calib (.txt, LLM-Adapters .json, or .jsonl with "text" or "ids").
Pre-tokenized data ({"ids": [...]} on every line of a .jsonl) needs no --tokenizer, as in
"shears train": records of exactly --seq-len ids are the windows themselves, in file order.

` + folderHelp + ` The folder's tokenizer is --tokenizer.

Examples:
  shears prune model.onnx -o model-50.onnx --sparsity 0.5 --calib data.txt --tokenizer tok.bin
  shears prune model.onnx -o model-50.onnx --sparsity 0.5 --calib ids.jsonl --seq-len 512
  shears prune model.onnx -o model-24.onnx --method magnitude --sparsity 0.5 --pattern 2:4
  shears prune model.onnx --format folder -o model-50/ --sparsity 0.5 --calib data.txt --tokenizer tok.bin`,
		flags: func(fs *pflag.FlagSet) any {
			o := &pruneOpts{}
			fs.StringVarP(&o.out, "output", "o", "", "output ONNX file (written atomically)")
			fs.StringVar(&o.method, "method", pipeline.MethodWanda, "wanda or magnitude")
			fs.Float64Var(&o.sparsity, "sparsity", 0.5, "fraction of each pruned layer's weights set to zero, in [0, 1)")
			fs.StringVar(&o.pattern, "pattern", pipeline.DefaultPattern, "unstructured, 2:4 or 4:8 (N:M along the input dimension)")
			fs.BoolVar(&o.oneShot, "one-shot", false, "all statistics from one pass over the dense model")
			fs.StringVar(&o.report, "report", "", "write per-layer and overall sparsity as JSON to this file")
			o.targets.add(fs, "prune")
			o.cal.add(fs, pipeline.MethodWanda)
			fs.BoolVar(&o.external, "external-data", false, "write weights to OUT.onnx.data (automatic when the input has external data or above 1.8 GB)")
			fs.BoolVar(&o.json, "json", false, "print the report as JSON on stdout instead of the table")
			fs.BoolVar(&o.allowNonFinite, "allow-nonfinite", false, "prune even when weights hold NaN or Inf (refused by default, naming the tensors)")
			o.output.add(fs, false)
			o.rt.add(fs)
			return o
		},
		run: runPrune,
	})
}

// pruneReport is the --report / --json document.
type pruneReport = pipeline.PruneReport

func runPrune(env *cliEnv, o any, args []string) error {
	opts := o.(*pruneOpts)
	out, err := opts.output.modelOutput(args, opts.out)
	if err != nil {
		return err
	}
	po := pipeline.PruneOptions{AllowNonFinite: opts.allowNonFinite, Output: out, Warn: warner(env, "prune"), Model: args[0], Out: opts.out, Method: opts.method, Sparsity: opts.sparsity, Pattern: opts.pattern,
		Calib: opts.cal.calib, Tokenizer: opts.cal.tokenizer, Samples: opts.cal.samples, SeqLen: opts.cal.seqLen, Seed: opts.cal.seed,
		OneShot: opts.oneShot, Include: opts.targets.include, Exclude: opts.targets.exclude, External: opts.external}
	stop, err := calibrating(env, &opts.rt, po.Check(), po.Method == pipeline.MethodWanda, &po.Runtime, &po.Progress)
	if err != nil {
		return err
	}
	defer stop()
	rep, err := pipeline.Prune(po)
	stop()
	if err != nil {
		return err
	}
	return renderReport(env, rep, opts.report, opts.json, func() {
		printPruneSummary(env, *rep)
		printFolder(env, rep.Folder)
	})
}

// printPruneSummary prints sparsity per block × role, then the overall figure and timing.
func printPruneSummary(env *cliEnv, r pruneReport) {
	cells := make([]gridCell, len(r.Layers))
	for i, l := range r.Layers {
		cells[i] = gridCell{l.Block, l.Role, l.Sparsity}
	}
	printSparsityGrid(env.stdout, cells)
	mode := "sequential"
	if r.OneShot {
		mode = "one-shot"
	}
	how := r.Method
	if r.Method == pipeline.MethodWanda {
		how = fmt.Sprintf("wanda (%s, %d × %d tokens)", mode, r.Samples, r.SeqLen)
	}
	fmt.Fprintf(env.stdout, "\n%d layers pruned with %s, %s: sparsity %.2f%% (target %.2f%%) → %s\n",
		len(r.Layers), how, r.Pattern, 100*r.Sparsity, 100*r.Target, r.Output)
	var parts []string
	for _, k := range []string{"load", "data", "calibrate", "prune_and_save"} {
		if v, ok := r.Seconds[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %.2fs", k, v))
		}
	}
	fmt.Fprintf(env.stdout, "time: %s\n", strings.Join(parts, ", "))
}

// gridCell is one linear's figure in the block × role table.
type gridCell struct {
	Block int
	Role  string
	V     float64
}

// printSparsityGrid prints one row per block and one column per role (in first-seen order),
// each cell a percentage ("-" where the block has no linear of that role).
func printSparsityGrid(w io.Writer, cells []gridCell) {
	var roles []string
	seen := map[string]bool{}
	grid := map[int]map[string]float64{}
	var blocks []int
	for _, c := range cells {
		if !seen[c.Role] {
			seen[c.Role] = true
			roles = append(roles, c.Role)
		}
		if grid[c.Block] == nil {
			grid[c.Block] = map[string]float64{}
			blocks = append(blocks, c.Block)
		}
		grid[c.Block][c.Role] = c.V
	}
	sort.Ints(blocks)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "block\t%s\t\n", strings.Join(roles, "\t"))
	for _, b := range blocks {
		row := []string{fmt.Sprint(b)}
		for _, role := range roles {
			if v, ok := grid[b][role]; ok {
				row = append(row, fmt.Sprintf("%.1f%%", 100*v))
			} else {
				row = append(row, "-")
			}
		}
		fmt.Fprintf(tw, "%s\t\n", strings.Join(row, "\t"))
	}
	tw.Flush()
}
