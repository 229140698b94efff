package autodiff_test

import (
	"math"
	"math/rand"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/train/gradcheck"
	"github.com/shears-ml/shears/transform/autodiff"
	"google.golang.org/protobuf/proto"
)

// Tolerances of the per-op checks: gradcheck's table (derived in train/gradcheck/tolerance.go),
// TolOp64 for float64 graphs and TolOp32 for ops onnxruntime's CPU provider runs only in float.
const (
	tol64 = gradcheck.TolOp64
	tol32 = gradcheck.TolOp32
)

// opGraph builds a one-op test graph: inputs registered with x/pos become graph inputs with
// random values and are differentiated; the loss is Σ_k ReduceSum(W_k ⊙ out_k) with fixed
// random W_k, so every output element gets a distinct weight.
type opGraph struct {
	t     *testing.T
	b     *onnx.Builder
	dt    onnxpb.TensorProto_DataType
	rng   *rand.Rand
	feeds map[string]*runtime.Tensor
	wrt   []string
}

func (g *opGraph) input(name string, dims []int64, lo, hi float64, wrt bool) string {
	n := int(onnx.NumElements(dims))
	ad := make([]any, len(dims))
	for i, d := range dims {
		ad[i] = d
	}
	g.b.Input(name, g.dt, ad...)
	v := make([]float64, n)
	for i := range v {
		if lo == hi {
			v[i] = g.rng.NormFloat64()
		} else {
			v[i] = lo + (hi-lo)*g.rng.Float64()
		}
	}
	if g.dt == onnxpb.TensorProto_DOUBLE {
		g.feeds[name] = runtime.F64(dims, v)
	} else {
		f := make([]float32, n)
		for i := range v {
			f[i] = float32(v[i])
		}
		g.feeds[name] = runtime.F32(dims, f)
	}
	if wrt {
		g.wrt = append(g.wrt, name)
	}
	return name
}

// x is a differentiable input with N(0,1) values.
func (g *opGraph) x(name string, dims ...int64) string { return g.input(name, dims, 0, 0, true) }

// pos is a differentiable input with values in [0.5, 2] (Sqrt, Log, Pow, Div denominators).
func (g *opGraph) pos(name string, dims ...int64) string { return g.input(name, dims, 0.5, 2, true) }

// frozen is a float initializer that gets no gradient.
func (g *opGraph) frozen(name string, dims ...int64) string {
	v := make([]float64, onnx.NumElements(dims))
	for i := range v {
		v[i] = g.rng.NormFloat64()
	}
	return g.b.Const(name, floatTensor(g.dt, dims, v))
}

func (g *opGraph) ints(v ...int64) string {
	return g.b.Const("ints", onnx.Int64Tensor("", []int64{int64(len(v))}, v))
}

func (g *opGraph) scalar(v float64) string {
	return g.b.Const("scalar", floatTensor(g.dt, nil, []float64{v}))
}

func floatTensor(dt onnxpb.TensorProto_DataType, dims []int64, v []float64) *onnxpb.TensorProto {
	if dt == onnxpb.TensorProto_DOUBLE {
		raw := make([]byte, 8*len(v))
		for i, x := range v {
			putF64(raw[8*i:], x)
		}
		return onnx.NewTensor("", dt, dims, raw)
	}
	f := make([]float32, len(v))
	for i := range v {
		f[i] = float32(v[i])
	}
	return onnx.Float32Tensor("", dims, f)
}

type opCase struct {
	name  string
	opset int64
	f32   bool // onnxruntime's CPU provider has no float64 kernel for the op
	eps   float64
	tol   float64
	ms    bool // imports com.microsoft
	build func(g *opGraph) []string
}

func op(g *opGraph, opType string, ins []string, attrs ...*onnxpb.AttributeProto) []string {
	return []string{g.b.Op(opType, "/"+opType, ins, attrs...)}
}

