package main

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/shears-ml/shears/bench/gpu/report"
	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/models/llama"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/transform/lora"
)

// TestBundle builds the offline GPU check's payload the way "make gpu-bundle" does and uses it
// the way a GPU machine would, with its prebuilt binaries (bin/PREBUILT) and its own library: the payload stays
// under 64 MiB, the CPU path of the check measures the tiny shape (shears forward + NLS step,
// PyTorch forward + step when /usr/bin/python3 has torch) and writes results whose values are
// checked, the peer reads the model it measured as onnxruntime does, and --device webgpu on a
// machine without a GPU adapter is reported by name while the check goes on.
func TestBundle(t *testing.T) {
	testkit.ORT(t)
	root := testkit.RepoRoot(t)
	for _, tool := range []string{"go", "git", "tar"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not on PATH: the bundle is built with it", tool)
		}
	}
	lib, err := runtime.FindLibrary("")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	bundle := filepath.Join(tmp, "bundle")
	cmd := exec.Command("bash", filepath.Join(root, "scripts/gpu-bundle.sh"), "--dir", bundle, "--no-tar")
	cmd.Env = append(os.Environ(), "ORT_LIB="+lib)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("gpu-bundle.sh: %v\n%s", err, out)
	}
	t.Logf("%s", out)

	t.Run("payload", func(t *testing.T) {
		m := regexp.MustCompile(`(?m)^\s+total\s+(\d+) bytes`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("no total line:\n%s", out)
		}
		printed, _ := strconv.ParseInt(string(m[1]), 10, 64)
		var walked int64
		filepath.Walk(bundle, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() {
				walked += fi.Size()
			}
			return err
		})
		if walked != printed {
			t.Errorf("the script says %d bytes, the folder holds %d", printed, walked)
		}
		if walked >= 64<<20 {
			t.Errorf("payload %d bytes (%.2f MiB), the limit is 64 MiB", walked, float64(walked)/(1<<20))
		}
		for _, f := range []string{"bin/shears", "bin/gpucheck", "bin/PREBUILT", ".ort/libonnxruntime.so.1", "bench/gpu/check.sh", "bench/peer/peer.py"} {
			if _, err := os.Stat(filepath.Join(bundle, f)); err != nil {
				t.Errorf("bundle lacks %s", f)
			}
		}
	})

	// The bundle alone: its own binaries although Go is on PATH, its own library.
	env := func(extra ...string) []string {
		var e []string
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "ONNXRUNTIME_LIB=") && !strings.HasPrefix(kv, runtime.ProfileEnv+"=") {
				e = append(e, kv)
			}
		}
		return append(e, extra...)
	}
	python := "/usr/bin/python3"
	hasTorch := exec.Command(python, "-c", "import torch").Run() == nil

	t.Run("cpu", func(t *testing.T) {
		res := filepath.Join(tmp, "cpu")
		work := filepath.Join(tmp, "work")
		cmd := exec.Command("bash", filepath.Join(bundle, "bench/gpu/check.sh"), "--device", "cpu", "--shapes", "tiny",
			"--out", res, "--work", work, "--steps", "2", "--train-steps", "2")
		cmd.Dir = tmp
		cmd.Env = env("PYTHON=" + python)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("check.sh: %v\n%s", err, out)
		}
		// OUT holds the small result files only (it is what comes back from a GPU machine); the
		// models stay in --work.
		ents, _ := os.ReadDir(res)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if got := strings.Join(names, " "); got != "check.log machine.json results.json results.jsonl results.md" {
			t.Errorf("OUT holds %s", got)
		}
		if !strings.Contains(string(out), "== prebuilt bin/gpucheck, bin/shears") {
			t.Errorf("the bundle's binaries were not used:\n%s", out)
		}
		var got report.Results
		b, err := os.ReadFile(filepath.Join(res, "results.json"))
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if got.Machine.Device != "cpu" || got.Machine.GPU != "none" || got.Machine.ORT != runtime.Version() {
			t.Errorf("machine %+v", got.Machine)
		}
		if len(got.Rows) != 4 {
			t.Fatalf("%d rows, want shears and pytorch × forward and train:\n%s", len(got.Rows), out)
		}
		cfg, _ := llama.Preset("tiny")
		super, err := onnx.Load(filepath.Join(work, "llama-tiny-fp16-native-super.onnx"))
		if err != nil {
			t.Fatal(err)
		}
		meta, err := lora.ReadConfig(super)
		if err != nil {
			t.Fatal(err)
		}
		var loraParams int64
		for _, m := range meta.Modules {
			loraParams += int64(meta.RMax) * (m.In + m.Out)
		}
		want := map[string]float64{"forward": report.ForwardFLOPs(cfg, 32), "train": report.TrainFLOPs(cfg, 32, loraParams)}
		md, _ := os.ReadFile(filepath.Join(res, "results.md"))
		for i, r := range got.Rows {
			engine := []string{"shears", "shears", "pytorch", "pytorch"}[i]
			stage := []string{"forward", "train", "forward", "train"}[i]
			if r.Engine != engine || r.Stage != stage || r.Shape != "tiny" || r.Batch != 1 || r.Seq != 32 {
				t.Fatalf("row %d: %+v", i, r)
			}
			if engine == "pytorch" && !hasTorch {
				if !strings.Contains(r.Skipped, "no torch") {
					t.Errorf("row %d: %+v, want skipped for want of torch", i, r)
				}
				continue
			}
			if r.Error != "" || !(r.TokensPerS > 0) {
				t.Fatalf("row %d: %+v", i, r)
			}
			// The peer counts its own FLOPs in python: they must agree with report's.
			if !(math.Abs(r.FLOPsPerToken-want[stage]) <= 1e-9*want[stage]) {
				t.Errorf("row %d (%s %s): %v FLOPs/token, want %v", i, engine, stage, r.FLOPsPerToken, want[stage])
			}
			if !(math.Abs(r.TFLOPS-r.TokensPerS*want[stage]/1e12) <= 1e-9*r.TFLOPS) || r.PeakTFLOPS != 0 {
				t.Errorf("row %d: TFLOP/s %v, peak %v", i, r.TFLOPS, r.PeakTFLOPS)
			}
			wantDType := "fp16"
			if engine == "pytorch" {
				wantDType = "fp32" // the peer computes fp32 on the CPU
			}
			if r.DType != wantDType {
				t.Errorf("row %d: dtype %s, want %s", i, r.DType, wantDType)
			}
			line := "| tiny | " + stage + " | " + wantDType + " | 1 × 32 | " + engine + " | cpu | " + strconv.FormatFloat(r.TokensPerS, 'f', 0, 64) + " | "
			if !strings.Contains(string(md), line) {
				t.Errorf("results.md lacks %q:\n%s", line, md)
			}
		}
		// The profiled pass: every node on the CPU provider, none elsewhere.
		for _, i := range []int{0, 1} {
			p := got.Rows[i].Placement
			if p == nil || p.Provider != "CPUExecutionProvider" || p.OnDevice < 10 || len(p.OffDevice) != 0 {
				t.Errorf("row %d placement %+v", i, p)
			}
		}
		if !hasTorch {
			return
		}
		// The peer's own ONNX reader against onnxruntime: the same logits for the same ids.
		data := filepath.Join(work, "ids-tiny-2x32.jsonl")
		pout, err := exec.Command(python, filepath.Join(bundle, "bench/peer/peer.py"), "loss",
			filepath.Join(work, "llama-tiny-fp16-native-super.onnx"), data, "--n", "1").Output()
		if err != nil {
			t.Fatal(err)
		}
		var peer struct {
			Last []float64 `json:"last_logits"`
		}
		if err := json.Unmarshal(pout, &peer); err != nil {
			t.Fatal(err)
		}
		line, _ := os.ReadFile(data)
		var rec struct{ IDs []int64 }
		json.Unmarshal([]byte(strings.SplitN(string(line), "\n", 2)[0]), &rec)
		s, err := runtime.OpenFile(filepath.Join(work, "llama-tiny-fp16-native.onnx"), runtime.Options{Threads: 2})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		o, err := s.Run(testkit.Feeds(t, s.Inputs(), runtime.I64([]int64{1, int64(len(rec.IDs))}, rec.IDs), nil), []string{"logits"})
		if err != nil {
			t.Fatal(err)
		}
		ours := o["logits"].F32[(len(rec.IDs)-1)*cfg.Vocab:]
		if len(peer.Last) != cfg.Vocab || len(ours) != cfg.Vocab {
			t.Fatalf("%d peer logits, %d ours", len(peer.Last), len(ours))
		}
		var maxd, spread float64
		for i := range ours {
			maxd = math.Max(maxd, math.Abs(float64(ours[i])-peer.Last[i]))
			spread = math.Max(spread, math.Abs(float64(ours[i])))
		}
		// fp16 weights both; onnxruntime computes in fp16, the peer in fp32.
		if !(maxd <= 2e-3*math.Max(spread, 1)) {
			t.Errorf("peer vs onnxruntime logits: max |diff| %.3g (max |logit| %.3g)", maxd, spread)
		}
		t.Logf("peer vs onnxruntime logits: max |diff| %.3g (max |logit| %.3g)", maxd, spread)
	})

	t.Run("time-budget", func(t *testing.T) {
		res := filepath.Join(tmp, "budget")
		cmd := exec.Command("bash", filepath.Join(bundle, "bench/gpu/check.sh"), "--device", "cpu", "--shapes", "tiny,25m",
			"--out", res, "--work", filepath.Join(tmp, "work-budget"), "--budget", "1ns", "--peer=false")
		cmd.Env = env()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("check.sh: %v\n%s", err, out)
		}
		recs, err := report.ReadRecords(filepath.Join(res, "results.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		// Each shape: its forward and its train step recorded as skipped, nothing run.
		if len(recs) != 4 {
			t.Fatalf("%d records: %+v", len(recs), recs)
		}
		for i, r := range recs {
			if r.Skipped != "the 1ns budget was spent" || r.Shape != []string{"tiny", "tiny", "25m", "25m"}[i] ||
				r.Stage != []string{"forward", "train"}[i%2] {
				t.Errorf("record %d: %+v", i, r)
			}
		}
	})

	t.Run("webgpu", func(t *testing.T) {
		res := filepath.Join(tmp, "webgpu")
		cmd := exec.Command("bash", filepath.Join(bundle, "bench/gpu/check.sh"), "--device", "webgpu", "--shapes", "tiny",
			"--out", res, "--work", filepath.Join(tmp, "work-webgpu"), "--steps", "1", "--peer=false")
		cmd.Env = env()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("check.sh must go on past a provider failure: %v\n%s", err, out)
		}
		recs, err := report.ReadRecords(filepath.Join(res, "results.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) > 0 && recs[0].OK() {
			t.Logf("webgpu runs here: %.0f tokens/s", recs[0].TokensPerS)
			return
		}
		// fp16 fails, fp32 is tried and fails the same way, and the train step is skipped.
		if len(recs) != 3 || recs[0].DType != "fp16" || recs[1].DType != "fp32" || recs[2].Stage != "train" ||
			recs[2].Skipped != "the forward pass did not run" {
			t.Fatalf("records %+v\n%s", recs, out)
		}
		for _, r := range recs[:2] {
			for _, want := range []string{"webgpu execution provider", "Vulkan (libvulkan.so.1) and a GPU adapter"} {
				if !strings.Contains(r.Error, want) {
					t.Errorf("%s error %q lacks %q", r.DType, r.Error, want)
				}
			}
		}
		// Without a system Vulkan loader the bundle's own is used: it loads, and finds no driver.
		if _, err := os.Stat(filepath.Join(bundle, "lib/vulkan/libvulkan.so.1")); err == nil &&
			exec.Command("sh", "-c", "ldconfig -p | grep -q ' libvulkan.so.1 '").Run() != nil {
			var m report.Machine
			b, _ := os.ReadFile(filepath.Join(res, "machine.json"))
			json.Unmarshal(b, &m)
			if !strings.Contains(m.Note, "bundled libvulkan.so.1") || !strings.Contains(recs[0].Error, "Found no drivers") {
				t.Errorf("the bundled Vulkan loader was not used: note %q, error %q", m.Note, recs[0].Error)
			}
		}
		md, _ := os.ReadFile(filepath.Join(res, "results.md"))
		if !strings.Contains(string(md), "- shears tiny fp16 forward on webgpu: ") {
			t.Errorf("results.md does not name the failure:\n%s", md)
		}
		t.Logf("webgpu here: %s", recs[0].Error)
	})
}

