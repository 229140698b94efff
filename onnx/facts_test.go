package onnx

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/shears-ml/shears/onnx/onnxpb"
	"google.golang.org/protobuf/proto"
)

func TestOpsetAndHasExternal(t *testing.T) {
	m, err := NewBuilder("m", 18).Model()
	if err != nil {
		t.Fatal(err)
	}
	m.Proto.OpsetImport = append(m.Proto.OpsetImport, &onnxpb.OperatorSetIdProto{Domain: proto.String("com.microsoft"), Version: proto.Int64(1)})
	for _, c := range []struct {
		domain string
		v      int64
		ok     bool
	}{{"", 18, true}, {"ai.onnx", 18, true}, {"com.microsoft", 1, true}, {"ai.onnx.ml", 0, false}} {
		if v, ok := m.Opset(c.domain); v != c.v || ok != c.ok {
			t.Errorf("Opset(%q) = %d, %v; want %d, %v", c.domain, v, ok, c.v, c.ok)
		}
	}
	m.Proto.OpsetImport[0].Domain = proto.String("ai.onnx") // the default domain spelled out
	if v, ok := m.Opset(""); v != 18 || !ok {
		t.Errorf("Opset(\"\") with domain ai.onnx = %d, %v", v, ok)
	}
	g := m.Graph()
	g.Initializer = append(g.Initializer, Float32Tensor("w", []int64{1}, []float32{1}))
	if m.HasExternal() {
		t.Error("HasExternal on inline data")
	}
	g.Initializer[0].DataLocation = onnxpb.TensorProto_EXTERNAL.Enum()
	if !m.HasExternal() {
		t.Error("HasExternal missed an external tensor")
	}
}

func TestDecodeFloats(t *testing.T) {
	want := []float32{1.5, -2, 0.25}
	f32 := make([]byte, 12)
	f64 := make([]byte, 24)
	f16 := make([]byte, 6)
	b16 := make([]byte, 6)
	for i, v := range want {
		binary.LittleEndian.PutUint32(f32[4*i:], math.Float32bits(v))
		binary.LittleEndian.PutUint64(f64[8*i:], math.Float64bits(float64(v)))
		binary.LittleEndian.PutUint16(f16[2*i:], Float32ToFloat16(v))
		binary.LittleEndian.PutUint16(b16[2*i:], Float32ToBFloat16(v))
	}
	for dt, raw := range map[onnxpb.TensorProto_DataType][]byte{onnxpb.TensorProto_FLOAT: f32, onnxpb.TensorProto_DOUBLE: f64,
		onnxpb.TensorProto_FLOAT16: f16, onnxpb.TensorProto_BFLOAT16: b16} {
		got, err := DecodeFloats(dt, raw)
		if err != nil || len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
			t.Errorf("%s: %v, %v; want %v", dt, got, err, want)
		}
	}
	if _, err := DecodeFloats(onnxpb.TensorProto_INT64, make([]byte, 8)); err == nil {
		t.Error("DecodeFloats accepted int64")
	}
	if _, err := DecodeFloats(onnxpb.TensorProto_FLOAT, make([]byte, 6)); err == nil {
		t.Error("DecodeFloats accepted 6 bytes of float32")
	}
}
