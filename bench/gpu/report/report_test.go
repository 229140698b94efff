package report

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shears-ml/shears/models/llama"
)

func TestPeak(t *testing.T) {
	for _, c := range []struct {
		gpu, dtype string
		want       float64
	}{
		{"NVIDIA H200", "fp16", 989},
		{"NVIDIA H200", "fp32", 67},
		{"NVIDIA GH200 480GB", "bf16", 989},
		{"NVIDIA H100 PCIe", "fp16", 756},
		{"NVIDIA H100 80GB HBM3", "fp16", 989},
		{"NVIDIA A100-SXM4-80GB", "fp16", 312},
		{"NVIDIA A10G", "fp16", 70},
		{"NVIDIA L40S", "fp32", 91.6},
		{"NVIDIA L4", "fp16", 121},
		{"Tesla T4", "fp16", 65},
		{"none", "fp16", 0},
	} {
		if got := Peak(c.gpu, c.dtype); got != c.want {
			t.Errorf("Peak(%q, %s) = %v, want %v", c.gpu, c.dtype, got, c.want)
		}
	}
}

// TestFLOPs checks the formulas against a count of every matmul of the graph written out by
// hand for the tiny preset (dim 64, hidden 172, 2 layers, 8 heads, 4 kv heads, vocab 512).
func TestFLOPs(t *testing.T) {
	c, err := llama.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	const T = 32.0
	// Per token and layer: q 64×64, k 64×32, v 64×32, o 64×64, gate/up 64×172 each, down 172×64;
	// attention: scores 8 heads × T × 8 and weights·values the same; head 64×512.
	const layers = 2.0
	perLayer := 2.0 * (64*64 + 64*32 + 64*32 + 64*64 + 64*172 + 64*172 + 172*64)
	attn := 2.0 * 2 * 8 * T * 8
	head := 2.0 * 64 * 512
	fwd := layers*perLayer + layers*attn + head
	if got := ForwardFLOPs(c, int(T)); !(math.Abs(got-fwd) <= 1e-9*fwd) {
		t.Errorf("ForwardFLOPs = %v, want %v", got, fwd)
	}
	// Train: the base's matmuls forward + input gradient, attention forward + two input gradients,
	// the adapters forward + input + weight gradients.
	const lora = 1000
	train := 2*(layers*perLayer+head) + 3*layers*attn + 6*lora
	if got := TrainFLOPs(c, int(T), lora); !(math.Abs(got-train) <= 1e-9*train) {
		t.Errorf("TrainFLOPs = %v, want %v", got, train)
	}
}

// profile is an onnxruntime profile in its real shape: session events, and per node a kernel
// event and fence events, each naming the op type and provider.
const profile = `[
{"cat":"Session","pid":1,"tid":1,"dur":10,"ts":1,"ph":"X","name":"model_loading_uri","args":{}},
{"cat":"Node","pid":1,"tid":1,"dur":0,"ts":2,"ph":"X","name":"/l0/MatMul_fence_before","args":{"op_name":"MatMul"}},
{"cat":"Node","pid":1,"tid":1,"dur":5,"ts":3,"ph":"X","name":"/l0/MatMul_kernel_time","args":{"op_name":"MatMul","provider":"WebGpuExecutionProvider"}},
{"cat":"Node","pid":1,"tid":1,"dur":5,"ts":3,"ph":"X","name":"/l1/MatMul_kernel_time","args":{"op_name":"MatMul","provider":"WebGpuExecutionProvider"}},
{"cat":"Node","pid":1,"tid":1,"dur":1,"ts":9,"ph":"X","name":"/l0/Shape_kernel_time","args":{"op_name":"Shape","provider":"CPUExecutionProvider"}},
{"cat":"Node","pid":1,"tid":1,"dur":1,"ts":9,"ph":"X","name":"/l0/GatherElements_kernel_time","args":{"op_name":"GatherElements","provider":"CPUExecutionProvider"}},
{"cat":"Node","pid":1,"tid":1,"dur":1,"ts":9,"ph":"X","name":"/l1/GatherElements_kernel_time","args":{"op_name":"GatherElements","provider":"CPUExecutionProvider"}},
{"cat":"Node","pid":1,"tid":1,"dur":5,"ts":20,"ph":"X","name":"/l0/MatMul_kernel_time","args":{"op_name":"MatMul","provider":"WebGpuExecutionProvider"}}
]`

func TestReadPlacement(t *testing.T) {
	dir := t.TempDir()
	// Two sessions' profiles (a train run has several): nodes count per file.
	for _, f := range []string{"train_1.json", "train_2.json"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(profile), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p, err := ReadPlacement(dir, "webgpu")
	if err != nil {
		t.Fatal(err)
	}
	if p.Provider != "WebGpuExecutionProvider" || p.OnDevice != 4 || len(p.OffDevice) != 2 ||
		p.OffDevice["GatherElements"] != 4 || p.OffDevice["Shape"] != 2 {
		t.Fatalf("placement %+v", p)
	}
	if got := strings.Join(p.OffOps(), ","); got != "GatherElements,Shape" {
		t.Errorf("OffOps = %s", got)
	}
	// On the CPU provider everything but the MatMuls is on the device.
	if p, _ := ReadPlacement(dir, "cpu"); p.OnDevice != 6 || p.OffDevice["MatMul"] != 4 {
		t.Errorf("cpu placement %+v", p)
	}
	if _, err := ReadPlacement(t.TempDir(), "webgpu"); err == nil || !strings.Contains(err.Error(), "no onnxruntime profile") {
		t.Errorf("empty folder: %v", err)
	}
	if _, err := ReadPlacement(dir, "rocm"); err == nil || !strings.Contains(err.Error(), `"rocm"`) {
		t.Errorf("unknown device: %v", err)
	}
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, "x.json"), []byte("[{"), 0o644)
	if _, err := ReadPlacement(bad, "webgpu"); err == nil || !strings.Contains(err.Error(), "x.json") {
		t.Errorf("truncated profile: %v", err)
	}
}

