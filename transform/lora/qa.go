package lora

import (
	"fmt"
	"math"
	"sort"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/transform/quant"
)

// steShift is the power of two by which the straight-through path scales W' before the
// integer round trip that detaches it: W'·2^40 is an integer for every float32 |W'| ≥ 2^-17,
// so the detached copy equals W' exactly there and differs by less than 2^-40 below.
const steShift = 40

// qaDelta emits SQFT's QA-SparsePEFT adapter path for a module whose base is a lowered
// quantized linear (quant.Lower: W = dequant(W_q), with its grid S, Z kept beside it):
//
//	W' = W + M ⊙ ((A ⊙ s·m)·B)          M = (W ≠ 0)
//	FQ = W' + sg(Q(W') − W')            Q(w) = (clip(round(w/S') + Z', 0, 2^bits−1) − Z')·S'
//	d  = x · (FQ − W)
//
// so the base plus d computes x·Q(W'), exactly what the quantized merge writes, and the
// gradient reaches W' straight through the rounding (straight-through estimator). S', Z' is
// the merged block's grid, computed from sg(W') by the merge's own rule (quant.Requantize):
// the base's S, Z where every value of the block rounds within half a step of it, a grid
// refit to the block (0 kept exact) where W' left the base's range — so Q never clamps a
// weight more than half a step and the merged export stays within half a step of W' (the
// unmerged export's weight). SQFT's reference keeps the base grid and clamps (up to 1.6 steps
// here on stories260K); the refit is our deviation, see quant/refit.go.
//
// sg is built from what autodiff does not differentiate: integer tensors. Round's result is
// cast to int32 before anything reads it (so Round needs no rule), Q(W') is rebuilt from those
// integers, and the detached copy of W' comes back through int64 (W'·2^40, see steShift); the
// refit grid is computed from that copy. It returns d (the output of MatMul(x, ·), the
// module's ANode).
func qaDelta(b *onnx.Builder, opset int64, base *onnxpb.NodeProto, mod Module, x, a, bb, scaledMask, zero string, r quant.Lowered) string {
	pre := nodePrefix(mod) + "/lora_qa"
	w := base.GetInput()[1]
	f := func(name string, v float32) string {
		return b.Const(name, onnx.Float32Tensor("", nil, []float32{v}))
	}
	i64 := func(name string, v ...int64) string {
		return b.Const(name, onnx.Int64Tensor("", []int64{int64(len(v))}, v))
	}
	kb, bs := int64((r.K+r.BlockSize-1)/r.BlockSize), int64(r.BlockSize)
	c := r.Config()
	// blocks reshapes a grid tensor [N, kb] to [kb, 1, N]; full expands [kb, 1, N] to the
	// weight's [K, N] (block b covers inputs b·bs … b·bs+bs−1).
	blocks := func(t, tag string) string {
		tr := b.Op("Transpose", pre+"/"+tag+"/Transpose", []string{t}, onnx.AttrInts("perm", 1, 0))
		return b.Op("Reshape", pre+"/"+tag+"/Reshape", []string{tr, i64(pre+"/"+tag+"/shape3", kb, 1, int64(r.N))})
	}
	full := func(t, tag string) string {
		ex := b.Op("Expand", pre+"/"+tag+"/Expand", []string{t, i64(pre+"/"+tag+"/expand", kb, bs, int64(r.N))})
		fl := b.Op("Reshape", pre+"/"+tag+"/Flat", []string{ex, i64(pre+"/"+tag+"/shape2", kb*bs, int64(r.N))})
		return b.Op("Slice", pre+"/"+tag+"/Slice", []string{fl, i64(pre+"/"+tag+"/start", 0), i64(pre+"/"+tag+"/end", int64(r.K)), i64(pre+"/"+tag+"/axes", 0)})
	}

	isZero := b.Op("Equal", pre+"/Equal", []string{w, zero})
	nonzero := b.Op("Not", pre+"/Not", []string{isZero})
	mask := b.Op("Cast", pre+"/Cast", []string{nonzero}, onnx.AttrInt("to", int64(onnxpb.TensorProto_FLOAT)))
	am := b.Op("Mul", pre+"/lora_mask/Mul", []string{a, scaledMask})
	dw := b.Op("MatMul", pre+"/delta/MatMul", []string{am, bb})
	dwm := b.Op("Mul", pre+"/delta_mask/Mul", []string{dw, mask})
	wp := b.Op("Add", pre+"/merged/Add", []string{w, dwm})
	// W' detached: (int64)(W'·2^40)·2^-40.
	up := b.Op("Mul", pre+"/ste/Up", []string{wp, f(pre+"/ste/2^40", float32(math.Ldexp(1, steShift)))})
	wi := b.Op("Cast", pre+"/ste/ToInt", []string{up}, onnx.AttrInt("to", int64(onnxpb.TensorProto_INT64)))
	wf := b.Op("Cast", pre+"/ste/ToFloat", []string{wi}, onnx.AttrInt("to", int64(onnxpb.TensorProto_FLOAT)))
	wsg := b.Op("Mul", pre+"/ste/Down", []string{wf, f(pre+"/ste/2^-40", float32(math.Ldexp(1, -steShift)))})

	// The merged block's grid, from the detached W' (no gradient through it): the base's where
	// every value rounds within half a step of it, a refit one elsewhere — quant.Grid.Fits and
	// quant.Refit, the rule Requantize applies at export, in the same float32 operations.
	wb := wsg
	if pad := kb*bs - int64(r.K); pad > 0 { // zeros: inside every grid's range, and Refit's
		wb = b.Op("Pad", pre+"/refit/Pad", []string{wsg, i64(pre+"/refit/pads", 0, 0, pad, 0)})
	}
	w3 := b.Op("Reshape", pre+"/refit/Reshape", []string{wb, i64(pre+"/refit/shape3", kb, bs, int64(r.N))})
	hi := reduceAxis1(b, opset, "ReduceMax", pre+"/refit/ReduceMax", w3, i64)
	lo := reduceAxis1(b, opset, "ReduceMin", pre+"/refit/ReduceMin", w3, i64)
	s3, z3 := blocks(r.Scales, "scale"), blocks(r.Zeros, "zero")
	hiT := b.Op("Mul", pre+"/refit/HiT", []string{b.Op("Sub", pre+"/refit/HiCodes", []string{f(pre+"/refit/max+0.5", float32(c.MaxCode())+0.5), z3}), s3})
	loT := b.Op("Mul", pre+"/refit/LoT", []string{b.Op("Sub", pre+"/refit/LoCodes", []string{f(pre+"/refit/-0.5", -0.5), z3}), s3})
	out := b.Op("Or", pre+"/refit/Out", []string{b.Op("Greater", pre+"/refit/AboveHi", []string{hi, hiT}), b.Op("Less", pre+"/refit/BelowLo", []string{lo, loT})})
	var sr, zr string
	if c.Symmetric {
		amax := b.Op("Max", pre+"/refit/AbsMax", []string{hi, b.Op("Neg", pre+"/refit/NegLo", []string{lo})})
		sr, zr = b.Op("Div", pre+"/refit/Scale", []string{amax, f(pre+"/refit/qmax", float32(c.DefaultZero()-1))}), z3
	} else {
		f0 := f(pre+"/refit/0", 0)
		lo0 := b.Op("Min", pre+"/refit/Lo0", []string{lo, f0})
		hi0 := b.Op("Max", pre+"/refit/Hi0", []string{hi, f0})
		sr = b.Op("Div", pre+"/refit/Scale", []string{b.Op("Sub", pre+"/refit/Range", []string{hi0, lo0}), f(pre+"/refit/codes", float32(c.MaxCode()))})
		zq := b.Op("Round", pre+"/refit/ZeroRound", []string{b.Op("Div", pre+"/refit/ZeroDiv", []string{b.Op("Neg", pre+"/refit/NegLo", []string{lo0}), sr})})
		zr = b.Op("Clip", pre+"/refit/Zero", []string{zq, f0, f(pre+"/refit/hi", float32(c.MaxCode()))})
	}
	s := full(b.Op("Where", pre+"/refit/WhereScale", []string{out, sr, s3}), "scale")
	z := full(b.Op("Where", pre+"/refit/WhereZero", []string{out, zr, z3}), "zero")
	// An all-zero block has scale 0 and W' = 0 there (M = 0): divide by 1 instead.
	s0 := b.Op("Equal", pre+"/scale/IsZero", []string{s, f(pre+"/f0", 0)})
	safe := b.Op("Where", pre+"/scale/Safe", []string{s0, f(pre+"/f1", 1), s})

	// Q(W') from integers (no gradient).
	t := b.Op("Div", pre+"/fq/Div", []string{wp, safe})
	rd := b.Op("Round", pre+"/fq/Round", []string{t})
	n := b.Op("Cast", pre+"/fq/ToInt", []string{rd}, onnx.AttrInt("to", int64(onnxpb.TensorProto_INT32)))
	nf := b.Op("Cast", pre+"/fq/ToFloat", []string{n}, onnx.AttrInt("to", int64(onnxpb.TensorProto_FLOAT)))
	code := b.Op("Clip", pre+"/fq/Clip", []string{b.Op("Add", pre+"/fq/AddZero", []string{nf, z}), f(pre+"/fq/lo", 0), f(pre+"/fq/hi", float32(int(1)<<r.Bits-1))})
	q := b.Op("Mul", pre+"/fq/Scale", []string{b.Op("Sub", pre+"/fq/SubZero", []string{code, z}), s})
	fq := b.Op("Add", pre+"/ste/Add", []string{wp, b.Op("Sub", pre+"/ste/Residual", []string{q, wsg})})
	d := b.Op("Sub", pre+"/delta/Sub", []string{fq, w})
	return b.Op("MatMul", pre+"/MatMul", []string{x, d})
}

