package hf

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// dtypes maps the safetensors dtypes an import accepts to ONNX element types.
var dtypes = map[string]onnxpb.TensorProto_DataType{
	"F32":  onnxpb.TensorProto_FLOAT,
	"F16":  onnxpb.TensorProto_FLOAT16,
	"BF16": onnxpb.TensorProto_BFLOAT16,
}

// decode widens a tensor's little-endian bytes of a supported dtype to float32 (exact).
func decode(dtype string, b []byte) ([]float32, error) {
	switch dtype {
	case "F32":
		v := make([]float32, len(b)/4)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		}
		return v, nil
	case "F16", "BF16":
		v := make([]float32, len(b)/2)
		for i := range v {
			h := binary.LittleEndian.Uint16(b[2*i:])
			if dtype == "F16" {
				v[i] = onnx.Float16ToFloat32(h)
			} else {
				v[i] = onnx.BFloat16ToFloat32(h)
			}
		}
		return v, nil
	}
	return nil, fmt.Errorf("dtype %s is not supported (F32, F16, BF16)", dtype)
}
