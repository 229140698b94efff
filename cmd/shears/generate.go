package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/shears-ml/shears/eval"
	"github.com/shears-ml/shears/pipeline"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/tokenizer"
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
	prepack     bool
	json        bool
}

func init() {
	register(&command{
		name:    "generate",
		args:    "MODEL.onnx|MODEL_DIR [--tokenizer TOK] [--prompt P] [flags]",
		summary: "generate text from a causal LM (greedy by default)",
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
			// One token per step is a matrix-vector product per weight: onnxruntime's pre-packed
			// weights make each step about 1.5× faster (bench serve-25m), at the price of a
			// second copy of the weights in memory, which --prepack=false saves.
			fs.BoolVar(&o.prepack, "prepack", true, "let onnxruntime keep pre-packed copies of the weights (faster steps, twice the weight memory)")
			fs.BoolVar(&o.json, "json", false, `print {"ids": [...], "text": "...", "seconds": ..., ...}`)
			o.rt.add(fs)
			return o
		},
		run: runGenerate,
	})
}

// generateResult is what --json prints.
type generateResult struct {
	IDs          []int   `json:"ids"`
	Text         string  `json:"text,omitempty"`
	PromptTokens int     `json:"prompt_tokens"`
	Caching      string  `json:"caching"` // "kv cache" or "recompute"
	Decoding     string  `json:"decoding"`
	Seconds      float64 `json:"seconds"` // generation only, the model's load excluded
	TokensPerSec float64 `json:"tokens_per_second"`
}

func runGenerate(env *cliEnv, o any, args []string) error {
	opts := o.(*generateOpts)
	if err := needArgs(args, 1, "MODEL.onnx"); err != nil {
		return err
	}
	if opts.maxTokens < 0 {
		return fmt.Errorf("%w: --max-tokens must be >= 0, got %d", errUsage, opts.maxTokens)
	}
	if opts.temperature < 0 {
		return fmt.Errorf("%w: --temperature must be >= 0, got %g", errUsage, opts.temperature)
	}
	if opts.beams < 1 {
		return fmt.Errorf("%w: --beams must be >= 1, got %d", errUsage, opts.beams)
	}
	if opts.beams > 1 && opts.temperature > 0 {
		return fmt.Errorf("%w: --beams and --temperature exclude each other (beam search is deterministic)", errUsage)
	}
	if opts.promptIDs != "" && opts.prompt != "" {
		return fmt.Errorf("%w: give --prompt or --prompt-ids, not both", errUsage)
	}
	model, folderTok := pipeline.ResolveModel(args[0]) // a model folder: its graph and tokenizer
	if opts.tokenizer == "" {
		opts.tokenizer = folderTok
	}
	var tok tokenizer.Tokenizer
	var err error
	if opts.tokenizer != "" || opts.promptIDs == "" || !opts.json {
		if tok, err = loadTokenizer(opts.tokenizer); err != nil {
			return err
		}
	}
	var prompt []int
	if opts.promptIDs != "" {
		if prompt, err = parseIDs(opts.promptIDs); err != nil {
			return fmt.Errorf("%w: --prompt-ids: %v", errUsage, err)
		}
	} else {
		prompt = append([]int{tok.BOS()}, tok.Encode(opts.prompt)...)
	}
	var stop []int
	if tok != nil && !opts.ignoreEOS {
		stop = []int{tok.EOS()}
	}
	ro, err := opts.rt.options()
	if err != nil {
		return err
	}
	ro.Prepack = opts.prepack
	s, err := runtime.OpenFile(model, ro)
	if err != nil {
		return err
	}
	defer s.Close()
	res := generateResult{PromptTokens: len(prompt), Decoding: "greedy"}
	if res.Caching, err = eval.Caching(s, opts.noCache); err != nil {
		return fmt.Errorf("%s: %w", model, err)
	}
	var onToken func(int)
	if !opts.json {
		fmt.Fprint(env.stdout, tok.Decode(prompt))
		prev := prompt
		onToken = func(id int) {
			// Decode the whole text so far and print what is new: tokenizers that strip a
			// leading space or join byte tokens need the context.
			before := tok.Decode(prev)
			prev = append(prev, id)
			after := tok.Decode(prev)
			if len(after) >= len(before) {
				fmt.Fprint(env.stdout, after[len(before):])
			}
		}
	}
	start := time.Now()
	var ids []int
	if opts.beams > 1 {
		res.Decoding = fmt.Sprintf("beam search (%d beams)", opts.beams)
		h, err := eval.BeamSearch(s, prompt, eval.BeamOptions{Beams: opts.beams, MaxTokens: opts.maxTokens, Stop: stop, LengthPenalty: 1, NoCache: opts.noCache})
		if err != nil {
			return err
		}
		ids = h.IDs
		if onToken != nil {
			for _, id := range ids {
				onToken(id)
			}
		}
	} else {
		if opts.temperature > 0 {
			res.Decoding = fmt.Sprintf("sampling (temperature %g, top-k %d, seed %d)", opts.temperature, opts.topK, opts.seed)
		}
		gen := eval.GenOptions{MaxTokens: opts.maxTokens, Temperature: opts.temperature, TopK: opts.topK, Seed: opts.seed, Stop: stop, NoCache: opts.noCache}
		if ids, err = eval.Generate(s, prompt, gen, onToken); err != nil {
			return err
		}
	}
	res.Seconds = time.Since(start).Seconds()
	res.IDs = ids
	if res.IDs == nil {
		res.IDs = []int{}
	}
	if res.Seconds > 0 {
		res.TokensPerSec = float64(len(ids)) / res.Seconds
	}
	if opts.json {
		if tok != nil {
			res.Text = tok.Decode(ids)
		}
		return printJSON(env, res)
	}
	fmt.Fprintln(env.stdout)
	fmt.Fprintf(env.stderr, "%d tokens in %.2fs (%.1f tokens/s; %s, %s)\n", len(ids), res.Seconds, res.TokensPerSec, res.Decoding, res.Caching)
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
