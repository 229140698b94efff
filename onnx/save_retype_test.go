package onnx

import (
	"encoding/binary"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shears-ml/shears/onnx/onnxpb"
)

// toHalf is a Transform narrowing float32 bytes to float16 bytes.
func toHalf(_ string, t *onnxpb.TensorProto, raw []byte) ([]byte, error) {
	if DataType(t) != onnxpb.TensorProto_FLOAT {
		return raw, nil
	}
	out := make([]byte, len(raw)/2)
	for i := 0; i < len(raw)/4; i++ {
		f := f32LE(raw[4*i:])
		binary.LittleEndian.PutUint16(out[2*i:], Float32ToFloat16(f))
	}
	return out, nil
}

func f32LE(b []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b)) }

func TestSaveRetypeNarrowsFloat32ToFloat16(t *testing.T) {
	for _, ext := range []bool{false, true} {
		m := tcTiny()
		before, _ := m.Float32s(m.Initializer("W"))
		p := filepath.Join(t.TempDir(), "m.onnx")
		retype := func(name string, x *onnxpb.TensorProto) (onnxpb.TensorProto_DataType, bool) {
			return onnxpb.TensorProto_FLOAT16, name == "W" || name == "b"
		}
		if err := m.Save(p, SaveOptions{ExternalData: ext, ExternalThreshold: 64, Transform: toHalf, Retype: retype}); err != nil {
			t.Fatal(err)
		}
		if DataType(m.Initializer("W")) != onnxpb.TensorProto_FLOAT {
			t.Fatalf("Save changed the in-memory model's type")
		}
		n, err := Load(p)
		if err != nil {
			t.Fatal(err)
		}
		w := n.Initializer("W")
		if DataType(w) != onnxpb.TensorProto_FLOAT16 || DataType(n.Initializer("b")) != onnxpb.TensorProto_FLOAT16 {
			t.Fatalf("external=%v: W, b saved as %s, %s; want FLOAT16", ext, DataType(w), DataType(n.Initializer("b")))
		}
		if isExternal(w) != ext {
			t.Fatalf("external=%v: W external %v", ext, isExternal(w))
		}
		after, err := n.Float32s(w)
		if err != nil {
			t.Fatal(err)
		}
		for i := range before {
			if want := Float16ToFloat32(Float32ToFloat16(before[i])); after[i] != want {
				t.Fatalf("W[%d] = %v, want %v", i, after[i], want)
			}
		}
		if raw, _ := n.RawData(w); len(raw) != 2*len(before) {
			t.Fatalf("W holds %d bytes, want %d", len(raw), 2*len(before))
		}
		n.Close()
	}
}

func TestSaveRetypeChecksLengthAndNeedsTransform(t *testing.T) {
	m := tcTiny()
	p := filepath.Join(t.TempDir(), "m.onnx")
	retype := func(name string, _ *onnxpb.TensorProto) (onnxpb.TensorProto_DataType, bool) {
		return onnxpb.TensorProto_FLOAT16, name == "W"
	}
	err := m.Save(p, SaveOptions{Retype: retype})
	if err == nil || !strings.Contains(err.Error(), `retype tensor "W"`) {
		t.Fatalf("Retype without Transform: %v", err)
	}
	same := func(_ string, _ *onnxpb.TensorProto, raw []byte) ([]byte, error) { return raw, nil }
	err = m.Save(p, SaveOptions{Retype: retype, Transform: same})
	if err == nil || !strings.Contains(err.Error(), "returned 2048 bytes, want 1024") {
		t.Fatalf("wrong length: %v", err)
	}
}
