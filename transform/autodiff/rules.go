package autodiff

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// registry maps an op type (com.microsoft ops as "com.microsoft.<Op>") to its VJP rule. It is
// the one place rules are registered; SupportedOps reads it.
var registry map[string]Rule

func init() {
	registry = map[string]Rule{
		"MatMul": matmulRule,
		"Gemm":   gemmRule,
		"Add":    sumRule,
		"Sub": func(c *ctx) ([]string, error) {
			d := make([]string, 2)
			if c.need[0] {
				d[0] = c.unbTo(c.g(0), 0, 0)
			}
			if c.need[1] {
				d[1] = c.unbTo(c.emit("Neg", []string{c.g(0)}), 0, 1)
			}
			return d, nil
		},
		"Mul": func(c *ctx) ([]string, error) {
			d := make([]string, 2)
			for i := range d {
				if c.need[i] {
					d[i] = c.unbTo(c.emit("Mul", []string{c.g(0), c.in(1 - i)}), 0, i)
				}
			}
			return d, nil
		},
		"Div": func(c *ctx) ([]string, error) {
			d := make([]string, 2)
			if c.need[0] {
				d[0] = c.unbTo(c.emit("Div", []string{c.g(0), c.in(1)}), 0, 0)
			}
			if c.need[1] { // d/dB (A/B) = −Y/B
				t := c.emit("Div", []string{c.emit("Mul", []string{c.g(0), c.out(0)}), c.in(1)})
				d[1] = c.unbTo(c.emit("Neg", []string{t}), 0, 1)
			}
			return d, nil
		},
		"Pow": powRule,
		"Sum": sumRule,
		"Sqrt": unary(func(c *ctx, g string) string {
			return c.emit("Div", []string{c.emit("Mul", []string{g, c.sc(0.5)}), c.out(0)})
		}),
		"Reciprocal": unary(func(c *ctx, g string) string {
			return c.emit("Neg", []string{c.emit("Mul", []string{g, c.emit("Mul", []string{c.out(0), c.out(0)})})})
		}),
		"Exp":      unary(func(c *ctx, g string) string { return c.emit("Mul", []string{g, c.out(0)}) }),
		"Log":      unary(func(c *ctx, g string) string { return c.emit("Div", []string{g, c.in(0)}) }),
		"Neg":      unary(func(c *ctx, g string) string { return c.emit("Neg", []string{g}) }),
		"Identity": unary(func(c *ctx, g string) string { return g }),
		"Abs":      unary(func(c *ctx, g string) string { return c.emit("Mul", []string{g, c.emit("Sign", []string{c.in(0)})}) }),
		"Sin":      unary(func(c *ctx, g string) string { return c.emit("Mul", []string{g, c.emit("Cos", []string{c.in(0)})}) }),
		"Cos": unary(func(c *ctx, g string) string {
			return c.emit("Neg", []string{c.emit("Mul", []string{g, c.emit("Sin", []string{c.in(0)})})})
		}),
		"Relu": unary(func(c *ctx, g string) string {
			pos := c.emit("Greater", []string{c.in(0), c.sc(0)})
			return c.emit("Where", []string{pos, g, c.sc(0)})
		}),
		"Tanh": unary(func(c *ctx, g string) string { // g·(1 − Y²)
			return c.emit("Mul", []string{g, c.emit("Sub", []string{c.sc(1), c.emit("Mul", []string{c.out(0), c.out(0)})})})
		}),
		"Sigmoid": unary(func(c *ctx, g string) string { // g·Y·(1 − Y)
			return c.emit("Mul", []string{g, c.emit("Mul", []string{c.out(0), c.emit("Sub", []string{c.sc(1), c.out(0)})})})
		}),
		"Erf": unary(func(c *ctx, g string) string { // g·2/√π·exp(−X²)
			e := c.emit("Exp", []string{c.emit("Neg", []string{c.emit("Mul", []string{c.in(0), c.in(0)})})})
			return c.emit("Mul", []string{g, c.emit("Mul", []string{e, c.sc(2 / math.Sqrt(math.Pi))})})
		}),
		"Gelu":               geluRule,
		"com.microsoft.Gelu": geluRule,
		"Dropout":            dropoutRule,
		"Softmax": unaryErr(func(c *ctx, g string) (string, error) { // Y·(g − Σ g·Y)
			axes, err := c.softmaxAxes()
			if err != nil {
				return "", err
			}
			s := c.reduceSum(c.emit("Mul", []string{g, c.out(0)}), axes, true)
			return c.emit("Mul", []string{c.out(0), c.emit("Sub", []string{g, s})}), nil
		}),
		"LogSoftmax": unaryErr(func(c *ctx, g string) (string, error) { // g − exp(Y)·Σ g
			axes, err := c.softmaxAxes()
			if err != nil {
				return "", err
			}
			s := c.reduceSum(g, axes, true)
			return c.emit("Sub", []string{g, c.emit("Mul", []string{c.emit("Exp", []string{c.out(0)}), s})}), nil
		}),
		"ReduceSum":          reduceRule,
		"ReduceMean":         reduceRule,
		"ReduceSumSquare":    reduceRule,
		"LayerNormalization": layerNormRule,
		"Where": func(c *ctx) ([]string, error) {
			d := make([]string, 3)
			if c.need[1] {
				d[1] = c.unbTo(c.emit("Where", []string{c.in(0), c.g(0), c.sc(0)}), 0, 1)
			}
			if c.need[2] {
				d[2] = c.unbTo(c.emit("Where", []string{c.in(0), c.sc(0), c.g(0)}), 0, 2)
			}
			return d, nil
		},
		"Gather":         gatherRule,
		"GatherElements": gatherElementsRule,
		"Reshape":        reshapeRule,
		"Flatten":        reshapeRule,
		"Squeeze":        reshapeRule,
		"Unsqueeze":      reshapeRule,
		"Transpose":      transposeRule,
		"Concat":         concatRule,
		"Split":          splitRule,
		"Slice":          sliceRule,
		"Expand":         func(c *ctx) ([]string, error) { return []string{c.unbTo(c.g(0), 0, 0)}, nil },
		"Cast": unary(func(c *ctx, g string) string {
			return c.emit("Cast", []string{g}, onnx.AttrInt("to", int64(c.dt(c.in(0)))))
		}),
		"Einsum": einsumRule,
	}
}

