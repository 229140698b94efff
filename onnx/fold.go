package onnx

import (
	"cmp"
	"math"
	"slices"

	"github.com/shears-ml/shears/onnx/onnxpb"
)

// Constant folding for shape inference. Every function returns nil when it cannot fold (an input
// unknown, a result too large, a value undefined such as a division by zero): folding is an
// optimisation of inference, never a source of errors.

// foldable reports whether out is a fully known shape small enough to fold.
func foldable(out TensorType) bool {
	if out.Shape == nil || slices.Contains(out.Shape, -1) {
		return false
	}
	n := NumElements(out.Shape)
	return n >= 0 && n <= foldCap && (isIntDT(out.Elem) || isFloatDT(out.Elem))
}

// bcastIndex maps each flat index of out to the flat index of in under broadcasting.
func bcastIndex(out, in []int64) []int {
	n := int(NumElements(out))
	idx := make([]int, n)
	off := len(out) - len(in)
	strides := stridesOf(in)
	for i := 0; i < n; i++ {
		rem := int64(i)
		src := int64(0)
		for a := len(out) - 1; a >= 0; a-- {
			c := rem % out[a]
			rem /= out[a]
			if b := a - off; b >= 0 && in[b] != 1 {
				src += c * strides[b]
			}
		}
		idx[i] = int(src)
	}
	return idx
}