var ai = onnx.AttrInt
var ais = onnx.AttrInts

func opCases() []opCase {
	return []opCase{
		// MatMul: batched, broadcasting batch dims, 1-D operands, frozen right-hand side.
		{name: "MatMul/batched", build: func(g *opGraph) []string { return op(g, "MatMul", []string{g.x("a", 2, 3, 4), g.x("b", 2, 4, 5)}) }},
		{name: "MatMul/broadcast", build: func(g *opGraph) []string { return op(g, "MatMul", []string{g.x("a", 3, 1, 2, 4), g.x("b", 2, 4, 3)}) }},
		{name: "MatMul/2d-rhs", build: func(g *opGraph) []string { return op(g, "MatMul", []string{g.x("a", 2, 3, 4), g.x("b", 4, 5)}) }},
		{name: "MatMul/1d-lhs", build: func(g *opGraph) []string { return op(g, "MatMul", []string{g.x("a", 4), g.x("b", 2, 4, 3)}) }},
		{name: "MatMul/1d-rhs", build: func(g *opGraph) []string { return op(g, "MatMul", []string{g.x("a", 2, 3, 4), g.x("b", 4)}) }},
		{name: "MatMul/1d-1d", build: func(g *opGraph) []string { return op(g, "MatMul", []string{g.x("a", 4), g.x("b", 4)}) }},
		{name: "MatMul/frozen-W", build: func(g *opGraph) []string { return op(g, "MatMul", []string{g.x("a", 2, 3, 4), g.frozen("W", 4, 5)}) }},
		// Gemm: all transpose flags, alpha/beta, broadcast C.
		{name: "Gemm/plain", build: func(g *opGraph) []string {
			return op(g, "Gemm", []string{g.x("a", 3, 4), g.x("b", 4, 5), g.x("c", 5)}, onnx.AttrFloat("alpha", 0.7), onnx.AttrFloat("beta", 1.3))
		}},
		{name: "Gemm/transA", build: func(g *opGraph) []string {
			return op(g, "Gemm", []string{g.x("a", 4, 3), g.x("b", 4, 5), g.x("c", 3, 1)}, ai("transA", 1))
		}},
		{name: "Gemm/transB", build: func(g *opGraph) []string {
			return op(g, "Gemm", []string{g.x("a", 3, 4), g.x("b", 5, 4)}, ai("transB", 1), onnx.AttrFloat("alpha", 2))
		}},
		{name: "Gemm/transAB", build: func(g *opGraph) []string {
			return op(g, "Gemm", []string{g.x("a", 4, 3), g.x("b", 5, 4), g.x("c", 3, 5)}, ai("transA", 1), ai("transB", 1))
		}},
		// Elementwise binary ops with broadcasting on both sides.
		{name: "Add", build: func(g *opGraph) []string { return op(g, "Add", []string{g.x("a", 2, 3, 4), g.x("b", 3, 1)}) }},
		{name: "Sub", build: func(g *opGraph) []string { return op(g, "Sub", []string{g.x("a", 4), g.x("b", 2, 1, 4)}) }},
		{name: "Mul", build: func(g *opGraph) []string { return op(g, "Mul", []string{g.x("a", 2, 1, 4), g.x("b", 3, 1)}) }},
		{name: "Div", build: func(g *opGraph) []string { return op(g, "Div", []string{g.x("a", 2, 3, 4), g.pos("b", 3, 1)}) }},
		{name: "Sum", build: func(g *opGraph) []string { return op(g, "Sum", []string{g.x("a", 2, 3), g.x("b", 3), g.x("c", 2, 1)}) }},
		{name: "Pow/const-3", build: func(g *opGraph) []string { return op(g, "Pow", []string{g.x("a", 2, 3), g.scalar(3)}) }},
		{name: "Pow/const-2", build: func(g *opGraph) []string { return op(g, "Pow", []string{g.x("a", 2, 3), g.scalar(2)}) }},
		{name: "Pow/const-half", build: func(g *opGraph) []string { return op(g, "Pow", []string{g.pos("a", 2, 3), g.scalar(0.5)}) }},
		{name: "Pow/exponent", build: func(g *opGraph) []string { return op(g, "Pow", []string{g.pos("a", 2, 3), g.x("p", 3)}) }},
		// Unary ops.
		{name: "Sqrt", build: func(g *opGraph) []string { return op(g, "Sqrt", []string{g.pos("a", 2, 3)}) }},
		{name: "Reciprocal", build: func(g *opGraph) []string { return op(g, "Reciprocal", []string{g.pos("a", 2, 3)}) }},
		{name: "Exp", build: func(g *opGraph) []string { return op(g, "Exp", []string{g.x("a", 2, 3)}) }},
		{name: "Log", build: func(g *opGraph) []string { return op(g, "Log", []string{g.pos("a", 2, 3)}) }},
		{name: "Neg", build: func(g *opGraph) []string { return op(g, "Neg", []string{g.x("a", 2, 3)}) }},
		{name: "Abs", build: func(g *opGraph) []string { return op(g, "Abs", []string{g.x("a", 2, 3)}) }},
		{name: "Relu", build: func(g *opGraph) []string { return op(g, "Relu", []string{g.x("a", 3, 4)}) }},
		{name: "Tanh", build: func(g *opGraph) []string { return op(g, "Tanh", []string{g.x("a", 3, 4)}) }},
		{name: "Sigmoid", build: func(g *opGraph) []string { return op(g, "Sigmoid", []string{g.x("a", 3, 4)}) }},
		{name: "Erf", f32: true, build: func(g *opGraph) []string { return op(g, "Erf", []string{g.x("a", 3, 4)}) }},
		{name: "Sin", f32: true, build: func(g *opGraph) []string { return op(g, "Sin", []string{g.x("a", 3, 4)}) }},
		{name: "Cos", f32: true, build: func(g *opGraph) []string { return op(g, "Cos", []string{g.x("a", 3, 4)}) }},
		{name: "Identity", build: func(g *opGraph) []string { return op(g, "Identity", []string{g.x("a", 3, 4)}) }},
		{name: "Dropout/inference", build: func(g *opGraph) []string { return op(g, "Dropout", []string{g.x("a", 3, 4)}) }},
		{name: "Gelu/exact", f32: true, opset: 20, build: func(g *opGraph) []string { return op(g, "Gelu", []string{g.x("a", 3, 4)}) }},
		{name: "Gelu/tanh", opset: 20, build: func(g *opGraph) []string {
			return op(g, "Gelu", []string{g.x("a", 3, 4)}, onnx.AttrString("approximate", "tanh"))
		}},
		{name: "com.microsoft.Gelu", f32: true, ms: true, build: func(g *opGraph) []string {
			out := op(g, "Gelu", []string{g.x("a", 3, 4)})
			last := g.b.Graph().Node[len(g.b.Graph().Node)-1]
			last.Domain = proto.String("com.microsoft")
			return out
		}},
		// Softmax family, on inner and last axes.
		{name: "Softmax/last", build: func(g *opGraph) []string { return op(g, "Softmax", []string{g.x("a", 2, 3, 4)}) }},
		{name: "Softmax/axis1", build: func(g *opGraph) []string { return op(g, "Softmax", []string{g.x("a", 2, 3, 4)}, ai("axis", 1)) }},
		{name: "Softmax/opset11-coerced", opset: 11, build: func(g *opGraph) []string {
			return op(g, "Softmax", []string{g.x("a", 2, 3, 4)}, ai("axis", 1))
		}},
		{name: "LogSoftmax/opset11-default", opset: 11, build: func(g *opGraph) []string {
			return op(g, "LogSoftmax", []string{g.x("a", 2, 3, 4)})
		}},
		{name: "ReduceSum/opset11-attr", opset: 11, build: func(g *opGraph) []string {
			return op(g, "ReduceSum", []string{g.x("a", 2, 3, 4)}, ais("axes", -2), ai("keepdims", 0))
		}},
		{name: "Squeeze/opset11-attr", opset: 11, build: func(g *opGraph) []string {
			return op(g, "Squeeze", []string{g.x("a", 2, 1, 3)}, ais("axes", 1))
		}},
		{name: "LogSoftmax/axis-2", build: func(g *opGraph) []string {
			return op(g, "LogSoftmax", []string{g.x("a", 2, 3, 4)}, ai("axis", -2))
		}},
		// Reductions: attribute axes (≤17), input axes (ReduceSum ≥13, ReduceMean ≥18),
		// negative axes, keepdims 0/1, all axes, noop_with_empty_axes.
		{name: "ReduceMean/attr-keep", build: func(g *opGraph) []string {
			return op(g, "ReduceMean", []string{g.x("a", 2, 3, 4)}, ais("axes", -1), ai("keepdims", 1))
		}},
		{name: "ReduceMean/attr-drop", build: func(g *opGraph) []string {
			return op(g, "ReduceMean", []string{g.x("a", 2, 3, 4)}, ais("axes", 0, -1), ai("keepdims", 0))
		}},
		{name: "ReduceMean/all", build: func(g *opGraph) []string { return op(g, "ReduceMean", []string{g.x("a", 2, 3)}) }},
		{name: "ReduceMean/opset18-input", opset: 18, build: func(g *opGraph) []string {
			return op(g, "ReduceMean", []string{g.x("a", 2, 3, 4), g.ints(-2)}, ai("keepdims", 0))
		}},
		{name: "ReduceSum/input-neg", build: func(g *opGraph) []string {
			return op(g, "ReduceSum", []string{g.x("a", 2, 3, 4), g.ints(-1, 0)}, ai("keepdims", 0))
		}},
		{name: "ReduceSum/keep", build: func(g *opGraph) []string {
			return op(g, "ReduceSum", []string{g.x("a", 2, 3, 4), g.ints(1)})
		}},
		{name: "ReduceSum/noop", build: func(g *opGraph) []string {
			return op(g, "ReduceSum", []string{g.x("a", 2, 3)}, ai("noop_with_empty_axes", 1))
		}},
		{name: "ReduceSumSquare", build: func(g *opGraph) []string {
			return op(g, "ReduceSumSquare", []string{g.x("a", 2, 3, 4)}, ais("axes", 1), ai("keepdims", 0))
		}},
		// LayerNormalization over the last axis and over the last two.
		{name: "LayerNormalization/last", build: func(g *opGraph) []string {
			return op(g, "LayerNormalization", []string{g.x("a", 2, 3, 5), g.x("s", 5), g.x("bias", 5)})
		}},
		{name: "LayerNormalization/axis1", build: func(g *opGraph) []string {
			return op(g, "LayerNormalization", []string{g.x("a", 2, 3, 4), g.x("s", 3, 4)}, ai("axis", 1), onnx.AttrFloat("epsilon", 1e-3))
		}},
		{name: "LayerNormalization/frozen-scale", build: func(g *opGraph) []string {
			return op(g, "LayerNormalization", []string{g.x("a", 2, 6), g.frozen("s", 6)})
		}},
		{name: "LayerNormalization/opset18", opset: 18, build: func(g *opGraph) []string {
			return op(g, "LayerNormalization", []string{g.x("a", 3, 4), g.x("s", 4), g.x("bias", 4)})
		}},
		// One input used three times: the contributions are summed.
		{name: "Mul/fan-out", build: func(g *opGraph) []string {
			a := g.x("a", 2, 3)
			return op(g, "Add", []string{g.b.Op("Mul", "/Mul", []string{a, a}), a})
		}},
		{name: "Where", build: func(g *opGraph) []string {
			c := g.b.Const("cond", onnx.NewTensor("", onnxpb.TensorProto_BOOL, []int64{3, 1}, []byte{1, 0, 1}))
			return op(g, "Where", []string{c, g.x("a", 2, 3, 4), g.x("b", 4)})
		}},
		// Gather: constant scalar index (RoPE pairs), constant index tensor with repeats, and
		// run-time indices (ScatterElements).
		{name: "Gather/scalar-last-axis", build: func(g *opGraph) []string {
			idx := g.b.Const("idx", onnx.Int64Tensor("", nil, []int64{1}))
			return op(g, "Gather", []string{g.x("a", 2, 3, 2), idx}, ai("axis", -1))
		}},
		{name: "Gather/repeats", build: func(g *opGraph) []string {
			idx := g.b.Const("idx", onnx.Int64Tensor("", []int64{2, 2}, []int64{2, 0, 2, -1}))
			return op(g, "Gather", []string{g.x("a", 2, 4, 3), idx}, ai("axis", 1))
		}},
		{name: "Gather/runtime-indices", build: func(g *opGraph) []string {
			g.b.Input("idx", onnxpb.TensorProto_INT64, 3)
			g.feeds["idx"] = runtime.I64([]int64{3}, []int64{4, 1, 4})
			return op(g, "Gather", []string{g.x("a", 5, 3), "idx"})
		}},
		// GatherElements with repeated indices along a negative axis (the loss's target pick).
		{name: "GatherElements", build: func(g *opGraph) []string {
			idx := g.b.Const("idx", onnx.Int64Tensor("", []int64{2, 3, 2}, []int64{0, 3, 3, 3, 1, 0, 2, 2, 0, 1, 3, 0}))
			return op(g, "GatherElements", []string{g.x("a", 2, 3, 4), idx}, ai("axis", -1))
		}},
		// Shape ops.
		{name: "Reshape", build: func(g *opGraph) []string { return op(g, "Reshape", []string{g.x("a", 2, 3, 4), g.ints(0, -1, 2)}) }},
		{name: "Flatten", build: func(g *opGraph) []string { return op(g, "Flatten", []string{g.x("a", 2, 3, 4)}, ai("axis", 2)) }},
		{name: "Transpose", build: func(g *opGraph) []string {
			return op(g, "Transpose", []string{g.x("a", 2, 3, 4)}, ais("perm", 1, 2, 0))
		}},
		{name: "Transpose/default", build: func(g *opGraph) []string { return op(g, "Transpose", []string{g.x("a", 2, 3, 4)}) }},
		{name: "Squeeze", build: func(g *opGraph) []string { return op(g, "Squeeze", []string{g.x("a", 2, 1, 3, 1), g.ints(-1)}) }},
		{name: "Unsqueeze", build: func(g *opGraph) []string { return op(g, "Unsqueeze", []string{g.x("a", 2, 3), g.ints(0, -1)}) }},
		{name: "Concat", build: func(g *opGraph) []string {
			return op(g, "Concat", []string{g.x("a", 2, 1, 3), g.frozen("f", 2, 2, 3), g.x("b", 2, 3, 3)}, ai("axis", -2))
		}},
		{name: "Split/sizes", build: func(g *opGraph) []string {
			return g.b.OpN("Split", "/Split", []string{g.x("a", 2, 6), g.ints(1, 2, 3)}, 3, ai("axis", -1))
		}},
		{name: "Split/unused-output", build: func(g *opGraph) []string {
			outs := g.b.OpN("Split", "/Split", []string{g.x("a", 4, 3)}, 2)
			return outs[:1]
		}},
		{name: "Split/opset11-attr", opset: 11, build: func(g *opGraph) []string {
			return g.b.OpN("Split", "/Split", []string{g.x("a", 2, 5)}, 2, ai("axis", 1), ais("split", 3, 2))
		}},
		{name: "Concat/opset11", opset: 11, build: func(g *opGraph) []string {
			return op(g, "Concat", []string{g.x("a", 2, 1), g.x("b", 2, 3)}, ai("axis", 1))
		}},
		{name: "Split/opset18-num_outputs", opset: 18, build: func(g *opGraph) []string {
			return g.b.OpN("Split", "/Split", []string{g.x("a", 2, 5)}, 2, ai("axis", 1), ai("num_outputs", 2))
		}},
		{name: "Slice/step1", build: func(g *opGraph) []string {
			return op(g, "Slice", []string{g.x("a", 4, 5, 3), g.ints(1, -4), g.ints(3, 100), g.ints(0, 1)})
		}},
		{name: "Slice/step2", build: func(g *opGraph) []string {
			return op(g, "Slice", []string{g.x("a", 4, 5), g.ints(0), g.ints(5), g.ints(-1), g.ints(2)})
		}},
		{name: "Slice/negative-step", build: func(g *opGraph) []string {
			return op(g, "Slice", []string{g.x("a", 4, 5), g.ints(-1, 3), g.ints(-100, 0), g.ints(0, 1), g.ints(-2, -1)})
		}},
		{name: "Expand", build: func(g *opGraph) []string { return op(g, "Expand", []string{g.x("a", 3, 1), g.ints(2, 3, 4)}) }},
		// Cast float64 → float32 → float64: float32 rounding makes the function a staircase
		// with steps ~1e-7, so the difference step is 1e-2 and the float32 tolerance applies.
		{name: "Cast", eps: 1e-2, tol: tol32, build: func(g *opGraph) []string {
			c := g.b.Op("Cast", "/Cast", []string{g.x("a", 2, 3)}, ai("to", int64(onnxpb.TensorProto_FLOAT)))
			return op(g, "Cast", []string{c}, ai("to", int64(onnxpb.TensorProto_DOUBLE)))
		}},
		{name: "Einsum/matmul", build: func(g *opGraph) []string {
			return op(g, "Einsum", []string{g.x("a", 2, 3, 4), g.x("b", 2, 4, 5)}, onnx.AttrString("equation", "bij,bjk->bik"))
		}},
		{name: "Einsum/outer-implicit", build: func(g *opGraph) []string {
			return op(g, "Einsum", []string{g.x("a", 3), g.x("b", 4)}, onnx.AttrString("equation", "i,j"))
		}},
		{name: "Einsum/summed-label", build: func(g *opGraph) []string {
			return op(g, "Einsum", []string{g.x("a", 3, 4), g.x("b", 3)}, onnx.AttrString("equation", "ij,i->i"))
		}},
	}
}

