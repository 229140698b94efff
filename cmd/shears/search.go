package main

import (
	"fmt"
	"slices"
	"text/tabwriter"

	"github.com/spf13/pflag"

	"github.com/shears-ml/shears/pipeline"
)

type searchOpts struct {
	job        pipeline.SearchOptions
	rt         runtimeFlags
	json       bool
	noProgress bool
}

func init() {
	register(&command{
		name:    "search",
		args:    "RUN_DIR --data VAL --strategy heuristic|hill-climb|evolution -o CONFIG.json [flags]",
		summary: "choose a sub-adapter of a trained super-network (heuristic, hill-climbing, NSGA-II)",
		long: `Stage 3 of Shears: pick one rank per adapter group from the trained super-network of a
"shears train" run. Every configuration is scored on validation data through ONE session of the
super-network (the rank masks are inputs, so a configuration is just another feed) and scored
configurations are cached, so the budget counts new ones only.

  heuristic   the middle of the rank list, index (n-1)/2, for every group (24 of 32,24,16): the
              reference's choice; scored once for the report
  hill-climb  from the heuristic, first-improvement local search: a neighbour moves one group one
              step up or down the rank list; neighbours are tried in a seeded random order and the
              first better one (lower loss, or equal loss with fewer parameters) is taken; stops at
              a local optimum or when --budget evaluations are spent; never worse than its start
  evolution   NSGA-II over (metric, active adapter parameters): max, heuristic and min first, then
              random; --budget evaluations (LoNAS: 200) in generations of --population; returns the
              Pareto front (drawn in the plot, listed in CONFIG.json) and picks its best metric,
              within --max-params when given

--metric loss (default) is the mean token cross-entropy of --data read like training data (an
LLM-Adapters .json through the training template, .jsonl or text) with the run's cutoff; hold out
examples the run did not train on. --metric accuracy scores an LLM-Adapters test-style file with
"shears eval --task gen"'s rules: 4-beam generation by default, as the reference evaluates, so the
accuracies compare with the paper's (--beams 1: greedy, about 4× faster; --choice: label tasks by
log-likelihood, faster still), on one session with the rank masks held fixed per configuration.

Writes CONFIG.json (what "shears export --config" reads), search.jsonl (every evaluation) and a
plot (metric against adapter parameters: the front or the climbing path) next to it.

Examples:
  shears search runs/math --data val.json --strategy heuristic -o runs/math/heuristic.json
  shears search runs/math --data val.json --strategy hill-climb --budget 100 -o search/hc.json
  shears search runs/arc --data ARC-Easy-val.json --metric accuracy --strategy evolution --budget 200 -o search/evo.json
  shears search runs/arc --data ARC-Easy-val.json --metric accuracy --beams 1 --limit 50 -o search/quick.json`,
		flags: func(fs *pflag.FlagSet) any {
			o := &searchOpts{}
			fs.StringVar(&o.job.Data, "data", "", "validation data (held out from training)")
			fs.StringVar(&o.job.Tokenizer, "tokenizer", "", "tokenizer (default: the run's)")
			fs.StringVar(&o.job.Strategy, "strategy", pipeline.StrategyHeuristic, "heuristic, hill-climb or evolution")
			fs.IntVar(&o.job.Budget, "budget", 0, "new configurations to evaluate at most (default: 1, 100 hill-climb, 200 evolution)")
			fs.StringVar(&o.job.Metric, "metric", pipeline.MetricLoss, "loss or accuracy")
			fs.StringVar(&o.job.Task, "dataset-type", "", "accuracy: the task (default: from the --data file name)")
			fs.IntVar(&o.job.Beams, "beams", pipeline.DefaultBeams, "accuracy: generation beams (4 = the reference's; 1 = greedy, faster)")
			fs.BoolVar(&o.job.Choice, "choice", false, "accuracy on label tasks: score the labels by log-likelihood instead of generating (faster; not the reference's measure)")
			fs.StringVar(&o.job.ChoicePrefix, "choice-prefix", "the correct answer is ", "accuracy on label tasks: text between the prompt and each label")
			fs.IntVar(&o.job.Limit, "limit", 0, "use the first N validation sequences or items (0 = all)")
			fs.IntVar(&o.job.Cutoff, "cutoff", 0, "loss: tokens per sequence (default: the run's)")
			fs.IntVar(&o.job.Batch, "batch", 8, "loss: sequences per forward pass")
			fs.Uint64Var(&o.job.Seed, "seed", 42, "seed of the neighbour order (hill-climb) and the evolution")
			fs.IntVar(&o.job.Population, "population", 0, "evolution: population size (default: budget/20 within 4..16)")
			fs.Int64Var(&o.job.MaxParams, "max-params", 0, "evolution: pick the best metric among configurations with at most this many adapter parameters")
			fs.StringVarP(&o.job.Config, "output", "o", "", "CONFIG.json to write (the chosen ranks)")
			fs.StringVar(&o.job.Log, "log", "", "evaluation log (default: search.jsonl next to CONFIG.json)")
			fs.StringVar(&o.job.Plot, "plot", "", "plot PNG (default: search.png next to CONFIG.json; - for none)")
			o.rt.add(fs)
			fs.BoolVar(&o.noProgress, "no-progress", false, "do not draw the progress bar")
			fs.BoolVar(&o.json, "json", false, "print the summary as JSON")
			return o
		},
		run: runSearch,
	})
}

