// Command gpucheck measures forward throughput of a synthetic LLaMA-shaped model on one
// onnxruntime execution provider: it writes the model (fp16 by default, reused when present),
// opens one session, runs a warm-up and then timed forward passes on fixed random token ids, and
// prints one line of key=value figures: tokens/s, achieved TFLOP/s (2·matmul-params·tokens plus
// attention 4·layers·batch·T²·dim) and, given -peak-tflops, the fraction of that peak.
// bench/gpu/check.sh drives it; it is a tool, not part of the shears binary.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/shears-ml/shears/eval"
	"github.com/shears-ml/shears/models/llama"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/transform/convert"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gpucheck:", err)
		os.Exit(1)
	}
}

func run() error {
	preset := flag.String("preset", "tiny", "model shape: "+fmt.Sprint(llama.PresetNames()))
	dtype := flag.String("dtype", "fp16", "weight type: fp32, fp16 or bf16")
	compute := flag.String("compute", "native", "fp32 (weight-only) or native")
	device := flag.String("device", "cuda", "execution provider")
	batch := flag.Int("batch", 1, "sequences per run")
	seq := flag.Int("seq", 128, "tokens per sequence")
	steps := flag.Int("steps", 5, "timed forward passes")
	dir := flag.String("dir", os.TempDir(), "folder for the generated model (reused)")
	ortLib := flag.String("ort-lib", "", "libonnxruntime path (default: $ONNXRUNTIME_LIB, then .ort/)")
	peak := flag.Float64("peak-tflops", 0, "the device's dense peak TFLOP/s for -dtype, for the fraction")
	flag.Parse()

	cfg, err := llama.Preset(*preset)
	if err != nil {
		return err
	}
	if *seq > cfg.MaxSeq {
		*seq = cfg.MaxSeq
	}
	o := convert.Options{DType: onnxpb.TensorProto_FLOAT}
	if *dtype != "fp32" {
		if o.DType, err = convert.ParseDType(*dtype); err != nil {
			return err
		}
		o.Compute = convert.Compute(*compute)
	}
	path := filepath.Join(*dir, fmt.Sprintf("llama-%s-%s-%s.onnx", *preset, *dtype, *compute))
	if _, err := os.Stat(path); err != nil {
		t0 := time.Now()
		if err := llama.WriteSyntheticAs(path, cfg, 0, o); err != nil {
			return err
		}
		fmt.Printf("wrote %s (%d params) in %.1fs\n", path, cfg.Params(), time.Since(t0).Seconds())
	}
	lib, err := runtime.FindLibrary(*ortLib)
	if err != nil {
		return err
	}
	if err := runtime.Init(lib); err != nil {
		return err
	}
	t0 := time.Now()
	s, err := runtime.OpenFile(path, runtime.Options{Device: *device})
	if err != nil {
		return err
	}
	defer s.Close()
	open := time.Since(t0)
	rows := make([][]int, *batch)
	for r := range rows {
		for k := 0; k < *seq; k++ {
			rows[r] = append(rows[r], ((r**seq+k)*7919+13)%cfg.Vocab)
		}
	}
	in, err := eval.Feeds(s.Inputs(), rows, nil) // the ids, a full mask, positions, an empty past
	if err != nil {
		return err
	}
	if _, err := s.Run(in, []string{"logits"}); err != nil { // warm-up
		return err
	}
	t0 = time.Now()
	for i := 0; i < *steps; i++ {
		if _, err := s.Run(in, []string{"logits"}); err != nil {
			return err
		}
	}
	el := time.Since(t0).Seconds()
	tokens := float64(*batch * *seq * *steps)
	d, L, T := float64(cfg.Dim), float64(cfg.Layers), float64(*seq)
	matmul := float64(cfg.Params() - int64(cfg.Vocab*cfg.Dim)) // the embedding is a lookup
	flops := 2*matmul*tokens + 4*L*float64(*batch**steps)*T*T*d
	tf := flops / el / 1e12
	fmt.Printf("result preset=%s dtype=%s compute=%s device=%s batch=%d seq=%d steps=%d session_s=%.2f tokens_per_s=%.1f tflops=%.3f",
		*preset, *dtype, *compute, *device, *batch, *seq, *steps, open.Seconds(), tokens/el, tf)
	if *peak > 0 {
		fmt.Printf(" peak_tflops=%.0f fraction_of_peak=%.4f", *peak, tf / *peak)
	}
	fmt.Println()
	return nil
}
