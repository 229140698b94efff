package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/shears-ml/shears/pipeline"
)

type trainOpts struct {
	o         pipeline.TrainOptions
	ranks     []int
	maxSteps  int
	rt        runtimeFlags
	json      bool
	fs        *pflag.FlagSet
	noProgres bool
}

func init() {
	register(&command{
		name:    "train",
		args:    "SUPER.onnx --data FILE --tokenizer TOK --out RUN_DIR [flags]  |  train --resume --out RUN_DIR",
		summary: "train the elastic LoRA super-adapter with NLS (a sub-adapter sampled per micro-batch)",
		long: `Stage 2 of Shears: Neural Low-rank adapter Search training of the super-network that
"shears adapt" wrote. At the start of every micro-batch each group of each layer draws its rank
uniformly from the rank space; each micro-batch's loss is divided by the accumulation count
(batch / micro-batch), the gradients are summed, clipped to a global norm of 1 and AdamW takes one
step. The learning rate follows the reference's cosine per micro-batch without warmup
(--warmup N switches to Hugging Face's warmup + cosine per step, a deviation recorded in run.json).
Only the adapters' A and B train; the (sparse) base stays frozen, its zeros untouched.

--ranks restricts the sampled ranks; a single rank (--ranks 32) trains plain LoRA on the same graph.
Micro-batches are right-padded to multiples of --bucket tokens; at most --max-graphs step graphs
(one per padded length, each an onnxruntime session holding its own copy of the frozen weights)
are built, the lengths chosen up front to minimise padding. The default (0, auto) is 4 graphs, or
one (every micro-batch padded to the longest: the weights in memory once) for models with more
than 1 GB of weights.

Mixed precision: on a float16 base that computes natively ("shears convert --compute native") the
step scales the loss dynamically (2^16 at first, halved and the step skipped when a gradient
overflows, doubled after 2000 good steps; metrics.jsonl records skipped steps and the scale);
the adapters, their gradients and AdamW's state stay float32.

--tokenizer may be left out when the data is pre-tokenized: a .jsonl file of {"ids": [...]} records.

RUN_DIR receives run.json, metrics.jsonl (one record per optimizer step), samples.jsonl (each
micro-batch's ranks and loss), checkpoint.safetensors (atomic, at each epoch end and every
--checkpoint-every steps), adapter.safetensors and loss.png. Ctrl-C or SIGTERM stops after the
current step with a checkpoint and exits 1 (a second signal quits at once); --max-steps N stops
after step N with a checkpoint; --resume continues exactly where the last checkpoint left off:
same data order, same sampled ranks and dropout masks, same numbers. Every option that shapes the
run (--checkpoint-every included) is kept in run.json, with the content digests of the
super-network, the base it shares, the data and the tokenizer; a resume over changed inputs is
refused, naming the file.

Examples:
  shears train super.onnx --data math_data.json --tokenizer tokenizer.json --out runs/math
  shears train super.onnx --data ARC-Easy-train.json --tokenizer tok512.bin --out runs/arc --ranks 8,6,4 --cutoff 128
  shears train super.onnx --data d.json --tokenizer t.json --out runs/lora32 --ranks 32     # LoRA baseline
  shears train --resume --out runs/math`,
		flags: func(fs *pflag.FlagSet) any {
			d := pipeline.DefaultTrainOptions()
			o := &trainOpts{fs: fs}
			fs.StringVar(&o.o.Data, "data", "", "training data: LLM-Adapters .json, .jsonl ({\"text\"} or {\"ids\"}) or plain text")
			fs.StringVar(&o.o.Tokenizer, "tokenizer", "", "tokenizer: tokenizer.json (Hugging Face) or llama2.c tokenizer.bin (not needed for {\"ids\"} .jsonl data)")
			fs.StringVar(&o.o.Out, "out", "", "run directory (created)")
			fs.IntVar(&o.o.Epochs, "epochs", d.Epochs, "passes over the data")
			fs.Float64Var(&o.o.LR, "lr", d.LR, "peak learning rate lr0")
			fs.IntVar(&o.o.Batch, "batch", d.Batch, "effective batch: sequences per optimizer step")
			fs.IntVar(&o.o.MicroBatch, "micro-batch", d.MicroBatch, "sequences per micro-batch (one rank sample each); divides --batch")
			fs.IntVar(&o.o.Cutoff, "cutoff", d.Cutoff, "tokens per sequence at most (EOS appended only below it)")
			fs.Uint64Var(&o.o.Seed, "seed", d.Seed, "seed of the data order, the rank samples and the dropout masks")
			fs.IntVar(&o.o.Warmup, "warmup", d.Warmup, "linear warmup steps (0 = reference; > 0 uses per-step HF cosine, a deviation)")
			fs.Float64Var(&o.o.WeightDecay, "weight-decay", d.WeightDecay, "AdamW decoupled weight decay")
			fs.Float64Var(&o.o.MaxGradNorm, "max-grad-norm", d.MaxGradNorm, "clip the global gradient norm (0 = off)")
			fs.IntSliceVar(&o.ranks, "ranks", nil, "ranks to sample, a subset of 1..r_max (default: the super-network's rank space)")
			fs.BoolVar(&o.o.TrainOnInputs, "train-on-inputs", d.TrainOnInputs, "loss over prompt and response (false: response only)")
			fs.IntVar(&o.o.CheckpointEvery, "checkpoint-every", 0, "also checkpoint every N optimizer steps")
			fs.IntVar(&o.o.Bucket, "bucket", d.Bucket, "pad micro-batches to multiples of this many tokens")
			fs.IntVar(&o.o.MaxGraphs, "max-graphs", d.MaxGraphs, "most step graphs (padded lengths, one session with the weights each) kept open; 0 = auto (1 above 1 GB of weights, else 4)")
			fs.IntVar(&o.maxSteps, "max-steps", 0, "stop after this many optimizer steps of the run (resumable; 0 = all)")
			fs.BoolVar(&o.o.Resume, "resume", false, "continue the run in --out from its last checkpoint")
			o.rt.add(fs)
			fs.BoolVar(&o.noProgres, "no-progress", false, "do not draw the progress bar")
			fs.BoolVar(&o.json, "json", false, "print the summary as JSON")
			return o
		},
		run: runTrain,
	})
}

