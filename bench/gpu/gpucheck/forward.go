package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/shears-ml/shears/bench/gpu/report"
	"github.com/shears-ml/shears/eval"
	"github.com/shears-ml/shears/models/llama"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/transform/convert"
)

// forward is one forward measurement: it writes the synthetic model when absent (reused across
// runs), opens one session, runs a warm-up and -steps timed passes on fixed token ids, and prints
// a report.Record as the last line of stdout. -profile DIR also writes onnxruntime's profile
// there and attaches where the nodes ran.
func forward(args []string) error {
	fs := flag.NewFlagSet("forward", flag.ContinueOnError)
	preset := fs.String("preset", "tiny", "model shape: "+fmt.Sprint(llama.PresetNames()))
	dtype := fs.String("dtype", "fp16", "weight type: fp32, fp16 or bf16")
	compute := fs.String("compute", "native", "fp32 (weight-only) or native")
	device := fs.String("device", "cuda", "execution provider: "+fmt.Sprint(runtime.Devices))
	batch := fs.Int("batch", 1, "sequences per run")
	seq := fs.Int("seq", 128, "tokens per sequence")
	steps := fs.Int("steps", 5, "timed forward passes")
	dir := fs.String("dir", os.TempDir(), "folder for the generated model (reused)")
	ortLib := fs.String("ort-lib", "", "libonnxruntime path (default: $ONNXRUNTIME_LIB, then .ort/)")
	profile := fs.String("profile", "", "write onnxruntime's profile into this folder and report the nodes off the device")
	if err := fs.Parse(args); err != nil {
		return err
	}
	start := time.Now()
	cfg, err := llama.Preset(*preset)
	if err != nil {
		return err
	}
	if *seq > cfg.MaxSeq {
		return fmt.Errorf("forward: -seq %d exceeds the %s preset's context of %d", *seq, *preset, cfg.MaxSeq)
	}
	if *batch < 1 || *seq < 2 || *steps < 1 {
		return fmt.Errorf("forward: -batch, -steps must be ≥ 1 and -seq ≥ 2")
	}
	path, err := synthModel(*dir, *preset, *dtype, *compute)
	if err != nil {
		return err
	}
	lib, err := runtime.FindLibrary(*ortLib)
	if err != nil {
		return err
	}
	if err := runtime.Init(lib); err != nil {
		return err
	}
	opts := runtime.Options{Device: *device}
	if *profile != "" {
		if err := os.MkdirAll(*profile, 0o755); err != nil {
			return err
		}
		opts.Profile = filepath.Join(*profile, "forward")
	}
	s, err := runtime.OpenFile(path, opts)
	if err != nil {
		return err
	}
	defer s.Close()
	in, err := feeds(s, cfg, *batch, *seq)
	if err != nil {
		return err
	}
	if _, err := s.Run(in, []string{"logits"}); err != nil { // warm-up: kernels compiled, buffers allocated
		return err
	}
	t0 := time.Now()
	for i := 0; i < *steps; i++ {
		if _, err := s.Run(in, []string{"logits"}); err != nil {
			return err
		}
	}
	el := time.Since(t0).Seconds()
	rec := report.Record{Shape: *preset, Engine: "shears", Device: *device, Stage: "forward", DType: *dtype,
		Batch: *batch, Seq: *seq, Steps: *steps, TokensPerS: float64(*batch**seq**steps) / el,
		FLOPsPerToken: report.ForwardFLOPs(cfg, *seq)}
	if *profile != "" {
		if err := s.Close(); err != nil { // onnxruntime finishes the profile when the session goes
			return err
		}
		p, err := report.ReadPlacement(*profile, *device)
		if err != nil {
			return err
		}
		rec.Placement = &p
	}
	rec.Seconds = time.Since(start).Seconds()
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	fmt.Println(string(b))
	return nil
}

// synthModel writes (or finds) the synthetic model of a preset in a weight type. fp16/bf16 with
// compute "native" compute in that type; fp32 ignores compute.
func synthModel(dir, preset, dtype, compute string) (string, error) {
	cfg, err := llama.Preset(preset)
	if err != nil {
		return "", err
	}
	var storage llama.StorageFunc // nil: float32
	if dtype != "fp32" {
		o := convert.Options{Compute: convert.Compute(compute)}
		if o.DType, err = convert.ParseDType(dtype); err != nil {
			return "", err
		}
		storage = convert.Storage(o)
	} else {
		compute = "fp32"
	}
	path := filepath.Join(dir, fmt.Sprintf("llama-%s-%s-%s.onnx", preset, dtype, compute))
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	t0 := time.Now()
	// Both files are written under temporary names and renamed at the end, so an interrupted
	// run never leaves a model that a later run would take as complete.
	if err := llama.WriteSyntheticAs(path, cfg, 0, storage); err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "gpucheck: wrote %s (%d params) in %.1fs\n", path, cfg.Params(), time.Since(t0).Seconds())
	return path, nil
}

// feeds builds the inputs of one forward pass through eval.Feeds (lm's causal-LM feeds): token
// ids, the attention mask, position ids and an empty KV cache, as the model takes them.
func feeds(s *runtime.Session, cfg llama.Config, batch, seq int) (map[string]*runtime.Tensor, error) {
	rows := make([][]int, batch)
	for r := range rows {
		for k := 0; k < seq; k++ {
			rows[r] = append(rows[r], ((r*seq+k)*7919+13)%cfg.Vocab)
		}
	}
	in, err := eval.Feeds(s.Inputs(), rows, nil)
	if err != nil {
		return nil, fmt.Errorf("forward: %s: %w", s.Name(), err)
	}
	return in, nil
}
