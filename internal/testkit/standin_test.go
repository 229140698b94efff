package testkit

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/shears-ml/shears/models/llama2c"
)

// The stand-in checkpoint has stories260K's layout exactly (1,056,540 bytes, ONNX-NOTES §8) and
// imports through the llama2.c importer with stories260K's 35 block linears' shapes.
func TestStandInCheckpointImports(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s.bin")
	b := llama2cCheckpoint(64, 172, 5, 8, 4, 512, 512, 1)
	if len(b) != 1056540 {
		t.Fatalf("%d bytes, want stories260K's 1056540", len(b))
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := llama2c.Import(p)
	if err != nil {
		t.Fatal(err)
	}
	w := m.Initializer("model.layers.4.mlp.down_proj.weight")
	if w == nil || len(w.GetDims()) != 2 || w.GetDims()[0]*w.GetDims()[1] != 172*64 {
		t.Fatalf("down_proj of layer 4: %v", w.GetDims())
	}
}
