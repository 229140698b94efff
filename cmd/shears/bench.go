package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"github.com/shears-ml/shears/bench"
	"github.com/shears-ml/shears/pipeline"
)

type benchOpts struct {
	bin       string
	work      string
	shared    string
	ortLib    string
	threads   int
	reps      int
	samples   int
	seqLen    int
	oneShot   bool
	json      bool
	list      bool
	loadsave  bool
	forward   string
	prepack   string
	resultsMD string
}

func init() {
	var names []string
	for _, s := range bench.Scenarios() {
		names = append(names, fmt.Sprintf("  %-12s %s", s.Name, s.Summary))
	}
	register(&command{
		name:    "bench",
		args:    "[SCENARIO ...] [flags]",
		summary: "run the benchmark scenarios and print a markdown table",
		long: `Runs each scenario (all when none is named) with this shears binary as a child process and
reports wall time and the child's peak resident memory (getrusage), so the memory figures are
the tool's own. Ratios are taken against a baseline measured in the same run. The 1B synthetic
model (about 4.4 GB) is written into --work once and reused.

Scenarios:
` + strings.Join(names, "\n") + `

Example:
  shears bench inspect-1b loadsave-1b
  shears bench ppl-stories --json > ppl.json`,
		flags: func(fs *pflag.FlagSet) any {
			o := &benchOpts{}
			fs.StringVar(&o.bin, "bin", "", "shears binary to measure (default: this one)")
			fs.StringVar(&o.work, "work", filepath.Join(os.TempDir(), "shears-bench"), "folder for generated models and outputs (reused)")
			fs.StringVar(&o.shared, "shared", "", "the shared inputs folder (default: ../shared next to the folder holding go.mod)")
			fs.StringVar(&o.ortLib, "ort-lib", "", "passed to children that run onnxruntime")
			fs.IntVar(&o.threads, "threads", 0, "intra-op threads passed to children (0 = onnxruntime's default)")
			fs.IntVar(&o.reps, "reps", 1, "repetitions of loadsave-1b and import-hf-1b, their copies and command alternating (the fastest and the median are reported)")
			fs.IntVar(&o.samples, "samples", 8, "prune-1b calibration windows")
			fs.IntVar(&o.seqLen, "seq-len", 512, "prune-1b tokens per calibration window")
			fs.BoolVar(&o.oneShot, "one-shot", false, "prune-1b: also run --one-shot")
			fs.BoolVar(&o.json, "json", false, "print the results as JSON instead of markdown")
			fs.BoolVar(&o.list, "list", false, "list the scenarios and exit")
			fs.StringVar(&o.resultsMD, "markdown-out", "", "also write the markdown to this file")
			fs.BoolVar(&o.loadsave, "loadsave-child", false, "internal: the measured child of loadsave-1b (IN OUT)")
			fs.MarkHidden("loadsave-child")
			fs.StringVar(&o.forward, "forward-child", "", "internal: the measured child of quant-compare's prefill and decode tokens/s (MODEL)")
			fs.MarkHidden("forward-child")
			fs.StringVar(&o.prepack, "forward-prepack", "", "internal: the forward child's weight pre-packing (auto, on or off)")
			fs.MarkHidden("forward-prepack")
			return o
		},
		run: runBench,
	})
}

func runBench(env *cliEnv, o any, args []string) error {
	opts := o.(*benchOpts)
	if opts.loadsave {
		if err := needArgs(args, 2, "IN.onnx OUT.onnx"); err != nil {
			return err
		}
		return bench.LoadSave(args[0], args[1])
	}
	if opts.forward != "" {
		ro, err := pipeline.RuntimeConfig{ORTLib: opts.ortLib, Threads: opts.threads, Prepack: opts.prepack}.Load()
		if err != nil {
			return err
		}
		f, err := bench.Forward(opts.forward, ro, 4, 128, 128)
		if err != nil {
			return err
		}
		return printJSON(env, f)
	}
	if opts.list {
		for _, s := range bench.Scenarios() {
			fmt.Fprintf(env.stdout, "%-12s %s\n", s.Name, s.Summary)
		}
		return nil
	}
	bin := opts.bin
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding this binary (use --bin): %w", err)
		}
		bin = exe
	}
	cfg := bench.Config{Bin: bin, Work: opts.work, Shared: opts.shared, OrtLib: opts.ortLib, Threads: opts.threads,
		Reps: opts.reps, PruneSamples: opts.samples, PruneSeqLen: opts.seqLen, OneShot: opts.oneShot, Log: env.stderr}
	results, err := bench.Run(context.Background(), cfg, args)
	if len(results) > 0 {
		if opts.resultsMD != "" {
			if werr := bench.WriteMarkdown(opts.resultsMD, results); werr != nil {
				return fmt.Errorf("--markdown-out: %w", werr)
			}
		}
		if opts.json {
			if jerr := printJSON(env, results); jerr != nil {
				return jerr
			}
		} else {
			fmt.Fprint(env.stdout, bench.Markdown(results))
		}
	}
	return err
}
