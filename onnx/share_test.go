package onnx

import (
	"github.com/shears-ml/shears/onnx/onnxpb"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// locations maps each external initializer of the model file at p to its location.
func locations(t *testing.T, p string) map[string]string {
	t.Helper()
	m, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	out := map[string]string{}
	for _, x := range m.Graph().GetInitializer() {
		for _, e := range x.GetExternalData() {
			if e.GetKey() == "location" {
				out[x.GetName()] = e.GetValue()
			}
		}
	}
	return out
}

func TestSaveShareExternal(t *testing.T) {
	src := extModel(t) // W, h and typed_big external in e.onnx.data
	dir := filepath.Dir(src)
	m, err := Load(src)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	want := rawAll(t, m)
	dataBefore, _ := os.ReadFile(src + ".data")

	// Next to the base: the references keep the base's file, no data file is written (the
	// remaining tensors are below the threshold) and every tensor reads the same bytes.
	out := filepath.Join(dir, "shared.onnx")
	if err := m.Save(out, SaveOptions{ExternalData: true, ShareExternal: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(out + ".data"); !os.IsNotExist(err) {
		t.Fatalf("a data file %s.data was written (err %v); the shared save must copy nothing", out, err)
	}
	locs := locations(t, out)
	if len(locs) != 3 || locs["W"] != "e.onnx.data" || locs["typed_big"] != "e.onnx.data" || locs["h"] != "e.onnx.data" {
		t.Fatalf("locations %v, want W, h and typed_big in e.onnx.data", locs)
	}
	got, err := Load(out)
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	sameTensors(t, "shared", want, rawAll(t, got))
	if after, _ := os.ReadFile(src + ".data"); string(after) != string(dataBefore) {
		t.Fatal("the base's data file changed")
	}

	// In the parent folder: the location becomes sub/e.onnx.data.
	parent := filepath.Dir(dir)
	up := filepath.Join(parent, "up-"+filepath.Base(dir)+".onnx")
	defer os.Remove(up)
	if err := m.CanShareExternal(up); err != nil {
		t.Fatal(err)
	}
	if err := m.Save(up, SaveOptions{ExternalData: true, ShareExternal: true}); err != nil {
		t.Fatal(err)
	}
	if l := locations(t, up)["W"]; l != filepath.Base(dir)+"/e.onnx.data" {
		t.Fatalf("location from the parent folder %q", l)
	}

	// Elsewhere: a clear error naming the file, nothing written.
	other := filepath.Join(t.TempDir(), "x.onnx")
	if err := m.CanShareExternal(other); err == nil || !strings.Contains(err.Error(), "e.onnx.data") {
		t.Fatalf("CanShareExternal elsewhere: %v", err)
	}
	err = m.Save(other, SaveOptions{ShareExternal: true})
	if err == nil || !strings.Contains(err.Error(), "not inside the output's folder") {
		t.Fatalf("share from another folder: %v", err)
	}
	if _, err := os.Stat(other); !os.IsNotExist(err) {
		t.Fatal("a failed save left its output")
	}
	// Overwriting the base in place would write its data file over the shared one.
	if err := m.Save(src, SaveOptions{ExternalData: true, ShareExternal: true}); err == nil || !strings.Contains(err.Error(), "shared base data file") {
		t.Fatalf("share onto the base's own data file: %v", err)
	}
	// A Transform means the bytes change: the tensors are written, not shared.
	xf := filepath.Join(dir, "xf.onnx")
	id := func(_ string, _ *onnxpb.TensorProto, raw []byte) ([]byte, error) { return raw, nil }
	if err := m.Save(xf, SaveOptions{ExternalData: true, ShareExternal: true, Transform: id}); err != nil {
		t.Fatal(err)
	}
	if l := locations(t, xf)["W"]; l != "xf.onnx.data" {
		t.Fatalf("transformed tensor location %q, want its own data file", l)
	}
}
