package onnx

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shears-ml/shears/onnx/onnxpb"
)

// toHalfInto is toHalf as a TransformInto.
func toHalfInto(name string, t *onnxpb.TensorProto, raw, dst []byte) error {
	out, err := toHalf(name, t, raw)
	if err != nil {
		return err
	}
	if len(out) != len(dst) {
		return errors.New("dst has the wrong length")
	}
	copy(dst, out)
	return nil
}

// withBig is tcTiny plus a float32 tensor of 3000 values (11,904 bytes: two whole 4 KiB blocks,
// written by direct I/O where the file system allows it, and a tail written through the page
// cache).
func withBig() *Model {
	m := tcTiny()
	v := make([]float32, 3000)
	for i := range v {
		v[i] = float32(i%101)*0.5 - 7
	}
	m.Proto.Graph.Initializer = append(m.Proto.Graph.Initializer, Float32Tensor("big", []int64{3000}, v))
	return m
}

// TransformInto writes what the same transformation as a Transform writes, byte for byte (data
// file, id, header), from inline and from external sources, with tensors retyped or not, and
// untouched tensors copied as they are.
func TestSaveTransformIntoMatchesTransform(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.onnx")
	if err := withBig().Save(src, SaveOptions{ExternalData: true, ExternalThreshold: 64}); err != nil {
		t.Fatal(err)
	}
	ext, err := Load(src)
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close()
	retype := func(name string, _ *onnxpb.TensorProto) (onnxpb.TensorProto_DataType, bool) {
		return onnxpb.TensorProto_FLOAT16, name == "W" || name == "big"
	}
	touches := func(name string) bool { return name != "b" }
	for _, c := range []struct {
		name string
		m    *Model
	}{{"inline", withBig()}, {"external", ext}} {
		a, b := filepath.Join(dir, c.name+"-a.onnx"), filepath.Join(dir, c.name+"-b.onnx")
		if err := c.m.Save(a, SaveOptions{ExternalData: true, ExternalThreshold: 64, Transform: toHalf, Retype: retype, Touches: touches}); err != nil {
			t.Fatal(err)
		}
		if err := c.m.Save(b, SaveOptions{ExternalData: true, ExternalThreshold: 64, TransformInto: toHalfInto, Retype: retype, Touches: touches}); err != nil {
			t.Fatal(err)
		}
		for _, suffix := range []string{"", ".data"} {
			x, _ := os.ReadFile(a + suffix)
			y, _ := os.ReadFile(b + suffix)
			if suffix == "" {
				x = bytes.ReplaceAll(x, []byte(filepath.Base(a)), []byte(filepath.Base(b)))
			}
			if len(x) == 0 || !bytes.Equal(x, y) {
				t.Errorf("%s: %s%s (%d bytes) differs from %s%s (%d bytes)", c.name, b, suffix, len(y), a, suffix, len(x))
			}
		}
		n, err := Load(b)
		if err != nil {
			t.Fatal(err)
		}
		got, err := n.Float32s(n.Initializer("big"))
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range got {
			if want := Float16ToFloat32(Float32ToFloat16(float32(i%101)*0.5 - 7)); v != want {
				t.Fatalf("%s: big[%d] = %v, want %v", c.name, i, v, want)
			}
		}
		n.Close()
	}
}

// A failing TransformInto fails the save naming the tensor and leaves no output; setting both
// Transform and TransformInto is refused.
func TestSaveTransformIntoErrors(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "m.onnx")
	boom := func(name string, _ *onnxpb.TensorProto, _, _ []byte) error {
		if name == "big" {
			return errors.New("boom")
		}
		return nil
	}
	err := withBig().Save(p, SaveOptions{ExternalData: true, ExternalThreshold: 64, TransformInto: boom})
	if err == nil || !strings.Contains(err.Error(), `transform tensor "big": boom`) {
		t.Fatalf("got %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("a failed save left %d files behind (%s ...)", len(ents), ents[0].Name())
	}
	same := func(_ string, _ *onnxpb.TensorProto, raw []byte) ([]byte, error) { return raw, nil }
	err = withBig().Save(p, SaveOptions{Transform: same, TransformInto: boom})
	if err == nil || !strings.Contains(err.Error(), "both Transform and TransformInto") {
		t.Fatalf("both set: %v", err)
	}
}

// The data file's writer keeps pieces of many tensors in flight at once and gives each pooled
// buffer back only when its last piece is written: with pieces, queue and budget shrunk so that
// 40 tensors of 6-60 KB each go out as several pieces, among those of their neighbours, the file
// is byte-identical to one written with the defaults (a buffer reused too early would carry the
// next tensor's bytes), and every tensor reads back as transformed.
func TestSaveManyTensorsInFlight(t *testing.T) {
	m := tcTiny()
	want := map[string][]float32{}
	for i := 0; i < 40; i++ {
		v := make([]float32, 3000+(i*7919)%27000)
		for j := range v {
			v[j] = float32((i*31+j)%211) * 0.25
		}
		name := "t" + strings.Repeat("x", i%3) + string(rune('A'+i%26)) + string(rune('a'+i/26))
		want[name] = v
		m.Proto.Graph.Initializer = append(m.Proto.Graph.Initializer, Float32Tensor(name, []int64{int64(len(v))}, v))
	}
	retype := func(name string, _ *onnxpb.TensorProto) (onnxpb.TensorProto_DataType, bool) {
		_, ok := want[name]
		return onnxpb.TensorProto_FLOAT16, ok
	}
	touches := func(name string) bool { _, ok := want[name]; return ok }
	opts := SaveOptions{ExternalData: true, ExternalThreshold: 64, TransformInto: toHalfInto, Retype: retype, Touches: touches}
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.onnx"), filepath.Join(dir, "b.onnx")
	if err := m.Save(a, opts); err != nil {
		t.Fatal(err)
	}
	chunk, queue, budget := directChunk, directQueue, directBudget
	directChunk, directQueue, directBudget = 8<<10, 3, 24<<10
	defer func() { directChunk, directQueue, directBudget = chunk, queue, budget }()
	if err := m.Save(b, opts); err != nil {
		t.Fatal(err)
	}
	x, _ := os.ReadFile(a + ".data")
	y, _ := os.ReadFile(b + ".data")
	if len(x) < 1<<20 || !bytes.Equal(x, y) {
		t.Fatalf("data files differ (%d and %d bytes)", len(x), len(y))
	}
	n, err := Load(b)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	for _, init := range n.Proto.Graph.GetInitializer() {
		v, ok := want[init.GetName()]
		if !ok {
			continue
		}
		got, err := n.Float32s(init)
		if err != nil {
			t.Fatal(err)
		}
		for j := range v {
			if got[j] != v[j] { // multiples of 0.25 below 53: exact in fp16
				t.Fatalf("%s[%d] = %g, want %g", init.GetName(), j, got[j], v[j])
			}
		}
		delete(want, init.GetName())
	}
	if len(want) != 0 {
		t.Errorf("%d tensors missing", len(want))
	}
}
