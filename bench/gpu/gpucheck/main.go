// Command gpucheck is the offline GPU check that bench/gpu/check.sh runs: it generates
// LLaMA-shaped synthetic models on the machine (models/llama presets), measures shears' forward
// pass and NLS train step on one execution provider (webgpu, cuda or cpu) and the same model and
// step in PyTorch (bench/peer/peer.py), and writes results.jsonl, results.json and results.md.
// It is a tool of the benchmark, not part of the shears binary; it needs only itself, the shears
// binary, libonnxruntime and, for the peer, a python3 with torch.
//
//	gpucheck run --device webgpu --out DIR [--shapes 25m,1b,7b] [--budget 9m]   # the check
//	gpucheck forward -preset 1b -dtype fp16 -device webgpu -dir WORK           # one forward measurement (a child of run)
//	gpucheck report DIR                                                        # results.json + results.md from DIR/results.jsonl
//	gpucheck peak "NVIDIA H200" fp16                                           # the dense peak table
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"

	"github.com/shears-ml/shears/bench/gpu/report"
)

func main() {
	if err := dispatch(os.Args[1:]); errors.Is(err, flag.ErrHelp) {
		return
	} else if err != nil {
		fmt.Fprintln(os.Stderr, "gpucheck:", err)
		os.Exit(1)
	}
}

const usage = "usage: gpucheck run|forward|report|peak [flags] (gpucheck run --help)"

func dispatch(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf(usage)
	}
	switch args[0] {
	case "run":
		return runCheck(args[1:])
	case "forward":
		return forward(args[1:])
	case "report":
		if len(args) != 2 {
			return fmt.Errorf("report: one folder expected (holding results.jsonl)")
		}
		return rewrite(args[1], nil)
	case "peak":
		if len(args) != 3 {
			return fmt.Errorf("peak: usage: gpucheck peak GPU_NAME fp16|fp32")
		}
		fmt.Println(strconv.FormatFloat(report.Peak(args[1], args[2]), 'g', -1, 64))
		return nil
	case "-h", "--help", "help":
		fmt.Println(usage)
		return nil
	}
	return fmt.Errorf("unknown command %q; %s", args[0], usage)
}
