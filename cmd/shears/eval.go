package main

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	"github.com/shears-ml/shears/pipeline"
)

type evalOpts struct {
	rt            runtimeFlags
	task          string
	data          string
	tokenizer     string
	seqLen        int
	batch         int
	json          bool
	limit         int
	maxTokens     int
	datasetType   string
	beams         int
	maxNew        int
	lengthPenalty float64
	choicePrefix  string
	predictions   string
	withPrompt    bool
	noCache       bool
}

func init() {
	register(&command{
		name:       "eval",
		args:       "MODEL.onnx|MODEL_DIR --task ppl|gen|choice --data FILE [--tokenizer TOK] [flags]",
		positional: "MODEL.onnx",
		summary:    "evaluate a model (perplexity, generation accuracy, multiple-choice accuracy)",
		long: `--task ppl: perplexity. The data file (.txt, LLM-Adapters .json whose records become their
training prompts, or .jsonl) is tokenized into one stream (each document BOS … EOS), cut into
non-overlapping windows of --seq-len tokens (capped to the model's context; the last, shorter
window counts too). Inside a window token t+1 is predicted from tokens ≤ t, so a window of L
tokens gives L−1 predictions and nothing is predicted across a window boundary. The result is
exp(mean negative log-likelihood) over all predictions, computed in float64. --limit N keeps the
first N documents.

--task gen: the reference's generation accuracy on an LLM-Adapters test file. The task (answer
rule, prompt indent, token budget) comes from the file name (gsm8k, SVAMP, mawps, AQuA, boolq,
piqa, social_i_qa, ARC-Easy, ARC-Challenge, openbookqa, hellaswag, winogrande) or
--dataset-type. Each item: BOS + the evaluation prompt → beam search with 4 beams (the
reference's setting, the default, so accuracies compare with the paper's; length penalty 1 over
the whole sequence) or greedy decoding (--beams 1, about 4× faster) until
EOS or --max-new-tokens (default 256 math, 32 commonsense) → decode the whole sequence → the
text between the first "### Response:" and the next → the task's answer rule. A model with a KV
cache (past_key_values.* inputs) runs the prompt once and then one token per step, beams
reordering the cache; --no-cache (and any model without one) reruns the whole prefix for every
token instead, whose cost grows with the square of the length.

--task choice: multiple choice by log-likelihood, for the label tasks (commonsense and AQuA;
not the numeric math sets). Candidates are the labels on the instruction's "Answer format:"
line (e.g. answer1/answer2/answer3), else all the task's labels (true/false, solution1/2,
answer1-5, ending1-4, option1/2, A-E). Each candidate is the text eval prompt + --choice-prefix
+ label, tokenized as one string; the tokens after the prefix all candidates share with the
tokenized prompt are scored (sum of log-probabilities, float64); the highest sum wins
(accuracy_mean reports the choice by mean log-probability). An item's candidates run as one
right-padded batch.

--json prints the summary as JSON; --predictions FILE writes one JSON record per item
({index, response, prediction, answer, correct, ...}; --with-prompt adds the prompt).

Examples:
  shears eval model.onnx --task ppl --data heldout.txt --tokenizer tok.bin --seq-len 256 --json
  shears eval model.onnx --task gen --data gsm8k-test.json --tokenizer tok.bin --limit 100
  shears eval model.onnx --task gen --data gsm8k-test.json --tokenizer tok.bin --beams 1   # greedy, faster
  shears eval model.onnx --task gen --data gsm8k-test.json --tokenizer tok.bin --limit 100 --no-cache
  shears eval model.onnx --task choice --data boolq-test.json --tokenizer tok.bin --predictions p.jsonl`,
		flags: func(fs *pflag.FlagSet) any {
			o := &evalOpts{}
			fs.StringVar(&o.task, "task", "ppl", "what to measure: ppl, gen or choice")
			fs.StringVar(&o.data, "data", "", "evaluation data (ppl: .txt, .json, .jsonl; gen/choice: an LLM-Adapters test .json)")
			fs.StringVar(&o.tokenizer, "tokenizer", "", "tokenizer file")
			fs.IntVar(&o.seqLen, "seq-len", pipeline.DefaultEvalSeqLen, "ppl: window length in tokens (capped to the model's context)")
			fs.IntVar(&o.batch, "batch", 4, "ppl: windows per onnxruntime run")
			fs.BoolVar(&o.json, "json", false, "print the result as JSON")
			fs.IntVar(&o.limit, "limit", 0, "evaluate the first N items (ppl: documents; a .txt file has one per paragraph); 0 = all")
			fs.IntVar(&o.maxTokens, "max-tokens", 0, "ppl: score the first N tokens of the data at most; 0 = all (read lazily either way)")
			fs.StringVar(&o.datasetType, "dataset-type", "", "gen/choice: the task, overriding the file name ("+strings.Join(pipeline.DatasetTypes(), ", ")+")")
			fs.IntVar(&o.beams, "beams", 4, "gen: beams; 4 = the reference's (default), 1 = greedy (faster)")
			fs.IntVar(&o.maxNew, "max-new-tokens", 0, "gen: new tokens at most (0 = 256 math, 32 commonsense)")
			fs.Float64Var(&o.lengthPenalty, "length-penalty", 1, "gen: beam search length penalty exponent")
			fs.StringVar(&o.choicePrefix, "choice-prefix", "the correct answer is ", "choice: text between the prompt and each label")
			fs.StringVar(&o.predictions, "predictions", "", "gen/choice: write per-item JSONL records to FILE")
			fs.BoolVar(&o.withPrompt, "with-prompt", false, "gen/choice: include the prompt in --predictions records")
			fs.BoolVar(&o.noCache, "no-cache", false, "gen: rerun the whole prefix every token even when the model has a KV cache (for timing)")
			o.rt.add(fs)
			return o
		},
		run: runEval,
	})
}