// reduceAxis1 reduces x [kb, bs, N] over axis 1, keeping it ([kb, 1, N]), in the opset's form
// (axes an attribute before opset 18, an input from 18).
func reduceAxis1(b *onnx.Builder, opset int64, op, name, x string, i64 func(string, ...int64) string) string {
	if opset >= 18 {
		return b.Op(op, name, []string{x, i64(name+"/axes", 1)}, onnx.AttrInt("keepdims", 1))
	}
	return b.Op(op, name, []string{x}, onnx.AttrInts("axes", 1), onnx.AttrInt("keepdims", 1))
}

// lowered maps the nodes of m's lowered quantized linears to their records.
func lowered(m *onnx.Model) (map[string]quant.Lowered, error) {
	recs, err := quant.ReadLowered(m)
	if err != nil {
		return nil, err
	}
	out := map[string]quant.Lowered{}
	for _, r := range recs {
		out[r.Node] = r
	}
	return out, nil
}

// keepUnadapted keeps the lowered linears of a QA-SparsePEFT super-network that got no adapter
// in their quantized form (quant.KeepQuantized): their weight is computed from the base's
// packed integers, and their grid tensors, which no adapter reads, are not written.
func keepUnadapted(m *onnx.Model, qa map[string]quant.Lowered, meta *Meta) error {
	adapted := map[string]bool{}
	for _, mod := range meta.Modules {
		adapted[mod.Node] = true
	}
	var keep []string
	for node := range qa {
		if !adapted[node] {
			keep = append(keep, node)
		}
	}
	if len(keep) == 0 {
		return nil
	}
	sort.Strings(keep)
	return quant.KeepQuantized(m, keep)
}

