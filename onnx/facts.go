package onnx

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/shears-ml/shears/onnx/onnxpb"
)

// Opset is the version of domain the model imports ("" and "ai.onnx" both name the default
// domain), and whether it imports it at all. Every pass that emits ops in the model's own
// opset form reads it here.
func (m *Model) Opset(domain string) (int64, bool) {
	if domain == "ai.onnx" {
		domain = ""
	}
	for _, op := range m.Proto.GetOpsetImport() {
		d := op.GetDomain()
		if d == "ai.onnx" {
			d = ""
		}
		if d == domain {
			return op.GetVersion(), true
		}
	}
	return 0, false
}

// HasExternal reports whether any initializer of m keeps its data in an external file (the
// outputs of a pass on such a model are written with external data too).
func (m *Model) HasExternal() bool {
	for _, t := range m.Graph().GetInitializer() {
		if t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
			return true
		}
	}
	return false
}

// DecodeFloats widens little-endian raw bytes of a float type (FLOAT, FLOAT16, BFLOAT16,
// DOUBLE) to float32: Model.Float32s for bytes a streaming Transform already holds.
func DecodeFloats(dt onnxpb.TensorProto_DataType, raw []byte) ([]float32, error) {
	switch dt {
	case onnxpb.TensorProto_FLOAT, onnxpb.TensorProto_FLOAT16, onnxpb.TensorProto_BFLOAT16, onnxpb.TensorProto_DOUBLE:
	default:
		return nil, fmt.Errorf("%s is not a float type", dt)
	}
	es := ElemSize(dt)
	if len(raw)%es != 0 {
		return nil, fmt.Errorf("%d bytes is not a whole number of %s values", len(raw), dt)
	}
	le := binary.LittleEndian
	out := make([]float32, len(raw)/es)
	for i := range out {
		switch dt {
		case onnxpb.TensorProto_FLOAT:
			out[i] = math.Float32frombits(le.Uint32(raw[4*i:]))
		case onnxpb.TensorProto_FLOAT16:
			out[i] = Float16ToFloat32(le.Uint16(raw[2*i:]))
		case onnxpb.TensorProto_BFLOAT16:
			out[i] = BFloat16ToFloat32(le.Uint16(raw[2*i:]))
		case onnxpb.TensorProto_DOUBLE:
			out[i] = float32(math.Float64frombits(le.Uint64(raw[8*i:])))
		}
	}
	return out, nil
}
