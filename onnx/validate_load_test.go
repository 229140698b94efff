package onnx

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Issue 14 case 10: Load checks every tensor's dims against sane bounds and its data (adapt
// used to print a negative parameter count for dims 2^62 and write a broken super-network
// for dims that did not match the data), and refuses external data that a symbolic link
// takes outside the model's folder.
func TestLoadRefusesAbsurdDimsAndEscapingLinks(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		dims []int64
		want string
	}{
		{[]int64{1 << 62}, "more than 2^40 elements"},
		{[]int64{-4, 8}, "negative dim"},
		{[]int64{3, 8}, "raw_data holds"}, // W holds 4×8 floats
	} {
		m := tcTiny()
		m.Initializer("W").Dims = c.dims
		b, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "bad.onnx")
		os.WriteFile(p, b, 0o644)
		if _, err := Load(p); err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), `"W"`) {
			t.Errorf("dims %v: %v; want %q naming W", c.dims, err, c.want)
		}
	}

	// External data through links: inside the folder is fine, outside is refused.
	modelDir := filepath.Join(dir, "model")
	os.MkdirAll(filepath.Join(modelDir, "blobs"), 0o755)
	p := filepath.Join(modelDir, "m.onnx")
	if err := tcTiny().Save(p, SaveOptions{ExternalData: true, DataFile: "blobs/w.bin"}); err != nil {
		t.Fatal(err)
	}
	os.Rename(filepath.Join(modelDir, "blobs", "w.bin"), filepath.Join(modelDir, "blobs", "real.bin"))
	os.Symlink("real.bin", filepath.Join(modelDir, "blobs", "w.bin"))
	if _, err := Load(p); err != nil {
		t.Fatalf("a link inside the folder: %v", err)
	}
	outside := filepath.Join(dir, "elsewhere.bin")
	os.Rename(filepath.Join(modelDir, "blobs", "real.bin"), outside)
	os.Remove(filepath.Join(modelDir, "blobs", "w.bin"))
	os.Symlink(outside, filepath.Join(modelDir, "blobs", "w.bin"))
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), "outside the model's folder") {
		t.Fatalf("a link leaving the folder: %v", err)
	}
}
