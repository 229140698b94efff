package onnx

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/shears-ml/shears/onnx/onnxpb"
)

// scale returns a Transform multiplying every float32 tensor by k.
func scale(k float32) func(string, *onnxpb.TensorProto, []byte) ([]byte, error) {
	return func(_ string, x *onnxpb.TensorProto, raw []byte) ([]byte, error) {
		if DataType(x) != onnxpb.TensorProto_FLOAT {
			return raw, nil
		}
		tmp := &onnxpb.TensorProto{DataType: x.DataType, Dims: []int64{int64(len(raw) / 4)}, RawData: raw}
		v, _ := (&Model{}).Float32s(tmp)
		for i := range v {
			v[i] *= k
		}
		SetFloat32s(tmp, v)
		return tmp.RawData, nil
	}
}

// Issue 14 case 1: a save stopped between renaming the data file and renaming the model (a
// kill or a power loss there) leaves the old header over the new weights. Load must refuse
// the pair, naming the data file, instead of returning a model that computes garbage; the
// next save of the same output repairs it.
func TestTornSaveIsRefused(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.onnx")
	m := savedTiny(t, p)
	want := rawAll(t, m)

	FaultHook = func(point string) error {
		if point == "save-between-renames" {
			return errors.New("killed")
		}
		return nil
	}
	err := m.Save(p, SaveOptions{ExternalData: true, Transform: scale(3)})
	FaultHook = nil
	if err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("save with the fault: %v", err)
	}
	_, err = Load(p)
	if !errors.Is(err, ErrTornSave) || !strings.Contains(err.Error(), "c.onnx.data") {
		t.Fatalf("load of the torn pair: %v; want ErrTornSave naming c.onnx.data", err)
	}
	// The next save puts a consistent pair in place.
	if err := m.Save(p, SaveOptions{ExternalData: true}); err != nil {
		t.Fatal(err)
	}
	again, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	sameTensors(t, "after repair", want, rawAll(t, again))
}

// A super-network that shares its base's data file records that file's id: re-writing the base
// underneath (a re-prune) makes loading the super-network an error, not a silent mix.
func TestSharedBaseChangedUnderneathIsRefused(t *testing.T) {
	src := extModel(t)
	m, err := Load(src)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(filepath.Dir(src), "super.onnx")
	if err := m.Save(out, SaveOptions{ExternalData: true, ShareExternal: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(out); err != nil {
		t.Fatal(err)
	}
	if err := m.Save(src, SaveOptions{ExternalData: true, Transform: scale(0.5)}); err != nil {
		t.Fatal(err)
	}
	m.Close()
	if _, err := Load(out); !errors.Is(err, ErrTornSave) || !strings.Contains(err.Error(), "e.onnx.data") {
		t.Fatalf("load of a super-network over a rewritten base: %v", err)
	}
}

// Identical saves give identical files (the id is a content hash, not random), and saves that
// differ in weights but not in layout get different ids.
func TestDataIDIsAContentHash(t *testing.T) {
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a.onnx"), filepath.Join(dir, "b.onnx"), filepath.Join(dir, "c.onnx")
	for _, p := range []string{a, b} {
		if err := tcTiny().Save(p, SaveOptions{ExternalData: true, DataFile: "x.data"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tcTiny().Save(c, SaveOptions{ExternalData: true, DataFile: "y.data", Transform: scale(2)}); err != nil {
		t.Fatal(err)
	}
	ha, _ := os.ReadFile(a)
	hb, _ := os.ReadFile(b)
	if string(ha) != string(hb) {
		t.Fatal("two identical saves wrote different headers")
	}
	ix, _ := readDataID(filepath.Join(dir, "x.data"))
	iy, _ := readDataID(filepath.Join(dir, "y.data"))
	if len(ix) != 32 || ix == iy {
		t.Fatalf("ids %q and %q", ix, iy)
	}
}

// Temporaries of a process that died (kill -9 mid-save) are removed by the next save of the
// same output; those of a live process are left alone.
func TestSaveRemovesDeadProcessTemps(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "m.onnx")
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip("no true(1):", err)
	}
	dead := strconv.Itoa(cmd.Process.Pid)
	live := strconv.Itoa(os.Getppid())
	stale := []string{"m.onnx.tmp-" + dead + "-123", "m.onnx.data.tmp-" + dead + "-456"}
	keep := []string{"m.onnx.tmp-" + live + "-789", "other.onnx.tmp-" + dead + "-1"}
	for _, n := range append(append([]string{}, stale...), keep...) {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := tcTiny().Save(p, SaveOptions{ExternalData: true}); err != nil {
		t.Fatal(err)
	}
	for _, n := range stale {
		if _, err := os.Stat(filepath.Join(dir, n)); !os.IsNotExist(err) {
			t.Errorf("stale %s still there (%v)", n, err)
		}
	}
	for _, n := range keep {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			t.Errorf("%s was removed: %v", n, err)
		}
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-"+strconv.Itoa(os.Getpid())) {
			t.Errorf("the save left its own temporary %s", e.Name())
		}
	}
}
