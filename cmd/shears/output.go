package main

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	"github.com/shears-ml/shears/pipeline"
)

// outputFlags are the flags of every command that writes a model: --format, --force, and
// --tokenizer for the folder where the command has none of its own.
type outputFlags struct {
	format    string
	force     bool
	tokenizer string
}

// folderHelp is the paragraph the --help of those commands shares.
const folderHelp = `--format folder writes -o DIR as a model folder that transformers.js, optimum and
onnxruntime GenAI load as it is: onnx/model.onnx (+ onnx/model.onnx_data), config.json,
generation_config.json, tokenizer.json + tokenizer_config.json (copied from a Hugging Face
tokenizer, converted from a llama2.c tokenizer.bin), genai_config.json and a README.md model card.
--format hf writes -o DIR as a Hugging Face checkpoint: the merged weights as safetensors under
the checkpoint's names in [out, in] layout (sharded above 5 GB, with an index), config.json,
generation_config.json and the tokenizer (a graph with unmerged adapters is refused).
An existing non-empty DIR is refused unless --force.`

func (o *outputFlags) add(fs *pflag.FlagSet, tokenizerFlag bool) {
	fs.StringVar(&o.format, "format", "onnx", "onnx (one file), folder (a model folder for serving runtimes) or hf (a Hugging Face safetensors checkpoint)")
	fs.BoolVar(&o.force, "force", false, "replace an existing non-empty output folder (--format folder or hf)")
	if tokenizerFlag {
		fs.StringVar(&o.tokenizer, "tokenizer", "", "tokenizer for the folder: tokenizer.json (copied) or llama2.c tokenizer.bin (converted)")
	}
}

// output turns the flags into the pipeline's Output (its model card lists the command line
// main gave pipeline.SetCommandLine).
func (o *outputFlags) output() (pipeline.Output, error) {
	out := pipeline.Output{Format: o.format, Force: o.force, Tokenizer: o.tokenizer}
	if err := out.Check(); err != nil {
		return pipeline.Output{}, err
	}
	out.Format, _ = pipeline.ParseFormat(o.format)
	return out, nil
}

// modelOutput is the start of every command that reads MODEL (args[0]) and writes a model to
// -o: the flag checks, then the Output, its card naming MODEL as the base.
func (o *outputFlags) modelOutput(args []string, out string) (pipeline.Output, error) {
	if out == "" {
		return pipeline.Output{}, fmt.Errorf("%w: -o OUT.onnx is required", errUsage)
	}
	po, err := o.output()
	if err != nil {
		return pipeline.Output{}, err
	}
	po.Card.Base = args[0]
	return po, nil
}

// commandLine renders argv as the shell command that ran, quoting what needs it.
func commandLine(argv []string) string {
	parts := []string{"shears"}
	for _, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\n'\"$`\\|&;<>()*?[]#~") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// printFolder summarises a written folder on stdout (warnings already went to stderr).
func printFolder(env *cliEnv, r *pipeline.FolderReport) {
	if r == nil {
		return
	}
	fmt.Fprintf(env.stdout, "model folder %s: %s (tokenizer: %s)\n", r.Dir, strings.Join(r.Files, ", "), r.Tokenizer)
}

// warner prints warnings on stderr as "shears VERB: warning: ...".
func warner(env *cliEnv, verb string) func(string) {
	return func(msg string) { fmt.Fprintf(env.stderr, "shears %s: warning: %s\n", verb, msg) }
}
