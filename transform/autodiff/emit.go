package autodiff

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// emitter writes gradient nodes: ops, shared constants, and the shape-static helpers the
// rules are made of (unbroadcast, reductions in the model opset's form).
type emitter struct {
	m      *onnx.Model
	b      *onnx.Builder
	types  map[string]onnx.TensorType
	folded map[string][]int64 // int tensors shape inference folded (shape computations)
	ix     *onnx.Index
	opset  int64
	consts map[string]string
}

// ctx is what a rule sees: the forward node, the gradients of its outputs ("" where an output
// gets none) and which inputs need a gradient.
type ctx struct {
	*emitter
	n    *onnxpb.NodeProto
	gout []string
	need []bool
}

// Rule returns the gradient of each input of c.n (index-aligned with its inputs) given the
// output gradients; entries for inputs that need no gradient may be "".
type Rule func(c *ctx) ([]string, error)

func (e *emitter) op(opType, name string, ins []string, attrs ...*onnxpb.AttributeProto) string {
	return e.b.Op(opType, name, ins, attrs...)
}

// in returns input k's name ("" when absent).
func (c *ctx) in(k int) string {
	if k < len(c.n.GetInput()) {
		return c.n.GetInput()[k]
	}
	return ""
}

// out returns output k's name.
func (c *ctx) out(k int) string { return c.n.GetOutput()[k] }

// emit adds a gradient node named after the forward node.
func (c *ctx) emit(opType string, ins []string, attrs ...*onnxpb.AttributeProto) string {
	return c.b.Op(opType, gradNode(c.n.GetName())+"/"+opType, ins, attrs...)
}

// g returns the gradient of output k, or zeros of its shape when it gets none.
func (c *ctx) g(k int) string {
	if k < len(c.gout) && c.gout[k] != "" {
		return c.gout[k]
	}
	t := c.types[c.out(k)]
	return c.zeros(t.Elem, t.Shape)
}

func (c *ctx) shape(name string) []int64 { return c.types[name].Shape }
func (c *ctx) dt(name string) onnxpb.TensorProto_DataType {
	return c.types[name].Elem
}

// static checks that name has a fully known shape and returns it.
func (c *ctx) static(name string) ([]int64, error) {
	t, ok := c.types[name]
	if !ok || t.Shape == nil {
		return nil, fmt.Errorf("tensor %q has an unknown shape (give InputDims for the graph inputs)", name)
	}
	for _, d := range t.Shape {
		if d < 0 {
			return nil, fmt.Errorf("tensor %q has a symbolic shape %v (give InputDims for the graph inputs)", name, t.Shape)
		}
	}
	return t.Shape, nil
}

// constInts returns the value of a constant int tensor input (initializer or Constant node, or
// one shape inference folded from static shapes, as torch's Shape → Gather → Div chains).
func (c *ctx) constInts(name, what string) ([]int64, error) {
	t := c.ix.ConstantValue(name)
	if t == nil {
		if v, ok := c.folded[name]; ok {
			return v, nil
		}
		return nil, fmt.Errorf("%s %q is computed at run time; the rule needs a constant", what, name)
	}
	v, err := c.m.Int64s(t)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", what, name, err)
	}
	return v, nil
}

func (c *ctx) attrInt(name string, def int64) int64 {
	for _, a := range c.n.GetAttribute() {
		if a.GetName() == name {
			return a.GetI()
		}
	}
	return def
}

func (c *ctx) attrFloat(name string, def float32) float32 {
	for _, a := range c.n.GetAttribute() {
		if a.GetName() == name {
			return a.GetF()
		}
	}
	return def
}

func (c *ctx) attrString(name, def string) string {
	for _, a := range c.n.GetAttribute() {
		if a.GetName() == name {
			return string(a.GetS())
		}
	}
	return def
}

func (c *ctx) attrInts(name string) ([]int64, bool) {
	for _, a := range c.n.GetAttribute() {
		if a.GetName() == name {
			return a.GetInts(), true
		}
	}
	return nil, false
}

// scalar returns a shared rank-0 constant of type dt.
func (e *emitter) scalar(dt onnxpb.TensorProto_DataType, v float64) string {
	return e.floatConst(dt, nil, []float64{v})
}

// floatConst returns a shared float constant of type dt (FLOAT, DOUBLE, FLOAT16 or BFLOAT16).
func (e *emitter) floatConst(dt onnxpb.TensorProto_DataType, dims []int64, v []float64) string {
	key := fmt.Sprintf("f/%d/%v/%v", dt, dims, v)
	if len(v) > 16 {
		key = "" // large tables are not shared
	}
	if n, ok := e.consts[key]; ok && key != "" {
		return n
	}
	var raw []byte
	switch dt {
	case onnxpb.TensorProto_DOUBLE:
		raw = make([]byte, 8*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint64(raw[8*i:], math.Float64bits(x))
		}
	case onnxpb.TensorProto_FLOAT16, onnxpb.TensorProto_BFLOAT16:
		// Constants are made in the tensor's own type: a float32 constant would be a type
		// error in a float16 Mul (ONNX does not promote).
		raw = make([]byte, 2*len(v))
		for i, x := range v {
			h := onnx.Float32ToFloat16(float32(x))
			if dt == onnxpb.TensorProto_BFLOAT16 {
				h = onnx.Float32ToBFloat16(float32(x))
			}
			binary.LittleEndian.PutUint16(raw[2*i:], h)
		}
	default: // FLOAT
		raw = make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(float32(x)))
		}
	}
	name := "/grad/const/" + constLabel(v)
	n := e.b.Const(name, onnx.NewTensor("", dt, dims, raw))
	if key != "" {
		e.consts[key] = n
	}
	return n
}

