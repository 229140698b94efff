package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
)

// TestCheckScriptOnCPU runs bench/gpu/check.sh the way a GPU machine would, on the CPU path with
// the tiny shape: it must build, generate the fp16 native model, and report a positive throughput.
func TestCheckScriptOnCPU(t *testing.T) {
	testkit.ORT(t)
	root := testkit.RepoRoot(t)
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go not on PATH: the script builds shears")
	}
	cmd := exec.Command("bash", filepath.Join(root, "bench/gpu/check.sh"))
	cmd.Env = append(os.Environ(), "DEVICE=cpu", "SHAPES=tiny", "SEQ=64", "STEPS=2", "WORK="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("check.sh: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`result preset=tiny dtype=fp16 compute=native device=cpu batch=1 seq=64 steps=2 .*tokens_per_s=([0-9.]+) tflops=([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no result line:\n%s", out)
	}
	if tps, _ := strconv.ParseFloat(string(m[1]), 64); tps <= 0 {
		t.Fatalf("tokens/s %s", m[1])
	}
}
