package trainstep

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
)

// lossGraph is logits = Identity(x) [b, t, v] with the causal-LM loss appended.
func lossGraph(t *testing.T, b, tt, v int64) []byte {
	t.Helper()
	bl := onnx.NewBuilder("loss", 17)
	x := bl.Input("x", onnxpb.TensorProto_FLOAT, b, tt, v)
	bl.OpOut("Identity", "/id", []string{x}, []string{"logits"})
	bl.Output("logits", onnxpb.TensorProto_FLOAT, b, tt, v)
	m, err := bl.Model()
	if err != nil {
		t.Fatal(err)
	}
	if err := AddCausalLMLoss(m, LossNames{}); err != nil {
		t.Fatal(err)
	}
	raw, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// goLoss is the reference: mean over t < T−1 with labels[t+1] ≠ −100 of −log softmax(x[t])[labels[t+1]].
func goLoss(x []float32, labels []int64, b, tt, v int) float64 {
	var sum float64
	n := 0
	for i := 0; i < b; i++ {
		for j := 0; j+1 < tt; j++ {
			y := labels[i*tt+j+1]
			if y == IgnoreIndex {
				continue
			}
			row := x[(i*tt+j)*v : (i*tt+j+1)*v]
			mx := math.Inf(-1)
			for _, z := range row {
				mx = math.Max(mx, float64(z))
			}
			var se float64
			for _, z := range row {
				se += math.Exp(float64(z) - mx)
			}
			sum += mx + math.Log(se) - float64(row[y])
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

func TestCausalLMLossMatchesGo(t *testing.T) {
	testkit.ORT(t)
	const b, tt, v = 2, 5, 7
	s, err := runtime.OpenBytes(lossGraph(t, b, tt, v), "", runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, b*tt*v)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * 3)
	}
	// Row 0: positions 2 and 4 ignored; row 1 all counted (label 0 at position 1 counts).
	labels := []int64{5, 1, IgnoreIndex, 3, IgnoreIndex, 6, 0, 2, 2, 4}
	run := func(x []float32, labels []int64) float64 {
		t.Helper()
		out, err := s.Run(map[string]*runtime.Tensor{
			"x": runtime.F32([]int64{b, tt, v}, x), "labels": runtime.I64([]int64{b, tt}, labels)}, []string{"loss"})
		if err != nil {
			t.Fatal(err)
		}
		return float64(out["loss"].F32[0])
	}
	got, want := run(x, labels), goLoss(x, labels, b, tt, v)
	if !(math.Abs(got-want) <= 1e-5*math.Max(1, want)) {
		t.Fatalf("loss %v, Go reference %v", got, want)
	}
	if want < 1 {
		t.Fatalf("reference loss %v suspiciously small for random logits", want)
	}

	// Changing logits where the next label is ignored (row 0, t = 1 and 3) or at the last
	// position (nothing to predict) leaves the loss unchanged.
	y := append([]float32(nil), x...)
	for _, pos := range [][2]int{{0, 1}, {0, 3}, {0, 4}, {1, 4}} {
		for k := 0; k < v; k++ {
			y[(pos[0]*tt+pos[1])*v+k] += float32(rng.NormFloat64() * 10)
		}
	}
	if got2 := run(y, labels); got2 != got {
		t.Fatalf("loss changed from %v to %v when only ignored positions' logits changed", got, got2)
	}
	// ... while changing a counted position does change it.
	y[(1*tt+0)*v+2] += 5
	if got3 := run(y, labels); got3 == got {
		t.Fatalf("loss unchanged (%v) after changing a counted position's logits", got3)
	}

	// Nothing counted: loss 0, not NaN.
	none := make([]int64, b*tt)
	for i := range none {
		none[i] = IgnoreIndex
	}
	none[0], none[tt] = 3, 4 // first tokens are never targets
	if got := run(x, none); got != 0 {
		t.Fatalf("loss with no counted label = %v, want 0", got)
	}
}

func TestCausalLMLossErrors(t *testing.T) {
	bl := onnx.NewBuilder("bad", 17)
	x := bl.Input("x", onnxpb.TensorProto_FLOAT, "b", "t", "v")
	bl.OpOut("Identity", "/id", []string{x}, []string{"logits"})
	bl.Output("logits", onnxpb.TensorProto_FLOAT, "b", "t", "v")
	m, _ := bl.Model()
	if err := AddCausalLMLoss(m, LossNames{}); err == nil {
		t.Fatal("symbolic vocabulary accepted")
	}
	if err := AddCausalLMLoss(m, LossNames{Logits: "nope"}); err == nil {
		t.Fatal("missing logits accepted")
	}
}
