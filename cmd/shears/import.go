package main

import (
	"fmt"

	"github.com/spf13/pflag"

	"github.com/shears-ml/shears/models/llama2c"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/pipeline"
)

type importOpts struct {
	out      string
	external bool
	output   outputFlags
}

func init() {
	register(&command{
		name:    "import",
		args:    "FORMAT CHECKPOINT -o OUT.onnx",
		summary: "convert a checkpoint into an ONNX graph (formats: llama2c)",
		long: `Builds an opset-17 ONNX graph with Hugging Face LLaMA-style node names
(/model/layers.0/self_attn/q_proj/MatMul ...), so pruning, adapters and inspect treat imported
and optimum-exported models alike. Weights are stored in ONNX layout [in, out].

Formats:
  llama2c   a llama2.c legacy checkpoint (7 x int32 header, fp32 weights; shared or separate classifier)

` + folderHelp + `

Examples:
  shears import llama2c stories260K.bin -o stories260K.onnx
  shears import llama2c stories260K.bin --format folder --tokenizer tok512.bin -o stories260K/`,
		flags: func(fs *pflag.FlagSet) any {
			o := &importOpts{}
			fs.StringVarP(&o.out, "output", "o", "", "output ONNX file")
			fs.BoolVar(&o.external, "external-data", false, "write weights to OUT.onnx.data (always done above 1.8 GB)")
			o.output.add(fs, true)
			return o
		},
		run: runImport,
	})
}

func runImport(env *cliEnv, o any, args []string) error {
	opts := o.(*importOpts)
	if err := needArgs(args, 2, "FORMAT CHECKPOINT"); err != nil {
		return err
	}
	if opts.out == "" {
		return fmt.Errorf("%w: -o OUT.onnx is required", errUsage)
	}
	out, err := opts.output.output(env)
	if err != nil {
		return err
	}
	out.Card.Base = args[1]
	if args[0] != "llama2c" {
		return fmt.Errorf("%w: unknown format %q (supported: llama2c)", errUsage, args[0])
	}
	m, err := llama2c.Import(args[1])
	if err != nil {
		return err
	}
	folder, err := pipeline.SaveModel(m, opts.out, onnx.SaveOptions{ExternalData: opts.external}, out, args[1], warner(env, "import"))
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stderr, "wrote %s (%d nodes, %d initializers)\n", opts.out, len(m.Graph().GetNode()), len(m.Graph().GetInitializer()))
	printFolder(env, folder)
	return nil
}