// TestRulesAgainstFiniteDifferences checks every rule on a one-op graph through onnxruntime.
func TestRulesAgainstFiniteDifferences(t *testing.T) {
	testkit.ORT(t)
	seen := map[string]bool{}
	worst := map[float64]float64{} // by tolerance class
	for i, tc := range opCases() {
		t.Run(tc.name, func(t *testing.T) {
			res, tol := runOpCase(t, tc, i)
			w := checkResults(t, res, tol)
			worst[tol] = max(worst[tol], w)
		})
		seen[opOf(tc.name)] = true
	}
	t.Logf("%d cases; worst max-relative error: %.3g where the tolerance is %g, %.3g where it is %g",
		len(opCases()), worst[tol64], tol64, worst[tol32], tol32)
	// The registry, not a hand-kept list: a rule added without a case fails here.
	for _, op := range autodiff.SupportedOps() {
		if !seen[op] {
			t.Errorf("op %s has a gradient rule but no finite-difference case", op)
		}
	}
}

// runOpCase builds case i (float64 unless the op needs float32), runs the finite-difference
// check and returns its results with the tolerance that applies.
func runOpCase(t *testing.T, tc opCase, i int) ([]gradcheck.Result, float64) {
	t.Helper()
	dt := onnxpb.TensorProto_DOUBLE
	tol := tol64
	if tc.f32 {
		dt, tol = onnxpb.TensorProto_FLOAT, tol32
	}
	if tc.tol != 0 {
		tol = tc.tol
	}
	m, g := buildOpCase(t, tc, dt, int64(i))
	res, err := gradcheck.Check(m, "loss", g.wrt, g.feeds, gradcheck.Options{Seed: int64(i), Eps: tc.eps})
	if err != nil {
		t.Fatal(err)
	}
	return res, tol
}

