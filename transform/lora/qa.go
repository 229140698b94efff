package lora

import (
	"fmt"
	"math"

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
//	FQ = W' + sg(Q(W') − W')            Q(w) = (clip(round(w/S) + Z, 0, 2^bits−1) − Z)·S
//	d  = x · (FQ − W)
//
// so the base plus d computes x·Q(W'), exactly what the quantized merge writes, and the
// gradient reaches W' straight through the rounding (straight-through estimator). sg is built
// from what autodiff does not differentiate: integer tensors. Round's result is cast to int32
// before anything reads it (so Round needs no rule), Q(W') is rebuilt from those integers, and
// the detached copy of W' comes back through int64 (W'·2^40, see steShift). It returns d (the
// output of MatMul(x, ·), the module's ANode).
func qaDelta(b *onnx.Builder, base *onnxpb.NodeProto, mod Module, x, a, bb, scaledMask, zero string, r quant.Lowered) string {
	pre := nodePrefix(mod) + "/lora_qa"
	w := base.GetInput()[1]
	f := func(name string, v float32) string {
		return b.Const(name, onnx.Float32Tensor("", nil, []float32{v}))
	}
	i64 := func(name string, v ...int64) string {
		return b.Const(name, onnx.Int64Tensor("", []int64{int64(len(v))}, v))
	}
	// The grid per weight: scales [N, kb] → [K, N] (block b covers inputs b·bs … b·bs+bs−1).
	kb, bs := int64((r.K+r.BlockSize-1)/r.BlockSize), int64(r.BlockSize)
	expand := func(t, tag string) string {
		tr := b.Op("Transpose", pre+"/"+tag+"/Transpose", []string{t}, onnx.AttrInts("perm", 1, 0))
		rs := b.Op("Reshape", pre+"/"+tag+"/Reshape", []string{tr, i64(pre+"/"+tag+"/shape3", kb, 1, int64(r.N))})
		ex := b.Op("Expand", pre+"/"+tag+"/Expand", []string{rs, i64(pre+"/"+tag+"/expand", kb, bs, int64(r.N))})
		fl := b.Op("Reshape", pre+"/"+tag+"/Flat", []string{ex, i64(pre+"/"+tag+"/shape2", kb*bs, int64(r.N))})
		return b.Op("Slice", pre+"/"+tag+"/Slice", []string{fl, i64(pre+"/"+tag+"/start", 0), i64(pre+"/"+tag+"/end", int64(r.K)), i64(pre+"/"+tag+"/axes", 0)})
	}
	s, z := expand(r.Scales, "scale"), expand(r.Zeros, "zero")
	// An all-zero block has scale 0 and W' = 0 there (M = 0): divide by 1 instead.
	s0 := b.Op("Equal", pre+"/scale/IsZero", []string{s, f(pre+"/f0", 0)})
	safe := b.Op("Where", pre+"/scale/Safe", []string{s0, f(pre+"/f1", 1), s})

	isZero := b.Op("Equal", pre+"/Equal", []string{w, zero})
	nonzero := b.Op("Not", pre+"/Not", []string{isZero})
	mask := b.Op("Cast", pre+"/Cast", []string{nonzero}, onnx.AttrInt("to", int64(onnxpb.TensorProto_FLOAT)))
	am := b.Op("Mul", pre+"/lora_mask/Mul", []string{a, scaledMask})
	dw := b.Op("MatMul", pre+"/delta/MatMul", []string{am, bb})
	dwm := b.Op("Mul", pre+"/delta_mask/Mul", []string{dw, mask})
	wp := b.Op("Add", pre+"/merged/Add", []string{w, dwm})

	// Q(W') from integers (no gradient).
	t := b.Op("Div", pre+"/fq/Div", []string{wp, safe})
	rd := b.Op("Round", pre+"/fq/Round", []string{t})
	n := b.Op("Cast", pre+"/fq/ToInt", []string{rd}, onnx.AttrInt("to", int64(onnxpb.TensorProto_INT32)))
	nf := b.Op("Cast", pre+"/fq/ToFloat", []string{n}, onnx.AttrInt("to", int64(onnxpb.TensorProto_FLOAT)))
	code := b.Op("Clip", pre+"/fq/Clip", []string{b.Op("Add", pre+"/fq/AddZero", []string{nf, z}), f(pre+"/fq/lo", 0), f(pre+"/fq/hi", float32(int(1)<<r.Bits-1))})
	q := b.Op("Mul", pre+"/fq/Scale", []string{b.Op("Sub", pre+"/fq/SubZero", []string{code, z}), s})
	// W' detached: (int64)(W'·2^40)·2^-40.
	up := b.Op("Mul", pre+"/ste/Up", []string{wp, f(pre+"/ste/2^40", float32(math.Ldexp(1, steShift)))})
	wi := b.Op("Cast", pre+"/ste/ToInt", []string{up}, onnx.AttrInt("to", int64(onnxpb.TensorProto_INT64)))
	wf := b.Op("Cast", pre+"/ste/ToFloat", []string{wi}, onnx.AttrInt("to", int64(onnxpb.TensorProto_FLOAT)))
	wsg := b.Op("Mul", pre+"/ste/Down", []string{wf, f(pre+"/ste/2^-40", float32(math.Ldexp(1, -steShift)))})
	fq := b.Op("Add", pre+"/ste/Add", []string{wp, b.Op("Sub", pre+"/ste/Residual", []string{q, wsg})})
	d := b.Op("Sub", pre+"/delta/Sub", []string{fq, w})
	return b.Op("MatMul", pre+"/MatMul", []string{x, d})
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