func runTrain(env *cliEnv, o any, args []string) error {
	opts := o.(*trainOpts)
	t := opts.o
	if opts.ranks != nil {
		t.Ranks = opts.ranks
	}
	if t.Out == "" {
		return fmt.Errorf("%w: --out RUN_DIR is required", errUsage)
	}
	switch {
	case len(args) > 1:
		return fmt.Errorf("%w: one SUPER.onnx expected, got %d arguments", errUsage, len(args))
	case len(args) == 1:
		t.Super = args[0]
	case t.Resume:
		// Everything comes from run.json; flags given explicitly must agree (checked by Train).
		if err := pipeline.ResumeTrainOptions(&t, opts.fs.Changed); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: SUPER.onnx is required (or --resume --out RUN_DIR)", errUsage)
	}
	if t.Data == "" {
		return fmt.Errorf("%w: --data is required (and --tokenizer unless the data is pre-tokenized {\"ids\"} .jsonl)", errUsage)
	}
	ro, err := opts.rt.options()
	if err != nil {
		return err
	}
	t.Runtime = ro
	t.MaxSteps = opts.maxSteps
	ctx, stop := interruptContext(env.stderr)
	defer stop()
	t.Context = ctx
	bar := env.progressBar(!opts.noProgres)
	t.Progress = bar.fn()
	res, err := pipeline.Train(t)
	bar.done()
	if err != nil {
		return err
	}
	if res.Interrupted {
		return fmt.Errorf("interrupted after step %d of %d (checkpoint written); resume with: shears train --resume --out %s", res.Steps, res.Total, res.Dir)
	}
	if opts.json {
		return printJSON(env, res)
	}
	cfg := res.Run
	tw := tabwriter.NewWriter(env.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "run\t%s\n", res.Dir)
	fmt.Fprintf(tw, "steps\t%d of %d (%d epochs × %d steps of %d × %d sequences; %d sequences)\n", res.Steps, res.Total,
		cfg.Hyper.Epochs, cfg.StepsPerEpoch, cfg.Hyper.Accumulation, cfg.Hyper.MicroBatch, cfg.Sequences)
	if res.ResumedFrom > 0 {
		fmt.Fprintf(tw, "resumed\tfrom step %d\n", res.ResumedFrom)
	}
	fmt.Fprintf(tw, "loss\t%.4f → %.4f (first → last step)\n", res.FirstLoss, res.LastLoss)
	fmt.Fprintf(tw, "ranks\t%v of space %v over %d groups\n", cfg.Hyper.Ranks, cfg.RankSpace, len(cfg.Groups))
	fmt.Fprintf(tw, "throughput\t%.0f tokens/s (non-pad tokens; %d in %s)\n", res.TokensPerS, res.Tokens, res.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(tw, "step graphs\t%s tokens × %d rows\n", joinInts(res.Buckets), cfg.Hyper.MicroBatch)
	if len(cfg.Deviations) > 0 {
		fmt.Fprintf(tw, "deviations\t%s\n", strings.Join(cfg.Deviations, "; "))
	}
	if res.Stopped {
		fmt.Fprintf(tw, "stopped\tafter step %d; continue with: shears train --resume --out %s\n", res.Steps, res.Dir)
	} else {
		fmt.Fprintf(tw, "adapter\t%s\n", res.Adapter)
		fmt.Fprintf(tw, "plot\t%s\n", res.Plot)
	}
	return tw.Flush()
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ",")
}
