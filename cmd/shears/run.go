package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/shears-ml/shears/pipeline"
)

type runOpts struct {
	work       string
	ortLib     string
	device     string
	threads    int
	prepack    string
	json       bool
	noProgress bool
	fs         *pflag.FlagSet
}

func init() {
	register(&command{
		name:    "run",
		args:    "RECIPE.yaml|RECIPE.json [flags]",
		summary: "run the whole pipeline from a recipe: prune → adapt → train → search → export → eval",
		long: `Runs the Shears pipeline that a recipe (YAML or JSON) describes, with the same code as the
single commands, writing every stage's outputs under the recipe's work directory:
prune/model.onnx, adapt/super.onnx, train/run/ (an NLS run directory), search/config.json,
export-*/model.onnx, eval-*/ and, at the end, summary.md and summary.json (per-stage times and
one table per evaluation set: metric, non-zero parameters, adapter parameters, training time).

Resumable: each stage writes a manifest with a hash of its options and inputs; a stage whose
manifest matches and whose outputs exist is skipped, so a second run only redoes what changed
(and what depends on it). An interrupted training stage (Ctrl-C, a crash) resumes from its last
checkpoint. baselines: {lora: true} adds plain LoRA at r_max on the dense and on the sparse base,
the comparison rows of the Shears paper.

Recipe keys (each section's keys are the flags of its command, with _ for -; see
examples/stories260K.yaml): work, model, tokenizer, runtime {ort_lib, device, threads, prepack},
prune {method, sparsity, pattern, calib, samples, seq_len, seed, one_shot, include, exclude},
adapt {targets, ranks, alpha, groups, dropout, seed, sparse_adapter, include, exclude},
train {data, epochs, lr, batch, micro_batch, cutoff, seed, warmup, weight_decay, max_grad_norm,
train_on_inputs, bucket, max_graphs, checkpoint_every}, search {strategy, data, budget, metric,
cutoff, batch, limit, seed}, export {merge, dtype}, baselines {lora}, eval [{name, task: ppl |
answer-loss, data, seq_len, batch, limit}]. Relative paths are taken from the recipe's folder;
$VAR in paths is expanded.

Examples:
  shears run examples/stories260K.yaml
  shears run my.yaml --work runs/try2 --threads 2`,
		flags: func(fs *pflag.FlagSet) any {
			o := &runOpts{fs: fs}
			fs.StringVar(&o.work, "work", "", "work directory (overrides the recipe's work)")
			fs.StringVar(&o.ortLib, "ort-lib", "", "path to libonnxruntime (overrides runtime.ort_lib)")
			fs.StringVar(&o.device, "device", "", "execution provider (overrides runtime.device)")
			fs.IntVar(&o.threads, "threads", 0, "intra-op threads (overrides runtime.threads)")
			addPrepack(fs, &o.prepack)
			fs.Lookup("prepack").Usage += " (overrides runtime.prepack)"
			fs.BoolVar(&o.noProgress, "no-progress", false, "do not draw the training progress bar")
			fs.BoolVar(&o.json, "json", false, "print summary.json instead of summary.md at the end")
			return o
		},
		run: runRun,
	})
}

func runRun(env *cliEnv, o any, args []string) error {
	opts := o.(*runOpts)
	if err := needArgs(args, 1, "RECIPE"); err != nil {
		return err
	}
	r, err := pipeline.LoadRecipe(args[0])
	if err != nil {
		return err
	}
	if opts.work != "" {
		if r.Work, err = filepath.Abs(opts.work); err != nil {
			return fmt.Errorf("--work: %w", err)
		}
	}
	if opts.fs.Changed("ort-lib") {
		r.Runtime.ORTLib = opts.ortLib
	}
	if opts.fs.Changed("device") {
		r.Runtime.Device = opts.device
	}
	if opts.fs.Changed("threads") {
		r.Runtime.Threads = opts.threads
	}
	if opts.fs.Changed("prepack") {
		r.Runtime.Prepack = opts.prepack
	}
	ctx, stop := interruptContext(env.stderr)
	defer stop()
	po := pipeline.Options{Log: env.stderr, Context: ctx}
	bar := env.progressBar(!opts.noProgress)
	po.Progress = bar.fn()
	if bar != nil {
		po.StageDone = func(pipeline.StageTime) { bar.done() }
	}
	sum, err := pipeline.Run(r, po)
	bar.done()
	if err != nil {
		return err
	}
	if opts.json {
		return printJSON(env, sum)
	}
	fmt.Fprint(env.stdout, sum.Markdown())
	fmt.Fprintf(env.stdout, "\nwrote %s/summary.md and summary.json\n", r.Work)
	return nil
}
