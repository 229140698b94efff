package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/pflag"

	"github.com/shears-ml/shears/pipeline"
)

type adaptOpts struct {
	allowNonFinite bool
	out            string
	targets        []string
	ranks          []int
	alpha          float64
	groups         string
	dropout        float64
	seed           uint64
	include        string
	exclude        string
	train          bool
	sparse         bool
	dryRun         bool
	external       bool
	copyBase       bool
	adapterDT      string
	json           bool
}

func init() {
	register(&command{
		name:    "adapt",
		args:    "MODEL.onnx -o SUPER.onnx [flags]",
		summary: "insert elastic LoRA super-adapters (one graph for every sub-adapter rank)",
		long: `Stage 2 of Shears, before training. Every targeted linear y = x·W of the (usually pruned) model
becomes y = x·W + s·((x·A) ⊙ m)·B with A [in, r_max] (PEFT's uniform ±1/√in init, seeded per
module), B [r_max, out] = 0, so the new model computes exactly what the base does until trained.
The rank of each group (by default per layer: q+k+v, up(+gate), down) is chosen at run time by a
float rank-mask input [r_max], lora_rank_mask.layers.N.GROUP: ones for the first r entries, zeros
after. Sub-ranks are prefixes (A[:, :r], B[:r, :]) and the scale s = alpha / r_max is the same
for every rank (never alpha / r), as in the reference. The adapter layout, groups, ranks and
scale are stored in the model's metadata ("shears.lora") for training, search and export.

A base with external data is not copied: SUPER.onnx refers to the base's data file (it must then
lie in SUPER.onnx's folder or below it; elsewhere the weights are copied, with a warning, or with
--copy-base always), and only the adapters go to SUPER.onnx.data.

On a float16/bfloat16 base (from "shears convert") A and B are float32 by default: a linear that
computes in float16 reads Cast(x) (one Cast per input shared by q, k, v), and its delta is cast
back before the Add; --adapter-dtype base keeps everything in the base's type.

On a quantized base (from "shears quantize": MatMulNBits linears) adapt builds SQFT's
QA-SparsePEFT: the linears are lowered to MatMuls by their dequantized weights (SUPER.onnx holds
them in float32, with each layer's grid), the adapters take the sparse path (ΔW masked by the
base's nonzeros, --sparse-adapter implied), and each adapted weight W + M ⊙ s·A·B is
fake-quantized on the base's own scales and zero points, with gradients passed straight through
the rounding; "shears export --merge sparse" then writes a MatMulNBits model on that grid.

Dropout (--dropout, p = 0.1 in the reference) acts on the adapter input during training only.
It is recorded here; --train also adds the keep-mask inputs lora_dropout_keep.MODULE (x's shape,
fed by the trainer, so a run is reproducible across resume).

Examples:
  shears adapt sparse.onnx -o super.onnx
  shears adapt sparse.onnx -o super.onnx --targets q,k,v,up,gate,down     # groups qkv, up+gate, down
  shears adapt mpt.onnx -o super.onnx --targets q,k,v,o,up,down --groups q+k+v+o,up+down
  shears adapt tiny.onnx -o super.onnx --ranks 8,6,4 --alpha 16 --dry-run
  shears adapt sparse-int4.onnx -o super.onnx                              # QA-SparsePEFT`,
		flags: func(fs *pflag.FlagSet) any {
			o := &adaptOpts{}
			fs.StringVarP(&o.out, "output", "o", "", "output ONNX file (written atomically)")
			fs.StringSliceVar(&o.targets, "targets", pipeline.DefaultTargets, "roles of the adapted linears (q k v o gate up down; see \"shears inspect\")")
			fs.IntSliceVar(&o.ranks, "ranks", pipeline.DefaultRanks, "elastic rank space, strictly descending; the first is r_max")
			fs.Float64Var(&o.alpha, "alpha", pipeline.DefaultAlpha, "LoRA alpha; scale = alpha / r_max for every rank")
			fs.StringVar(&o.groups, "groups", "", "modules of a layer sharing one rank: groups joined by ',', roles by '+' (default "+pipeline.DefaultGroups+", minus roles not targeted)")
			fs.Float64Var(&o.dropout, "dropout", pipeline.DefaultDropout, "adapter-input dropout probability during training, in [0, 1)")
			fs.Uint64Var(&o.seed, "seed", 0, "seed of A's initialisation")
			fs.StringVar(&o.include, "include", "", "regexp: consider only linears whose node, weight or role matches")
			fs.StringVar(&o.exclude, "exclude", "", "regexp: skip linears whose node, weight or role matches")
			fs.BoolVar(&o.train, "train", false, "also add the dropout keep-mask inputs (a train graph)")
			fs.BoolVar(&o.sparse, "sparse-adapter", false, "SQFT SparsePEFT adapters: mask ΔW by the base's nonzeros, so \"export --merge sparse\" is exact (recorded in the metadata; training follows it)")
			fs.BoolVar(&o.dryRun, "dry-run", false, "print the full plan (modules, shapes, tensor names) and write nothing")
			fs.BoolVar(&o.external, "external-data", false, "write weights to SUPER.onnx.data (automatic when the input has external data)")
			fs.BoolVar(&o.allowNonFinite, "allow-nonfinite", false, "adapt even when weights hold NaN or Inf (refused by default, naming the tensors)")
			fs.BoolVar(&o.copyBase, "copy-base", false, "copy the base's external data into SUPER.onnx.data instead of referring to the base's data file")
			fs.StringVar(&o.adapterDT, "adapter-dtype", pipeline.AdapterDTypeFP32, "type of A and B on a float16/bfloat16 base: fp32 (x cast up once per shared input, the delta cast down) or base (the base's type, no casts)")
			fs.BoolVar(&o.json, "json", false, "print the summary as JSON")
			return o
		},
		run: runAdapt,
	})
}

