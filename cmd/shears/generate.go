package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/shears-ml/shears/eval"
	"github.com/shears-ml/shears/pipeline"
	"github.com/shears-ml/shears/runtime"
)

type generateOpts struct {
	rt          runtimeFlags
	tokenizer   string
	prompt      string
	maxTokens   int
	temperature float64
	topK        int
	seed        uint64
	json        bool
}

func init() {
	register(&command{
		name:    "generate",
		args:    "MODEL.onnx|MODEL_DIR [--tokenizer TOK] [--prompt P] [flags]",
		summary: "generate text from a causal LM (greedy by default)",
		long: `Starts from BOS (plus the encoded --prompt) and appends one token at a time until
--max-tokens or EOS. Greedy decoding unless --temperature > 0, which samples from the
softmax over the --top-k most likely tokens with --seed. The text streams to stdout as it is made;
--json prints {"ids": [...], "text": "..."} at the end instead (ids generated, prompt excluded).

A model folder (--format folder of import, convert, prune, export) is read as its
onnx/model.onnx with its tokenizer.json unless --tokenizer says otherwise.

Examples:
  shears generate stories260K.onnx --tokenizer tok512.bin --prompt "Once upon a time" --max-tokens 100
  shears generate served/stories --prompt "Once upon a time"`,
		flags: func(fs *pflag.FlagSet) any {
			o := &generateOpts{}
			fs.StringVar(&o.tokenizer, "tokenizer", "", "tokenizer file (llama2.c tokenizer.bin or tokenizer.json; a model folder's own by default)")
			fs.StringVar(&o.prompt, "prompt", "", "text to continue (after BOS)")
			fs.IntVar(&o.maxTokens, "max-tokens", 128, "tokens to generate at most")
			fs.Float64Var(&o.temperature, "temperature", 0, "sampling temperature; 0 = greedy")
			fs.IntVar(&o.topK, "top-k", 0, "sample among the k most likely tokens (0 = all)")
			fs.Uint64Var(&o.seed, "seed", 0, "sampling seed")
			fs.BoolVar(&o.json, "json", false, `print {"ids": [...], "text": "..."}`)
			o.rt.add(fs)
			return o
		},
		run: runGenerate,
	})
}

func runGenerate(env *cliEnv, o any, args []string) error {
	opts := o.(*generateOpts)
	if err := needArgs(args, 1, "MODEL.onnx"); err != nil {
		return err
	}
	if opts.maxTokens < 0 {
		return fmt.Errorf("--max-tokens must be >= 0, got %d", opts.maxTokens)
	}
	if opts.temperature < 0 {
		return fmt.Errorf("--temperature must be >= 0, got %g", opts.temperature)
	}
	model, folderTok := pipeline.ResolveModel(args[0]) // a model folder: its graph and tokenizer
	if opts.tokenizer == "" {
		opts.tokenizer = folderTok
	}
	tok, err := loadTokenizer(opts.tokenizer)
	if err != nil {
		return err
	}
	ro, err := opts.rt.options()
	if err != nil {
		return err
	}
	s, err := runtime.OpenFile(model, ro)
	if err != nil {
		return err
	}
	defer s.Close()
	prompt := append([]int{tok.BOS()}, tok.Encode(opts.prompt)...)
	gen := eval.GenOptions{MaxTokens: opts.maxTokens, Temperature: opts.temperature, TopK: opts.topK, Seed: opts.seed, Stop: []int{tok.EOS()}}
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
	ids, err := eval.Generate(s, prompt, gen, onToken)
	if err != nil {
		return err
	}
	if opts.json {
		if ids == nil {
			ids = []int{}
		}
		return json.NewEncoder(env.stdout).Encode(map[string]any{"ids": ids, "text": tok.Decode(ids)})
	}
	fmt.Fprintln(env.stdout)
	return nil
}
