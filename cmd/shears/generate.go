package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/shears-ml/shears/pipeline"
)

type generateOpts struct {
	rt          runtimeFlags
	tokenizer   string
	prompt      string
	promptIDs   string
	maxTokens   int
	temperature float64
	topK        int
	seed        uint64
	beams       int
	noCache     bool
	ignoreEOS   bool
	json        bool
}

func init() {
	register(&command{
		name:       "generate",
		args:       "MODEL.onnx|MODEL_DIR [--tokenizer TOK] [--prompt P] [flags]",
		positional: "MODEL.onnx",
		summary:    "generate text from a causal LM (greedy by default)",
		long: `Starts from BOS (plus the encoded --prompt) and appends one token at a time until
--max-tokens or EOS. Greedy decoding unless --temperature > 0, which samples from the
softmax over the --top-k most likely tokens with --seed; --beams N runs beam search instead
(Hugging Face's, length penalty 1). A model with a KV cache (past_key_values.* inputs) runs the
prompt once and then one token per step; --no-cache reruns the whole sequence for every token
(the reference, and the baseline for timing). The text streams to stdout as it is made;
--json prints {"ids": [...], "text": "...", ...} at the end instead (ids generated, prompt
excluded), with the timing. --prompt-ids gives the prompt as token ids (BOS not added), so no
tokenizer is needed with --json; --ignore-eos keeps going past EOS (fixed-length timing runs).

A model folder (--format folder of import, convert, prune, export) is read as its
onnx/model.onnx with its tokenizer.json unless --tokenizer says otherwise.

Examples:
  shears generate stories260K.onnx --tokenizer tok512.bin --prompt "Once upon a time" --max-tokens 100
  shears generate served/stories --prompt "Once upon a time"
  shears generate model.onnx --tokenizer tokenizer.json --beams 4 --max-tokens 64
  shears generate model.onnx --prompt-ids 1 --max-tokens 200 --ignore-eos --json   # timing, no tokenizer`,
		flags: func(fs *pflag.FlagSet) any {
			o := &generateOpts{}
			fs.StringVar(&o.tokenizer, "tokenizer", "", "tokenizer file (llama2.c tokenizer.bin or tokenizer.json; a model folder's own by default)")
			fs.StringVar(&o.prompt, "prompt", "", "text to continue (after BOS)")
			fs.StringVar(&o.promptIDs, "prompt-ids", "", "the prompt as comma-separated token ids, instead of BOS + --prompt")
			fs.IntVar(&o.maxTokens, "max-tokens", 128, "tokens to generate at most")
			fs.Float64Var(&o.temperature, "temperature", 0, "sampling temperature; 0 = greedy")
			fs.IntVar(&o.topK, "top-k", 0, "sample among the k most likely tokens (0 = all)")
			fs.Uint64Var(&o.seed, "seed", 0, "sampling seed")
			fs.IntVar(&o.beams, "beams", 1, "beam search with N beams (1 = greedy or sampling)")
			fs.BoolVar(&o.noCache, "no-cache", false, "rerun the whole sequence every token even when the model has a KV cache")
			fs.BoolVar(&o.ignoreEOS, "ignore-eos", false, "do not stop at EOS")
			fs.BoolVar(&o.json, "json", false, `print {"ids": [...], "text": "...", "seconds": ..., ...}`)
			// One token per step is a matrix-vector product per weight: onnxruntime's pre-packed
			// weights make generation about 1.2× faster with float weights too (bench serve-25m),
			// at the price of a second copy of them in memory, which --prepack=auto (MatMulNBits
			// models only) or off saves. Every other command defaults to auto.
			o.rt.cfg.Prepack = "on"
			o.rt.add(fs)
			return o
		},
		run: runGenerate,
	})
}

func runGenerate(env *cliEnv, o any, args []string) error {
	opts := o.(*generateOpts)
	g := pipeline.GenerateOptions{Model: args[0], Tokenizer: opts.tokenizer, Prompt: opts.prompt, MaxTokens: opts.maxTokens,
		Temperature: opts.temperature, TopK: opts.topK, Seed: opts.seed, Beams: opts.beams, NoCache: opts.noCache, IgnoreEOS: opts.ignoreEOS}
	if opts.promptIDs != "" {
		ids, err := parseIDs(opts.promptIDs)
		if err != nil {
			return fmt.Errorf("%w: --prompt-ids: %v", errUsage, err)
		}
		g.PromptIDs = ids
	}
	if !opts.json {
		g.Text = func(s string) { fmt.Fprint(env.stdout, s) } // the text streams as it is made
	}
	if err := opts.rt.load(g.Check(), &g.Runtime); err != nil {
		return err
	}
	rep, err := pipeline.Generate(g)
	if err != nil {
		return err
	}
	if opts.json {
		return printJSON(env, rep)
	}
	fmt.Fprintln(env.stdout)
	fmt.Fprintf(env.stderr, "%d tokens in %.2fs (%.1f tokens/s; %s, %s)\n", len(rep.IDs), rep.Seconds, rep.TokensPerSec, rep.Decoding, rep.Caching)
	return nil
}

// parseIDs reads "1,2,3".
func parseIDs(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 0 {
			return nil, fmt.Errorf("%q is not a token id", f)
		}
		out = append(out, v)
	}
	return out, nil
}
