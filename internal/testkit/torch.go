package testkit

// Torch fixtures: the optimum-style ONNX exports written by PyTorch's own exporter
// (testdata/torch/optimum_llama.py, torchRun with Debian's /usr/bin/python3 and its python3-torch and
// python3-onnx). Tests skip with the reason when torch is not installed.
//
// Exports are cached under the repository's .cache/torch-fixtures/, keyed by the script, the
// checkpoint and the arguments, because running torch costs seconds on a shared machine.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// Python is the interpreter the fixtures need: Debian's, where apt installs python3-torch.
const Python = "/usr/bin/python3"

// TorchExport is one torchRun of the script: the checkpoint it read and the three graphs it wrote.
type TorchExport struct {
	Checkpoint string // the llama2.c checkpoint (written by the script for TorchRandom)
	WithPast   string // model.onnx: optimum's text-generation-with-past interface
	NoPast     string // decoder_model.onnx: the same without past inputs
	Merged     string // decoder_model_merged.onnx: If on use_cache_branch, weights shared
}

var (
	torchOnce sync.Once
	torchErr  error
	torchMu   sync.Mutex // one export at a time per process
)

// TorchAvailable reports whether the fixtures can be made (nil) or why not.
func TorchAvailable() error {
	torchOnce.Do(func() {
		out, err := exec.Command(Python, "-c", "import torch, onnx").CombinedOutput()
		if err != nil {
			torchErr = fmt.Errorf("%s cannot import torch and onnx (apt-get install python3-torch python3-onnx): %v: %s", Python, err, lastLine(out))
		}
	})
	return torchErr
}

// NeedTorch skips t when the fixtures cannot be made.
func NeedTorch(t testing.TB) {
	t.Helper()
	if err := TorchAvailable(); err != nil {
		t.Skipf("torch fixtures unavailable: %v", err)
	}
}

// TorchStories260K exports ../shared's stories260K (skipping when it is absent).
func TorchStories260K(t testing.TB) TorchExport {
	t.Helper()
	ckpt := Shared(t, "models/stories260K/stories260K.bin")
	e, _ := torchRun(t, ckpt, "", true)
	return e
}

// TorchTinySpec is a two-layer random model of stories260K's shape (GQA 8/4 heads).
const TorchTinySpec = "dim=64,hidden=172,layers=2,heads=8,kv_heads=4,vocab=512,seq=128"

// TorchRandom exports a seeded random model of spec ("dim=…,hidden=…,layers=…,heads=…,kv_heads=…,
// vocab=…,seq=…"), whose llama2.c checkpoint the script writes first.
func TorchRandom(t testing.TB, spec string, seed int) TorchExport {
	t.Helper()
	e, _ := torchRun(t, "", fmt.Sprintf("%s seed=%d", spec, seed), true)
	return e
}

// TryTorchRandom is TorchRandom for tests that use the fixture when they can: false (and a log line)
// instead of a skip when torch is not installed.
func TryTorchRandom(t testing.TB, spec string, seed int) (TorchExport, bool) {
	t.Helper()
	return torchRun(t, "", fmt.Sprintf("%s seed=%d", spec, seed), false)
}

func torchRun(t testing.TB, ckpt, random string, skip bool) (TorchExport, bool) {
	t.Helper()
	root := RepoRoot(t)
	script := filepath.Join(root, "testdata", "torch", "optimum_llama.py")
	h := sha256.New()
	for _, f := range []string{script, ckpt} {
		if f == "" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
	}
	h.Write([]byte(random))
	dir := filepath.Join(root, ".cache", "torch-fixtures", hex.EncodeToString(h.Sum(nil))[:16])
	e := TorchExport{
		WithPast: filepath.Join(dir, "model.onnx"),
		NoPast:   filepath.Join(dir, "decoder_model.onnx"),
		Merged:   filepath.Join(dir, "decoder_model_merged.onnx"),
	}
	if random != "" {
		e.Checkpoint = filepath.Join(dir, "random.bin")
	} else {
		e.Checkpoint = ckpt
	}
	torchMu.Lock()
	defer torchMu.Unlock()
	if _, err := os.Stat(e.Merged); err == nil {
		return e, true // cached: no need to start python
	}
	if err := TorchAvailable(); err != nil {
		if skip {
			t.Skipf("torch fixtures unavailable: %v", err)
		}
		t.Logf("torch fixtures unavailable: %v", err)
		return e, false
	}
	// Write into a fresh folder and rename it into place, so a cached folder is always whole.
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "tmp-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	args := []string{script}
	if random != "" {
		var spec string
		var seed int
		if _, err := fmt.Sscanf(random, "%s seed=%d", &spec, &seed); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--random", spec, "--seed", fmt.Sprint(seed), filepath.Join(tmp, "random.bin"))
	} else {
		args = append(args, ckpt)
	}
	args = append(args, "-o", tmp)
	cmd := exec.Command(Python, args...)
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("torch export failed: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, statErr := os.Stat(e.Merged); statErr != nil { // not a concurrent writer's win
			t.Fatal(err)
		}
	}
	return e, true
}

func lastLine(b []byte) string {
	s := string(b)
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == ' ') {
		s = s[:len(s)-1]
	}
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			return s[i+1:]
		}
	}
	return s
}