// sc is a scalar constant of the forward node's float type.
func (c *ctx) sc(v float64) string { return c.scalar(c.dt(c.out(0)), v) }

// unary makes a rule for an op whose only differentiable input is input 0, with the same shape
// as output 0.
func unary(f func(c *ctx, g string) string) Rule {
	return unaryErr(func(c *ctx, g string) (string, error) { return f(c, g), nil })
}

func unaryErr(f func(c *ctx, g string) (string, error)) Rule {
	return func(c *ctx) ([]string, error) {
		if !c.need[0] {
			return nil, fmt.Errorf("only input 0 is differentiable")
		}
		d, err := f(c, c.g(0))
		return []string{d}, err
	}
}

// softmaxAxes are the axes (Log)Softmax normalizes over: the one axis from opset 13, and
// before that every axis from `axis` (default 1) on, as the input is coerced to 2-D.
func (c *ctx) softmaxAxes() ([]int64, error) {
	r := len(c.shape(c.in(0)))
	if c.opset >= 13 {
		ax, err := normAxis(c.attrInt("axis", -1), r)
		return []int64{ax}, err
	}
	ax, err := normAxis(c.attrInt("axis", 1), r)
	if err != nil {
		return nil, err
	}
	var axes []int64
	for i := ax; i < int64(r); i++ {
		axes = append(axes, i)
	}
	return axes, nil
}

// broadcastBatch broadcasts two batch shapes (numpy rules).
func broadcastBatch(a, b []int64) ([]int64, error) {
	n := max(len(a), len(b))
	out := make([]int64, n)
	for i := 0; i < n; i++ {
		x, y := int64(1), int64(1)
		if j := i - (n - len(a)); j >= 0 {
			x = a[j]
		}
		if j := i - (n - len(b)); j >= 0 {
			y = b[j]
		}
		switch {
		case x == y || y == 1:
			out[i] = x
		case x == 1:
			out[i] = y
		default:
			return nil, fmt.Errorf("batch dims %v and %v do not broadcast", a, b)
		}
	}
	return out, nil
}

func swapLast(rank int) []int64 {
	p := make([]int64, rank)
	for i := range p {
		p[i] = int64(i)
	}
	p[rank-1], p[rank-2] = p[rank-2], p[rank-1]
	return p
}