func runSearch(env *cliEnv, o any, args []string) error {
	opts := o.(*searchOpts)
	if len(args) != 1 {
		return fmt.Errorf("%w: give the run directory RUN_DIR of \"shears train\"", errUsage)
	}
	ro, err := opts.rt.options()
	if err != nil {
		return err
	}
	j := opts.job
	j.RunDir, j.Runtime = args[0], ro
	j.Warn = func(msg string) { fmt.Fprintf(env.stderr, "warning: %s\n", msg) }
	bar := env.progressBar(!opts.noProgress)
	j.Progress = bar.fn()
	rep, err := pipeline.Search(j)
	bar.done()
	if err != nil {
		return err
	}
	if opts.json {
		return printJSON(env, rep)
	}
	printSearchSummary(env, rep)
	return nil
}

func printSearchSummary(env *cliEnv, r *pipeline.SearchReport) {
	tw := tabwriter.NewWriter(env.stdout, 0, 0, 2, ' ', 0)
	pct := func(p int64) string {
		return fmt.Sprintf("%d (%.0f%% of max)", p, 100*float64(p)/float64(r.Params["max"]))
	}
	fmt.Fprintf(tw, "strategy\t%s\n", r.Strategy)
	fmt.Fprintf(tw, "evaluations\t%d of budget %d (%s)\n", r.Evaluations, r.Budget, r.Stop)
	if r.Moves > 0 {
		fmt.Fprintf(tw, "moves\t%d accepted\n", r.Moves)
	}
	if r.Generations > 0 {
		fmt.Fprintf(tw, "generations\t%d; Pareto front of %d\n", r.Generations, len(r.Front))
	}
	fmt.Fprintf(tw, "best %s\t%.5f on %d validation units\n", r.Metric, r.Best.Value, r.Units)
	if r.Heuristic != nil && r.Strategy != "heuristic" {
		fmt.Fprintf(tw, "heuristic %s\t%.5f\n", r.Metric, r.Heuristic.Value)
	}
	fmt.Fprintf(tw, "adapter params\t%s\n", pct(r.Best.Params))
	fmt.Fprintf(tw, "  max / heuristic / min\t%d / %d / %d\n", r.Params["max"], r.Params["heuristic"], r.Params["min"])
	count := map[int]int{}
	for _, v := range r.Best.RankMap {
		count[v]++
	}
	var rs []int
	for k := range count {
		rs = append(rs, k)
	}
	slices.Sort(rs)
	slices.Reverse(rs)
	line := ""
	for i, k := range rs {
		if i > 0 {
			line += ", "
		}
		line += fmt.Sprintf("%d groups at r=%d", count[k], k)
	}
	fmt.Fprintf(tw, "ranks\t%s\n", line)
	tw.Flush()
	for _, n := range r.Notes {
		fmt.Fprintf(env.stderr, "note: %s\n", n)
	}
	fmt.Fprintf(env.stdout, "wrote %s and %s", r.Config, r.Log)
	if r.Plot != "" {
		fmt.Fprintf(env.stdout, " and %s", r.Plot)
	}
	fmt.Fprintln(env.stdout)
}
