package quant

import (
	"fmt"
	"strings"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"google.golang.org/protobuf/proto"
)

// dequantSuffix ends the name of the node whose output is a weight dequantized in the graph
// (dequantOp): the QA super-network's unadapted linears (KeepQuantized).
const dequantSuffix = "/dequant/Transpose"

// dequantOp adds to b the weight W [K, N] that the MatMulNBits tensors ins (B, scales[, zero
// points], as Plan.tensors writes them) of a layer with config c hold, computed with standard
// operators only: the nibbles unpacked by Floor(b/16) and b − 16·hi, then (code − zero)·scale
// per block, the padding sliced off and the result transposed; its last node is named
// node+dequantSuffix and W is its output. Every input is an initializer, so onnxruntime
// folds the whole chain into W at load (constant folding, optimization level basic and up:
// no per-run cost, the float weight in session memory), while the file keeps the packed
// bytes. (MatMulNBits(I_K, …), used before, is a contrib op onnxruntime does not fold: it ran
// K²·N multiply-adds per linear on every run.) Each value is float32(code − zero)·scale, as
// Grid.Value computes it; the float64 copy (autodiff.ToFloat64) computes the same exactly.
func dequantOp(b *onnx.Builder, node string, k, n int, c Config, ins []string) string {
	pre := node + "/dequant"
	l := Layer{K: k, N: n, Config: c}
	kb := l.KBlocks()
	i64 := func(name string, v ...int64) string {
		return b.Const(pre+"/"+name, onnx.Int64Tensor("", []int64{int64(len(v))}, v))
	}
	codes := unpackOp(b, pre+"/B", ins[0], c.Bits, i64("B/shape", int64(n), int64(kb), int64(c.BlockSize)))
	var zero string
	if len(ins) > 2 && ins[2] != "" {
		zb := l.ZeroBytes() * 8 / c.Bits
		zero = unpackOp(b, pre+"/zero_points", ins[2], c.Bits, i64("zero_points/shape", int64(n), int64(zb)))
		if zb != kb {
			zero = b.Op("Slice", pre+"/zero_points/Slice", []string{zero, i64("zero_points/starts", 0), i64("zero_points/ends", int64(kb)), i64("zero_points/axes", 1)})
		}
		zero = b.Op("Reshape", pre+"/zero_points/Reshape", []string{zero, i64("zero_points/blocks", int64(n), int64(kb), 1)})
	} else {
		zero = b.Const(pre+"/zero_point", onnx.Float32Tensor("", nil, []float32{float32(c.DefaultZero())}))
	}
	scale := b.Op("Reshape", pre+"/scales/Reshape", []string{ins[1], i64("scales/shape", int64(n), int64(kb), 1)})
	w := b.Op("Mul", pre+"/Mul", []string{b.Op("Sub", pre+"/Sub", []string{codes, zero}), scale})
	w = b.Op("Reshape", pre+"/Reshape", []string{w, i64("rows", int64(n), int64(kb*c.BlockSize))})
	if kb*c.BlockSize != k {
		w = b.Op("Slice", pre+"/Slice", []string{w, i64("starts", 0), i64("ends", int64(k)), i64("axes", 1)})
	}
	return b.Op("Transpose", node+dequantSuffix, []string{w}, onnx.AttrInts("perm", 1, 0))
}

// maskDequantSuffix ends the name of the MatMulNBits node maskDequantOp adds.
const maskDequantSuffix = "/dequant/MatMulNBits"

// maskDequantOp adds to b the weight W [K, N] that a MatMulNBits linear's tensors ins (B,
// scales[, zero points]) with attributes attrs hold, as MatMulNBits(I_K, …) named
// node+maskDequantSuffix, and returns W's name. It serves an unmerged export's sparse-adapter
// masks (DequantReads), a graph that runs elsewhere too. The identity is folded at load but
// the MatMulNBits is not: K²·N multiply-adds per adapted linear on every run. dequantOp's
// standard operators remove that, but onnxruntime's folding of them peaks at several times the
// float weights at load (25M unmerged export: decode 8 → 150 tokens/s, peak RSS 283 → 687 MiB;
// bench/RESULTS.md), too much at 1B, and a session over an export gets no FoldKept; so the
// export keeps this form until the serving paths fold it themselves.
func maskDequantOp(b *onnx.Builder, node string, k int, ins []string, attrs []*onnxpb.AttributeProto) string {
	pre := node + "/dequant"
	shape := b.Const(pre+"/shape", onnx.Int64Tensor("", []int64{2}, []int64{int64(k), int64(k)}))
	zeros := b.Op("ConstantOfShape", pre+"/ConstantOfShape", []string{shape}, onnx.AttrTensor("value", onnx.Float32Tensor("", []int64{1}, []float32{0})))
	eye := b.Op("EyeLike", pre+"/EyeLike", []string{zeros})
	deq := b.Op(OpType, node+maskDequantSuffix, append([]string{eye}, ins...), attrs...)
	for _, n := range b.Graph().GetNode() {
		if n.GetOpType() == OpType && n.GetName() == node+maskDequantSuffix {
			n.Domain = proto.String(Domain)
		}
	}
	return deq
}