func constLabel(v []float64) string {
	if len(v) == 1 {
		return strings.NewReplacer("+", "", ".", "_", "-", "m").Replace(strconv.FormatFloat(v[0], 'g', 6, 64))
	}
	return "table"
}

// ints returns a shared int64 constant [len(v)].
func (e *emitter) ints(v ...int64) string {
	key := fmt.Sprintf("i/%v", v)
	if n, ok := e.consts[key]; ok {
		return n
	}
	n := e.b.Const("/grad/const/ints", onnx.Int64Tensor("", []int64{int64(len(v))}, v))
	e.consts[key] = n
	return n
}

// intTable returns an unshared int64 constant with the given dims.
func (e *emitter) intTable(dims []int64, v []int64) string {
	return e.b.Const("/grad/const/indices", onnx.Int64Tensor("", dims, v))
}

// zeros returns a tensor of zeros of type dt and the given static shape.
func (e *emitter) zeros(dt onnxpb.TensorProto_DataType, shape []int64) string {
	key := fmt.Sprintf("z/%d/%v", dt, shape)
	if n, ok := e.consts[key]; ok {
		return n
	}
	val := onnx.NewTensor("value", dt, []int64{1}, make([]byte, onnx.ElemSize(dt)))
	n := e.b.Op("ConstantOfShape", "/grad/zeros/ConstantOfShape", []string{e.ints(shape...)}, onnx.AttrTensor("value", val))
	e.consts[key] = n
	return n
}

// reshape returns Reshape(x, shape) (x itself when its shape already is that).
func (c *ctx) reshape(x string, from, to []int64) string {
	if sameShape(from, to) {
		return x
	}
	return c.emit("Reshape", []string{x, c.ints(to...)})
}

// reduceSum sums x over axes (keepdims as given), axes as an input from opset 13 and an
// attribute before; axes must be non-empty.
func (c *ctx) reduceSum(x string, axes []int64, keep bool) string {
	k := int64(0)
	if keep {
		k = 1
	}
	if c.opset >= 13 {
		return c.emit("ReduceSum", []string{x, c.ints(axes...)}, onnx.AttrInt("keepdims", k))
	}
	return c.emit("ReduceSum", []string{x}, onnx.AttrInts("axes", axes...), onnx.AttrInt("keepdims", k))
}

// reduceMean averages x over axes, with axes as an attribute up to opset 17 and an input from 18.
func (c *ctx) reduceMean(x string, axes []int64, keep bool) string {
	k := int64(0)
	if keep {
		k = 1
	}
	if c.opset >= 18 {
		return c.emit("ReduceMean", []string{x, c.ints(axes...)}, onnx.AttrInt("keepdims", k))
	}
	return c.emit("ReduceMean", []string{x}, onnx.AttrInts("axes", axes...), onnx.AttrInt("keepdims", k))
}

// unb undoes numpy broadcasting: t has shape ts (the broadcast result), the result has shape xs.
// It sums t over the leading axes ts has beyond xs and over the axes where xs is 1.
func (c *ctx) unb(t string, ts, xs []int64) string {
	if sameShape(ts, xs) {
		return t
	}
	k := len(ts) - len(xs)
	var axes []int64
	for i := range ts {
		if i < k || (xs[i-k] == 1 && ts[i] != 1) {
			axes = append(axes, int64(i))
		}
	}
	if len(axes) > 0 {
		t = c.reduceSum(t, axes, true)
		ts = append([]int64{}, ts...)
		for _, a := range axes {
			ts[a] = 1
		}
	}
	return c.reshape(t, ts, xs)
}

// unbTo undoes broadcasting of t (shape of the node's output k) towards input i.
func (c *ctx) unbTo(t string, outK, i int) string {
	return c.unb(t, c.shape(c.out(outK)), c.shape(c.in(i)))
}

func sameShape(a, b []int64) bool { return slices.Equal(a, b) }

func normAxis(a int64, rank int) (int64, error) {
	if a < -int64(rank) || a >= int64(rank) {
		return 0, fmt.Errorf("axis %d out of range for rank %d", a, rank)
	}
	if a < 0 {
		a += int64(rank)
	}
	return a, nil
}

func prod(d []int64) int64 {
	p := int64(1)
	for _, v := range d {
		p *= v
	}
	return p
}
