package onnx

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/shears-ml/shears/onnx/onnxpb"
)

// TensorType is an element type and a shape. A dim of -1 is unknown. Shape == nil means the
// rank itself is unknown; a scalar has a non-nil empty Shape.
type TensorType struct {
	Elem  onnxpb.TensorProto_DataType
	Shape []int64
}

// foldCap is the largest tensor (elements) constant folding computes: shape plumbing is tiny,
// and the cap keeps a hostile model from making inference allocate much.
const foldCap = 1 << 14

// cval is a folded constant: ints holds integer and bool values, flts float values.
type cval struct {
	dt   onnxpb.TensorProto_DataType
	dims []int64
	ints []int64
	flts []float64
}

func isFloatDT(dt onnxpb.TensorProto_DataType) bool {
	switch dt {
	case onnxpb.TensorProto_FLOAT, onnxpb.TensorProto_FLOAT16, onnxpb.TensorProto_BFLOAT16,
		onnxpb.TensorProto_DOUBLE:
		return true
	}
	return false
}

func isIntDT(dt onnxpb.TensorProto_DataType) bool {
	switch dt {
	case onnxpb.TensorProto_INT64, onnxpb.TensorProto_INT32, onnxpb.TensorProto_INT16,
		onnxpb.TensorProto_INT8, onnxpb.TensorProto_UINT64, onnxpb.TensorProto_UINT32,
		onnxpb.TensorProto_UINT16, onnxpb.TensorProto_UINT8, onnxpb.TensorProto_BOOL:
		return true
	}
	return false
}

// asInts returns c's values as integers (floats truncated), or nil.
func (c *cval) asInts() []int64 {
	if c == nil {
		return nil
	}
	if c.ints != nil {
		return c.ints
	}
	out := make([]int64, len(c.flts))
	for i, f := range c.flts {
		out[i] = int64(f)
	}
	return out
}

func (c *cval) asFloats() []float64 {
	if c.flts != nil {
		return c.flts
	}
	out := make([]float64, len(c.ints))
	for i, v := range c.ints {
		out[i] = float64(v)
	}
	return out
}

func (c *cval) size() int {
	if c.ints != nil {
		return len(c.ints)
	}
	return len(c.flts)
}

// newCval makes an empty constant of type dt and dims (whose count is within foldCap).
func newCval(dt onnxpb.TensorProto_DataType, dims []int64) *cval {
	n := NumElements(dims)
	c := &cval{dt: dt, dims: append([]int64{}, dims...)}
	if isFloatDT(dt) {
		c.flts = make([]float64, n)
	} else {
		c.ints = make([]int64, n)
	}
	return c
}

// constOf decodes a small numeric tensor into a cval; nil (no error) when it is large or not
// numeric.
func (m *Model) constOf(t *onnxpb.TensorProto) (*cval, error) {
	dt := DataType(t)
	n := NumElements(t.GetDims())
	if n < 0 || n > foldCap || !(isFloatDT(dt) || isIntDT(dt)) {
		return nil, nil
	}
	raw, err := m.RawData(t)
	if err != nil {
		return nil, err
	}
	c := &cval{dt: dt, dims: Dims(t)}
	if isIntDT(dt) {
		c.ints = decodeInts(dt, raw)
		return c, nil
	}
	f32, err := m.Float32s(t)
	if err != nil {
		return nil, err
	}
	c.flts = make([]float64, len(f32))
	for i, v := range f32 {
		c.flts[i] = float64(v)
	}
	if dt == onnxpb.TensorProto_DOUBLE { // keep full precision
		c.flts = c.flts[:0]
		for i := 0; i < len(raw); i += 8 {
			c.flts = append(c.flts, math.Float64frombits(leU64(raw[i:])))
		}
	}
	return c, nil
}