// matmulRule: dA = unb(g·Bᵀ, A), dB = unb(Aᵀ·g, B), with 1-D operands promoted to [1,K] / [K,1]
// the way MatMul does and the result reshaped back.
func matmulRule(c *ctx) ([]string, error) {
	as, err := c.static(c.in(0))
	if err != nil {
		return nil, err
	}
	bs, err := c.static(c.in(1))
	if err != nil {
		return nil, err
	}
	a2, b2 := as, bs
	if len(as) == 1 {
		a2 = []int64{1, as[0]}
	}
	if len(bs) == 1 {
		b2 = []int64{bs[0], 1}
	}
	batch, err := broadcastBatch(a2[:len(a2)-2], b2[:len(b2)-2])
	if err != nil {
		return nil, err
	}
	M, K, N := a2[len(a2)-2], a2[len(a2)-1], b2[len(b2)-1]
	y2 := append(append([]int64{}, batch...), M, N)
	g2 := c.reshape(c.g(0), c.shape(c.out(0)), y2)
	d := make([]string, 2)
	if c.need[0] && len(bs) == 2 && len(as) >= 2 {
		// A rank-2 B (a linear's weight): dA = Gemm(g, B, transB=1) on g flattened to rows. The
		// general path's Transpose(B) of a frozen weight is constant-folded by onnxruntime into a
		// second, transposed copy of every weight in the step session; Gemm reads B as it is.
		rows := prod(batch) * M
		gf := c.reshape(g2, y2, []int64{rows, N})
		t := c.emit("Gemm", []string{gf, c.in(1)}, onnx.AttrInt("transB", 1))
		d[0] = c.reshape(t, []int64{rows, K}, as)
	} else if c.need[0] {
		bT := c.emit("Transpose", []string{c.reshape(c.in(1), bs, b2)}, onnx.AttrInts("perm", swapLast(len(b2))...))
		t := c.emit("MatMul", []string{g2, bT})
		d[0] = c.reshape(c.unb(t, append(append([]int64{}, batch...), M, K), a2), a2, as)
	}
	if c.need[1] {
		aT := c.emit("Transpose", []string{c.reshape(c.in(0), as, a2)}, onnx.AttrInts("perm", swapLast(len(a2))...))
		t := c.emit("MatMul", []string{aT, g2})
		d[1] = c.reshape(c.unb(t, append(append([]int64{}, batch...), K, N), b2), b2, bs)
	}
	return d, nil
}

