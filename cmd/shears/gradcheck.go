package main

import (
	"fmt"

	"github.com/spf13/pflag"

	"github.com/shears-ml/shears/pipeline"
)

type gradcheckOpts struct {
	rt        runtimeFlags
	wrt       string
	batch     int
	seqLen    int
	tokenizer string
	data      string
	samples   int
	seed      uint64
	eps       float64
	tol       float64
	float32   bool
	json      bool
	saveGraph string
}

func init() {
	register(&command{
		name:       "gradcheck",
		args:       "MODEL.onnx --wrt REGEX [flags]",
		positional: "MODEL.onnx",
		summary:    "check the train step's gradients against finite differences",
		long: `Builds the train step of MODEL (forward, causal-LM loss, backward) with the initializers whose
names match --wrt as trainable, and compares its gradients with central finite differences of
the loss on --samples coordinates per tensor (the relative error of a tensor is its largest
|analytic − numeric| over its largest |numeric|). By default the graph is converted to float64,
so the differences are good to ~1e-10 and the default tolerance is 1e-4; --float32 checks the
float32 graph itself, with a tolerance of 5e-2. The check runs on the CPU. Without --data the batch is random token ids (--seed);
with --data and --tokenizer it is the first batch × seq-len tokens of the data. Labels are the
ids. Exits 1 when the largest relative error is above --tol.

Example:
  shears gradcheck stories260K.onnx --wrt 'layernorm|norm\.weight' --batch 2 --seq-len 16 --json`,
		flags: func(fs *pflag.FlagSet) any {
			o := &gradcheckOpts{}
			fs.StringVar(&o.wrt, "wrt", "", "regular expression selecting the initializers to check (required)")
			fs.IntVar(&o.batch, "batch", 2, "sequences in the batch")
			fs.IntVar(&o.seqLen, "seq-len", 16, "tokens per sequence")
			fs.StringVar(&o.tokenizer, "tokenizer", "", "tokenizer file (with --data)")
			fs.StringVar(&o.data, "data", "", "text data for the batch (.txt, .json, .jsonl); random ids when absent")
			fs.IntVar(&o.samples, "samples", 16, "coordinates checked per tensor")
			fs.Uint64Var(&o.seed, "seed", 1, "seed for the random ids and the sampled coordinates")
			fs.Float64Var(&o.eps, "eps", 0, "finite-difference step (0: 1e-6, or 1e-2 with --float32)")
			fs.Float64Var(&o.tol, "tol", 0, "largest relative error that passes (0: 1e-4, or 5e-2 with --float32)")
			fs.BoolVar(&o.float32, "float32", false, "check the float32 graph instead of a float64 copy")
			fs.BoolVar(&o.json, "json", false, `print the report as JSON: {"tensors": [{"name", "max_rel_err", "checked"}], "max_rel_err", "dtype", "tolerance", "pass"}`)
			fs.StringVar(&o.saveGraph, "save-graph", "", "also save the float32 train-step graph to this file")
			o.rt.add(fs)
			fs.MarkHidden("prepack") // the check runs its own session (float64, one thread)
			return o
		},
		run: runGradcheck,
	})
}

func runGradcheck(env *cliEnv, o any, args []string) error {
	opts := o.(*gradcheckOpts)
	g := pipeline.GradcheckOptions{Model: args[0], Wrt: opts.wrt, Batch: opts.batch, Seq: opts.seqLen, Samples: opts.samples,
		Seed: opts.seed, Eps: opts.eps, Tol: opts.tol, Float32: opts.float32, Data: opts.data, Tokenizer: opts.tokenizer,
		SaveGraph: opts.saveGraph}
	if err := opts.rt.load(g.Check(), nil); err != nil { // the check itself runs on the CPU
		return err
	}
	rep, err := pipeline.Gradcheck(g)
	if err != nil {
		return err
	}
	if opts.json {
		if err := printJSON(env, rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(env.stdout, "%-50s %12s %8s\n", "tensor", "max rel err", "checked")
		for _, t := range rep.Tensors {
			fmt.Fprintf(env.stdout, "%-50s %12.3g %8d\n", t.Name, t.MaxRelErr, t.Checked)
		}
		fmt.Fprintf(env.stdout, "max rel err %.3g (%s, tolerance %.g)\n", rep.MaxRelErr, rep.DType, rep.Tolerance)
	}
	if !rep.Pass {
		return fmt.Errorf("max relative error %.3g is above the tolerance %.g", rep.MaxRelErr, rep.Tolerance)
	}
	return nil
}