func leU64(b []byte) uint64 {
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// InferShapes computes the element type and shape of every tensor of the main graph: graph
// inputs (inputDims overrides their declared dims, e.g. {"input_ids": {2, 64}}), initializers
// and node outputs. Small integer subgraphs that compute shapes (Shape, Gather, Concat, ...)
// are constant-folded so that Reshape and Expand targets resolve. An op it does not know is an
// error naming the node.
func InferShapes(m *Model, inputDims map[string][]int64) (map[string]TensorType, error) {
	si, err := inferShapes(m, inputDims)
	if err != nil {
		return nil, err
	}
	return si.types, nil
}

// InferShapesFolded is InferShapes that also returns the integer tensors it folded (shape
// computations such as Shape → Gather → Div → Unsqueeze, initializers and Constants included),
// by name: a value computed at run time from static shapes is then known before it runs.
func InferShapesFolded(m *Model, inputDims map[string][]int64) (map[string]TensorType, map[string][]int64, error) {
	si, err := inferShapes(m, inputDims)
	if err != nil {
		return nil, nil, err
	}
	ints := map[string][]int64{}
	for name, c := range si.consts {
		if c != nil && c.ints != nil {
			ints[name] = c.ints
		}
	}
	return si.types, ints, nil
}

func inferShapes(m *Model, inputDims map[string][]int64) (*shapeInf, error) {
	if m == nil || m.Graph() == nil {
		return nil, fmt.Errorf("onnx: infer shapes: no model graph")
	}
	g := m.Graph()
	si := &shapeInf{m: m, opset: 17, types: map[string]TensorType{}, consts: map[string]*cval{}}
	if v, ok := m.Opset(""); ok {
		si.opset = v
	}
	for _, t := range g.GetInitializer() {
		si.types[t.GetName()] = TensorType{Elem: DataType(t), Shape: Dims(t)}
		c, err := m.constOf(t)
		if err != nil {
			return nil, fmt.Errorf("onnx: infer shapes: initializer: %w", err)
		}
		if c != nil {
			si.consts[t.GetName()] = c
		}
	}
	for _, v := range g.GetInput() {
		if _, isInit := si.types[v.GetName()]; isInit {
			continue
		}
		tt := v.GetType().GetTensorType()
		if tt == nil {
			return nil, fmt.Errorf("onnx: infer shapes: graph input %q is not a tensor", v.GetName())
		}
		typ := TensorType{Elem: onnxpb.TensorProto_DataType(tt.GetElemType())}
		if d, ok := inputDims[v.GetName()]; ok {
			typ.Shape = append([]int64{}, d...)
		} else if tt.GetShape() != nil {
			typ.Shape = []int64{}
			for _, d := range tt.GetShape().GetDim() {
				if dv := d.GetDimValue(); dv > 0 || (dv == 0 && d.GetDimParam() == "" && d.Value != nil) {
					typ.Shape = append(typ.Shape, dv)
				} else {
					typ.Shape = append(typ.Shape, -1)
				}
			}
		}
		si.types[v.GetName()] = typ
	}
	for name := range inputDims {
		if _, ok := si.types[name]; !ok {
			return nil, fmt.Errorf("onnx: infer shapes: %q is not a graph input", name)
		}
	}
	order, err := NewIndex(g).TopoOrder()
	if err != nil {
		return nil, fmt.Errorf("onnx: infer shapes: %w", err)
	}
	for _, n := range order {
		if err := si.node(n); err != nil {
			return nil, fmt.Errorf("onnx: infer shapes: node %s: %w", nodeLabel(n), err)
		}
	}
	return si, nil
}

type shapeInf struct {
	m      *Model
	opset  int64
	types  map[string]TensorType
	consts map[string]*cval
}

// node infers n's outputs from its inputs and folds them when all inputs are constant.
func (si *shapeInf) node(n *onnxpb.NodeProto) error {
	contrib := contribShape(n)
	if d := n.GetDomain(); d != "" && d != "ai.onnx" && contrib == nil {
		return fmt.Errorf("op %s of domain %q is not supported", n.GetOpType(), d)
	}
	ins := make([]*TensorType, len(n.GetInput()))
	cs := make([]*cval, len(n.GetInput()))
	for i, name := range n.GetInput() {
		if name == "" {
			continue
		}
		t, ok := si.types[name]
		if !ok {
			return fmt.Errorf("input %q has no known type (not produced before this node)", name)
		}
		ins[i] = &t
		cs[i] = si.consts[name]
	}
	var outs []TensorType
	var folded []*cval
	var err error
	if contrib != nil {
		outs, err = contrib(n, ins)
	} else {
		outs, folded, err = si.infer(n, ins, cs)
	}
	if err != nil {
		return err
	}
	for i, o := range n.GetOutput() {
		if o == "" || i >= len(outs) {
			continue
		}
		si.types[o] = outs[i]
		if i < len(folded) && folded[i] != nil {
			si.consts[o] = folded[i]
		}
	}
	return nil
}

// in returns input i's type, or an error when it is missing.
func need(ins []*TensorType, k int, op string) error {
	for i := 0; i < k; i++ {
		if i >= len(ins) || ins[i] == nil {
			return fmt.Errorf("%s needs input %d", op, i)
		}
	}
	return nil
}

func (si *shapeInf) infer(n *onnxpb.NodeProto, ins []*TensorType, cs []*cval) ([]TensorType, []*cval, error) {
	op := n.GetOpType()
	one := func(t TensorType, c *cval) ([]TensorType, []*cval, error) {
		return []TensorType{t}, []*cval{c}, nil
	}
	minIn := map[string]int{"Where": 3, "Range": 3, "Gemm": 2, "MatMul": 2, "Gather": 2, "Reshape": 2,
		"Expand": 2, "Equal": 2, "Less": 2, "Greater": 2, "LessOrEqual": 2, "GreaterOrEqual": 2,
		"Add": 2, "Sub": 2, "Mul": 2, "Div": 2, "Pow": 2, "Mod": 2, "And": 2, "Or": 2, "Xor": 2,
		"CastLike": 2, "LayerNormalization": 2, "GatherElements": 2, "Tile": 2, "Einsum": 1, "Concat": 1, "Max": 1, "Min": 1, "Sum": 1, "Mean": 1}
	k, ok := minIn[op]
	if !ok && op != "Constant" {
		k = 1
	}
	if err := need(ins, k, op); err != nil {
		return nil, nil, err
	}
	switch op {
	case "Constant":
		t := constantNodeValue(n)
		if t == nil {
			return nil, nil, fmt.Errorf("constant has no supported value attribute")
		}
		c, err := si.m.constOf(t)
		if err != nil {
			return nil, nil, err
		}
		return one(TensorType{Elem: DataType(t), Shape: Dims(t)}, c)

	case "Identity", "Sqrt", "Sigmoid", "Erf", "Tanh", "Relu", "Exp", "Log", "Neg", "Sin", "Cos",
		"Gelu", "Reciprocal", "Abs", "Floor", "Ceil", "Round", "Softmax", "LogSoftmax", "Trilu",
		"Not", "Clip", "CumSum", "Softplus", "LeakyRelu", "Elu", "HardSigmoid", "Sign":
		out := *ins[0]
		return one(out, foldUnary(op, cs[0]))

	case "ScatterND", "ScatterElements":
		return one(*ins[0], nil)

	case "GatherElements": // the output has the indices' shape and the data's type
		return one(TensorType{Elem: ins[0].Elem, Shape: ins[1].Shape}, nil)

	case "Pad":
		d := ins[0].Shape
		if d == nil {
			return one(TensorType{Elem: ins[0].Elem}, nil)
		}
		out := make([]int64, len(d))
		var pads []int64
		if len(cs) > 1 && cs[1] != nil && len(cs[1].ints) == 2*len(d) {
			pads = cs[1].ints
		} else if v, ok := attrInts(n, "pads"); ok && len(v) == 2*len(d) {
			pads = v
		}
		for i, x := range d {
			out[i] = -1
			if pads != nil && x >= 0 {
				out[i] = x + pads[i] + pads[i+len(d)]
			}
		}
		return one(TensorType{Elem: ins[0].Elem, Shape: out}, nil)

	case "Dropout":
		return []TensorType{*ins[0], {Elem: onnxpb.TensorProto_BOOL, Shape: ins[0].Shape}}, nil, nil

	case "Add", "Sub", "Mul", "Div", "Pow", "Mod", "Max", "Min", "Sum", "Mean", "And", "Or", "Xor",
		"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Where":
		shapes := make([][]int64, 0, len(ins))
		for i, t := range ins {
			if t == nil {
				return nil, nil, fmt.Errorf("input %d is empty", i)
			}
			shapes = append(shapes, t.Shape)
		}
		sh, err := broadcast(shapes...)
		if err != nil {
			return nil, nil, err
		}
		elem := ins[0].Elem
		switch op {
		case "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual":
			elem = onnxpb.TensorProto_BOOL
		case "Where":
			elem = ins[1].Elem
		}
		out := TensorType{Elem: elem, Shape: sh}
		return one(out, foldElementwise(op, out, cs))

	case "Cast":
		to := onnxpb.TensorProto_DataType(attrInt(n, "to", 0))
		out := TensorType{Elem: to, Shape: ins[0].Shape}
		return one(out, castVal(cs[0], to))

	case "CastLike":
		out := TensorType{Elem: ins[1].Elem, Shape: ins[0].Shape}
		return one(out, castVal(cs[0], ins[1].Elem))

	case "MatMul":
		sh, err := matmulShape(ins[0].Shape, ins[1].Shape)
		if err != nil {
			return nil, nil, err
		}
		return one(TensorType{Elem: ins[0].Elem, Shape: sh}, nil)

	case "Gemm":
		a, b := ins[0].Shape, ins[1].Shape
		if a == nil || b == nil {
			return one(TensorType{Elem: ins[0].Elem}, nil)
		}
		if len(a) != 2 || len(b) != 2 {
			return nil, nil, fmt.Errorf("gemm needs rank-2 inputs, got %v and %v", a, b)
		}
		M, K := a[0], a[1]
		if attrInt(n, "transA", 0) != 0 {
			M, K = K, M
		}
		K2, N := b[0], b[1]
		if attrInt(n, "transB", 0) != 0 {
			K2, N = N, K2
		}
		if K >= 0 && K2 >= 0 && K != K2 {
			return nil, nil, fmt.Errorf("inner dims differ: A %v, B %v", a, b)
		}
		return one(TensorType{Elem: ins[0].Elem, Shape: []int64{M, N}}, nil)

	case "Gather":
		d, idx := ins[0].Shape, ins[1].Shape
		if d == nil || idx == nil {
			return one(TensorType{Elem: ins[0].Elem}, nil)
		}
		ax, err := normAxis(attrInt(n, "axis", 0), len(d))
		if err != nil {
			return nil, nil, err
		}
		sh := append(append(append(make([]int64, 0, len(d)+len(idx)), d[:ax]...), idx...), d[ax+1:]...)
		out := TensorType{Elem: ins[0].Elem, Shape: sh}
		return one(out, foldGather(cs[0], cs[1], ax, out))

	case "Shape":
		d := ins[0].Shape
		if d == nil {
			return one(TensorType{Elem: onnxpb.TensorProto_INT64, Shape: []int64{-1}}, nil)
		}
		r := int64(len(d))
		start, end := attrInt(n, "start", 0), attrInt(n, "end", r)
		start, end = clampShapeIdx(start, r), clampShapeIdx(end, r)
		if end < start {
			end = start
		}
		sub := d[start:end]
		out := TensorType{Elem: onnxpb.TensorProto_INT64, Shape: []int64{int64(len(sub))}}
		var c *cval
		if !slices.Contains(sub, -1) {
			c = &cval{dt: onnxpb.TensorProto_INT64, dims: out.Shape, ints: append([]int64{}, sub...)}
		}
		return one(out, c)

	case "Size":
		out := TensorType{Elem: onnxpb.TensorProto_INT64, Shape: []int64{}}
		var c *cval
		if d := ins[0].Shape; d != nil && !slices.Contains(d, -1) {
			c = &cval{dt: onnxpb.TensorProto_INT64, dims: []int64{}, ints: []int64{NumElements(d)}}
		}
		return one(out, c)

	case "Reshape":
		sh, err := reshapeShape(ins[0].Shape, ins[1], cs[1], attrInt(n, "allowzero", 0) != 0)
		if err != nil {
			return nil, nil, err
		}
		out := TensorType{Elem: ins[0].Elem, Shape: sh}
		return one(out, reshapeVal(cs[0], sh))

	case "Flatten":
		d := ins[0].Shape
		if d == nil {
			return one(TensorType{Elem: ins[0].Elem, Shape: []int64{-1, -1}}, nil)
		}
		ax := attrInt(n, "axis", 1)
		if ax < 0 {
			ax += int64(len(d))
		}
		if ax < 0 || ax > int64(len(d)) {
			return nil, nil, fmt.Errorf("axis %d out of range for rank %d", attrInt(n, "axis", 1), len(d))
		}
		sh := []int64{knownProd(d[:ax]), knownProd(d[ax:])}
		out := TensorType{Elem: ins[0].Elem, Shape: sh}
		return one(out, reshapeVal(cs[0], sh))

	case "Unsqueeze", "Squeeze":
		axes, have, known := si.axesArg(n, ins, cs, 13)
		if !known {
			return one(TensorType{Elem: ins[0].Elem}, nil)
		}
		d := ins[0].Shape
		if d == nil {
			return one(TensorType{Elem: ins[0].Elem}, nil)
		}
		var sh []int64
		var err error
		if op == "Unsqueeze" {
			sh, err = unsqueezeShape(d, axes)
		} else {
			sh, err = squeezeShape(d, axes, have)
		}
		if err != nil {
			return nil, nil, err
		}
		out := TensorType{Elem: ins[0].Elem, Shape: sh}
		return one(out, reshapeVal(cs[0], sh))

	case "Concat":
		return si.concat(n, ins, cs)

	case "Slice":
		return si.slice(n, ins, cs)

	case "Split":
		return si.split(n, ins, cs)

	case "Transpose":
		d := ins[0].Shape
		if d == nil {
			return one(TensorType{Elem: ins[0].Elem}, nil)
		}
		perm, ok := attrInts(n, "perm")
		if !ok {
			for i := len(d) - 1; i >= 0; i-- {
				perm = append(perm, int64(i))
			}
		}
		if len(perm) != len(d) {
			return nil, nil, fmt.Errorf("perm %v does not match rank %d", perm, len(d))
		}
		sh := make([]int64, len(d))
		seen := make([]bool, len(d))
		for i, p := range perm {
			if p < 0 || p >= int64(len(d)) || seen[p] {
				return nil, nil, fmt.Errorf("invalid perm %v", perm)
			}
			seen[p] = true
			sh[i] = d[p]
		}
		return one(TensorType{Elem: ins[0].Elem, Shape: sh}, nil)

	case "Expand":
		target := cs[1].asInts()
		if target == nil {
			r := int64(-1)
			if s := ins[1].Shape; len(s) == 1 {
				r = s[0]
			}
			if r < 0 || ins[0].Shape == nil || r > 64 {
				return one(TensorType{Elem: ins[0].Elem}, nil)
			}
			unk := make([]int64, r)
			for i := range unk {
				unk[i] = -1
			}
			target = unk
		}
		sh, err := broadcast(ins[0].Shape, target)
		if err != nil {
			return nil, nil, err
		}
		out := TensorType{Elem: ins[0].Elem, Shape: sh}
		return one(out, foldElementwise("Expand", out, cs[:1]))

	case "EyeLike": // the identity of the input's 2-D shape (its values are not folded)
		out := TensorType{Elem: ins[0].Elem, Shape: ins[0].Shape}
		if dt := attrInt(n, "dtype", 0); dt != 0 {
			out.Elem = onnxpb.TensorProto_DataType(dt)
		}
		return one(out, nil)

	case "ConstantOfShape":
		elem := onnxpb.TensorProto_FLOAT
		var fill *cval
		if t := attrTensor(n, "value"); t != nil {
			elem = DataType(t)
			c, err := si.m.constOf(t)
			if err != nil {
				return nil, nil, err
			}
			fill = c
		}
		target := cs[0].asInts()
		if target == nil {
			r := int64(-1)
			if s := ins[0].Shape; len(s) == 1 {
				r = s[0]
			}
			if r < 0 || r > 64 {
				return one(TensorType{Elem: elem}, nil)
			}
			sh := make([]int64, r)
			for i := range sh {
				sh[i] = -1
			}
			return one(TensorType{Elem: elem, Shape: sh}, nil)
		}
		for _, d := range target {
			if d < 0 {
				return nil, nil, fmt.Errorf("negative dim in shape %v", target)
			}
		}
		out := TensorType{Elem: elem, Shape: append([]int64{}, target...)}
		var c *cval
		if nn := NumElements(target); nn >= 0 && nn <= foldCap {
			c = newCval(elem, target)
			if fill != nil && fill.size() > 0 {
				for i := range c.ints {
					c.ints[i] = fill.asInts()[0]
				}
				for i := range c.flts {
					c.flts[i] = fill.asFloats()[0]
				}
			}
		}
		return one(out, c)

	case "Range":
		out := TensorType{Elem: ins[0].Elem, Shape: []int64{-1}}
		if cs[0] == nil || cs[1] == nil || cs[2] == nil || cs[0].size() != 1 || cs[1].size() != 1 || cs[2].size() != 1 {
			return one(out, nil)
		}
		st, lim, dl := cs[0].asFloats()[0], cs[1].asFloats()[0], cs[2].asFloats()[0]
		if dl == 0 {
			return nil, nil, fmt.Errorf("range delta is zero")
		}
		cnt := math.Ceil((lim - st) / dl)
		if cnt < 0 || math.IsNaN(cnt) {
			cnt = 0
		}
		if cnt > 1<<40 {
			return nil, nil, fmt.Errorf("range of %g elements", cnt)
		}
		out.Shape = []int64{int64(cnt)}
		var c *cval
		if cnt <= foldCap {
			c = newCval(out.Elem, out.Shape)
			if c.ints != nil {
				s0, d0 := cs[0].asInts()[0], cs[2].asInts()[0]
				for i := range c.ints {
					c.ints[i] = s0 + int64(i)*d0
				}
			}
			for i := range c.flts {
				c.flts[i] = st + float64(i)*dl
			}
		}
		return one(out, c)

	case "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceSumSquare",
		"ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ArgMax", "ArgMin":
		return si.reduce(n, ins, cs)

	case "LayerNormalization":
		d := ins[0].Shape
		stash := onnxpb.TensorProto_DataType(attrInt(n, "stash_type", 1))
		outs := []TensorType{{Elem: ins[0].Elem, Shape: d}}
		if d == nil {
			return append(outs, TensorType{Elem: stash}, TensorType{Elem: stash}), nil, nil
		}
		ax, err := normAxis(attrInt(n, "axis", -1), len(d))
		if err != nil {
			return nil, nil, err
		}
		red := append([]int64{}, d...)
		for i := ax; i < len(red); i++ {
			red[i] = 1
		}
		return append(outs, TensorType{Elem: stash, Shape: red}, TensorType{Elem: stash, Shape: red}), nil, nil

	case "Einsum":
		sh, err := einsumShape(attrString(n, "equation"), ins)
		if err != nil {
			return nil, nil, err
		}
		return one(TensorType{Elem: ins[0].Elem, Shape: sh}, nil)

	case "Tile":
		d := ins[0].Shape
		reps := cs[1].asInts()
		if d == nil {
			return one(TensorType{Elem: ins[0].Elem}, nil)
		}
		sh := make([]int64, len(d))
		for i := range d {
			sh[i] = -1
			if reps != nil && len(reps) == len(d) && d[i] >= 0 {
				sh[i] = d[i] * reps[i]
			}
		}
		return one(TensorType{Elem: ins[0].Elem, Shape: sh}, nil)
	}
	return nil, nil, fmt.Errorf("op %s is not supported by shape inference", op)
}

func clampShapeIdx(i, r int64) int64 {
	if i < 0 {
		i += r
	}
	return max(0, min(i, r))
}

func normAxis(a int64, rank int) (int, error) {
	if a < -int64(rank) || a >= int64(rank) {
		return 0, fmt.Errorf("axis %d out of range for rank %d", a, rank)
	}
	if a < 0 {
		a += int64(rank)
	}
	return int(a), nil
}

// knownProd multiplies dims, -1 if any is unknown.
func knownProd(d []int64) int64 {
	if slices.Contains(d, -1) {
		return -1
	}
	return NumElements(d)
}

// broadcast applies numpy multidirectional broadcasting; an unknown dim against a known one
// other than 1 takes the known one. nil (unknown rank) if any input rank is unknown.
func broadcast(shapes ...[]int64) ([]int64, error) {
	r := 0
	for _, s := range shapes {
		if s == nil {
			return nil, nil
		}
		r = max(r, len(s))
	}
	out := make([]int64, r)
	for i := range out {
		out[i] = 1
	}
	for _, s := range shapes {
		off := r - len(s)
		for i, d := range s {
			o := out[off+i]
			switch {
			case d == 1:
			case o == 1:
				out[off+i] = d
			case d == -1 || o == -1:
				out[off+i] = max(o, d)
			case d != o:
				return nil, fmt.Errorf("shapes %v do not broadcast", shapes)
			}
		}
	}
	return out, nil
}

func matmulShape(a, b []int64) ([]int64, error) {
	if a == nil || b == nil {
		return nil, nil
	}
	if len(a) == 0 || len(b) == 0 {
		return nil, fmt.Errorf("matmul of a scalar: %v × %v", a, b)
	}
	dropA, dropB := len(a) == 1, len(b) == 1
	if dropA {
		a = []int64{1, a[0]}
	}
	if dropB {
		b = []int64{b[0], 1}
	}
	ka, kb := a[len(a)-1], b[len(b)-2]
	if ka >= 0 && kb >= 0 && ka != kb {
		return nil, fmt.Errorf("matmul inner dims differ: %v × %v", a, b)
	}
	batch, err := broadcast(a[:len(a)-2], b[:len(b)-2])
	if err != nil {
		return nil, err
	}
	out := batch
	if !dropA {
		out = append(out, a[len(a)-2])
	}
	if !dropB {
		out = append(out, b[len(b)-1])
	}
	return out, nil
}

func reshapeShape(d []int64, shapeT *TensorType, c *cval, allowZero bool) ([]int64, error) {
	target := c.asInts()
	if target == nil {
		if shapeT != nil && len(shapeT.Shape) == 1 && shapeT.Shape[0] >= 0 && shapeT.Shape[0] <= 64 {
			out := make([]int64, shapeT.Shape[0])
			for i := range out {
				out[i] = -1
			}
			return out, nil
		}
		return nil, nil
	}
	out := make([]int64, len(target))
	inferAt := -1
	for i, v := range target {
		switch {
		case v == 0 && !allowZero:
			if d == nil || i >= len(d) {
				if d == nil {
					out[i] = -1
					continue
				}
				return nil, fmt.Errorf("reshape target %v copies dim %d of a rank-%d input", target, i, len(d))
			}
			out[i] = d[i]
		case v == -1:
			if inferAt >= 0 {
				return nil, fmt.Errorf("reshape target %v has two -1 dims", target)
			}
			inferAt = i
			out[i] = -1
		case v < -1:
			return nil, fmt.Errorf("reshape target %v has a negative dim", target)
		default:
			out[i] = v
		}
	}
	if inferAt >= 0 && d != nil && !slices.Contains(d, -1) {
		rest := int64(1)
		unknown := false
		for i, v := range out {
			if i == inferAt {
				continue
			}
			if v < 0 {
				unknown = true
			}
			rest *= v
		}
		if !unknown && rest != 0 {
			tot := NumElements(d)
			if tot%rest != 0 {
				return nil, fmt.Errorf("cannot reshape %v to %v", d, target)
			}
			out[inferAt] = tot / rest
		}
	}
	if d != nil && !slices.Contains(d, -1) && !slices.Contains(out, -1) && NumElements(d) != NumElements(out) {
		return nil, fmt.Errorf("cannot reshape %v (%d elements) to %v", d, NumElements(d), out)
	}
	return out, nil
}

// reshapeVal gives a folded tensor new dims (same values), when both are known.
func reshapeVal(c *cval, dims []int64) *cval {
	if c == nil || dims == nil || slices.Contains(dims, -1) || NumElements(dims) != int64(c.size()) {
		return nil
	}
	return &cval{dt: c.dt, dims: append([]int64{}, dims...), ints: c.ints, flts: c.flts}
}

// axesArg reads the axes of Squeeze/Unsqueeze/Reduce*: an input from opset `from`, an
// attribute before. have says whether axes were given; known whether they could be read.
func (si *shapeInf) axesArg(n *onnxpb.NodeProto, ins []*TensorType, cs []*cval, from int64) (axes []int64, have, known bool) {
	if si.opset >= from {
		if len(ins) < 2 || ins[1] == nil {
			return nil, false, true
		}
		v := cs[1].asInts()
		return v, true, v != nil
	}
	v, ok := attrInts(n, "axes")
	return v, ok, true
}

func unsqueezeShape(d, axes []int64) ([]int64, error) {
	r := len(d) + len(axes)
	ins := make([]bool, r)
	for _, a := range axes {
		ax, err := normAxis(a, r)
		if err != nil {
			return nil, err
		}
		if ins[ax] {
			return nil, fmt.Errorf("axis %d repeated", a)
		}
		ins[ax] = true
	}
	out := make([]int64, 0, r)
	j := 0
	for i := 0; i < r; i++ {
		if ins[i] {
			out = append(out, 1)
		} else {
			out = append(out, d[j])
			j++
		}
	}
	return out, nil
}

func squeezeShape(d, axes []int64, have bool) ([]int64, error) {
	drop := make([]bool, len(d))
	if !have {
		for i, v := range d {
			if v == -1 {
				return nil, nil
			}
			drop[i] = v == 1
		}
	}
	for _, a := range axes {
		ax, err := normAxis(a, len(d))
		if err != nil {
			return nil, err
		}
		if d[ax] != 1 && d[ax] != -1 {
			return nil, fmt.Errorf("cannot squeeze axis %d of size %d", a, d[ax])
		}
		drop[ax] = true
	}
	out := []int64{}
	for i, v := range d {
		if !drop[i] {
			out = append(out, v)
		}
	}
	return out, nil
}

func (si *shapeInf) concat(n *onnxpb.NodeProto, ins []*TensorType, cs []*cval) ([]TensorType, []*cval, error) {
	var r = -1
	for _, t := range ins {
		if t == nil {
			return nil, nil, fmt.Errorf("empty input")
		}
		if t.Shape != nil {
			if r >= 0 && len(t.Shape) != r {
				return nil, nil, fmt.Errorf("inputs of different ranks")
			}
			r = len(t.Shape)
		}
	}
	if r < 0 {
		return []TensorType{{Elem: ins[0].Elem}}, nil, nil
	}
	ax, err := normAxis(attrInt(n, "axis", 0), r)
	if err != nil {
		return nil, nil, err
	}
	out := make([]int64, r)
	for i := range out {
		out[i] = -1
	}
	out[ax] = 0
	for _, t := range ins {
		if t.Shape == nil {
			out[ax] = -1
			continue
		}
		for i, v := range t.Shape {
			if i == ax {
				if out[ax] >= 0 && v >= 0 {
					out[ax] += v
				} else {
					out[ax] = -1
				}
			} else if out[i] == -1 {
				out[i] = v
			} else if v >= 0 && v != out[i] {
				return nil, nil, fmt.Errorf("inputs differ in dim %d: %d vs %d", i, out[i], v)
			}
		}
	}
	tt := TensorType{Elem: ins[0].Elem, Shape: out}
	// fold: blocks of the outer dims
	if slices.Contains(out, -1) || NumElements(out) > foldCap {
		return []TensorType{tt}, nil, nil
	}
	for _, c := range cs {
		if c == nil {
			return []TensorType{tt}, nil, nil
		}
	}
	res := newCval(tt.Elem, out)
	outer := NumElements(out[:ax])
	pos := 0
	for o := int64(0); o < outer; o++ {
		for k, c := range cs {
			inner := int(NumElements(ins[k].Shape[ax:]))
			for j := 0; j < inner; j++ {
				copyElem(res, pos, c, int(o)*inner+j)
				pos++
			}
		}
	}
	return []TensorType{tt}, []*cval{res}, nil
}

// copyElem sets dst[i] = src[j], converting between int and float storage if needed.
func copyElem(dst *cval, i int, src *cval, j int) {
	if dst.ints != nil {
		if src.ints != nil {
			dst.ints[i] = src.ints[j]
		} else {
			dst.ints[i] = int64(src.flts[j])
		}
		return
	}
	if src.flts != nil {
		dst.flts[i] = src.flts[j]
	} else {
		dst.flts[i] = float64(src.ints[j])
	}
}

func (si *shapeInf) slice(n *onnxpb.NodeProto, ins []*TensorType, cs []*cval) ([]TensorType, []*cval, error) {
	d := ins[0].Shape
	elem := ins[0].Elem
	if d == nil {
		return []TensorType{{Elem: elem}}, nil, nil
	}
	var starts, ends, axes, steps []int64
	known := true
	if si.opset >= 10 {
		get := func(i int) ([]int64, bool) {
			if i >= len(ins) || ins[i] == nil {
				return nil, true
			}
			v := cs[i].asInts()
			return v, v != nil
		}
		var ok1, ok2, ok3, ok4 bool
		starts, ok1 = get(1)
		ends, ok2 = get(2)
		axes, ok3 = get(3)
		steps, ok4 = get(4)
		known = ok1 && ok2 && ok3 && ok4 && starts != nil && ends != nil
		if !ok3 { // axes unknown: any dim may change
			out := make([]int64, len(d))
			for i := range out {
				out[i] = -1
			}
			return []TensorType{{Elem: elem, Shape: out}}, nil, nil
		}
	} else {
		starts, _ = attrInts(n, "starts")
		ends, _ = attrInts(n, "ends")
		axes, _ = attrInts(n, "axes")
	}
	nax := len(starts)
	if !known {
		nax = -1
		if len(ins) > 1 && ins[1] != nil && len(ins[1].Shape) == 1 {
			nax = int(ins[1].Shape[0])
		}
	}
	if axes == nil {
		if nax < 0 {
			out := make([]int64, len(d))
			for i := range out {
				out[i] = -1
			}
			return []TensorType{{Elem: elem, Shape: out}}, nil, nil
		}
		for i := 0; i < nax && i < len(d); i++ {
			axes = append(axes, int64(i))
		}
	}
	out := append([]int64{}, d...)
	sel := make([][]int64, len(d)) // selected indices per axis (nil = all)
	for k, a := range axes {
		ax, err := normAxis(a, len(d))
		if err != nil {
			return nil, nil, err
		}
		if !known || d[ax] < 0 {
			out[ax] = -1
			continue
		}
		if k >= len(starts) || k >= len(ends) {
			return nil, nil, fmt.Errorf("slice has %d axes but %d starts and %d ends", len(axes), len(starts), len(ends))
		}
		step := int64(1)
		if steps != nil {
			if k >= len(steps) {
				return nil, nil, fmt.Errorf("slice has %d axes but %d steps", len(axes), len(steps))
			}
			step = steps[k]
		}
		if step == 0 {
			return nil, nil, fmt.Errorf("slice step is zero")
		}
		idx := sliceIndices(d[ax], starts[k], ends[k], step)
		out[ax] = int64(len(idx))
		sel[ax] = idx
	}
	tt := TensorType{Elem: elem, Shape: out}
	if cs[0] == nil || !known || slices.Contains(out, -1) || NumElements(out) > foldCap {
		return []TensorType{tt}, nil, nil
	}
	res := newCval(elem, out)
	strides := stridesOf(d)
	coord := make([]int64, len(out))
	for i := 0; i < res.size(); i++ {
		rem := int64(i)
		src := int64(0)
		for a := len(out) - 1; a >= 0; a-- {
			coord[a] = rem % out[a]
			rem /= out[a]
			c := coord[a]
			if sel[a] != nil {
				c = sel[a][c]
			}
			src += c * strides[a]
		}
		copyElem(res, i, cs[0], int(src))
	}
	return []TensorType{tt}, []*cval{res}, nil
}

// sliceIndices lists the indices ONNX Slice picks from a dim of size dim.
func sliceIndices(dim, start, end, step int64) []int64 {
	clamp := func(v, lo, hi int64) int64 { return max(lo, min(v, hi)) }
	if start < 0 {
		start += dim
	}
	if end < 0 {
		end += dim
	}
	var idx []int64
	if step > 0 {
		start, end = clamp(start, 0, dim), clamp(end, 0, dim)
		for i := start; i < end; i += step {
			idx = append(idx, i)
		}
	} else {
		start, end = clamp(start, 0, dim-1), clamp(end, -1, dim-1)
		for i := start; i > end; i += step {
			idx = append(idx, i)
		}
	}
	if idx == nil {
		idx = []int64{}
	}
	return idx
}

func stridesOf(d []int64) []int64 {
	s := make([]int64, len(d))
	acc := int64(1)
	for i := len(d) - 1; i >= 0; i-- {
		s[i] = acc
		acc *= d[i]
	}
	return s
}

func (si *shapeInf) split(n *onnxpb.NodeProto, ins []*TensorType, cs []*cval) ([]TensorType, []*cval, error) {
	d := ins[0].Shape
	nout := len(n.GetOutput())
	outs := make([]TensorType, nout)
	for i := range outs {
		outs[i].Elem = ins[0].Elem
	}
	if d == nil {
		return outs, nil, nil
	}
	ax, err := normAxis(attrInt(n, "axis", 0), len(d))
	if err != nil {
		return nil, nil, err
	}
	var parts []int64
	if si.opset >= 13 {
		if len(ins) > 1 && ins[1] != nil {
			parts = cs[1].asInts()
			if parts == nil {
				for i := range outs {
					outs[i].Shape = append([]int64{}, d...)
					outs[i].Shape[ax] = -1
				}
				return outs, nil, nil
			}
		}
	} else {
		parts, _ = attrInts(n, "split")
	}
	if parts == nil && d[ax] >= 0 {
		k := attrInt(n, "num_outputs", int64(nout))
		if k <= 0 {
			return nil, nil, fmt.Errorf("split into %d outputs", k)
		}
		chunk := (d[ax] + k - 1) / k
		if si.opset < 18 && d[ax]%k != 0 {
			return nil, nil, fmt.Errorf("dim %d of size %d does not split evenly into %d", ax, d[ax], k)
		}
		left := d[ax]
		for i := int64(0); i < k; i++ {
			p := min(chunk, left)
			parts = append(parts, p)
			left -= p
		}
	}
	if len(parts) != nout && parts != nil {
		return nil, nil, fmt.Errorf("split gives %d parts for %d outputs", len(parts), nout)
	}
	var sum int64
	for i := range outs {
		outs[i].Shape = append([]int64{}, d...)
		if parts == nil {
			outs[i].Shape[ax] = -1
			continue
		}
		if parts[i] < 0 {
			return nil, nil, fmt.Errorf("negative split size %d", parts[i])
		}
		outs[i].Shape[ax] = parts[i]
		sum += parts[i]
	}
	if parts != nil && d[ax] >= 0 && sum != d[ax] {
		return nil, nil, fmt.Errorf("split sizes %v do not add up to dim %d of size %d", parts, ax, d[ax])
	}
	if cs[0] == nil || parts == nil || slices.Contains(d, -1) || int64(cs[0].size()) != NumElements(d) {
		return outs, nil, nil
	}
	folded := make([]*cval, nout)
	outer, inner := NumElements(d[:ax]), NumElements(d[ax+1:])
	var start int64
	for k := range outs {
		if foldable(outs[k]) {
			r := newCval(outs[k].Elem, outs[k].Shape)
			pos := 0
			for o := int64(0); o < outer; o++ {
				for j := start * inner; j < (start+parts[k])*inner; j++ {
					copyElem(r, pos, cs[0], int(o*d[ax]*inner+j))
					pos++
				}
			}
			folded[k] = r
		}
		start += parts[k]
	}
	return outs, folded, nil
}

func (si *shapeInf) reduce(n *onnxpb.NodeProto, ins []*TensorType, cs []*cval) ([]TensorType, []*cval, error) {
	op := n.GetOpType()
	d := ins[0].Shape
	elem := ins[0].Elem
	keep := attrInt(n, "keepdims", 1) != 0
	var axes []int64
	have, known := false, true
	if op == "ArgMax" || op == "ArgMin" {
		elem = onnxpb.TensorProto_INT64
		axes, have = []int64{attrInt(n, "axis", 0)}, true
	} else {
		from := int64(18)
		if op == "ReduceSum" {
			from = 13
		}
		axes, have, known = si.axesArg(n, ins, cs, from)
	}
	if d == nil || !known {
		return []TensorType{{Elem: elem}}, nil, nil
	}
	if len(axes) == 0 {
		if attrInt(n, "noop_with_empty_axes", 0) != 0 {
			return []TensorType{{Elem: elem, Shape: d}}, nil, nil
		}
		have = false
	}
	red := make([]bool, len(d))
	for i := range red {
		red[i] = !have
	}
	for _, a := range axes {
		ax, err := normAxis(a, len(d))
		if err != nil {
			return nil, nil, err
		}
		red[ax] = true
	}
	out := []int64{}
	for i, v := range d {
		if !red[i] {
			out = append(out, v)
		} else if keep {
			out = append(out, 1)
		}
	}
	return []TensorType{{Elem: elem, Shape: out}}, nil, nil
}

// einsumShape handles explicit or implicit equations of letters (no ellipsis).
func einsumShape(eq string, ins []*TensorType) ([]int64, error) {
	eq = strings.ReplaceAll(eq, " ", "")
	if strings.Contains(eq, ".") {
		return nil, fmt.Errorf("einsum %q: ellipsis is not supported", eq)
	}
	lhs, rhs, explicit := strings.Cut(eq, "->")
	terms := strings.Split(lhs, ",")
	if len(terms) != len(ins) {
		return nil, fmt.Errorf("einsum %q has %d operands, node has %d inputs", eq, len(terms), len(ins))
	}
	size := map[rune]int64{}
	count := map[rune]int{}
	for k, term := range terms {
		if ins[k] == nil || ins[k].Shape == nil {
			return nil, nil
		}
		if len([]rune(term)) != len(ins[k].Shape) {
			return nil, fmt.Errorf("einsum %q: operand %d has rank %d", eq, k, len(ins[k].Shape))
		}
		for i, r := range []rune(term) {
			if r < 'A' || (r > 'Z' && r < 'a') || r > 'z' {
				return nil, fmt.Errorf("einsum %q: bad subscript %q", eq, r)
			}
			count[r]++
			v := ins[k].Shape[i]
			if prev, ok := size[r]; ok && prev >= 0 && v >= 0 && prev != v && prev != 1 && v != 1 {
				return nil, fmt.Errorf("einsum %q: subscript %c has sizes %d and %d", eq, r, prev, v)
			}
			if prev, ok := size[r]; !ok || prev == 1 || prev < 0 {
				size[r] = v
			}
		}
	}
	if !explicit {
		var letters []rune
		for r, c := range count {
			if c == 1 {
				letters = append(letters, r)
			}
		}
		slices.Sort(letters)
		rhs = string(letters)
	}
	out := []int64{}
	for _, r := range rhs {
		v, ok := size[r]
		if !ok {
			return nil, fmt.Errorf("einsum %q: output subscript %c is not in any operand", eq, r)
		}
		out = append(out, v)
	}
	return out, nil
}

func attrOf(n *onnxpb.NodeProto, name string) *onnxpb.AttributeProto {
	for _, a := range n.GetAttribute() {
		if a.GetName() == name {
			return a
		}
	}
	return nil
}

func attrInt(n *onnxpb.NodeProto, name string, def int64) int64 {
	if a := attrOf(n, name); a != nil && a.I != nil {
		return a.GetI()
	}
	return def
}

func attrInts(n *onnxpb.NodeProto, name string) ([]int64, bool) {
	if a := attrOf(n, name); a != nil {
		return a.GetInts(), true
	}
	return nil, false
}

func attrString(n *onnxpb.NodeProto, name string) string {
	if a := attrOf(n, name); a != nil {
		return string(a.GetS())
	}
	return ""
}

func attrTensor(n *onnxpb.NodeProto, name string) *onnxpb.TensorProto {
	if a := attrOf(n, name); a != nil {
		return a.GetT()
	}
	return nil
}
