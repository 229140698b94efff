package onnx

import (
	"os"
	"testing"
)

// FuzzLoad feeds arbitrary bytes through LoadBytes and everything that reads a loaded model:
// none of it may panic, whatever the input.
func FuzzLoad(f *testing.F) {
	if b, err := tcTiny().Marshal(); err == nil {
		f.Add(b)
	}
	if p := fuzzFixture(); p != "" {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte{})
	f.Add([]byte{0x3a, 0x02, 0x0a, 0x00}) // graph with one empty node
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := LoadBytes(data, t.TempDir())
		if err != nil {
			return
		}
		defer m.Close()
		_ = Validate(m)
		for _, x := range m.Graph().GetInitializer() {
			_, _ = m.RawData(x)
			_, _ = m.Float32s(x)
			_, _ = m.Int64s(x)
		}
		ix := NewIndex(m.Graph())
		_, _ = ix.TopoOrder()
		_ = ix.UniqueName("x")
		_, _ = InferShapes(m, nil)
		if _, err := m.Marshal(); err != nil {
			t.Fatalf("a loaded model does not marshal: %v", err)
		}
	})
}

// fuzzFixture is the torch fixture's path when present ("" otherwise; seeds are optional).
func fuzzFixture() string {
	dir, _ := os.Getwd()
	for i := 0; i < 6; i++ {
		if _, err := os.Stat(dir + "/go.mod"); err == nil {
			p := dir + "/../shared/models/stories260K/stories260K.torch-opset17.onnx"
			if _, err := os.Stat(p); err == nil {
				return p
			}
			return ""
		}
		dir += "/.."
	}
	return ""
}