// TestHarnessRejectsWrongRules proves the check above can fail: for every rule in the registry,
// the first case of its op runs with the rule sabotaged (each input gradient it returns scaled
// by 1.01, then multiplied by NaN) and the harness must report a failure. A 1% error is far
// below what a real bug gives and still 10⁴ × TolOp64 and 2 × TolOp32.
func TestHarnessRejectsWrongRules(t *testing.T) {
	testkit.ORT(t)
	cases := opCases()
	first := map[string]int{}
	for i := len(cases) - 1; i >= 0; i-- {
		first[opOf(cases[i].name)] = i
	}
	checked := 0
	for _, op := range autodiff.SupportedOps() {
		i, ok := first[op]
		if !ok {
			continue // TestRulesAgainstFiniteDifferences reports the missing case
		}
		for _, factor := range []float64{1.01, math.NaN()} {
			restore := autodiff.Sabotage(op, factor)
			res, tol := runOpCase(t, cases[i], i)
			restore()
			if f := gradcheck.Failures(res, tol); len(f) == 0 {
				t.Errorf("%s with its rule's gradients × %g: the finite-difference check passed (it must fail)", cases[i].name, factor)
			}
			checked++
		}
	}
	if checked == 0 {
		t.Fatal("no rule was sabotaged")
	}
	// The real rules pass again once restored (the sabotage is scoped).
	if res, tol := runOpCase(t, cases[0], 0); len(gradcheck.Failures(res, tol)) != 0 {
		t.Errorf("%s fails after the sabotage was undone: %v", cases[0].name, gradcheck.Failures(res, tol))
	}
}