// TestResultsFromRecords: results.jsonl → results.json rows and the markdown tables, values
// asserted (TFLOP/s, fraction of the H200's peak, the shears/PyTorch ratio, failures by name).
func TestResultsFromRecords(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "results.jsonl")
	m := Machine{Date: "2026-12-03 08:00 UTC", Host: "gpu1", CPU: "Xeon", Cores: 16, GPU: "NVIDIA H200", GPUMemMiB: 143771,
		Driver: "580.1", Device: "webgpu", ORT: "1.24.1", Torch: "2.11.0+cu130", Command: "bench/gpu/check.sh --device webgpu"}
	recs := []Record{
		{Shape: "1b", Engine: "shears", Device: "webgpu", Stage: "forward", DType: "fp16", Batch: 4, Seq: 512, Steps: 5,
			TokensPerS: 20000, FLOPsPerToken: 2.5e9, PeakMemMiB: 3000, MemSource: "nvidia-smi",
			Placement: &Placement{Provider: "WebGpuExecutionProvider", OnDevice: 300, OffDevice: map[string]int{"Shape": 2, "Range": 1}}},
		{Shape: "1b", Engine: "pytorch", Device: "cuda", Stage: "forward", DType: "fp16", Batch: 4, Seq: 512, Steps: 5,
			TokensPerS: 80000, FLOPsPerToken: 2.5e9, PeakMemMiB: 2500, MemSource: "torch"},
		{Shape: "1b", Engine: "shears", Device: "webgpu", Stage: "train", DType: "fp16", Batch: 4, Seq: 512, Steps: 4,
			Error:     "gpucheck forward: exit status 1: webgpu execution provider failed: GatherElements",
			Placement: &Placement{Provider: "WebGpuExecutionProvider", Error: "shears train: signal: segmentation fault"}},
		{Shape: "7b", Engine: "shears", Device: "webgpu", Stage: "forward", DType: "fp16", Batch: 1, Seq: 512, Steps: 5,
			Skipped: "the 9m0s budget was spent"},
	}
	for _, r := range recs {
		if err := AppendRecord(path, r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ReadRecords(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[0].Placement.OffDevice["Shape"] != 2 || got[2].Error == "" {
		t.Fatalf("round trip: %+v", got)
	}
	res := Build(m, got)
	r0 := res.Rows[0]
	// 20000 tokens/s × 2.5 GFLOP/token = 50 TFLOP/s; of 989: 5.06%.
	if !(math.Abs(r0.TFLOPS-50) <= 1e-9) || r0.PeakTFLOPS != 989 || !(math.Abs(r0.OfPeak-50.0/989) <= 1e-12) {
		t.Errorf("row 0: %+v", r0)
	}
	if res.Rows[2].TFLOPS != 0 || res.Rows[3].OfPeak != 0 {
		t.Errorf("failed rows carry figures: %+v %+v", res.Rows[2], res.Rows[3])
	}
	if err := res.Write(dir); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"GPU: NVIDIA H200 (143771 MiB, driver 580.1). shears on webgpu (onnxruntime 1.24.1); PyTorch 2.11.0+cu130.",
		"Command: `bench/gpu/check.sh --device webgpu`",
		"| 1b | forward | fp16 | 4 × 512 | shears | webgpu | 20000 | 50 | 5.1% of 989 | 3000 MiB (nvidia-smi) | 2 op types on the CPU (below) |",
		"| 1b | forward | fp16 | 4 × 512 | pytorch | cuda | 80000 | 200 | 20.2% of 989 | 2500 MiB (torch) |  |",
		"| 1b | train | fp16 | 4 × 512 | shears | webgpu | — | — | — | — | failed (below) |",
		"| 7b | forward | fp16 | 1 × 512 | shears | webgpu | — | — | — | — | skipped: the 9m0s budget was spent |",
		"| 1b | forward | 20000 (webgpu fp16) | 80000 (cuda fp16) | 0.25× |",
		"- shears 1b fp16 train on webgpu: gpucheck forward: exit status 1: webgpu execution provider failed: GatherElements",
		"- shears 1b fp16 forward: 300 nodes on WebGpuExecutionProvider; left to the CPU: Range ×1, Shape ×2",
		"- shears 1b fp16 train on webgpu: no profile: shears train: signal: segmentation fault",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("results.md lacks %q:\n%s", want, md)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "results.json")); err != nil {
		t.Error(err)
	}

	os.WriteFile(path, []byte(`{"shape":"1b","engine":"shears","stage":"forward","tokens":3}`+"\n"), 0o644)
	if _, err := ReadRecords(path); err == nil || !strings.Contains(err.Error(), "line 1") || !strings.Contains(err.Error(), `"tokens"`) {
		t.Errorf("unknown field: %v", err)
	}
	os.WriteFile(path, []byte("\n{\"shape\":\"1b\"}\n"), 0o644)
	if _, err := ReadRecords(path); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("incomplete record: %v", err)
	}
}