// unpackOp adds the codes packed in the uint8 tensor x (bits per code, low bits first) as
// float32 values of shape shape (an int64 initializer's name).
func unpackOp(b *onnx.Builder, pre, x string, bits int, shape string) string {
	f := b.Op("Cast", pre+"/Cast", []string{x}, onnx.AttrInt("to", int64(onnxpb.TensorProto_FLOAT)))
	if bits == 4 {
		f32 := func(name string, v float32) string {
			return b.Const(pre+"/"+name, onnx.Float32Tensor("", nil, []float32{v}))
		}
		col := b.Const(pre+"/column", onnx.Int64Tensor("", []int64{2}, []int64{-1, 1}))
		hi := b.Op("Floor", pre+"/hi", []string{b.Op("Mul", pre+"/hi/Mul", []string{f, f32("sixteenth", 1.0/16)})})
		lo := b.Op("Sub", pre+"/lo", []string{f, b.Op("Mul", pre+"/lo/Mul", []string{hi, f32("sixteen", 16)})})
		f = b.Op("Concat", pre+"/Concat", []string{ // [bytes, 2]: low nibble first
			b.Op("Reshape", pre+"/lo/Reshape", []string{lo, col}),
			b.Op("Reshape", pre+"/hi/Reshape", []string{hi, col})}, onnx.AttrInt("axis", 1))
	}
	return b.Op("Reshape", pre+"/Reshape", []string{f, shape})
}

// readDequant reads back the layer of r whose weight dequantOp computes from the node dq
// (named r.Node+dequantSuffix) and returns it with the names of its packed tensors.
func readDequant(m *onnx.Model, r Lowered) (*Layer, []string, error) {
	ix := onnx.NewIndex(m.Graph())
	pre := r.Node + "/dequant/"
	input := func(node string) ([]byte, string, error) {
		n := ix.Nodes[pre+node]
		if n == nil || len(n.GetInput()) == 0 || m.Initializer(n.GetInput()[0]) == nil {
			return nil, "", fmt.Errorf("linear %s: its dequantization has no %s reading a packed initializer", r.Node, pre+node)
		}
		raw, err := m.RawData(m.Initializer(n.GetInput()[0]))
		return raw, n.GetInput()[0], err
	}
	b, bn, err := input("B/Cast")
	if err != nil {
		return nil, nil, err
	}
	_, sn, err := input("scales/Reshape")
	if err != nil {
		return nil, nil, err
	}
	scales, err := m.Float32s(m.Initializer(sn))
	if err != nil {
		return nil, nil, err
	}
	names := []string{bn, sn}
	var zeros []byte
	if !r.Symmetric {
		var zn string
		if zeros, zn, err = input("zero_points/Cast"); err != nil {
			return nil, nil, err
		}
		names = append(names, zn)
	}
	l, err := Unpack(r.K, r.N, r.Config(), b, scales, zeros)
	if err != nil {
		return nil, nil, fmt.Errorf("linear %s: %w", r.Node, err)
	}
	return l, names, nil
}

// removeDequant removes the nodes of node's dequantization (dequantOp) and the initializers
// only they read.
func removeDequant(g *onnxpb.GraphProto, node string) {
	pre := node + "/dequant/"
	var ins []string
	kept := g.Node[:0]
	for _, n := range g.GetNode() {
		if strings.HasPrefix(n.GetName(), pre) || n.GetName() == node+dequantSuffix {
			ins = append(ins, n.GetInput()...)
			continue
		}
		kept = append(kept, n)
	}
	g.Node = kept
	for _, in := range ins {
		removeDeadChain(g, in)
	}
}

// FoldKept replaces each weight a kept linear dequantizes in m's graph (KeepQuantized) by a
// float32 initializer holding it (Layer.Dequant: the same values, bit for bit), before a
// session opens m. onnxruntime would fold the chain itself, but its constant folding keeps
// every intermediate tensor of the pass alive until the pass ends (about 6× the kept weights'
// float size at load; bench/RESULTS.md, SQFT); folded here, the session receives each weight
// once. It returns how many it folded; m without lowering metadata is left alone.
func FoldKept(m *onnx.Model) (int, error) {
	recs, err := ReadLowered(m)
	if err != nil || len(recs) == 0 {
		return 0, err
	}
	g := m.Graph()
	ix := onnx.NewIndex(g)
	folded := 0
	for _, r := range recs {
		dq := ix.Nodes[r.Node+dequantSuffix]
		if dq == nil {
			continue
		}
		l, _, err := readDequant(m, r)
		if err != nil {
			return folded, fmt.Errorf("fold %s: %w", m.Path, err)
		}
		out := dq.GetOutput()[0]
		removeDequant(g, r.Node)
		g.Initializer = append(g.Initializer, onnx.Float32Tensor(out, []int64{int64(r.K), int64(r.N)}, l.Dequant()))
		folded++
	}
	return folded, nil
}
