package main

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	"github.com/shears-ml/shears/pipeline"
)

type importOpts struct {
	out      string
	dtype    string
	external bool
	inline   bool
	json     bool
	output   outputFlags
}

func init() {
	register(&command{
		name:       "import",
		args:       "FORMAT CHECKPOINT -o OUT.onnx",
		positional: "FORMAT CHECKPOINT",
		summary:    "convert a checkpoint into an ONNX graph (formats: hf, llama2c)",
		long: `Builds an opset-17 ONNX graph with optimum's KV-cache interface (input_ids, attention_mask,
position_ids, past_key_values.{i}.key|value -> logits, present.{i}.key|value) and Hugging Face
module names (/model/layers.0/self_attn/q_proj/MatMul ...), so pruning, adapters and inspect treat
imported and optimum-exported models alike. Linear weights are stored in ONNX layout [in, out].

Formats:
  hf        a Hugging Face checkpoint folder: config.json with model.safetensors, or shards
            model-0000k-of-0000n.safetensors with model.safetensors.index.json; F32, F16 or BF16
            tensors. Architectures: ` + strings.Join(pipeline.HFArchitectures(), ", ") + `.
            Tensors stream from the safetensors files to OUT.onnx.data one at a time (a checkpoint
            larger than memory imports; --inline keeps a small one in OUT.onnx, through memory);
            initializers keep the checkpoint's tensor names. The model
            records config.json (metadata hf:config) and the folder (shears:source_dir), where later
            stages find tokenizer.json, tokenizer_config.json and generation_config.json.
  llama2c   a llama2.c legacy checkpoint (7 x int32 header, fp32 weights; shared or separate classifier)

` + folderHelp + ` For hf, the folder's config.json is the checkpoint's
and its tokenizer is copied from the checkpoint folder unless --tokenizer names another.

--dtype keeps the checkpoint's precision by default (hf; llama2c is fp32). fp16 and bf16 store the
linear and embedding weights in that type, read through Casts so the graph computes in float32
(the form "shears convert" writes); fp32 widens everything.

Examples:
  shears import hf ./TinyLlama-1.1B-Chat-v1.0 -o tinyllama.onnx
  shears import hf ./Qwen2-0.5B -o qwen2.onnx --dtype fp32 --json
  shears import hf ./Qwen2-0.5B --format folder -o qwen2/
  shears import llama2c stories260K.bin -o stories260K.onnx
  shears import llama2c stories260K.bin --format folder --tokenizer tok512.bin -o stories260K/`,
		flags: func(fs *pflag.FlagSet) any {
			o := &importOpts{}
			fs.StringVarP(&o.out, "output", "o", "", "output ONNX file (written atomically)")
			fs.StringVar(&o.dtype, "dtype", "", "weight type: fp32, fp16 or bf16 (default: the checkpoint's)")
			fs.BoolVar(&o.external, "external-data", false, "llama2c: write weights to OUT.onnx.data (hf always does unless --inline; both do above 1.8 GB)")
			fs.BoolVar(&o.inline, "inline", false, "hf: keep the weights inside OUT.onnx when under 1.8 GB, as --format folder does (one file, but the whole model passes through memory)")
			fs.BoolVar(&o.json, "json", false, "print the report as JSON on stdout instead of the summary")
			o.output.add(fs, true)
			return o
		},
		run: runImport,
	})
}

func runImport(env *cliEnv, o any, args []string) error {
	opts := o.(*importOpts)
	if opts.out == "" {
		return fmt.Errorf("%w: -o OUT.onnx is required", errUsage)
	}
	if args[0] != "hf" && args[0] != "llama2c" {
		return fmt.Errorf("%w: unknown format %q (supported: hf, llama2c)", errUsage, args[0])
	}
	out, err := opts.output.output()
	if err != nil {
		return err
	}
	out.Card.Base = args[1]
	bar := env.progressBar(true)
	rep, err := pipeline.Import(pipeline.ImportOptions{
		Format: args[0], Source: args[1], Out: opts.out, DType: opts.dtype, External: opts.external, Inline: opts.inline, Output: out,
		Progress: bar.fn(), Warn: warner(env, "import"),
	})
	bar.done()
	if err != nil {
		return err
	}
	if opts.json {
		return printJSON(env, rep)
	}
	w := env.stdout
	arch := rep.Architecture
	if arch == "" {
		arch = "llama2.c"
	}
	c := rep.Config
	fmt.Fprintf(w, "imported %s (%s): %s layers, hidden %s, heads %s/%s kv, vocab %s, context %s\n",
		rep.Source, arch, c["num_hidden_layers"], c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"], c["vocab_size"], c["max_position_embeddings"])
	fmt.Fprintf(w, "  %.1fM parameters in %d tensors, %s -> %s", float64(rep.Params)/1e6, rep.Tensors, rep.SourceDType, rep.DType)
	if rep.Converted > 0 {
		fmt.Fprintf(w, " (%d weights stored in %s, read through Casts)", rep.Converted, rep.DType)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  wrote %s: %d nodes, %.1f MB in %.1fs (read %.1f MB)\n", rep.Output, rep.Nodes, float64(rep.BytesWritten)/1e6, rep.Seconds, float64(rep.BytesRead)/1e6)
	if len(rep.Unused) > 0 {
		fmt.Fprintf(w, "  note: %d checkpoint tensors are not used by the graph: %s\n", len(rep.Unused), strings.Join(firstN(rep.Unused, 5), ", "))
	}
	printFolder(env, rep.Folder)
	return nil
}

func firstN(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	return append(s[:n:n], fmt.Sprintf("... (%d more)", len(s)-n))
}