func runEval(env *cliEnv, o any, args []string) error {
	opts := o.(*evalOpts)
	bar := env.progressBar(true)
	eo := pipeline.EvalOptions{
		Model: args[0], Task: opts.task, Data: opts.data, Tokenizer: opts.tokenizer, Limit: opts.limit,
		SeqLen: opts.seqLen, Batch: opts.batch, MaxTokens: opts.maxTokens,
		DatasetType: opts.datasetType, Beams: opts.beams, MaxNewTokens: opts.maxNew, LengthPenalty: opts.lengthPenalty,
		NoCache: opts.noCache, ChoicePrefix: opts.choicePrefix, Predictions: opts.predictions, WithPrompt: opts.withPrompt,
		Progress: bar.fn(),
	}
	if err := opts.rt.load(eo.Check(), &eo.Runtime); err != nil {
		return err
	}
	rep, err := pipeline.Eval(eo)
	bar.done()
	if err != nil {
		return err
	}
	if res := rep.PPL; res != nil {
		if opts.json {
			return printJSON(env, res)
		}
		fmt.Fprintf(env.stdout, "perplexity %.4f (nll %.4f over %d tokens, %d windows of ≤ %d)\n", res.PPL, res.Loss, res.Tokens, res.Windows, res.SeqLen)
		return nil
	}
	sum := rep.Summary
	if opts.json {
		return printJSON(env, sum)
	}
	decoding := sum.Decoding
	if sum.Caching != "" {
		decoding += ", " + sum.Caching
	}
	fmt.Fprintf(env.stdout, "%s %s: accuracy %.4f (%d/%d), %s, %.1fs", opts.task, sum.Dataset, sum.Accuracy, sum.Correct, sum.Items, decoding, sum.Seconds)
	if sum.AccuracyMean != nil {
		fmt.Fprintf(env.stdout, "; by mean log-prob %.4f", *sum.AccuracyMean)
	}
	if sum.Truncated > 0 {
		fmt.Fprintf(env.stdout, "; %d prompts truncated to the context %d", sum.Truncated, rep.Context)
	}
	fmt.Fprintln(env.stdout)
	return nil
}
