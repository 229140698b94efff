package models

import (
	"math"

	"github.com/shears-ml/shears/onnx"
)

// GeluTanh appends GELU's tanh approximation 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) (GPT-2's
// and Gemma's activation) as the node chain torch exports, named under prefix p, and returns its
// output. f32 gives the scalar constants (a family's table of shared constants).
func GeluTanh(b *onnx.Builder, p, x string, f32 func(name string, v float32) string) string {
	x3 := b.Op("Pow", p+"/Pow", []string{x, f32("three", 3)})
	c := b.Op("Mul", p+"/Mul", []string{x3, f32("gelu_c", 0.044715)})
	in := b.Op("Add", p+"/Add", []string{x, c})
	in = b.Op("Mul", p+"/Mul_1", []string{in, f32("sqrt_2_over_pi", float32(math.Sqrt(2/math.Pi)))})
	th := b.Op("Tanh", p+"/Tanh", []string{in})
	one := b.Op("Add", p+"/Add_1", []string{th, f32("one", 1)})
	hx := b.Op("Mul", p+"/Mul_2", []string{x, f32("half", 0.5)})
	return b.Op("Mul", p+"/Mul_3", []string{hx, one})
}
