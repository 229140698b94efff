package main

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	"github.com/shears-ml/shears/pipeline"
)

type quantizeOpts struct {
	allowNonFinite bool
	output         outputFlags
	rt             runtimeFlags
	cal            calibFlags
	targets        targetFlags
	out            string
	bits           int
	blockSize      int
	method         string
	symmetric      bool
	includeHead    bool
	damp           float64
	accuracy       int
	external       bool
	report         string
	json           bool
}

func init() {
	register(&command{
		name:       "quantize",
		args:       "MODEL.onnx -o OUT.onnx --bits 4|8 [--method rtn|gptq] [flags]",
		positional: "MODEL.onnx",
		summary:    "weight-only 4/8-bit quantization into MatMulNBits, keeping a sparse base's zeros",
		long: `Turns every target linear (the linears inside the decoder blocks, as prune and adapt choose
them; --include-head adds the LM head) into an onnxruntime com.microsoft.MatMulNBits node:
weights in blocks of --block-size inputs, one float scale per block and, unless --symmetric, a
4/8-bit zero point per block. Embeddings, norms and the model's inputs and outputs are kept as
they are, so eval, generate, search and serving runtimes run the result directly.

Zeros stay zeros: a pruned model's zero weights dequantize to exactly 0 (symmetric grids have 0
on the grid; asymmetric grids widen each block's range to include 0 and take the zero point as
its exact code). Prune first, then quantize: shears refuses to prune a quantized model.

Methods: rtn rounds each weight to its block grid (no data needed). gptq (Frantar et al. 2022)
calibrates block by block like Wanda (--calib, --tokenizer, --samples, --seq-len), builds
each layer's Hessian 2XᵀX from its inputs, and quantizes the inputs in order while compensating
the error on the inputs not yet quantized; pruned weights are held at zero throughout.

A block size that does not divide a layer's input size is padded (the operator's layout:
ceil(K / block_size) blocks). A float16 model is quantized from its float16 weights.

Examples:
  shears quantize model-50.onnx -o model-50-int4.onnx --bits 4
  shears quantize model-50.onnx -o model-50-gptq.onnx --bits 4 --method gptq --calib data.txt --tokenizer tok.bin
  shears quantize model.onnx -o model-int8.onnx --bits 8 --block-size 128 --symmetric --json
  shears quantize model-50.onnx -o int4-folder --format folder --tokenizer tok.bin   # for onnxruntime GenAI`,
		flags: func(fs *pflag.FlagSet) any {
			o := &quantizeOpts{}
			fs.StringVarP(&o.out, "output", "o", "", "output ONNX file (written atomically)")
			fs.IntVar(&o.bits, "bits", pipeline.DefaultBits, "bits per weight: 4 or 8")
			fs.IntVar(&o.blockSize, "block-size", pipeline.DefaultBlockSize, "inputs per quantization block: 32, 64 or 128")
			fs.StringVar(&o.method, "method", pipeline.QuantRTN, "rtn (round to nearest) or gptq (calibrated error compensation)")
			fs.BoolVar(&o.symmetric, "symmetric", false, "symmetric grid, no zero points (zero point 2^(bits-1))")
			fs.BoolVar(&o.includeHead, "include-head", false, "quantize the LM head too")
			o.targets.add(fs, "quantize")
			o.cal.add(fs, pipeline.QuantGPTQ)
			fs.Float64Var(&o.damp, "damp", pipeline.DefaultDamp, "gptq damping: fraction of the Hessian's mean diagonal added to it")
			fs.IntVar(&o.accuracy, "accuracy-level", 0, "MatMulNBits accuracy_level: 0 (float activations) or 4 (int8 activations: faster CPU kernels, less exact)")
			fs.BoolVar(&o.external, "external-data", false, "write weights to OUT.onnx.data (automatic when the input has external data)")
			fs.StringVar(&o.report, "report", "", "write the report as JSON to this file")
			fs.BoolVar(&o.json, "json", false, "print the report as JSON on stdout instead of the table")
			fs.BoolVar(&o.allowNonFinite, "allow-nonfinite", false, "quantize even when weights hold NaN or Inf (refused by default, naming the tensors)")
			o.output.add(fs, false)
			o.rt.add(fs)
			return o
		},
		run: runQuantize,
	})
}

func runQuantize(env *cliEnv, o any, args []string) error {
	opts := o.(*quantizeOpts)
	out, err := opts.output.modelOutput(args, opts.out)
	if err != nil {
		return err
	}
	qo := pipeline.QuantizeOptions{AllowNonFinite: opts.allowNonFinite, Output: out, Warn: warner(env, "quantize"), Model: args[0], Out: opts.out, Bits: opts.bits, BlockSize: opts.blockSize, Method: opts.method,
		Symmetric: opts.symmetric, IncludeHead: opts.includeHead, Include: opts.targets.include, Exclude: opts.targets.exclude,
		Calib: opts.cal.calib, Tokenizer: opts.cal.tokenizer, Samples: opts.cal.samples, SeqLen: opts.cal.seqLen, Seed: opts.cal.seed,
		Damp: opts.damp, AccuracyLevel: opts.accuracy, External: opts.external}
	stop, err := calibrating(env, &opts.rt, qo.Check(), qo.Method == pipeline.QuantGPTQ, &qo.Runtime, &qo.Progress)
	if err != nil {
		return err
	}
	defer stop()
	rep, err := pipeline.Quantize(qo)
	stop()
	if err != nil {
		return err
	}
	return renderReport(env, rep, opts.report, opts.json, func() {
		printQuantizeSummary(env, rep)
		printFolder(env, rep.Folder)
	})
}

// printQuantizeSummary prints sparsity per block × role, then sizes, zeros and timing.
func printQuantizeSummary(env *cliEnv, r *pipeline.QuantizeReport) {
	cells := make([]gridCell, len(r.Layers))
	for i, l := range r.Layers {
		cells[i] = gridCell{l.Block, l.Role, l.Sparsity}
	}
	fmt.Fprintln(env.stdout, "sparsity of the dequantized weights:")
	printSparsityGrid(env.stdout, cells)
	grid2 := "asymmetric"
	if r.Symmetric {
		grid2 = "symmetric"
	}
	kept := "every base zero kept"
	if !r.ZerosKept {
		kept = "WARNING: some base zeros did not stay zero"
	}
	fmt.Fprintf(env.stdout, "\n%d linears → MatMulNBits (%s, int%d, block %d, %s): %s → %s (%.3f× float32); %s (%d zeros), sparsity %.2f%% → %s\n",
		len(r.Layers), r.Method, r.Bits, r.BlockSize, grid2, mbytes(r.FloatBytes), mbytes(r.Bytes), r.Ratio, kept, r.BaseZeros, 100*r.Sparsity, r.Output)
	if r.Padded > 0 {
		fmt.Fprintf(env.stdout, "%d layers have an input size that block %d does not divide: their last block is padded (a smaller --block-size wastes less)\n", r.Padded, r.BlockSize)
	}
	var parts []string
	for _, k := range []string{"load", "data", "calibrate", "quantize", "save"} {
		if v, ok := r.Seconds[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %.2fs", k, v))
		}
	}
	fmt.Fprintf(env.stdout, "time: %s\n", strings.Join(parts, ", "))
}

func mbytes(n int64) string { return fmt.Sprintf("%.2f MB", float64(n)/1e6) }