func opOf(name string) string {
	for i, c := range name {
		if c == '/' {
			return name[:i]
		}
	}
	return name
}

func buildOpCase(t *testing.T, tc opCase, dt onnxpb.TensorProto_DataType, seed int64) (*onnx.Model, *opGraph) {
	t.Helper()
	opset := tc.opset
	if opset == 0 {
		opset = 17
	}
	b := onnx.NewBuilder("op", opset)
	g := &opGraph{t: t, b: b, dt: dt, rng: rand.New(rand.NewSource(seed + 1)), feeds: map[string]*runtime.Tensor{}}
	outs := tc.build(g)
	m, err := b.Model()
	if err != nil {
		t.Fatal(err)
	}
	if tc.ms {
		m.Proto.OpsetImport = append(m.Proto.OpsetImport, &onnxpb.OperatorSetIdProto{Domain: proto.String("com.microsoft"), Version: proto.Int64(1)})
	}
	types, err := autodiff.InferShapes(m, nil)
	if err != nil {
		t.Fatal(err)
	}
	var terms []string
	for _, o := range outs {
		w := g.frozen("w", types[o].Shape...)
		terms = append(terms, b.Op("ReduceSum", "/loss/ReduceSum", []string{b.Op("Mul", "/loss/Mul", []string{w, o})}, ai("keepdims", 0)))
	}
	loss := terms[0]
	if len(terms) > 1 {
		loss = b.Op("Sum", "/loss/Sum", terms)
	}
	b.OpOut("Identity", "/loss/Identity", []string{loss}, []string{"loss"})
	b.Output("loss", dt)
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	return m, g
}
