package runtime_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
)

// A session refuses a model whose data file is not the one it was saved with (issue 14 case
// 1: a save torn between its two renames), from a path and from bytes, before onnxruntime
// would compute with the mismatched weights.
func TestOpenRefusesTornSave(t *testing.T) {
	testkit.ORT(t)
	m := testkit.LoadSynthetic(t, "tiny")
	p := filepath.Join(t.TempDir(), "m.onnx")
	if err := m.Save(p, onnx.SaveOptions{ExternalData: true}); err != nil {
		t.Fatal(err)
	}
	s, err := runtime.OpenFile(p, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	header, _ := os.ReadFile(p)
	negate := func(_ string, x *onnxpb.TensorProto, raw []byte) ([]byte, error) {
		out := append([]byte(nil), raw...)
		if onnx.DataType(x) == onnxpb.TensorProto_FLOAT {
			for i := 3; i < len(out); i += 4 {
				out[i] ^= 0x80
			}
		}
		return out, nil
	}
	onnx.FaultHook = func(point string) error { return errors.New("killed at " + point) }
	err = m.Save(p, onnx.SaveOptions{ExternalData: true, Transform: negate})
	onnx.FaultHook = nil
	if err == nil {
		t.Fatal("the fault did not stop the save")
	}
	if _, err := runtime.OpenFile(p, testOpts); !errors.Is(err, onnx.ErrTornSave) {
		t.Fatalf("OpenFile of a torn pair: %v", err)
	}
	if _, err := runtime.OpenBytes(header, filepath.Dir(p), testOpts); !errors.Is(err, onnx.ErrTornSave) {
		t.Fatalf("OpenBytes of a torn pair: %v", err)
	}
}