// checkQA refuses a quantization-aware module the QA path cannot express.
func checkQA(mod Module, r quant.Lowered, sparse bool) error {
	if !sparse {
		return fmt.Errorf("module %s: its base is quantized; QA-SparsePEFT needs the sparse adapter path (SparseAdapter)", mod.Name)
	}
	if mod.Slice != nil {
		return fmt.Errorf("module %s: the q, k, v slice adapters of a fused linear are not supported on a quantized base (QA-SparsePEFT fake-quantizes the whole weight); adapt the float model, or target other roles", mod.Name)
	}
	if mod.In != int64(r.K) || mod.Out != int64(r.N) {
		return fmt.Errorf("module %s: shape [%d, %d] differs from its quantized base's [%d, %d]", mod.Name, mod.In, mod.Out, r.K, r.N)
	}
	if mod.DType != "" || mod.AdapterDType != "" {
		return fmt.Errorf("module %s: a quantized base trains in float32 only", mod.Name)
	}
	return nil
}

// UnfakeQA turns the QA-SparsePEFT adapters of an extracted sub-adapter (Extract of a
// quantization-aware super-network) into plain sparse adapters, d = x · (M ⊙ s·A_r·B_r): the
// unmerged export, whose float adapters add to the quantized base instead of being folded
// into a fake-quantized weight. The fake-quantization nodes and grid tensors are removed.
func UnfakeQA(m *onnx.Model) error {
	g := m.Graph()
	ix := onnx.NewIndex(g)
	n := 0
	for _, node := range g.GetNode() {
		name := node.GetName()
		pre, ok := cutSuffix(name, "/lora_qa/MatMul")
		if !ok || node.GetOpType() != "MatMul" {
			continue
		}
		dm := ix.Nodes[pre+"/lora_qa/delta_mask/Mul"]
		if dm == nil {
			return fmt.Errorf("lora: %s: QA adapter %s has no masked delta node", m.Path, name)
		}
		node.Input[1] = dm.GetOutput()[0]
		n++
	}
	if n == 0 {
		return fmt.Errorf("lora: %s: no QA-SparsePEFT adapter found", m.Path)
	}
	removeDead(g)
	return nil
}

func cutSuffix(s, suffix string) (string, bool) {
	if len(s) >= len(suffix) && s[len(s)-len(suffix):] == suffix {
		return s[:len(s)-len(suffix)], true
	}
	return s, false
}

// removeDead deletes nodes none of whose outputs is read (by a node or as a graph output),
// repeatedly, then the initializers nothing reads.
func removeDead(g *onnxpb.GraphProto) {
	for {
		read := map[string]bool{}
		for _, o := range g.GetOutput() {
			read[o.GetName()] = true
		}
		for _, n := range g.GetNode() {
			for _, in := range n.GetInput() {
				read[in] = true
			}
		}
		kept := g.Node[:0]
		removed := false
		for _, n := range g.GetNode() {
			live := false
			for _, o := range n.GetOutput() {
				live = live || read[o]
			}
			if live {
				kept = append(kept, n)
			} else {
				removed = true
			}
		}
		g.Node = kept
		if !removed {
			inits := g.Initializer[:0]
			for _, t := range g.GetInitializer() {
				if read[t.GetName()] {
					inits = append(inits, t)
				}
			}
			g.Initializer = inits
			return
		}
	}
}
