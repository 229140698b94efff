package runtime_test

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/runtime"
)

// runBatch runs the [2,64] batch and returns the logits.
func runBatch(t *testing.T, s *runtime.Session) []float32 {
	t.Helper()
	out, err := s.Run(map[string]*runtime.Tensor{"input_ids": runtime.I64([]int64{2, 64}, batchIDs())}, []string{"logits"})
	if err != nil {
		t.Fatal(err)
	}
	return out["logits"].F32
}

// A copy saved with external data runs bit-identically, from a path and from bytes plus the
// external-data folder (with the working directory elsewhere, where onnxruntime would look
// without the folder option).
func TestExternalDataCopy(t *testing.T) {
	s := openStories(t)
	want := runBatch(t, s)

	m, err := onnx.Load(storiesPath(t))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	dir := t.TempDir()
	ext := filepath.Join(dir, "stories-ext.onnx")
	if err := m.Save(ext, onnx.SaveOptions{ExternalData: true}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(ext)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 1<<20 {
		t.Fatalf("%s is %d bytes: the weights were not externalised", ext, fi.Size())
	}

	se, err := runtime.OpenFile(ext, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer se.Close()
	if got := runBatch(t, se); !reflect.DeepEqual(got, want) {
		t.Fatal("external-data copy (from its path) gives different logits")
	}

	em, err := onnx.Load(ext)
	if err != nil {
		t.Fatal(err)
	}
	defer em.Close()
	b, err := em.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	// Without the folder onnxruntime looks in the working directory and fails; the error names the model.
	if s, err := runtime.OpenBytes(b, "", testOpts); err == nil {
		s.Close()
		t.Fatal("OpenBytes of an external-data model without its folder succeeded")
	} else {
		t.Logf("without folder: %v", err)
	}
	sb, err := runtime.OpenBytes(b, dir, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	if got := runBatch(t, sb); !reflect.DeepEqual(got, want) {
		t.Fatal("external-data copy (from bytes + folder) gives different logits")
	}
}
