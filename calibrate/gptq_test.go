package calibrate

import (
	"testing"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/transform/layers"
	"github.com/shears-ml/shears/transform/quant"
)

// captureHessians runs the model with the given weights replaced and the tensors exposed, and
// returns 2/T·XᵀX for each (T tokens over all windows), accumulated in float64 here.
func captureHessians(t *testing.T, base *onnx.Model, repl map[string]*onnxpb.TensorProto, tensors []string, windows [][]int) map[string][]float64 {
	t.Helper()
	hs := map[string][]float64{}
	tokens := 0
	for _, w := range windows {
		tokens += len(w)
	}
	runExposed(t, base, repl, tensors, windows, func(x string, v *runtime.Tensor) {
		in := int(v.Shape[len(v.Shape)-1])
		if hs[x] == nil {
			hs[x] = make([]float64, in*in)
		}
		for r := 0; r < len(v.F32)/in; r++ {
			row := v.F32[r*in : (r+1)*in]
			for a, xa := range row {
				for b, xb := range row {
					hs[x][a*in+b] += float64(xa) * float64(xb)
				}
			}
		}
	})
	for _, h := range hs {
		for i := range h {
			h[i] *= 2 / float64(tokens)
		}
	}
	return hs
}

// TestGPTQSequentialMatchesIndependentHessians checks calibration's GPTQ against Hessians
// computed here from activations captured independently: block 0 on the float model, block 1
// on the model whose block 0 holds GPTQ's dequantized weights (the sequential rule). The
// stage graphs accumulate XᵀX in float32, so a code may flip where a value sits on a rounding
// boundary: at most 0.1% of codes may differ, and grids agree to 1e-3.
func TestGPTQSequentialMatchesIndependentHessians(t *testing.T) {
	f := setup(t)
	c := quant.Config{Bits: 4, BlockSize: 32}
	got, tm, err := GPTQ(f.m, f.targets, c, f.windows, quant.GPTQOptions{Damp: 0.01}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 35 || tm.Sessions != 3 {
		t.Fatalf("%d layers quantized with %d sessions; want 35 and 3", len(got), tm.Sessions)
	}
	repl := map[string]*onnxpb.TensorProto{}
	for block := 0; block < 2; block++ {
		var ls []layers.Linear
		inputs := map[string]bool{}
		var tensors []string
		for _, l := range f.targets {
			if l.Block == block {
				ls = append(ls, l)
				if !inputs[l.Input] {
					inputs[l.Input] = true
					tensors = append(tensors, l.Input)
				}
			}
		}
		hs := captureHessians(t, f.m, repl, tensors, f.windows)
		var diff, total int
		for _, l := range ls {
			w, err := quant.Weight(f.m, l)
			if err != nil {
				t.Fatal(err)
			}
			want, err := quant.GPTQ(w, int(l.In), int(l.Out), hs[l.Input], c, quant.GPTQOptions{Damp: 0.01})
			if err != nil {
				t.Fatal(err)
			}
			q := got[l.Node]
			for i := range want.Codes {
				if want.Codes[i] != q.Codes[i] {
					diff++
				}
			}
			total += len(want.Codes)
			for i := range want.Scales {
				if d := float64(want.Scales[i] - q.Scales[i]); !(d <= 1e-3*float64(want.Scales[i])+1e-9 && -d <= 1e-3*float64(want.Scales[i])+1e-9) {
					t.Fatalf("block %d %s scale %d: %g, independent %g", block, l.Node, i, q.Scales[i], want.Scales[i])
				}
			}
			tp := f.m.Initializer(l.Weight)
			raw, err := encodeWeight(q.Dequant(), l, onnx.DataType(tp))
			if err != nil {
				t.Fatal(err)
			}
			repl[l.Weight] = onnx.NewTensor(l.Weight, onnx.DataType(tp), onnx.Dims(tp), raw)
		}
		if !(float64(diff) <= 0.001*float64(total)) {
			t.Fatalf("block %d: %d of %d codes differ from the independent computation", block, diff, total)
		}
		t.Logf("block %d: %d of %d codes differ (float32 vs float64 Hessian accumulation)", block, diff, total)
	}
}
