package lora

import (
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// sparseDelta emits SQFT's SparsePEFT adapter path for one module (Config.SparseAdapter):
//
//	d = x · (M ⊙ ((A ⊙ s·m) · B))        M = Cast(Not(Equal(W, 0)))
//
// W is the weight as the base node multiplies it, in [in, out] layout (a Gemm with transB gets
// a Transpose), so M lines up with ΔW however the weight is stored. M depends only on the
// frozen W, so autodiff treats it as a constant (Equal/Not are bool, stop-gradient) and
// onnxruntime folds it at load. It returns d, the output of MatMul(x, ·), whose node is the
// module's ANode (AddDropout rewires its first input). x is the adapter's input and adt its type
// (the mask is cast to it); zero has W's type; pre names the nodes. A q, k or v module of a fused
// linear masks with its slice of W's columns.
func sparseDelta(b *onnx.Builder, base *onnxpb.NodeProto, mod Module, pre, x, a, bb, scaledMask, zero string, adt onnxpb.TensorProto_DataType) string {
	pre += "/lora_sparse"
	w := base.GetInput()[1]
	if base.GetOpType() == "Gemm" {
		for _, at := range base.GetAttribute() {
			if at.GetName() == "transB" && at.GetI() != 0 {
				w = b.Op("Transpose", pre+"/Transpose", []string{w}, onnx.AttrInts("perm", 1, 0))
			}
		}
	}
	if mod.Slice != nil { // the slice's columns of a fused linear's [in, out] weight
		w = b.Op("Slice", pre+"/Slice", []string{w, b.Const("lora_slice_lo", onnx.Int64Tensor("", []int64{1}, []int64{mod.Slice[0]})),
			b.Const("lora_slice_hi", onnx.Int64Tensor("", []int64{1}, []int64{mod.Slice[1]})),
			b.Const("lora_slice_axis", onnx.Int64Tensor("", []int64{1}, []int64{1}))})
	}
	isZero := b.Op("Equal", pre+"/Equal", []string{w, zero})
	nonzero := b.Op("Not", pre+"/Not", []string{isZero})
	mask := b.Op("Cast", pre+"/Cast", []string{nonzero}, onnx.AttrInt("to", int64(adt)))
	am := b.Op("Mul", pre+"/lora_mask/Mul", []string{a, scaledMask})
	dw := b.Op("MatMul", pre+"/delta/MatMul", []string{am, bb})
	dwm := b.Op("Mul", pre+"/delta_mask/Mul", []string{dw, mask})
	return b.Op("MatMul", pre+"/MatMul", []string{x, dwm})
}