// gemmRule: Y = α·op(A)·op(B) + β·C. The input gradients are Gemms with the trans flags flipped.
func gemmRule(c *ctx) ([]string, error) {
	ta, tb := c.attrInt("transA", 0) != 0, c.attrInt("transB", 0) != 0
	alpha, beta := c.attrFloat("alpha", 1), c.attrFloat("beta", 1)
	g := c.g(0)
	gemm := func(x, y string, tx, ty bool) string {
		return c.emit("Gemm", []string{x, y}, onnx.AttrFloat("alpha", alpha),
			onnx.AttrInt("transA", b2i(tx)), onnx.AttrInt("transB", b2i(ty)))
	}
	d := make([]string, 3)
	if c.need[0] {
		if !ta { // dA = α·g·op(B)ᵀ
			d[0] = gemm(g, c.in(1), false, !tb)
		} else { // dA = α·op(B)·gᵀ
			d[0] = gemm(c.in(1), g, tb, true)
		}
	}
	if c.need[1] {
		if !tb { // dB = α·op(A)ᵀ·g
			d[1] = gemm(c.in(0), g, !ta, false)
		} else { // dB = α·gᵀ·op(A)
			d[1] = gemm(g, c.in(0), true, ta)
		}
	}
	if len(c.need) > 2 && c.need[2] {
		t := g
		if beta != 1 {
			t = c.emit("Mul", []string{g, c.sc(float64(beta))})
		}
		d[2] = c.unbTo(t, 0, 2)
	}
	return d, nil
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// powRule: dX = g·P·X^(P−1); dP = g·Y·ln X.
func powRule(c *ctx) ([]string, error) {
	dt := c.dt(c.out(0))
	d := make([]string, 2)
	if c.need[0] {
		p := c.in(1)
		var scaled string
		if v, ok := c.constScalar(p); ok {
			switch v {
			case 1:
				scaled = c.g(0)
			case 2:
				scaled = c.emit("Mul", []string{c.g(0), c.emit("Mul", []string{c.in(0), c.sc(2)})})
			default:
				pw := c.emit("Pow", []string{c.in(0), c.sc(v - 1)})
				scaled = c.emit("Mul", []string{c.g(0), c.emit("Mul", []string{pw, c.sc(v)})})
			}
		} else {
			if c.dt(p) != dt {
				p = c.emit("Cast", []string{p}, onnx.AttrInt("to", int64(dt)))
			}
			pw := c.emit("Pow", []string{c.in(0), c.emit("Sub", []string{p, c.sc(1)})})
			scaled = c.emit("Mul", []string{c.g(0), c.emit("Mul", []string{pw, p})})
		}
		d[0] = c.unbTo(scaled, 0, 0)
	}
	if c.need[1] {
		t := c.emit("Mul", []string{c.emit("Mul", []string{c.g(0), c.out(0)}), c.emit("Log", []string{c.in(0)})})
		d[1] = c.unbTo(t, 0, 1)
	}
	return d, nil
}

// constScalar returns the value of a constant one-element tensor.
func (c *ctx) constScalar(name string) (float64, bool) {
	t := c.ix.ConstantValue(name)
	if t == nil || onnx.NumElements(t.GetDims()) != 1 {
		return 0, false
	}
	if isFloat(onnx.DataType(t)) {
		v, err := c.m.Float32s(t)
		if err != nil || len(v) != 1 {
			return 0, false
		}
		if onnx.DataType(t) == onnxpb.TensorProto_DOUBLE { // keep full precision
			raw, err := c.m.RawData(t)
			if err == nil && len(raw) == 8 {
				return math.Float64frombits(binary.LittleEndian.Uint64(raw)), true
			}
		}
		return float64(v[0]), true
	}
	v, err := c.m.Int64s(t)
	if err != nil || len(v) != 1 {
		return 0, false
	}
	return float64(v[0]), true
}

func sumRule(c *ctx) ([]string, error) {
	d := make([]string, len(c.need))
	for i := range d {
		if c.need[i] {
			d[i] = c.unbTo(c.g(0), 0, i)
		}
	}
	return d, nil
}

// geluRule: exact g·(Φ(x) + x·φ(x)); tanh form by differentiating 0.5·x·(1 + tanh(u)).
func geluRule(c *ctx) ([]string, error) {
	if !c.need[0] {
		return nil, fmt.Errorf("only input 0 is differentiable")
	}
	x := c.in(0)
	var d string
	switch a := c.attrString("approximate", "none"); a {
	case "none":
		cdf := c.emit("Mul", []string{c.sc(0.5), c.emit("Add", []string{c.sc(1), c.emit("Erf", []string{c.emit("Mul", []string{x, c.sc(1 / math.Sqrt2)})})})})
		x2 := c.emit("Mul", []string{x, x})
		pdf := c.emit("Mul", []string{c.emit("Exp", []string{c.emit("Mul", []string{x2, c.sc(-0.5)})}), c.sc(1 / math.Sqrt(2*math.Pi))})
		d = c.emit("Add", []string{cdf, c.emit("Mul", []string{x, pdf})})
	case "tanh":
		k := math.Sqrt(2 / math.Pi)
		x2 := c.emit("Mul", []string{x, x})
		inner := c.emit("Add", []string{c.sc(1), c.emit("Mul", []string{x2, c.sc(0.044715)})})
		u := c.emit("Mul", []string{c.emit("Mul", []string{x, inner}), c.sc(k)})
		t := c.emit("Tanh", []string{u})
		// du/dx = k·(1 + 3·0.044715·x²)
		du := c.emit("Mul", []string{c.emit("Add", []string{c.sc(1), c.emit("Mul", []string{x2, c.sc(3 * 0.044715)})}), c.sc(k)})
		sech2 := c.emit("Sub", []string{c.sc(1), c.emit("Mul", []string{t, t})})
		left := c.emit("Mul", []string{c.sc(0.5), c.emit("Add", []string{c.sc(1), t})})
		right := c.emit("Mul", []string{c.emit("Mul", []string{c.emit("Mul", []string{x, c.sc(0.5)}), sech2}), du})
		d = c.emit("Add", []string{left, right})
	default:
		return nil, fmt.Errorf("unknown approximate=%q", a)
	}
	return []string{c.emit("Mul", []string{c.g(0), d})}, nil
}

// dropoutRule: inference-mode Dropout is the identity; training mode is refused (feed masks).
func dropoutRule(c *ctx) ([]string, error) {
	if tm := c.in(2); tm != "" {
		v, ok := c.constScalar(tm)
		if !ok || v != 0 {
			return nil, fmt.Errorf("dropout in training mode is not differentiated (feed host-generated masks instead)")
		}
	}
	if len(c.gout) > 1 && c.gout[1] != "" {
		return nil, fmt.Errorf("dropout mask output cannot take a gradient")
	}
	return []string{c.g(0)}, nil
}

// reduceRule covers ReduceSum, ReduceMean and ReduceSumSquare: g is reshaped to the kept
// shape and expanded back (÷N for the mean, ·2X for the sum of squares).
func reduceRule(c *ctx) ([]string, error) {
	op := c.n.GetOpType()
	xs, err := c.static(c.in(0))
	if err != nil {
		return nil, err
	}
	var axes []int64
	axesInput := c.opset >= 18 || (op == "ReduceSum" && c.opset >= 13)
	if axesInput {
		if name := c.in(1); name != "" {
			if axes, err = c.constInts(name, "axes"); err != nil {
				return nil, err
			}
		}
	} else {
		axes, _ = c.attrInts("axes")
	}
	g := c.g(0)
	if len(axes) == 0 {
		if axesInput && c.attrInt("noop_with_empty_axes", 0) != 0 {
			d := g
			if op == "ReduceSumSquare" {
				d = c.emit("Mul", []string{g, c.emit("Mul", []string{c.in(0), c.sc(2)})})
			}
			return []string{d}, nil
		}
		for i := range xs {
			axes = append(axes, int64(i))
		}
	}
	kept := append([]int64{}, xs...)
	n := int64(1)
	for _, a := range axes {
		ax, err := normAxis(a, len(xs))
		if err != nil {
			return nil, err
		}
		if kept[ax] != 1 || xs[ax] == 1 {
			n *= xs[ax]
		}
		kept[ax] = 1
	}
	gk := c.reshape(g, c.shape(c.out(0)), kept)
	var d string
	if sameShape(kept, xs) {
		d = gk
	} else {
		d = c.emit("Expand", []string{gk, c.ints(xs...)})
	}
	switch op {
	case "ReduceMean":
		d = c.emit("Mul", []string{d, c.sc(1 / float64(n))})
	case "ReduceSumSquare":
		d = c.emit("Mul", []string{d, c.emit("Mul", []string{c.in(0), c.sc(2)})})
	}
	return []string{d}, nil
}

// layerNormRule recomputes x̂ and 1/σ in standard ops: with gs = g·scale,
// dX = r·(gs − mean(gs) − x̂·mean(gs·x̂)), dScale = Σ g·x̂, dBias = Σ g.
func layerNormRule(c *ctx) ([]string, error) {
	for k := 1; k < len(c.gout); k++ {
		if c.gout[k] != "" {
			return nil, fmt.Errorf("gradients through the Mean/InvStdDev outputs are not supported")
		}
	}
	xs, err := c.static(c.in(0))
	if err != nil {
		return nil, err
	}
	ax, err := normAxis(c.attrInt("axis", -1), len(xs))
	if err != nil {
		return nil, err
	}
	var axes []int64
	for i := ax; i < int64(len(xs)); i++ {
		axes = append(axes, i)
	}
	x, g := c.in(0), c.g(0)
	mu := c.reduceMean(x, axes, true)
	xc := c.emit("Sub", []string{x, mu})
	v := c.reduceMean(c.emit("Mul", []string{xc, xc}), axes, true)
	r := c.emit("Reciprocal", []string{c.emit("Sqrt", []string{c.emit("Add", []string{v, c.sc(float64(c.attrFloat("epsilon", 1e-5)))})})})
	xh := c.emit("Mul", []string{xc, r})
	d := make([]string, 3)
	if c.need[0] {
		gs := c.emit("Mul", []string{g, c.in(1)})
		m1 := c.reduceMean(gs, axes, true)
		m2 := c.reduceMean(c.emit("Mul", []string{gs, xh}), axes, true)
		inner := c.emit("Sub", []string{c.emit("Sub", []string{gs, m1}), c.emit("Mul", []string{xh, m2})})
		d[0] = c.emit("Mul", []string{r, inner})
	}
	if c.need[1] {
		d[1] = c.unbTo(c.emit("Mul", []string{g, xh}), 0, 1)
	}
	if len(c.need) > 2 && c.need[2] {
		d[2] = c.unbTo(g, 0, 2)
	}
	return d, nil
}

// oneHotLimit bounds the constant one-hot matrix the Gather rule builds for constant indices;
// beyond it the rule scatters instead.
const oneHotLimit = 1 << 16

// gatherRule: the data gradient scatter-adds g into zeros. Constant indices become a one-hot
// MatMul (deterministic, any opset); run-time indices use ScatterElements(reduction=add), opset 16+.
func gatherRule(c *ctx) ([]string, error) {
	if !c.need[0] {
		return nil, fmt.Errorf("only the data input is differentiable")
	}
	ds, err := c.static(c.in(0))
	if err != nil {
		return nil, err
	}
	is, err := c.static(c.in(1))
	if err != nil {
		return nil, err
	}
	ax, err := normAxis(c.attrInt("axis", 0), len(ds))
	if err != nil {
		return nil, err
	}
	pre, D, post, nIdx := prod(ds[:ax]), ds[ax], prod(ds[ax+1:]), prod(is)
	g3 := c.reshape(c.g(0), c.shape(c.out(0)), []int64{pre, nIdx, post})
	dt := c.dt(c.in(0))
	var scat string
	if t := c.ix.ConstantValue(c.in(1)); t != nil && nIdx*D <= oneHotLimit {
		idx, err := c.m.Int64s(t)
		if err != nil {
			return nil, fmt.Errorf("indices: %w", err)
		}
		oh := make([]float64, D*nIdx) // [D, nIdx]
		for j, v := range idx {
			if v < 0 {
				v += D
			}
			if v < 0 || v >= D {
				return nil, fmt.Errorf("index %d out of range for axis of size %d", idx[j], D)
			}
			oh[v*nIdx+int64(j)] = 1
		}
		scat = c.emit("MatMul", []string{c.floatConst(dt, []int64{D, nIdx}, oh), g3})
	} else {
		if c.opset < 16 {
			return nil, fmt.Errorf("run-time gather indices need ScatterElements with reduction (opset 16+), model has %d", c.opset)
		}
		idx := c.emit("Expand", []string{c.reshape(c.in(1), is, []int64{1, nIdx, 1}), c.ints(pre, nIdx, post)})
		scat = c.emit("ScatterElements", []string{c.zeros(dt, []int64{pre, D, post}), idx, g3},
			onnx.AttrInt("axis", 1), onnx.AttrString("reduction", "add"))
	}
	return []string{c.reshape(scat, []int64{pre, D, post}, ds)}, nil
}

// gatherElementsRule: the data gradient scatters g back to the gathered positions, adding where
// an index repeats (ScatterElements with reduction "add", opset 16+). The causal-LM loss picks
// each target's log-probability this way instead of multiplying by a one-hot [B, T, V] tensor.
func gatherElementsRule(c *ctx) ([]string, error) {
	if !c.need[0] {
		return nil, fmt.Errorf("only the data input is differentiable")
	}
	if c.opset < 16 {
		return nil, fmt.Errorf("GatherElements needs ScatterElements with reduction (opset 16+), model has %d", c.opset)
	}
	ds, err := c.static(c.in(0))
	if err != nil {
		return nil, err
	}
	ax, err := normAxis(c.attrInt("axis", 0), len(ds))
	if err != nil {
		return nil, err
	}
	return []string{c.emit("ScatterElements", []string{c.zeros(c.dt(c.in(0)), ds), c.in(1), c.g(0)},
		onnx.AttrInt("axis", int64(ax)), onnx.AttrString("reduction", "add"))}, nil
}

func reshapeRule(c *ctx) ([]string, error) {
	if !c.need[0] {
		return nil, fmt.Errorf("only the data input is differentiable")
	}
	xs, err := c.static(c.in(0))
	if err != nil {
		return nil, err
	}
	if _, err := c.static(c.out(0)); err != nil {
		return nil, err
	}
	return []string{c.reshape(c.g(0), c.shape(c.out(0)), xs)}, nil
}

func transposeRule(c *ctx) ([]string, error) {
	r := len(c.shape(c.in(0)))
	perm, ok := c.attrInts("perm")
	if !ok {
		for i := r - 1; i >= 0; i-- {
			perm = append(perm, int64(i))
		}
	}
	inv := make([]int64, len(perm))
	for i, p := range perm {
		if p < 0 || int(p) >= len(inv) {
			return nil, fmt.Errorf("invalid perm %v", perm)
		}
		inv[p] = int64(i)
	}
	return []string{c.emit("Transpose", []string{c.g(0)}, onnx.AttrInts("perm", inv...))}, nil
}

// concatRule splits g back into the inputs' sizes along the axis.
func concatRule(c *ctx) ([]string, error) {
	ys, err := c.static(c.out(0))
	if err != nil {
		return nil, err
	}
	ax, err := normAxis(c.attrInt("axis", 0), len(ys))
	if err != nil {
		return nil, err
	}
	ins := c.n.GetInput()
	if len(ins) == 1 {
		return []string{c.g(0)}, nil
	}
	sizes := make([]int64, len(ins))
	for i, in := range ins {
		s, err := c.static(in)
		if err != nil {
			return nil, err
		}
		sizes[i] = s[ax]
	}
	name := gradNode(c.n.GetName()) + "/Split"
	var parts []string
	if c.opset >= 13 {
		parts = c.b.OpN("Split", name, []string{c.g(0), c.ints(sizes...)}, len(ins), onnx.AttrInt("axis", ax))
	} else {
		parts = c.b.OpN("Split", name, []string{c.g(0)}, len(ins), onnx.AttrInt("axis", ax), onnx.AttrInts("split", sizes...))
	}
	if parts == nil {
		return nil, c.b.Err()
	}
	return parts, nil
}

// splitRule concatenates the output gradients (zeros for outputs without one).
func splitRule(c *ctx) ([]string, error) {
	if !c.need[0] {
		return nil, fmt.Errorf("only the data input is differentiable")
	}
	xs, err := c.static(c.in(0))
	if err != nil {
		return nil, err
	}
	ax, err := normAxis(c.attrInt("axis", 0), len(xs))
	if err != nil {
		return nil, err
	}
	gs := make([]string, len(c.n.GetOutput()))
	for k := range gs {
		if _, err := c.static(c.out(k)); err != nil {
			return nil, err
		}
		gs[k] = c.g(k)
	}
	if len(gs) == 1 {
		return gs, nil
	}
	return []string{c.emit("Concat", gs, onnx.AttrInt("axis", ax))}, nil
}

// sliceRule: Pad for unit steps, ScatterND into zeros otherwise (slice indices are distinct).
func sliceRule(c *ctx) ([]string, error) {
	if !c.need[0] {
		return nil, fmt.Errorf("only the data input is differentiable")
	}
	xs, err := c.static(c.in(0))
	if err != nil {
		return nil, err
	}
	ys, err := c.static(c.out(0))
	if err != nil {
		return nil, err
	}
	starts, err := c.constInts(c.in(1), "starts")
	if err != nil {
		return nil, err
	}
	ends, err := c.constInts(c.in(2), "ends")
	if err != nil {
		return nil, err
	}
	if len(starts) != len(ends) {
		return nil, fmt.Errorf("starts %v and ends %v differ in length", starts, ends)
	}
	axes := make([]int64, len(starts))
	for i := range axes {
		axes[i] = int64(i)
	}
	if a := c.in(3); a != "" {
		if axes, err = c.constInts(a, "axes"); err != nil {
			return nil, err
		}
	}
	steps := make([]int64, len(starts))
	for i := range steps {
		steps[i] = 1
	}
	if s := c.in(4); s != "" {
		if steps, err = c.constInts(s, "steps"); err != nil {
			return nil, err
		}
	}
	if len(axes) != len(starts) || len(steps) != len(starts) {
		return nil, fmt.Errorf("starts, ends, axes and steps differ in length")
	}
	r := len(xs)
	first := make([]int64, r) // first data index per axis
	step := make([]int64, r)
	for i := range step {
		step[i] = 1
	}
	for i, a := range axes {
		ax, err := normAxis(a, r)
		if err != nil {
			return nil, err
		}
		d, s, e, st := xs[ax], starts[i], ends[i], steps[i]
		if st == 0 {
			return nil, fmt.Errorf("slice step 0")
		}
		if s < 0 {
			s += d
		}
		if e < 0 {
			e += d
		}
		if st > 0 {
			s = min(max(s, 0), d)
		} else {
			s = min(max(s, 0), d-1)
		}
		first[ax], step[ax] = s, st
	}
	unit := true
	for _, st := range step {
		unit = unit && st == 1
	}
	g := c.g(0)
	if unit {
		pads := make([]int64, 2*r)
		for i := 0; i < r; i++ {
			pads[i] = first[i]
			pads[r+i] = xs[i] - first[i] - ys[i]
		}
		return []string{c.emit("Pad", []string{g, c.ints(pads...)})}, nil
	}
	n := prod(ys)
	if n*int64(r) > 1<<22 {
		return nil, fmt.Errorf("strided slice of %d elements is too large for a constant scatter table", n)
	}
	idx := make([]int64, 0, n*int64(r))
	coord := make([]int64, r)
	for k := int64(0); k < n; k++ {
		rem := k
		for i := r - 1; i >= 0; i-- {
			coord[i] = rem % ys[i]
			rem /= ys[i]
		}
		for i := 0; i < r; i++ {
			idx = append(idx, first[i]+coord[i]*step[i])
		}
	}
	tab := c.intTable(append(append([]int64{}, ys...), int64(r)), idx)
	return []string{c.emit("ScatterND", []string{c.zeros(c.dt(c.in(0)), xs), tab, g})}, nil
}

// einsumRule differentiates operand i by an Einsum of g with the other operands, mapped to
// operand i's subscripts; labels summed away from operand i alone are restored by Expand.
func einsumRule(c *ctx) ([]string, error) {
	eq := strings.ReplaceAll(c.attrString("equation", ""), " ", "")
	if strings.Contains(eq, ".") {
		return nil, fmt.Errorf("einsum %q: ellipsis is not supported", eq)
	}
	lhs, rhs, explicit := strings.Cut(eq, "->")
	terms := strings.Split(lhs, ",")
	if len(terms) != len(c.n.GetInput()) {
		return nil, fmt.Errorf("einsum %q has %d terms for %d inputs", eq, len(terms), len(c.n.GetInput()))
	}
	if !explicit {
		count := map[rune]int{}
		for _, t := range terms {
			for _, l := range t {
				count[l]++
			}
		}
		var out []rune
		for l := 'A'; l <= 'z'; l++ {
			if count[l] == 1 {
				out = append(out, l)
			}
		}
		rhs = string(out)
	}
	d := make([]string, len(terms))
	for i, t := range terms {
		if !c.need[i] {
			continue
		}
		xs, err := c.static(c.in(i))
		if err != nil {
			return nil, err
		}
		avail := rhs
		ins := []string{c.g(0)}
		others := []string{rhs}
		for j, o := range terms {
			if j != i {
				others = append(others, o)
				ins = append(ins, c.in(j))
				avail += o
			}
		}
		if len(t) != len(xs) {
			return nil, fmt.Errorf("einsum %q: term %q does not match the rank of %v", eq, t, xs)
		}
		var sub []rune
		var es []int64                 // shape of the Einsum result
		kept := make([]int64, len(xs)) // that shape with 1 for the restored labels
		seen := map[rune]bool{}
		for k, l := range []rune(t) {
			if seen[l] {
				return nil, fmt.Errorf("einsum %q: repeated label %q in one operand is not supported", eq, l)
			}
			seen[l] = true
			kept[k] = 1
			if strings.ContainsRune(avail, l) {
				sub = append(sub, l)
				kept[k] = xs[k]
				es = append(es, xs[k])
			}
		}
		e := c.emit("Einsum", ins, onnx.AttrString("equation", strings.Join(others, ",")+"->"+string(sub)))
		if len(sub) != len(t) {
			e = c.emit("Expand", []string{c.reshape(e, es, kept), c.ints(xs...)})
		}
		d[i] = e
	}
	return d, nil
}
