package onnx

import (
	"bytes"
	"path/filepath"
	"runtime"
	"testing"
)

// mapAhead hands out the mapping of the tensor it was started on (its bytes are the tensor's),
// nothing for another tensor, and nothing twice.
func TestMapAhead(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("tensors are mapped on Linux only")
	}
	p := filepath.Join(t.TempDir(), "m.onnx")
	if err := withBig().Save(p, SaveOptions{ExternalData: true, ExternalThreshold: 64}); err != nil {
		t.Fatal(err)
	}
	m, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	inits := m.Graph().GetInitializer()
	a, b := inits[0], inits[len(inits)-1]
	if !isExternal(a) || !isExternal(b) || a == b {
		t.Fatalf("want two external tensors, have %d initializers", len(inits))
	}
	na, _ := tensorByteLen(a)
	nb, _ := tensorByteLen(b)
	ahead := &mapAhead{}
	defer ahead.release()
	ahead.start(m, b, nb)
	ahead.start(m, b, nb) // already under way: no second mapping
	if _, took := ahead.take(a, na); took {
		t.Fatal("took a mapping of another tensor")
	}
	r, took := ahead.take(b, nb)
	if !took || r.err != nil || !r.ok {
		t.Fatalf("take: took %v, ok %v, err %v", took, r.ok, r.err)
	}
	want, err := m.RawData(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.b, want) {
		t.Errorf("the mapping of %q differs from its bytes", b.GetName())
	}
	r.unmap()
	if _, took := ahead.take(b, nb); took {
		t.Fatal("took the same mapping twice")
	}
	ahead.start(m, a, na)
	ahead.release() // unmapped without being taken
	if _, took := ahead.take(a, na); took {
		t.Fatal("took a released mapping")
	}
}
