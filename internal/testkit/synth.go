package testkit

// Synthetic models: small random-weight LLaMA graphs written for a test.

import (
	"path/filepath"
	"testing"

	"github.com/shears-ml/shears/models/llama"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// Synthetic writes a random-weight LLaMA of a models/llama preset ("tiny" for tests) with
// external data into a temporary folder and returns its path.
func Synthetic(t testing.TB, preset string) string {
	t.Helper()
	cfg, err := llama.Preset(preset)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), preset+".onnx")
	if err := llama.WriteSynthetic(path, cfg, 1, onnxpb.TensorProto_FLOAT); err != nil {
		t.Fatal(err)
	}
	return path
}

// LoadSynthetic is Synthetic loaded; the model is closed when the test ends.
func LoadSynthetic(t testing.TB, preset string) *onnx.Model {
	t.Helper()
	m, err := onnx.Load(Synthetic(t, preset))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}
