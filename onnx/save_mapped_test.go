package onnx

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/shears-ml/shears/onnx/onnxpb"
)

// withHuge is withBig plus a float32 tensor of 2 MiB, large enough to be stored through a
// mapping of the data file (mapMin).
func withHuge() *Model {
	m := withBig()
	v := make([]float32, 512<<10+3)
	for i := range v {
		v[i] = float32(i%997)*0.25 - 100
	}
	m.Proto.Graph.Initializer = append(m.Proto.Graph.Initializer, Float32Tensor("huge", []int64{int64(len(v))}, v))
	return m
}

// A TransformInto whose output goes through a mapping of the data file writes the same files,
// byte for byte (data, id, header), as one whose output is written from a buffer, retyped or
// not, from inline and external sources.
func TestSaveMappedOutputMatchesWritten(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.onnx")
	if err := withHuge().Save(src, SaveOptions{ExternalData: true, ExternalThreshold: 64}); err != nil {
		t.Fatal(err)
	}
	ext, err := Load(src)
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close()
	negateInto := func(_ string, x *onnxpb.TensorProto, raw, dst []byte) error {
		copy(dst, raw)
		if DataType(x) == onnxpb.TensorProto_FLOAT {
			for i := 3; i < len(dst); i += 4 {
				dst[i] ^= 0x80
			}
		}
		return nil
	}
	for _, c := range []struct {
		name string
		m    *Model
		opts SaveOptions
	}{
		{"inline", withHuge(), SaveOptions{ExternalData: true, ExternalThreshold: 64, TransformInto: negateInto}},
		{"external", ext, SaveOptions{ExternalData: true, ExternalThreshold: 64, TransformInto: negateInto}},
		{"external-retyped", ext, SaveOptions{ExternalData: true, ExternalThreshold: 64, TransformInto: toHalfInto,
			Retype: func(_ string, x *onnxpb.TensorProto) (onnxpb.TensorProto_DataType, bool) {
				return onnxpb.TensorProto_FLOAT16, DataType(x) == onnxpb.TensorProto_FLOAT
			}}},
	} {
		a, b := filepath.Join(dir, c.name+"-a.onnx"), filepath.Join(dir, c.name+"-b.onnx")
		mapOutputs = false
		err := c.m.Save(a, c.opts)
		mapOutputs = true
		if err != nil {
			t.Fatal(err)
		}
		if err := c.m.Save(b, c.opts); err != nil {
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
		if _, err := Load(b); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

// On Linux a large tensor really is stored through a mapping (so the test above compares the
// two ways), and the mapping is of the data file's reserved bytes.
func TestMapNextMapsTheFile(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("mapped outputs are Linux only")
	}
	p := filepath.Join(t.TempDir(), "x.data")
	d, err := newDataWriter(p, &bufPool{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.abort()
	b, err := d.mapNext(mapMin + 5)
	if b == nil || err != nil {
		t.Fatalf("mapNext: %v (nil mapping: %v)", err, b == nil)
	}
	copy(b, "stored in place")
	if fi, err := d.p.Stat(); err != nil || fi.Size() != mapMin+5 {
		t.Fatalf("the data file was not reserved to %d bytes: %v %v", mapMin+5, fi.Size(), err)
	}
	got := make([]byte, 15)
	if _, err := d.p.ReadAt(got, 0); err != nil || string(got) != "stored in place" {
		t.Fatalf("read back %q, %v", got, err)
	}
}

// The data file truncated while a transform stores into its mapping: an error naming the
// tensor, not a SIGBUS, and no output left.
func TestSaveMappedOutputTruncated(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("mapped outputs are Linux only")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "m.onnx")
	into := func(name string, _ *onnxpb.TensorProto, raw, dst []byte) error {
		if name == "huge" {
			tmps, _ := filepath.Glob(filepath.Join(dir, "*.tmp-*"))
			for _, p := range tmps {
				os.Truncate(p, 0)
			}
		}
		copy(dst, raw)
		return nil
	}
	err := withHuge().Save(out, SaveOptions{ExternalData: true, ExternalThreshold: 64, TransformInto: into})
	if err == nil || !strings.Contains(err.Error(), `transform tensor "huge": storing it in the data file faulted`) {
		t.Fatalf("save with the data file truncated: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("%d entries left in the output folder", len(ents))
	}
}
