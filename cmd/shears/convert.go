package main

import (
	"fmt"

	"github.com/spf13/pflag"

	"github.com/shears-ml/shears/pipeline"
)

type convertOpts struct {
	out      string
	dtype    string
	compute  string
	external bool
	plan     bool
	output   outputFlags
	// allowNonFinite converts a model with NaN or Inf weights (refused by default).
	allowNonFinite bool
}

func init() {
	register(&command{
		name:       "convert",
		args:       "MODEL.onnx -o OUT.onnx --dtype fp16|bf16 [--compute fp32|native]",
		positional: "MODEL.onnx",
		summary:    "store a float32 model's weights in fp16 or bf16",
		long: `Streams the model's weights, one tensor at a time, into OUT in the chosen type.

--compute fp32 (default, for the CPU, which lacks most fp16/bf16 kernels): only the weights
(every linear layer's weight, the LM head and the embedding tables) are stored in the low
type and read through a Cast, so the graph computes in float32 as before; norms, biases and
position tables stay float32. The file's weights take half the space. onnxruntime may
constant-fold the Casts at session start (the session then holds float32 weights).

--compute native (for GPUs): the whole float graph computes in the low type; integer inputs
are unchanged and float32 outputs (the logits) are cast back, so callers see the same
interface. Native fp16 runs on onnxruntime's CPU provider (ops without fp16 kernels get
inserted casts); native bf16 needs a GPU provider (the CPU one has no bf16 Pow).

` + folderHelp + `

Examples:
  shears convert model.onnx -o model-fp16.onnx --dtype fp16
  shears convert model.onnx -o model-fp16-gpu.onnx --dtype fp16 --compute native --external-data
  shears convert model.onnx --format folder --tokenizer tok512.bin -o model-fp16/`,
		flags: func(fs *pflag.FlagSet) any {
			o := &convertOpts{}
			fs.StringVarP(&o.out, "output", "o", "", "output ONNX file (written atomically)")
			fs.StringVar(&o.dtype, "dtype", "fp16", "storage type: fp16 or bf16")
			fs.StringVar(&o.compute, "compute", "fp32", "fp32 (weight-only, Casts to float32) or native (the whole graph in --dtype)")
			fs.BoolVar(&o.external, "external-data", false, "write weights to OUT.onnx.data (automatic when the input has external data or above 1.8 GB)")
			fs.BoolVar(&o.plan, "plan", false, "print the conversion plan (every tensor converted or kept) before converting")
			fs.BoolVar(&o.allowNonFinite, "allow-nonfinite", false, "convert even when weights hold NaN or Inf (refused by default, naming the tensors)")
			o.output.add(fs, true)
			return o
		},
		run: runConvert,
	})
}

func runConvert(env *cliEnv, o any, args []string) error {
	opts := o.(*convertOpts)
	out, err := opts.output.modelOutput(args, opts.out)
	if err != nil {
		return err
	}
	co := pipeline.ConvertOptions{Model: args[0], Out: opts.out, DType: opts.dtype, Compute: opts.compute, External: opts.external,
		AllowNonFinite: opts.allowNonFinite, Output: out, Warn: warner(env, "convert")}
	if err := co.Check(); err != nil {
		return err
	}
	if opts.plan {
		co.Plan = func(s string) { fmt.Fprint(env.stdout, s) }
	}
	rep, err := pipeline.Convert(co)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "wrote %s: %d tensors in %s (%s → %s), compute %s\n", rep.Output, rep.Tensors,
		rep.DType, human(rep.BytesBefore)+"B", human(rep.BytesAfter)+"B", rep.Compute)
	printFolder(env, rep.Folder)
	return nil
}
