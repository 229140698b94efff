package onnx

import (
	"math"
	"slices"
	"testing"

	"github.com/shears-ml/shears/onnx/onnxpb"
)

// Every broadcasting op folds to the values ONNX defines, with the second operand broadcast
// from [2] to [2, 2]; the expectations are written out by hand. A zero integer divisor and an
// op without a fold leave the value unfolded (nil).
func TestFoldElementwiseValues(t *testing.T) {
	i64, f32 := onnxpb.TensorProto_INT64, onnxpb.TensorProto_FLOAT
	ints := func(dims []int64, v ...int64) *cval { return &cval{dt: i64, dims: dims, ints: v} }
	flts := func(dims []int64, v ...float64) *cval { return &cval{dt: f32, dims: dims, flts: v} }
	a, b := ints([]int64{2, 2}, 7, -7, 6, 0), ints([]int64{2}, 3, -2)
	for op, want := range map[string][]int64{
		"Add": {10, -9, 9, -2}, "Sub": {4, -5, 3, 2}, "Mul": {21, 14, 18, 0},
		"Div": {2, 3, 2, 0},  // truncated toward zero
		"Mod": {1, -1, 0, 0}, // the divisor's sign
		"Max": {7, -2, 6, 0}, "Min": {3, -7, 3, -2},
		"And": {1, 1, 1, 0}, "Or": {1, 1, 1, 1}, "Xor": {0, 0, 0, 1},
	} {
		got := foldElementwise(op, TensorType{Elem: i64, Shape: []int64{2, 2}}, []*cval{a, b})
		if got == nil || !slices.Equal(got.ints, want) {
			t.Errorf("int %s: %v, want %v", op, got, want)
		}
	}
	x, y := flts([]int64{2, 2}, 1, 4, 9, -2), flts([]int64{2}, 2, 0.5)
	for op, want := range map[string][]float64{
		"Add": {3, 4.5, 11, -1.5}, "Sub": {-1, 3.5, 7, -2.5}, "Mul": {2, 2, 18, -1}, "Div": {0.5, 8, 4.5, -4},
		"Pow": {1, 2, 81, math.NaN()}, "Max": {2, 4, 9, 0.5}, "Min": {1, 0.5, 2, -2}, "Mean": {1.5, 2.25, 5.5, -0.75},
	} {
		got := foldElementwise(op, TensorType{Elem: f32, Shape: []int64{2, 2}}, []*cval{x, y})
		if got == nil || len(got.flts) != 4 {
			t.Fatalf("float %s: %v", op, got)
		}
		for i, w := range want {
			if g := got.flts[i]; !(g == w || math.IsNaN(g) && math.IsNaN(w)) {
				t.Errorf("float %s: %v, want %v", op, got.flts, want)
				break
			}
		}
	}
	if got := foldElementwise("Sum", TensorType{Elem: i64, Shape: []int64{2}}, []*cval{ints([]int64{2}, 1, 2), ints([]int64{2}, 3, 4), ints([]int64{1}, 10)}); got == nil || !slices.Equal(got.ints, []int64{14, 16}) {
		t.Errorf("three-operand Sum: %v, want [14 16]", got)
	}
	for _, op := range []string{"Div", "Mod"} {
		if got := foldElementwise(op, TensorType{Elem: i64, Shape: []int64{2, 2}}, []*cval{a, ints([]int64{2}, 1, 0)}); got != nil {
			t.Errorf("int %s by zero folded to %v", op, got)
		}
	}
	if got := foldElementwise("Mod", TensorType{Elem: f32, Shape: []int64{2, 2}}, []*cval{x, y}); got != nil {
		t.Errorf("float Mod (no fold) gave %v", got)
	}
}
