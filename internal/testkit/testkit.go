package testkit

// Running models in tests: onnxruntime start-up, causal-LM feeds, NaN-aware differences and
// the official ONNX checker.

import (
	"math"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shears-ml/shears/lm"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/runtime"
)

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

// Session saves m to a temporary file and opens it in onnxruntime on the CPU with one thread;
// the session is closed when the test ends.
func Session(t testing.TB, m *onnx.Model) *runtime.Session {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.onnx")
	if err := m.Save(path, onnx.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	s, err := runtime.OpenFile(path, runtime.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// RunLogits saves m to a temporary file, runs it in onnxruntime on ids ([rows, len(ids)/rows])
// plus those extra inputs the model has (the causal-LM inputs besides the ids — attention mask,
// position ids, an empty KV cache — come from lm), and returns the session's input names and
// the logits.
func RunLogits(t testing.TB, m *onnx.Model, rows int, ids []int64, extra map[string]*runtime.Tensor) ([]string, []float32) {
	t.Helper()
	s := Session(t, m)
	defer s.Close() // now, not at the test's end: tests call RunLogits in loops (Close is idempotent)
	var names []string
	for _, info := range s.Inputs() {
		names = append(names, info.Name)
	}
	out, err := s.Run(LMFeeds(t, s.Inputs(), rows, ids, extra), []string{"logits"})
	if err != nil {
		t.Fatal(err)
	}
	return names, out["logits"].F32
}

// LMFeeds makes a session's feeds for ids ([rows, len(ids)/rows]) with an empty past: extra's
// tensors for the inputs it names, lm's causal-LM feeds for the others.
func LMFeeds(t testing.TB, inputs []runtime.IOInfo, rows int, ids []int64, extra map[string]*runtime.Tensor) map[string]*runtime.Tensor {
	t.Helper()
	var own []runtime.IOInfo
	in := map[string]*runtime.Tensor{}
	for _, info := range inputs {
		if x, ok := extra[info.Name]; ok {
			in[info.Name] = x
		} else {
			own = append(own, info)
		}
	}
	it, err := lm.FromIO(runtime.LMIO(own), nil)
	if err != nil {
		t.Fatal(err)
	}
	batch := make([][]int, rows)
	n := len(ids) / rows
	for r := range batch {
		for _, id := range ids[r*n : (r+1)*n] {
			batch[r] = append(batch[r], int(id))
		}
	}
	feeds, err := it.Feeds(lm.Batch{IDs: batch})
	if err != nil {
		t.Fatal(err)
	}
	for _, info := range own {
		f, ok := feeds[info.Name]
		if !ok {
			t.Fatalf("no feed for the model input %q", info.Name)
		}
		if in[info.Name], err = runtime.LMTensor(f); err != nil {
			t.Fatal(err)
		}
	}
	return in
}

// BatchFeeds makes a session's feeds for b: lm's causal-LM feeds (ids, the mask over past and
// new tokens, positions, use_cache_branch when the model has one, an empty cache when b has no
// past) and past's tensors for the cache inputs (the previous run's presents, through NextPast).
func BatchFeeds(t testing.TB, inputs []runtime.IOInfo, b lm.Batch, past map[string]*runtime.Tensor) map[string]*runtime.Tensor {
	t.Helper()
	it, err := lm.FromIO(runtime.LMIO(inputs), nil)
	if err != nil {
		t.Fatal(err)
	}
	feeds, err := it.Feeds(b)
	if err != nil {
		t.Fatal(err)
	}
	in := map[string]*runtime.Tensor{}
	for name, f := range feeds {
		if in[name], err = runtime.LMTensor(f); err != nil {
			t.Fatal(err)
		}
	}
	for name, x := range past {
		in[name] = x
	}
	return in
}

// PastFeeds is BatchFeeds for rows of new tokens, all of one length, after p cached tokens that
// every row attends to.
func PastFeeds[ID int | int64](t testing.TB, inputs []runtime.IOInfo, ids [][]ID, past map[string]*runtime.Tensor, p int) map[string]*runtime.Tensor {
	t.Helper()
	var b lm.Batch
	for _, r := range ids {
		row := make([]int, len(r))
		for j, id := range r {
			row[j] = int(id)
		}
		b.IDs = append(b.IDs, row)
		if p > 0 {
			ones := make([]int64, p)
			for j := range ones {
				ones[j] = 1
			}
			b.PastMask = append(b.PastMask, ones)
		}
	}
	return BatchFeeds(t, inputs, b, past)
}

// NextPast renames a run's present.{i}.key|value outputs to the past_key_values inputs they
// are fed back as.
func NextPast(out map[string]*runtime.Tensor) map[string]*runtime.Tensor {
	past := map[string]*runtime.Tensor{}
	for name, x := range out {
		if i, k, ok := lm.ParsePresent(name); ok {
			past[lm.Past(i, k)] = x
		}
	}
	return past
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

// Feeds is LMFeeds for an id tensor [rows, T].
func Feeds(t testing.TB, inputs []runtime.IOInfo, ids *runtime.Tensor, extra map[string]*runtime.Tensor) map[string]*runtime.Tensor {
	t.Helper()
	if len(ids.Shape) != 2 {
		t.Fatalf("ids of shape %v, want [rows, T]", ids.Shape)
	}
	return LMFeeds(t, inputs, int(ids.Shape[0]), ids.I64, extra)
}

// Worse is the larger of two errors with NaN taken as +Inf: the one way tests accumulate a
// worst error.
func Worse(a, b float64) float64 {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.Inf(1)
	}
	return max(a, b)
}

// CheckONNX runs the official checker (onnx.checker.check_model with full_check, Debian's
// python3-onnx) on the model file at path, skipping the test when python3-onnx is missing.
func CheckONNX(t testing.TB, path string) {
	t.Helper()
	if out, err := exec.Command(Python, "-c", "import onnx").CombinedOutput(); err != nil {
		t.Skipf("official checker unavailable: %s -c 'import onnx' failed (install python3-onnx): %v %s", Python, err, strings.TrimSpace(string(out)))
	}
	out, err := exec.Command(Python, "-c", "import sys, onnx; onnx.checker.check_model(sys.argv[1], full_check=True)", path).CombinedOutput()
	if err != nil {
		t.Errorf("onnx checker on %s: %v\n%s", path, err, out)
	}
}
