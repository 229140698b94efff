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
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/shears-ml/shears/internal/dirlock"
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
	torchMu   sync.Mutex // one export at a time per process (lockCache: per machine)
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
	args := func(out string) []string {
		if random == "" {
			return []string{script, ckpt, "-o", out}
		}
		var spec string
		var seed int
		if _, err := fmt.Sscanf(random, "%s seed=%d", &spec, &seed); err != nil {
			t.Fatal(err)
		}
		return []string{script, "--random", spec, "--seed", fmt.Sprint(seed), filepath.Join(out, "random.bin"), "-o", out}
	}
	dir, ok := torchCached(t, []string{script, ckpt}, random, "decoder_model_merged.onnx", args, skip)
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
	return e, ok
}

// torchCached runs Python on args(out) once per content — the bytes of files ("" entries
// skipped) and extra — and returns the folder it wrote, cached as .cache/torch-fixtures/<key>/
// (last, the file whose presence marks the folder whole). Without torch it skips t (skip) or
// logs and returns false. Processes share the cache: one exports while the others wait on the
// cache's lock, and a fresh folder is renamed into place, so a cached folder is always whole.
func torchCached(t testing.TB, files []string, extra, last string, args func(out string) []string, skip bool) (string, bool) {
	t.Helper()
	h := sha256.New()
	for _, f := range files {
		if f == "" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
	}
	h.Write([]byte(extra))
	cache := filepath.Join(RepoRoot(t), ".cache", "torch-fixtures")
	dir := filepath.Join(cache, hex.EncodeToString(h.Sum(nil))[:16])
	torchMu.Lock()
	defer torchMu.Unlock()
	if _, err := os.Stat(filepath.Join(dir, last)); err == nil {
		return dir, true // cached: no need to start python
	}
	if err := TorchAvailable(); err != nil {
		if skip {
			t.Skipf("torch fixtures unavailable: %v", err)
		}
		t.Logf("torch fixtures unavailable: %v", err)
		return dir, false
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	unlock := lockCache(t, cache)
	defer unlock()
	if _, err := os.Stat(filepath.Join(dir, last)); err == nil {
		return dir, true // another test binary exported it while this one waited
	}
	tmp, err := os.MkdirTemp(cache, "tmp-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command(Python, args(tmp)...)
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=1")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("torch export failed: %v\n%s", err, out)
	}
	t.Logf("torch export %s: %.1f s", filepath.Base(dir), time.Since(start).Seconds())
	if err := os.Rename(tmp, dir); err != nil {
		if _, statErr := os.Stat(filepath.Join(dir, last)); statErr != nil {
			t.Fatal(err)
		}
	}
	return dir, true
}

// lockCache takes the torch cache's directory lock, waiting while another test binary (go test
// runs packages in parallel) holds it, so that one torch export runs at a time.
func lockCache(t testing.TB, cache string) func() {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		l, err := dirlock.Acquire(cache, "exporting a torch fixture")
		if err == nil {
			return l.Release
		}
		if !errors.Is(err, dirlock.ErrBusy) || time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
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