func TestSteadyTrainRate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metrics.jsonl")
	// Step 1 (graph building) is left out: (512 + 512) tokens over (1 + 0.5) s.
	os.WriteFile(path, []byte(`{"step":1,"tokens":512,"tokens_per_s":10}
{"step":2,"tokens":512,"tokens_per_s":512}
{"step":3,"tokens":512,"tokens_per_s":1024}
`), 0o644)
	got, err := steadyTrainRate(path)
	if err != nil || !(math.Abs(got-1024/1.5) <= 1e-9) {
		t.Fatalf("steadyTrainRate = %v, %v; want %v", got, err, 1024/1.5)
	}
	os.WriteFile(path, []byte(`{"step":1,"tokens":512,"tokens_per_s":10}`+"\n"), 0o644)
	if _, err := steadyTrainRate(path); err == nil || !strings.Contains(err.Error(), "none after the first") {
		t.Errorf("one step: %v", err)
	}
}

func TestWriteIDs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ids.jsonl")
	if err := writeIDs(path, 3, 16, 100); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d records", len(lines))
	}
	for _, l := range lines {
		var r struct{ IDs []int }
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		if len(r.IDs) != 16 || r.IDs[0] != 1 {
			t.Fatalf("record %v", r.IDs)
		}
		for _, id := range r.IDs[1:] {
			if id < 3 || id >= 100 {
				t.Fatalf("id %d outside [3, 100)", id)
			}
		}
	}
}