func foldUnary(op string, c *cval) *cval {
	if c == nil {
		return nil
	}
	switch op {
	case "Identity":
		return c
	case "Neg", "Abs", "Not":
	case "Sqrt", "Floor", "Ceil":
		if c.flts == nil {
			return nil
		}
	default:
		return nil
	}
	r := &cval{dt: c.dt, dims: c.dims}
	if c.ints != nil {
		r.ints = make([]int64, len(c.ints))
		for i, v := range c.ints {
			switch op {
			case "Neg":
				r.ints[i] = -v
			case "Abs":
				r.ints[i] = max(v, -v)
			case "Not":
				r.ints[i] = b2i(v == 0)
			}
		}
		return r
	}
	if op == "Not" {
		return nil
	}
	r.flts = make([]float64, len(c.flts))
	for i, v := range c.flts {
		switch op {
		case "Neg":
			r.flts[i] = -v
		case "Abs":
			r.flts[i] = math.Abs(v)
		case "Sqrt":
			r.flts[i] = math.Sqrt(v)
		case "Floor":
			r.flts[i] = math.Floor(v)
		case "Ceil":
			r.flts[i] = math.Ceil(v)
		}
	}
	return r
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// foldElementwise folds broadcasting ops (arithmetic, comparisons, Where, Expand).
func foldElementwise(op string, out TensorType, cs []*cval) *cval {
	if !foldable(out) || len(cs) == 0 {
		return nil
	}
	for _, c := range cs {
		if c == nil {
			return nil
		}
	}
	idx := make([][]int, len(cs))
	for k, c := range cs {
		if NumElements(c.dims) != int64(c.size()) {
			return nil
		}
		idx[k] = bcastIndex(out.Shape, c.dims)
	}
	res := newCval(out.Elem, out.Shape)
	n := res.size()
	switch op {
	case "Expand":
		for i := 0; i < n; i++ {
			copyElem(res, i, cs[0], idx[0][i])
		}
		return res
	case "Where":
		cond := cs[0].asInts()
		for i := 0; i < n; i++ {
			src := 2
			if cond[idx[0][i]] != 0 {
				src = 1
			}
			copyElem(res, i, cs[src], idx[src][i])
		}
		return res
	case "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual":
		useF := cs[0].flts != nil || cs[1].flts != nil
		a, b := cs[0], cs[1]
		for i := 0; i < n; i++ {
			var c int
			if useF {
				x, y := a.asFloats()[idx[0][i]], b.asFloats()[idx[1][i]]
				c = cmp.Compare(x, y)
				if math.IsNaN(x) || math.IsNaN(y) {
					res.ints[i] = 0
					continue
				}
			} else {
				x, y := a.ints[idx[0][i]], b.ints[idx[1][i]]
				c = cmp.Compare(x, y)
			}
			res.ints[i] = b2i((op == "Equal" && c == 0) || (op == "Less" && c < 0) || (op == "Greater" && c > 0) ||
				(op == "LessOrEqual" && c <= 0) || (op == "GreaterOrEqual" && c >= 0))
		}
		return res
	}
	if res.flts != nil {
		step := floatStep(op)
		if step == nil || !combine(floatsOf(cs), idx, res.flts, step) {
			return nil
		}
		if op == "Mean" {
			for i := range res.flts {
				res.flts[i] /= float64(len(cs))
			}
		}
		return res
	}
	step := intStep(op)
	if step == nil || !combine(intsOf(cs), idx, res.ints, step) {
		return nil
	}
	return res
}

// combine sets out[i] to the operands' elements at i (through their broadcast indices idx)
// folded left to right by step; false when step refuses a pair (a zero divisor).
func combine[T int64 | float64](vals [][]T, idx [][]int, out []T, step func(acc, y T) (T, bool)) bool {
	for i := range out {
		acc := vals[0][idx[0][i]]
		for k := 1; k < len(vals); k++ {
			var ok bool
			if acc, ok = step(acc, vals[k][idx[k][i]]); !ok {
				return false
			}
		}
		out[i] = acc
	}
	return true
}

func floatsOf(cs []*cval) [][]float64 {
	v := make([][]float64, len(cs))
	for k, c := range cs {
		v[k] = c.asFloats()
	}
	return v
}

func intsOf(cs []*cval) [][]int64 {
	v := make([][]int64, len(cs))
	for k, c := range cs {
		v[k] = c.asInts()
	}
	return v
}

// floatStep is op's pairwise step on floats (Mean sums; the caller divides), nil when it has none.
func floatStep(op string) func(acc, y float64) (float64, bool) {
	var f func(a, b float64) float64
	switch op {
	case "Add", "Sum", "Mean":
		f = func(a, b float64) float64 { return a + b }
	case "Sub":
		f = func(a, b float64) float64 { return a - b }
	case "Mul":
		f = func(a, b float64) float64 { return a * b }
	case "Div":
		f = func(a, b float64) float64 { return a / b }
	case "Pow":
		f = math.Pow
	case "Max":
		f = math.Max
	case "Min":
		f = math.Min
	default:
		return nil
	}
	return func(a, b float64) (float64, bool) { return f(a, b), true }
}

// intStep is op's pairwise step on integers (false for a zero divisor), nil when it has none.
func intStep(op string) func(acc, y int64) (int64, bool) {
	switch op {
	case "Add", "Sum":
		return func(a, b int64) (int64, bool) { return a + b, true }
	case "Sub":
		return func(a, b int64) (int64, bool) { return a - b, true }
	case "Mul":
		return func(a, b int64) (int64, bool) { return a * b, true }
	case "Div":
		return func(a, b int64) (int64, bool) {
			if b == 0 {
				return 0, false
			}
			return a / b, true
		}
	case "Mod":
		return func(a, b int64) (int64, bool) {
			if b == 0 {
				return 0, false
			}
			r := a % b
			if r != 0 && (r < 0) != (b < 0) { // sign of the divisor, as ONNX Mod with fmod=0
				r += b
			}
			return r, true
		}
	case "Max":
		return func(a, b int64) (int64, bool) { return max(a, b), true }
	case "Min":
		return func(a, b int64) (int64, bool) { return min(a, b), true }
	case "And":
		return func(a, b int64) (int64, bool) { return b2i(a != 0 && b != 0), true }
	case "Or":
		return func(a, b int64) (int64, bool) { return b2i(a != 0 || b != 0), true }
	case "Xor":
		return func(a, b int64) (int64, bool) { return b2i((a != 0) != (b != 0)), true }
	}
	return nil
}

// castVal converts a folded tensor to type to, wrapping integers to the target width.
func castVal(c *cval, to onnxpb.TensorProto_DataType) *cval {
	if c == nil || !(isIntDT(to) || isFloatDT(to)) {
		return nil
	}
	r := &cval{dt: to, dims: c.dims}
	if isFloatDT(to) {
		r.flts = make([]float64, c.size())
		for i, v := range c.asFloats() {
			if to == onnxpb.TensorProto_FLOAT {
				v = float64(float32(v))
			}
			r.flts[i] = v
		}
		return r
	}
	r.ints = make([]int64, c.size())
	for i := range r.ints {
		var v int64
		if c.ints != nil {
			v = c.ints[i]
		} else {
			f := c.flts[i]
			if to == onnxpb.TensorProto_BOOL {
				r.ints[i] = b2i(f != 0)
				continue
			}
			if math.IsNaN(f) || math.Abs(f) >= 1<<63 {
				return nil
			}
			v = int64(f)
		}
		switch to {
		case onnxpb.TensorProto_BOOL:
			v = b2i(v != 0)
		case onnxpb.TensorProto_INT32:
			v = int64(int32(v))
		case onnxpb.TensorProto_INT16:
			v = int64(int16(v))
		case onnxpb.TensorProto_INT8:
			v = int64(int8(v))
		case onnxpb.TensorProto_UINT32:
			v = int64(uint32(v))
		case onnxpb.TensorProto_UINT16:
			v = int64(uint16(v))
		case onnxpb.TensorProto_UINT8:
			v = int64(uint8(v))
		}
		r.ints[i] = v
	}
	return r
}

// foldGather folds Gather along axis ax.
func foldGather(data, indices *cval, ax int, out TensorType) *cval {
	if data == nil || indices == nil || !foldable(out) {
		return nil
	}
	if NumElements(data.dims) != int64(data.size()) || ax >= len(data.dims) {
		return nil
	}
	dim := data.dims[ax]
	outer := NumElements(data.dims[:ax])
	inner := NumElements(data.dims[ax+1:])
	idx := indices.asInts()
	res := newCval(out.Elem, out.Shape)
	if int64(res.size()) != outer*int64(len(idx))*inner {
		return nil
	}
	pos := 0
	for o := int64(0); o < outer; o++ {
		for _, k := range idx {
			if k < 0 {
				k += dim
			}
			if k < 0 || k >= dim {
				return nil
			}
			for j := int64(0); j < inner; j++ {
				copyElem(res, pos, data, int((o*dim+k)*inner+j))
				pos++
			}
		}
	}
	return res
}
