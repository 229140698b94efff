package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	"github.com/shears-ml/shears/bench/gpu/report"
	"github.com/shears-ml/shears/models/llama"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/transform/lora"
)

// defaultDims are batch × sequence per shape: what fits a 16 GB GPU with room to spare in fp16
// for the forward pass and the NLS step (7b: 13.5 GB of weights, so one sequence).
var defaultDims = map[string][2]int{"tiny": {1, 32}, "25m": {4, 512}, "1b": {4, 512}, "7b": {1, 512}}

type checkOpts struct {
	device, out, work, shears, peer, python, peerDevice, dtype, ortLib, command, note string
	shapes                                                                            []string
	batch, seq, steps, trainSteps                                                     int
	budget                                                                            time.Duration
	train, runPeer, profile                                                           bool
}

// checker runs one check: the records so far, the log, and the deadline.
type checker struct {
	o        checkOpts
	machine  report.Machine
	deadline time.Time
	log      io.Writer
	recs     []report.Record
	self     string
}

func runCheck(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var o checkOpts
	var shapes string
	fs.StringVar(&o.device, "device", "webgpu", "execution provider for shears: webgpu, cuda or cpu")
	fs.StringVar(&o.out, "out", "", "folder for results.jsonl, results.json, results.md and check.log (required)")
	fs.StringVar(&o.work, "work", filepath.Join(os.TempDir(), "shears-gpucheck"), "folder for the generated models and runs, kept out of --out (a 7B is 13.5 GB); models are reused")
	fs.StringVar(&shapes, "shapes", "25m,1b,7b", "models/llama presets, smallest first: tiny, 25m, 1b, 7b")
	fs.StringVar(&o.dtype, "dtype", "auto", "weight type: fp16, fp32, or auto (fp16, then fp32 where fp16 fails)")
	fs.IntVar(&o.batch, "batch", 0, "sequences per run (0: per shape, 4 up to 1b, 1 for 7b)")
	fs.IntVar(&o.seq, "seq", 0, "tokens per sequence (0: 512, 32 for tiny)")
	fs.IntVar(&o.steps, "steps", 5, "timed forward passes after one warm-up")
	fs.IntVar(&o.trainSteps, "train-steps", 4, "NLS optimizer steps (the first, which builds the step graphs, is not timed)")
	fs.DurationVar(&o.budget, "budget", 9*time.Minute, "wall-clock budget: what would start after it is recorded as skipped")
	fs.BoolVar(&o.train, "train", true, "measure the NLS train step")
	fs.BoolVar(&o.runPeer, "peer", true, "measure PyTorch (bench/peer/peer.py) on the same models")
	fs.BoolVar(&o.profile, "profile", true, "profile the first shape once to list the ops the provider left to the CPU")
	fs.StringVar(&o.peerDevice, "peer-device", "", "PyTorch device (default: cuda, or cpu when --device cpu)")
	fs.StringVar(&o.python, "python", "python3", "the python with torch for the peer")
	fs.StringVar(&o.shears, "shears", "", "the shears binary (default: shears beside gpucheck, then on PATH)")
	fs.StringVar(&o.peer, "peer-script", "", "bench/peer/peer.py (default: found from gpucheck's folder or the working directory)")
	fs.StringVar(&o.ortLib, "ort-lib", "", "libonnxruntime (default: $ONNXRUNTIME_LIB, then .ort/)")
	fs.StringVar(&o.command, "command", "", "the command line to record (default: this one)")
	fs.StringVar(&o.note, "note", "", "a note on the machine's setup to record (check.sh: the Vulkan libraries it supplied)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.out == "" {
		return fmt.Errorf("run: --out is required")
	}
	o.shapes = strings.FieldsFunc(shapes, func(r rune) bool { return r == ',' || r == ' ' })
	for _, s := range o.shapes {
		if _, err := llama.Preset(s); err != nil {
			return fmt.Errorf("run: --shapes: %w", err)
		}
	}
	if len(o.shapes) == 0 {
		return fmt.Errorf("run: --shapes is empty")
	}
	if _, ok := report.Providers[o.device]; !ok || o.device == "tensorrt" {
		return fmt.Errorf("run: --device %q: want webgpu, cuda or cpu", o.device)
	}
	if o.dtype != "auto" && o.dtype != "fp16" && o.dtype != "fp32" {
		return fmt.Errorf("run: --dtype %q: want fp16, fp32 or auto", o.dtype)
	}
	if o.steps < 1 || o.trainSteps < 2 {
		return fmt.Errorf("run: --steps must be ≥ 1 and --train-steps ≥ 2 (the first step is not timed)")
	}
	if o.peerDevice == "" {
		o.peerDevice = "cuda"
		if o.device == "cpu" {
			o.peerDevice = "cpu"
		}
	}
	if o.command == "" {
		o.command = "gpucheck run " + strings.Join(args, " ")
	}
	for _, d := range []string{o.out, o.work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("run: %w", err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if o.shears == "" && o.train {
		if o.shears, err = besideOrPath(self, "shears"); err != nil {
			return err
		}
	}
	logf, err := os.Create(filepath.Join(o.out, "check.log"))
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	defer logf.Close()
	c := &checker{o: o, deadline: time.Now().Add(o.budget), log: io.MultiWriter(os.Stderr, logf), self: self}
	if err := c.detect(); err != nil {
		return err
	}
	// A fresh results.jsonl: the records of this run only.
	if err := os.WriteFile(filepath.Join(o.out, "results.jsonl"), nil, 0o644); err != nil {
		return err
	}
	ready := c.pregenerate()
	for i, shape := range o.shapes {
		c.wait(shape, ready[shape])
		c.shape(shape, i == 0 && o.profile)
	}
	fmt.Fprintf(c.log, "== results in %s (results.md, results.json)\n", o.out)
	return nil
}

// pregenerate writes the shapes' synthetic models (in the first dtype tried) one after the other
// in the background, so that generating the next shape's weights (single-threaded, minutes for
// a 7B) overlaps the device measuring this one. Each shape's channel yields once its model is
// there (or could not be written: its forward pass then tries again and reports the error).
func (c *checker) pregenerate() map[string]chan error {
	dtype := c.o.dtype
	if dtype == "auto" {
		dtype = "fp16"
	}
	ready := map[string]chan error{}
	for _, shape := range c.o.shapes {
		ready[shape] = make(chan error, 1)
	}
	go func() {
		for _, shape := range c.o.shapes {
			if !time.Now().Before(c.deadline) {
				return
			}
			t0 := time.Now()
			path, err := synthModel(c.o.work, shape, dtype, "native")
			if err == nil {
				fmt.Fprintf(c.log, "== %s ready (%.1f s)\n", path, time.Since(t0).Seconds())
			}
			ready[shape] <- err
		}
	}()
	return ready
}

// wait waits for a shape's model until the budget is spent.
func (c *checker) wait(shape string, ready chan error) {
	select {
	case err := <-ready:
		if err != nil {
			fmt.Fprintf(c.log, "== %s: generating the model: %v\n", shape, err)
		}
	case <-time.After(time.Until(c.deadline)):
	}
}

// besideOrPath finds a tool next to the running executable, then on PATH.
func besideOrPath(self, name string) (string, error) {
	p := filepath.Join(filepath.Dir(self), name)
	if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("run: no %s binary beside %s or on PATH (pass --%s)", name, self, name)
}

// detect fills the machine header: CPU, GPU (nvidia-smi), onnxruntime and torch versions.
func (c *checker) detect() error {
	m := report.Machine{Date: time.Now().UTC().Format("2006-01-02 15:04 UTC"), Cores: goruntime.NumCPU(),
		GPU: "none", Device: c.o.device, Command: c.o.command, Note: c.o.note}
	m.Host, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				m.CPU = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	if hasNvidiaSMI() {
		out, err := exec.Command("nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits").Output()
		if err == nil {
			f := strings.Split(strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0], ",")
			if len(f) == 3 {
				m.GPU = strings.TrimSpace(f[0])
				m.GPUMemMiB, _ = strconv.ParseFloat(strings.TrimSpace(f[1]), 64)
				m.Driver = strings.TrimSpace(f[2])
			}
		}
	}
	lib, err := runtime.FindLibrary(c.o.ortLib)
	if err != nil {
		return err
	}
	c.o.ortLib = lib
	if err := runtime.Init(lib); err != nil {
		return err
	}
	m.ORT = runtime.Version()
	c.machine = m
	fmt.Fprintf(c.log, "== %s: %d cores, GPU %s; shears on %s (onnxruntime %s, %s)\n", m.Host, m.Cores, m.GPU, m.Device, m.ORT, lib)
	if c.o.runPeer {
		out, err := exec.Command(c.o.python, "-c", "import torch; print(torch.__version__, int(torch.cuda.is_available()))").Output()
		if err == nil {
			f := strings.Fields(string(out))
			if len(f) == 2 {
				c.machine.Torch = f[0]
				if c.o.peerDevice == "cuda" && f[1] != "1" {
					c.machine.Torch += " (no CUDA device)"
				}
			}
		}
		if c.o.peer == "" {
			c.o.peer = findPeer(c.self)
		}
	}
	b, err := json.MarshalIndent(c.machine, "", "  ")
	if err != nil {
		return err
	}
	return onnx.WriteFileAtomic(filepath.Join(c.o.out, "machine.json"), append(b, '\n'))
}

// findPeer looks for bench/peer/peer.py above gpucheck's folder (the bundle's bin/, or the
// repository's), then above the working directory.
func findPeer(self string) string {
	wd, _ := os.Getwd()
	for _, start := range []string{filepath.Dir(self), wd} {
		for d := start; ; d = filepath.Dir(d) {
			p := filepath.Join(d, "bench", "peer", "peer.py")
			if _, err := os.Stat(p); err == nil {
				return p
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return ""
}

// add records one measurement and rewrites results.json and results.md, so that a check
// stopped at any point leaves the figures it has.
func (c *checker) add(r report.Record) {
	c.recs = append(c.recs, r)
	status := "ok"
	switch {
	case r.Error != "":
		status = "FAILED: " + r.Error
	case r.Skipped != "":
		status = "skipped: " + r.Skipped
	default:
		status = fmt.Sprintf("%.0f tokens/s, %.3g TFLOP/s", r.TokensPerS, r.TFLOPS())
	}
	fmt.Fprintf(c.log, "== %s %s %s %s on %s: %s\n", r.Engine, r.Shape, r.DType, r.Stage, r.Device, status)
	if err := report.AppendRecord(filepath.Join(c.o.out, "results.jsonl"), r); err != nil {
		fmt.Fprintln(c.log, "gpucheck:", err)
	}
	if err := rewrite(c.o.out, &c.machine); err != nil {
		fmt.Fprintln(c.log, "gpucheck:", err)
	}
}

// rewrite writes results.json and results.md from dir/results.jsonl (and dir/machine.json
// when m is nil).
func rewrite(dir string, m *report.Machine) error {
	if m == nil {
		b, err := os.ReadFile(filepath.Join(dir, "machine.json"))
		if err != nil {
			return fmt.Errorf("report: %w", err)
		}
		m = &report.Machine{}
		if err := json.Unmarshal(b, m); err != nil {
			return fmt.Errorf("report: %s: %v", filepath.Join(dir, "machine.json"), err)
		}
	}
	recs, err := report.ReadRecords(filepath.Join(dir, "results.jsonl"))
	if err != nil {
		return err
	}
	return report.Build(*m, recs).Write(dir)
}

func (c *checker) dims(shape string) (int, int) {
	d := defaultDims[shape]
	if c.o.batch > 0 {
		d[0] = c.o.batch
	}
	if c.o.seq > 0 {
		d[1] = c.o.seq
	}
	return d[0], d[1]
}

// shape measures one model shape: shears' forward (fp16, else fp32 under --dtype auto), the
// NLS train step on the same weights (again fp32 when fp16 fails), then PyTorch's forward and
// step on the model shears ran forward.
func (c *checker) shape(shape string, profile bool) {
	b, t := c.dims(shape)
	base := report.Record{Shape: shape, Engine: "shears", Device: c.o.device, Batch: b, Seq: t}
	dtypes := []string{c.o.dtype}
	if c.o.dtype == "auto" {
		dtypes = []string{"fp16", "fp32"}
	}
	used := -1 // the first dtype whose forward ran
	for k, dt := range dtypes {
		r := base
		r.Stage, r.DType, r.Steps = "forward", dt, c.o.steps
		if c.over(&r) {
			break
		}
		got, err := c.forward(shape, dt, b, t, profile)
		if err != nil {
			r.Error = err.Error()
			c.add(r)
			continue
		}
		c.add(got)
		used = k
		break
	}
	super := ""
	if c.o.train {
		if used < 0 {
			r := base
			r.Stage, r.DType, r.Steps = "train", dtypes[0], c.o.trainSteps
			if !c.over(&r) {
				r.Skipped = "the forward pass did not run"
				c.add(r)
			}
		}
		for k := used; k >= 0 && k < len(dtypes); k++ {
			r := base
			r.Stage, r.DType, r.Steps = "train", dtypes[k], c.o.trainSteps
			if c.over(&r) {
				break
			}
			got, sp, err := c.trainStep(shape, dtypes[k], b, t, profile)
			if k == used {
				super = sp // the peer trains the model the forward ran
			}
			if err != nil {
				r.Error, r.Placement = err.Error(), got.Placement
				c.add(r)
				continue
			}
			c.add(got)
			break
		}
	}
	if !c.o.runPeer {
		return
	}
	pdt := dtypes[0]
	if used >= 0 {
		pdt = dtypes[used]
	}
	for _, stage := range []string{"forward", "train"} {
		if stage == "train" && !c.o.train {
			continue
		}
		r := report.Record{Shape: shape, Engine: "pytorch", Device: c.o.peerDevice, Stage: stage, DType: pdt, Batch: b, Seq: t, Steps: c.o.steps}
		if stage == "train" {
			r.Steps = c.o.trainSteps
		}
		switch {
		case c.machine.Torch == "":
			r.Skipped = c.o.python + " has no torch"
		case strings.Contains(c.machine.Torch, "no CUDA"):
			r.Skipped = "torch " + c.machine.Torch
		case c.o.peer == "":
			r.Skipped = "bench/peer/peer.py not found"
		case super == "":
			r.Skipped = "no super-network (shears adapt did not run)"
		case c.over(&r):
			continue
		default:
			if err := c.peerRun(&r, super); err != nil {
				r.Error = err.Error()
			}
		}
		c.add(r)
	}
}

// over records r as skipped when the budget is spent.
func (c *checker) over(r *report.Record) bool {
	if time.Now().Before(c.deadline) {
		return false
	}
	r.Skipped = fmt.Sprintf("the %s budget was spent", c.o.budget)
	c.add(*r)
	return true
}

// forward runs the forward child (profiled once first when asked) and reads its record.
func (c *checker) forward(shape, dtype string, b, t int, profile bool) (report.Record, error) {
	args := []string{"forward", "-preset", shape, "-dtype", dtype, "-device", c.o.device, "-batch", strconv.Itoa(b),
		"-seq", strconv.Itoa(t), "-dir", c.o.work, "-ort-lib", c.o.ortLib}
	var placement *report.Placement
	if profile {
		dir := filepath.Join(c.o.work, "profile-forward-"+shape+"-"+dtype)
		os.RemoveAll(dir)
		fmt.Fprintf(c.log, "== shears %s %s forward on %s: placement (one profiled pass)\n", shape, dtype, c.o.device)
		// A profile that cannot be taken is reported with the placement; the timed run goes on.
		out, err := c.exec(c.self, append(args, "-steps", "1", "-profile", dir), nil)
		if err == nil {
			var r report.Record
			if r, err = lastRecord(out); err == nil {
				placement = r.Placement
			}
		}
		if err != nil {
			placement = &report.Placement{Provider: report.Providers[c.o.device], Error: err.Error()}
		}
	}
	fmt.Fprintf(c.log, "== shears %s %s forward on %s (batch %d × seq %d, %d passes)\n", shape, dtype, c.o.device, b, t, c.o.steps)
	mem := startMem()
	t0 := time.Now()
	out, err := c.exec(c.self, append(args, "-steps", strconv.Itoa(c.o.steps)), nil)
	peak := mem.stop()
	if err != nil {
		return report.Record{}, err
	}
	r, err := lastRecord(out)
	if err != nil {
		return report.Record{}, err
	}
	r.Placement, r.Seconds = placement, time.Since(t0).Seconds()
	if peak > 0 {
		r.PeakMemMiB, r.MemSource = peak, "nvidia-smi"
	}
	return r, nil
}

func lastRecord(out []byte) (report.Record, error) {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var r report.Record
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		return r, fmt.Errorf("no record in the output (%v): %s", err, tail(out, 300))
	}
	return r, nil
}

// trainStep adapts the model (once), writes the token ids, profiles one step when asked, then
// times --train-steps NLS steps with "shears train". It returns the super-network's path for
// the peer even when training fails.
func (c *checker) trainStep(shape, dtype string, b, t int, profile bool) (report.Record, string, error) {
	r := report.Record{Shape: shape, Engine: "shears", Device: c.o.device, Stage: "train", DType: dtype, Batch: b, Seq: t, Steps: c.o.trainSteps}
	model, err := synthModel(c.o.work, shape, dtype, "native")
	if err != nil {
		return r, "", err
	}
	super := strings.TrimSuffix(model, ".onnx") + "-super.onnx"
	if _, err := os.Stat(super); err != nil {
		// Next to the base, so the super-network shares its weight file instead of copying it.
		fmt.Fprintf(c.log, "== shears adapt %s\n", filepath.Base(model))
		if _, err := c.exec(c.o.shears, []string{"adapt", model, "-o", super}, nil); err != nil {
			return r, "", fmt.Errorf("shears adapt: %w", err)
		}
	}
	cfg, _ := llama.Preset(shape)
	data := filepath.Join(c.o.work, fmt.Sprintf("ids-%s-%dx%d.jsonl", shape, b*c.o.trainSteps, t))
	if err := writeIDs(data, b*c.o.trainSteps, t, cfg.Vocab); err != nil {
		return r, super, err
	}
	m, err := onnx.Load(super)
	if err != nil {
		return r, super, err
	}
	meta, err := lora.ReadConfig(m)
	if err != nil {
		return r, super, err
	}
	var loraParams int64
	for _, mod := range meta.Modules {
		loraParams += int64(meta.RMax) * (mod.In + mod.Out)
	}
	r.FLOPsPerToken = report.TrainFLOPs(cfg, t, loraParams)
	args := func(out string, steps int) []string {
		return []string{"train", super, "--data", data, "--out", out, "--device", c.o.device, "--ort-lib", c.o.ortLib,
			"--epochs", "1", "--batch", strconv.Itoa(b), "--micro-batch", strconv.Itoa(b), "--cutoff", strconv.Itoa(t),
			"--max-steps", strconv.Itoa(steps), "--no-progress", "--json"}
	}
	if profile {
		dir := filepath.Join(c.o.work, "profile-train-"+shape+"-"+dtype)
		os.RemoveAll(dir)
		os.MkdirAll(dir, 0o755)
		run := filepath.Join(c.o.work, "run-profile-"+shape)
		os.RemoveAll(run)
		fmt.Fprintf(c.log, "== shears %s %s train on %s: placement (one profiled step)\n", shape, dtype, c.o.device)
		if _, err := c.exec(c.o.shears, args(run, 1), []string{runtime.ProfileEnv + "=" + filepath.Join(dir, "train")}); err != nil {
			r.Placement = &report.Placement{Provider: report.Providers[c.o.device], Error: err.Error()}
		} else if p, err := report.ReadPlacement(dir, c.o.device); err != nil {
			r.Placement = &report.Placement{Provider: report.Providers[c.o.device], Error: err.Error()}
		} else {
			r.Placement = &p
		}
	}
	run := filepath.Join(c.o.work, "run-"+shape+"-"+dtype)
	os.RemoveAll(run)
	fmt.Fprintf(c.log, "== shears %s %s train on %s (%d NLS steps of batch %d × seq %d)\n", shape, dtype, c.o.device, c.o.trainSteps, b, t)
	mem := startMem()
	t0 := time.Now()
	_, err = c.exec(c.o.shears, args(run, c.o.trainSteps), nil)
	peak := mem.stop()
	r.Seconds = time.Since(t0).Seconds()
	if err != nil {
		return r, super, err
	}
	if r.TokensPerS, err = steadyTrainRate(filepath.Join(run, "metrics.jsonl")); err != nil {
		return r, super, err
	}
	if peak > 0 {
		r.PeakMemMiB, r.MemSource = peak, "nvidia-smi"
	}
	return r, super, nil
}

// steadyTrainRate is tokens/s over the steps after the first (which builds the step graphs and
// compiles the kernels), from shears train's metrics.jsonl.
func steadyTrainRate(path string) (float64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var tokens, secs float64
	n := 0
	for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var s struct {
			Tokens     float64 `json:"tokens"`
			TokensPerS float64 `json:"tokens_per_s"`
		}
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			return 0, fmt.Errorf("%s line %d: %v", path, i+1, err)
		}
		n++
		if i == 0 || !(s.TokensPerS > 0) {
			continue
		}
		tokens += s.Tokens
		secs += s.Tokens / s.TokensPerS
	}
	if !(secs > 0) {
		return 0, fmt.Errorf("%s: %d steps, none after the first to time", path, n)
	}
	return tokens / secs, nil
}

// peerRun measures PyTorch on the super-network: the forward pass of its base (no adapters,
// like shears' forward) or the NLS step, on the same token ids.
func (c *checker) peerRun(r *report.Record, super string) error {
	cfg, _ := llama.Preset(r.Shape)
	data := filepath.Join(c.o.work, fmt.Sprintf("ids-%s-%dx%d.jsonl", r.Shape, r.Batch*c.o.trainSteps, r.Seq))
	if err := writeIDs(data, r.Batch*c.o.trainSteps, r.Seq, cfg.Vocab); err != nil {
		return err
	}
	args := []string{c.o.peer, r.Stage, super, data, "--device", r.Device, "--dtype", r.DType, "--steps", strconv.Itoa(r.Steps),
		"--batch", strconv.Itoa(r.Batch), "--threads", strconv.Itoa(goruntime.NumCPU())}
	if r.Stage == "train" {
		args = append(args, "--micro-batch", strconv.Itoa(r.Batch))
	}
	fmt.Fprintf(c.log, "== pytorch %s %s %s on %s\n", r.Shape, r.DType, r.Stage, r.Device)
	t0 := time.Now()
	env := []string{"OPENBLAS_CORETYPE=", "OPENBLAS_L2_SIZE="}
	if r.Device == "cpu" {
		// PyTorch's best configuration on a shared CPU (bench/RESULTS.md, "PyTorch peer"):
		// OpenMP threads that spin while they wait lose their cores to the other processes.
		env = append(env, "OMP_WAIT_POLICY=PASSIVE")
	}
	out, err := c.exec(c.o.python, args, env)
	r.Seconds = time.Since(t0).Seconds()
	if err != nil {
		return err
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var p struct {
		TPS   float64            `json:"tokens_per_s_steady"`
		Mem   float64            `json:"peak_device_mem_mib"`
		Flops map[string]float64 `json:"flops_per_token"`
		DType string             `json:"compute_dtype"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &p); err != nil {
		return fmt.Errorf("peer output: %v: %s", err, tail(out, 300))
	}
	r.TokensPerS, r.DType = p.TPS, p.DType
	// The peer counts a train step's FLOPs with the same formula (report.TrainFLOPs, tested to
	// agree); its forward is the base's, as report.ForwardFLOPs counts.
	r.FLOPsPerToken = p.Flops["train"]
	if r.Stage == "forward" {
		r.FLOPsPerToken = report.ForwardFLOPs(cfg, r.Seq)
	}
	if p.Mem > 0 {
		r.PeakMemMiB, r.MemSource = p.Mem, "torch"
	}
	return nil
}

// exec runs a child until it ends or the budget is spent; its stderr goes to the log, and the
// last lines of it make the error.
func (c *checker) exec(name string, args, env []string) ([]byte, error) {
	ctx, cancel := context.WithDeadline(context.Background(), c.deadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = os.Environ()
	for _, e := range env {
		k := strings.SplitN(e, "=", 2)[0]
		if strings.HasSuffix(e, "=") { // unset
			cmd.Env = filterEnv(cmd.Env, k)
			continue
		}
		cmd.Env = append(filterEnv(cmd.Env, k), e)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = io.MultiWriter(c.log, &stderr)
	err := cmd.Run()
	if ctx.Err() != nil {
		return nil, fmt.Errorf("stopped: the %s budget was spent", c.o.budget)
	}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("%s %s: %v: %s", filepath.Base(name), args[0], err, tail(stderr.Bytes(), 1200))
		}
		return nil, err
	}
	return stdout.Bytes(), nil
}

func filterEnv(env []string, key string) []string {
	out := env[:0:0]
	for _, e := range env {
		if !strings.HasPrefix(e, key+"=") {
			out = append(out, e)
		}
	}
	return out
}

// tail is the end of a child's output on one line: Dawn's warnings (why there is no adapter) and
// the last lines, without Dawn's source locations and the check's own progress lines.
func tail(b []byte, n int) string {
	var warn, keep []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "at ") || strings.HasPrefix(l, "== "):
		case strings.HasPrefix(l, "Warning: "):
			warn = append(warn, l)
		default:
			keep = append(keep, l)
		}
	}
	if len(warn) > 3 {
		warn = warn[:3]
	}
	keep = append(warn, keep...)
	s := strings.Join(keep, " / ")
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}

// writeIDs writes n pre-tokenized {"ids": [...]} records of length tokens (BOS then uniform ids
// from a fixed seed), shared by shears and the peer; an existing file is reused.
func writeIDs(path string, n, length, vocab int) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	rng := rand.New(rand.NewSource(7))
	var b bytes.Buffer
	for i := 0; i < n; i++ {
		ids := make([]int, length)
		ids[0] = 1
		for k := 1; k < length; k++ {
			ids[k] = 3 + rng.Intn(vocab-3)
		}
		line, _ := json.Marshal(map[string][]int{"ids": ids})
		b.Write(append(line, '\n'))
	}
	return onnx.WriteFileAtomic(path, b.Bytes())
}
