package runtime

import (
	"fmt"

	"github.com/shears-ml/shears/lm"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// LMTensor wraps a causal-LM feed (lm.Interface.Feeds) as a tensor, sharing its data.
func LMTensor(t lm.Tensor) (*Tensor, error) {
	switch {
	case t.DType == onnxpb.TensorProto_INT64:
		return I64(t.Shape, t.I64), nil
	case t.DType == onnxpb.TensorProto_FLOAT:
		return F32(t.Shape, t.F32), nil
	case t.DType == onnxpb.TensorProto_BOOL:
		raw := make([]byte, len(t.Bool))
		for i, b := range t.Bool {
			raw[i] = boolByte(b)
		}
		return RawTensor(Bool, t.Shape, raw), nil
	case t.I64 == nil && t.F32 == nil: // an empty past of another type
		return Zeros(DType(t.DType), t.Shape)
	}
	return nil, fmt.Errorf("runtime: %v feed with data", t.DType)
}

// LMIO describes inputs as the lm package reads them.
func LMIO(inputs []IOInfo) []lm.IO {
	out := make([]lm.IO, len(inputs))
	for i, in := range inputs {
		out[i] = lm.IO{Name: in.Name, DType: onnxpb.TensorProto_DataType(in.DType), Dims: in.Dims}
	}
	return out
}
