// Command gen prepares the inputs of the PyTorch peer benchmark (bench/peer/run.sh) that no
// shears subcommand writes: the ~25M synthetic LLaMA (models/llama preset "25m") and a .jsonl of
// pre-tokenized {"ids": [...]} records of exactly N tokens, so that shears and the peer train on
// identical, unpadded batches.
//
//	gen synth [-preset 25m] [-seed 0] OUT.onnx
//	gen ids -tokenizer TOK -data FILE [-len 256] [-n 96] OUT.jsonl
//
// ids joins the documents of FILE into one stream (each BOS … EOS, as data.Stream does) and cuts
// consecutive windows of -len tokens, cycling through the stream when it is too short.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/shears-ml/shears/data"
	"github.com/shears-ml/shears/models/llama"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/tokenizer"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: gen synth|ids [flags] OUT")
	}
	switch args[0] {
	case "synth":
		fs := flag.NewFlagSet("synth", flag.ContinueOnError)
		preset := fs.String("preset", "25m", "models/llama preset")
		seed := fs.Int64("seed", 0, "weight seed")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return fmt.Errorf("synth: one OUT.onnx expected, got %d arguments", fs.NArg())
		}
		cfg, err := llama.Preset(*preset)
		if err != nil {
			return fmt.Errorf("synth: %w", err)
		}
		return llama.WriteSynthetic(fs.Arg(0), cfg, *seed, onnxpb.TensorProto_FLOAT)
	case "ids":
		fs := flag.NewFlagSet("ids", flag.ContinueOnError)
		tokPath := fs.String("tokenizer", "", "tokenizer (tokenizer.Load)")
		dataPath := fs.String("data", "", "documents (data.ReadDocuments)")
		n := fs.Int("n", 96, "records")
		length := fs.Int("len", 256, "tokens per record")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 1 || *tokPath == "" || *dataPath == "" || *n < 1 || *length < 2 {
			return fmt.Errorf("ids: need -tokenizer, -data, -n ≥ 1, -len ≥ 2 and one OUT.jsonl")
		}
		tok, err := tokenizer.Load(*tokPath)
		if err != nil {
			return fmt.Errorf("ids: %w", err)
		}
		docs, err := data.ReadDocuments(*dataPath)
		if err != nil {
			return fmt.Errorf("ids: %w", err)
		}
		stream := data.Stream(docs, tok)
		if len(stream) == 0 {
			return fmt.Errorf("ids: %s gave no tokens", *dataPath)
		}
		return writeIDs(fs.Arg(0), stream, *n, *length)
	}
	return fmt.Errorf("unknown command %q (synth or ids)", args[0])
}

// writeIDs writes n windows of length tokens, atomically (temp + rename).
func writeIDs(path string, stream []int, n, length int) error {
	f, err := onnx.CreatePending(path)
	if err != nil {
		return fmt.Errorf("ids: %w", err)
	}
	defer f.Abort()
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	pos := 0
	for i := 0; i < n && err == nil; i++ {
		rec := make([]int, length)
		for j := range rec {
			rec[j] = stream[pos%len(stream)]
			pos++
		}
		err = enc.Encode(map[string][]int{"ids": rec})
	}
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Commit()
	}
	if err != nil {
		return fmt.Errorf("ids %s: %w", path, err)
	}
	return nil
}
