package decoder_test

import (
	"path/filepath"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/lm"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/transform/decoder"
)

// mergedOf merges m with its no-cache form the way optimum does.
func mergedOf(t *testing.T, m *onnx.Model) *onnx.Model {
	t.Helper()
	nc, err := decoder.NoCache(m)
	if err != nil {
		t.Fatal(err)
	}
	mg, err := decoder.Merge(m, nc)
	if err != nil {
		t.Fatal(err)
	}
	return mg
}

// run feeds ids [1, T] after a past (nil: empty) with use_cache_branch = cache when the model has
// it, and returns every output.
func run(t *testing.T, s *runtime.Session, ids []int, past map[string]*runtime.Tensor, pastLen int, cache bool) map[string]*runtime.Tensor {
	t.Helper()
	in := testkit.PastFeeds(t, s.Inputs(), [][]int{ids}, past, pastLen)
	if _, ok := in[decoder.UseCacheBranch]; ok { // lm sets it to pastLen > 0; the test picks
		in[decoder.UseCacheBranch] = &runtime.Tensor{DType: runtime.Bool, Shape: []int64{1}, Raw: []byte{map[bool]byte{false: 0, true: 1}[cache]}}
	}
	var names []string
	for _, o := range s.Outputs() {
		names = append(names, o.Name)
	}
	out, err := s.Run(in, names)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A merged decoder built from our with-past model: one copy of the weights, both branches
// compute what the with-past model computes (no-cache branch on a fresh prompt, with-past
// branch continuing from its presents), the official checker accepts it, and its train form
// is the with-past model's.
func TestMergeSpecialise(t *testing.T) {
	testkit.ORT(t)
	m := tinyLlama(t)
	mg := mergedOf(t, m)
	if got, want := len(mg.Graph().GetInitializer()), len(m.Graph().GetInitializer()); got != want {
		t.Errorf("merged model has %d initializers, the with-past one %d: weights duplicated", got, want)
	}
	p := filepath.Join(t.TempDir(), "decoder_model_merged.onnx")
	if err := mg.Save(p, onnx.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.CheckONNX(t, p)

	ref, sm := testkit.Session(t, m), testkit.Session(t, mg)
	prompt, next := []int{1, 5, 9, 39}, []int{7, 3}
	r0 := run(t, ref, prompt, nil, 0, false)
	r1 := run(t, ref, next, testkit.NextPast(r0), 4, false)
	for _, cache := range []bool{false, true} { // the with-past branch also takes an empty past
		m0 := run(t, sm, prompt, nil, 0, cache)
		if d := testkit.MaxDiff(m0[lm.Logits].F32, r0[lm.Logits].F32); !(d <= 1e-5) {
			t.Errorf("use_cache_branch=%v on a fresh prompt: logits differ by %g", cache, d)
		}
		if cache {
			continue
		}
		m1 := run(t, sm, next, testkit.NextPast(m0), 4, true)
		if d := testkit.MaxDiff(m1[lm.Logits].F32, r1[lm.Logits].F32); !(d <= 1e-5) {
			t.Errorf("with-past branch continuing the no-cache branch's presents: logits differ by %g", d)
		}
	}
	for _, cache := range []bool{false, true} {
		sp, err := decoder.Specialise(mg, cache)
		if err != nil {
			t.Fatal(err)
		}
		if decoder.IsMerged(sp) {
			t.Error("specialised model still merged")
		}
	}
	tf, err := decoder.TrainForm(mg)
	if err != nil {
		t.Fatal(err)
	}
	it, _ := lm.Read(tf)
	if len(it.Inputs) != 1 || len(it.Outputs) != 1 {
		t.Errorf("merged train form interface %v → %v", it.Inputs, it.Outputs)
	}
	ids := []int64{1, 5, 9, 39, 0, 12}
	_, want := testkit.RunLogits(t, m, 1, ids, nil)
	_, got := testkit.RunLogits(t, tf, 1, ids, nil)
	if d := testkit.MaxDiff(want, got); !(d <= 1e-5) {
		t.Errorf("merged train form logits differ by %g", d)
	}
}

// PyTorch's optimum-style exports (stages' fixtures): the with-past model's and the merged
// decoder's train forms compute the with-past model's logits on a fresh batch.
func TestTrainFormTorchExports(t *testing.T) {
	e := testkit.TorchRandom(t, testkit.TorchTinySpec, 7)
	testkit.ORT(t)
	wp, err := onnx.Load(e.WithPast)
	if err != nil {
		t.Fatal(err)
	}
	defer wp.Close()
	ids := []int64{1, 5, 9, 39, 0, 12, 20, 20, 21, 2, 38, 7}
	_, want := testkit.RunLogits(t, wp, 2, ids, nil)
	for _, p := range []string{e.WithPast, e.Merged} {
		m, err := onnx.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		tf, err := decoder.TrainForm(m)
		if err != nil {
			t.Fatalf("%s: %v", filepath.Base(p), err)
		}
		it, _ := lm.Read(tf)
		if len(it.Inputs) != 1 || it.Inputs[0].Name != lm.InputIDs || len(it.Outputs) != 1 {
			t.Errorf("%s: train form interface %v → %v", filepath.Base(p), it.Inputs, it.Outputs)
		}
		_, got := testkit.RunLogits(t, tf, 2, ids, nil)
		if d := testkit.MaxDiff(want, got); !(d <= 1e-5) {
			t.Errorf("%s: train-form logits differ from the with-past model's by %g", filepath.Base(p), d)
		}
	}
}
