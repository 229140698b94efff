// Package testkit holds what tests across the repository share: finding ../shared inputs
// (skipping with a message that names the missing path) and starting onnxruntime.
package testkit

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/shears-ml/shears/internal/testpath"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/runtime"
)

// RepoRoot is the folder holding go.mod.
func RepoRoot(t testing.TB) string { return testpath.RepoRoot(t) }

// Shared returns ../shared/<rel>, skipping the test when the file is absent.
func Shared(t testing.TB, rel string) string { return testpath.Shared(t, rel) }

// ORT initialises onnxruntime, skipping the test when the library cannot be found.
func ORT(t testing.TB) {
	t.Helper()
	lib, err := runtime.FindLibrary("")
	if err != nil {
		t.Skipf("onnxruntime not available: %v", err)
	}
	if err := runtime.Init(lib); err != nil {
		t.Fatalf("init onnxruntime %s: %v", lib, err)
	}
}

// RunLogits saves m to a temporary file, runs it in onnxruntime on ids ([rows, len(ids)/rows])
// plus those extra inputs the model has, and returns the session's input names and the logits.
func RunLogits(t testing.TB, m *onnx.Model, rows int, ids []int64, extra map[string]*runtime.Tensor) ([]string, []float32) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.onnx")
	if err := m.Save(path, onnx.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	s, err := runtime.OpenFile(path, runtime.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in := map[string]*runtime.Tensor{"input_ids": runtime.I64([]int64{int64(rows), int64(len(ids) / rows)}, ids)}
	var names []string
	for _, info := range s.Inputs() {
		names = append(names, info.Name)
		if x, ok := extra[info.Name]; ok {
			in[info.Name] = x
		}
	}
	out, err := s.Run(in, []string{"logits"})
	if err != nil {
		t.Fatal(err)
	}
	return names, out["logits"].F32
}

// Vectors makes [len] float32 tensors, the shape rank masks are fed in.
func Vectors(v map[string][]float32) map[string]*runtime.Tensor {
	out := map[string]*runtime.Tensor{}
	for name, x := range v {
		out[name] = runtime.F32([]int64{int64(len(x))}, x)
	}
	return out
}

// MaxDiff is the largest |a[i] − b[i]|, +Inf when the lengths differ or any difference is NaN
// (math.Max would carry the NaN, and NaN passes every `d > tol`). Compare with !(d <= tol).
func MaxDiff[T float32 | float64](a, b []T) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		d = Worse(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d
}

// Worse is the larger of two errors with NaN taken as +Inf: the one way tests accumulate a
// worst error.
func Worse(a, b float64) float64 {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.Inf(1)
	}
	return max(a, b)
}
