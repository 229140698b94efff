package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/shears-ml/shears/data"
	"github.com/shears-ml/shears/eval"
	"github.com/shears-ml/shears/models"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/runtime"
)

type evalOpts struct {
	rt        runtimeFlags
	task      string
	data      string
	tokenizer string
	seqLen    int
	batch     int
	json      bool
}

func init() {
	register(&command{
		name:    "eval",
		args:    "MODEL.onnx --task ppl --data FILE --tokenizer TOK [flags]",
		summary: "evaluate a model (perplexity on held-out text)",
		long: `--task ppl: perplexity. The data file (.txt, LLM-Adapters .json whose records become their
training prompts, or .jsonl) is tokenized into one stream (each document BOS … EOS), cut into
non-overlapping windows of --seq-len tokens (capped to the model's context; the last, shorter
window counts too). Inside a window token t+1 is predicted from tokens ≤ t, so a window of L
tokens gives L−1 predictions and nothing is predicted across a window boundary. The result is
exp(mean negative log-likelihood) over all predictions, computed in float64.

Example:
  shears eval model.onnx --task ppl --data heldout.txt --tokenizer tok.bin --seq-len 256 --json`,
		flags: func(fs *pflag.FlagSet) any {
			o := &evalOpts{}
			fs.StringVar(&o.task, "task", "ppl", "what to measure: ppl")
			fs.StringVar(&o.data, "data", "", "evaluation data (.txt, .json, .jsonl)")
			fs.StringVar(&o.tokenizer, "tokenizer", "", "tokenizer file")
			fs.IntVar(&o.seqLen, "seq-len", 2048, "window length in tokens (capped to the model's context)")
			fs.IntVar(&o.batch, "batch", 4, "windows per onnxruntime run")
			fs.BoolVar(&o.json, "json", false, `print {"ppl": x, "tokens": n, ...}`)
			o.rt.add(fs)
			return o
		},
		run: runEval,
	})
}

func runEval(env *cliEnv, o any, args []string) error {
	opts := o.(*evalOpts)
	if err := needArgs(args, 1, "MODEL.onnx"); err != nil {
		return err
	}
	if opts.task != "ppl" {
		return fmt.Errorf("%w: --task %q is not supported (supported: ppl)", errUsage, opts.task)
	}
	if opts.data == "" {
		return fmt.Errorf("%w: --data FILE is required", errUsage)
	}
	tok, err := loadTokenizer(opts.tokenizer)
	if err != nil {
		return err
	}
	docs, err := data.ReadDocuments(opts.data)
	if err != nil {
		return fmt.Errorf("--data: %w", err)
	}
	m, err := onnx.Load(args[0])
	if err != nil {
		return err
	}
	seqLen := opts.seqLen
	if ctx := models.ContextLength(m); ctx > 0 && seqLen > ctx {
		seqLen = ctx
	}
	m.Close()
	ro, err := opts.rt.options()
	if err != nil {
		return err
	}
	s, err := runtime.OpenFile(args[0], ro)
	if err != nil {
		return err
	}
	defer s.Close()
	res, err := eval.Perplexity(s, data.Stream(docs, tok), seqLen, opts.batch)
	if err != nil {
		return err
	}
	if opts.json {
		return json.NewEncoder(env.stdout).Encode(res)
	}
	fmt.Fprintf(env.stdout, "perplexity %.4f (nll %.4f over %d tokens, %d windows of ≤ %d)\n", res.PPL, res.NLL, res.Tokens, res.Windows, seqLen)
	return nil
}
