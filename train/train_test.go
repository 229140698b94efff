package train

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/shears-ml/shears/data"
	"github.com/shears-ml/shears/eval"
	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/tokenizer"
	"github.com/shears-ml/shears/transform/trainstep"
)

func randomIDs(n int, seed uint64) []int64 {
	rng := rand.New(rand.NewPCG(seed, 7))
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = rng.Int64N(512)
	}
	return ids
}

// The step graph's loss at step 0 is the model's forward logits run through the loss in Go.
func TestStepLossEqualsForward(t *testing.T) {
	testkit.ORT(t)
	m := stories(t)
	const b, l = 2, 24
	st, err := trainstep.Build(m, trainstep.Config{Batch: b, Seq: l, Trainable: normWeights()})
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ids := randomIDs(b*l, 3)
	got, err := r.Accumulate(ids, ids, 1)
	if err != nil {
		t.Fatal(err)
	}

	// The reference: a plain forward session and eval's float64 next-token NLL.
	raw, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s, err := runtime.OpenBytes(raw, "", runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	windows := make([][]int, b)
	for i := range windows {
		for _, id := range ids[i*l : (i+1)*l] {
			windows[i] = append(windows[i], int(id))
		}
	}
	sum, n, err := eval.WindowNLL(s, windows)
	if err != nil {
		t.Fatal(err)
	}
	want := sum / float64(n)
	if !(math.Abs(got-want) <= 1e-5) {
		t.Fatalf("step loss %.7f, forward + Go loss %.7f (diff %.2g)", got, want, got-want)
	}
	t.Logf("loss %.6f (forward %.6f)", got, want)
}

// arcBatches tokenizes LLM-Adapters ARC-Easy training prompts into n batches of b × l ids.
func arcBatches(t *testing.T, n, b, l int) [][]int64 {
	t.Helper()
	docs, err := data.ReadDocuments(testkit.Dataset(t, "ARC-Easy-train.json"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.LoadLlama2c(testkit.Tok512Shaped(t))
	if err != nil {
		t.Fatal(err)
	}
	need := n * b * l
	var stream []int
	for i := 0; len(stream) < need; i++ {
		stream = append(stream, data.Stream(docs[i:i+1], tok)...)
	}
	out := make([][]int64, n)
	for i := range out {
		out[i] = make([]int64, b*l)
		for k := range out[i] {
			out[i][k] = int64(stream[i*b*l+k])
		}
	}
	return out
}

// Fine-tuning only the RMSNorm weights on a few ARC-Easy prompts lowers the training loss
// steadily over 50 steps.
func TestFineTuneNormsLowersLoss(t *testing.T) {
	testkit.ORT(t)
	m := stories(t)
	const b, l, steps = 4, 32, 50
	st, err := trainstep.Build(m, trainstep.Config{Batch: b, Seq: l, Trainable: normWeights()})
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(st, Options{MaxGradNorm: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	batches := arcBatches(t, 2, b, l)
	losses := make([]float64, steps)
	for s := range losses {
		ids := batches[s%len(batches)]
		if losses[s], err = r.Step(ids, ids, 1e-2); err != nil {
			t.Fatal(err)
		}
	}
	mean := func(v []float64) float64 {
		var s float64
		for _, x := range v {
			s += x
		}
		return s / float64(len(v))
	}
	first, last := mean(losses[:10]), mean(losses[steps-10:])
	t.Logf("loss: first 10 mean %.4f, last 10 mean %.4f; %v", first, last, losses)
	if last > first-0.1 {
		t.Fatalf("training loss did not drop by 0.1: first 10 mean %.4f, last 10 mean %.4f", first, last)
	}
	// Mostly monotone: per-batch loss (same batch every 2 steps) falls in most steps.
	falls := 0
	for s := 2; s < steps; s++ {
		if losses[s] < losses[s-2] {
			falls++
		}
	}
	if falls < (steps-2)*3/4 {
		t.Fatalf("loss fell in only %d of %d same-batch comparisons: %v", falls, steps-2, losses)
	}
}
