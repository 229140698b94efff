package onnx

import (
	"path/filepath"
	"testing"
)

// Stacked transforms: each runs on the tensors it touches, the second on the first's bytes;
// a tensor neither touches is written as it was.
func TestSaveOptionsThen(t *testing.T) {
	m := tcTiny()
	only := func(names ...string) func(string) bool {
		return func(n string) bool {
			for _, x := range names {
				if n == x {
					return true
				}
			}
			return false
		}
	}
	o := SaveOptions{ExternalData: true}.Then(only("W"), scale(2)).Then(only("W", "b"), scale(3))
	p := filepath.Join(t.TempDir(), "m.onnx")
	if err := m.Save(p, o); err != nil {
		t.Fatal(err)
	}
	got, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	for name, k := range map[string]float32{"W": 6, "b": 3, "h": 1} {
		a, _ := m.Float32s(m.Initializer(name))
		b, err := got.Float32s(got.Initializer(name))
		if err != nil || len(a) != len(b) {
			t.Fatalf("%s: %v", name, err)
		}
		for i := range a {
			if b[i] != k*a[i] {
				t.Fatalf("%s[%d] = %v, want %v×%v", name, i, b[i], k, a[i])
			}
		}
	}
}
