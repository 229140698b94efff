package onnx

import (
	"path/filepath"
	"strconv"
	"testing"

	"github.com/shears-ml/shears/onnx/onnxpb"
)

// benchModel writes a model of n 4 MiB fp32 weights with external data and returns its path.
func benchModel(b *testing.B, n int) string {
	b.Helper()
	var inits []*onnxpb.TensorProto
	for i := 0; i < n; i++ {
		inits = append(inits, NewTensor("W"+strconv.Itoa(i), onnxpb.TensorProto_FLOAT, []int64{1024, 1024}, make([]byte, 4<<20)))
	}
	g := &onnxpb.GraphProto{Name: tcStr("bench"), Initializer: inits}
	p := filepath.Join(b.TempDir(), "bench.onnx")
	if err := tcModel(g, 17).Save(p, SaveOptions{ExternalData: true}); err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkLoadExternal256MiB: Load must not touch the weights (compare B/op with the size).
func BenchmarkLoadExternal256MiB(b *testing.B) {
	p := benchModel(b, 64)
	b.ReportAllocs()
	for b.Loop() {
		m, err := Load(p)
		if err != nil {
			b.Fatal(err)
		}
		m.Close()
	}
}

// BenchmarkSaveExternal256MiB streams 256 MiB of external weights into a new data file.
func BenchmarkSaveExternal256MiB(b *testing.B) {
	p := benchModel(b, 64)
	m, err := Load(p)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	out := filepath.Join(b.TempDir(), "out.onnx")
	b.SetBytes(256 << 20)
	b.ReportAllocs()
	for b.Loop() {
		if err := m.Save(out, SaveOptions{ExternalData: true}); err != nil {
			b.Fatal(err)
		}
	}
}