func runAdapt(env *cliEnv, o any, args []string) error {
	opts := o.(*adaptOpts)
	if err := needArgs(args, 1, "MODEL.onnx"); err != nil {
		return err
	}
	if opts.out == "" && !opts.dryRun {
		return fmt.Errorf("%w: -o SUPER.onnx is required", errUsage)
	}
	cfg := pipeline.LoRAConfig{Targets: opts.targets, Ranks: opts.ranks, Alpha: opts.alpha, Groups: opts.groups, Dropout: opts.dropout, Seed: opts.seed, SparseAdapter: opts.sparse, AdapterDType: opts.adapterDT}
	ao := pipeline.AdaptOptions{AllowNonFinite: opts.allowNonFinite, Model: args[0], Out: opts.out, LoRA: cfg, Include: opts.include, Exclude: opts.exclude, Train: opts.train, External: opts.external, CopyBase: opts.copyBase,
		Warn: warner(env, "adapt")}
	if opts.dryRun {
		ao.Out = ""
	}
	rep, err := pipeline.Adapt(ao)
	if err != nil {
		return err
	}
	if opts.json {
		return printJSON(env, rep)
	}
	if opts.dryRun {
		fmt.Fprint(env.stdout, rep.Plan.String())
		return nil
	}
	printAdaptSummary(env, rep)
	return nil
}

func printAdaptSummary(env *cliEnv, r *pipeline.AdaptReport) {
	ranks := r.Shown
	labels := []string{"r_max", "middle", "min"}
	tw := tabwriter.NewWriter(env.stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "group\troles\tlayers\tmodules\t")
	for i, rk := range ranks {
		fmt.Fprintf(tw, "params r=%d (%s)\t", rk, labels[i])
	}
	fmt.Fprintln(tw)
	layersTotal := 0
	for _, k := range r.Kinds {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t", k.Kind, strings.Join(k.Roles, "+"), k.Layers, k.Modules)
		for _, rk := range ranks {
			fmt.Fprintf(tw, "%d\t", k.Params[fmt.Sprint(rk)])
		}
		fmt.Fprintln(tw)
		layersTotal += k.Layers
	}
	fmt.Fprintf(tw, "total\t\t%d\t%d\t", layersTotal, r.Modules)
	for _, rk := range ranks {
		fmt.Fprintf(tw, "%d\t", r.Params[fmt.Sprint(rk)])
	}
	fmt.Fprintln(tw)
	tw.Flush()
	fmt.Fprintf(env.stdout, "\n%d rank choices (mask inputs %s … %s, float [%d]); ranks %v; scale %g = alpha %g / r_max %d for every rank\n",
		len(r.MaskInputs), r.MaskInputs[0], r.MaskInputs[len(r.MaskInputs)-1], r.Ranks[0], r.Ranks, r.Scale, r.Alpha, r.Ranks[0])
	drop := fmt.Sprintf("dropout %g recorded for training", r.Dropout)
	if r.Train {
		drop = fmt.Sprintf("dropout %g with keep-mask inputs (train graph)", r.Dropout)
	}
	fmt.Fprintf(env.stdout, "%s; B = 0, so %s computes exactly the base model until trained\n", drop, r.Output)
	if r.QuantAware {
		fmt.Fprintln(env.stdout, "quantized base: QA-SparsePEFT (SQFT) — trains on the dequantized base with sparse adapters, the merged weight fake-quantized on the base's own grid (straight-through); export --merge sparse writes MatMulNBits again")
	}
}
