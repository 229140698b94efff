package testkit

// The stories260K PyTorch export (ONNX-NOTES §8): ../shared's stories260K.torch-opset17.onnx, or
// the same graph exported here when ../shared is absent, so that the tests of "a model as torch
// writes it" run on a fresh clone.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TorchStoriesRel is the export's path under ../shared.
const TorchStoriesRel = "models/stories260K/stories260K.torch-opset17.onnx"

// TorchStoriesExport is the export a test got.
type TorchStoriesExport struct {
	Path string
	// Trained: the weights are stories260K's own (../shared's file, or an export of the fetched
	// checkpoint), so llama2.c's run.c goldens hold; false for the random-weight stand-in.
	Trained bool
	// AfterBOS are PyTorch's eager logits after BOS for the exported weights (nil for ../shared's
	// file, whose goldens are run.c's): the reference a stand-in's onnxruntime logits must meet.
	AfterBOS []float32
}

// TorchStories returns ../shared's export when present; otherwise it exports StoriesShaped's
// checkpoint (the fetched stories260K.bin, or without network its random-weight stand-in) with
// testdata/torch/llama2c_model.py, which writes ../shared's file byte for byte from the real
// checkpoint under torch 1.13: the same modules, node names (/layers.N/wq/MatMul), onnx::MatMul_N
// weights, opset 17 and interface (input_ids → logits [batch, sequence, 512]). The export is
// cached like the other torch fixtures (once per checkout, a few seconds); the test is skipped,
// saying why, only when ../shared lacks the file and torch is not installed.
func TorchStories(t testing.TB) TorchStoriesExport {
	t.Helper()
	if p, _ := FindShared(t, TorchStoriesRel); p != "" {
		return TorchStoriesExport{Path: p, Trained: true}
	}
	if err := TorchAvailable(); err != nil {
		t.Skipf("%s is absent from ../shared and cannot be exported here: %v", TorchStoriesRel, err)
	}
	p, afterBOS := exportTorchStories(t, StoriesShaped(t))
	return TorchStoriesExport{Path: p, Trained: TrainedStories(t), AfterBOS: afterBOS}
}

// exportTorchStories exports the llama2.c checkpoint ckpt (cached by content) and returns the
// .onnx and PyTorch's eager logits after BOS.
func exportTorchStories(t testing.TB, ckpt string) (string, []float32) {
	t.Helper()
	root := RepoRoot(t)
	script := filepath.Join(root, "testdata", "torch", "llama2c_model.py")
	reader := filepath.Join(root, "testdata", "torch", "optimum_llama.py") // the checkpoint reader it imports
	const model, logits = "stories260K.torch-opset17.onnx", "after-bos.json"
	dir, _ := torchCached(t, []string{script, reader, ckpt}, "", model, func(out string) []string {
		return []string{script, ckpt, "-o", filepath.Join(out, model), "--after-bos", filepath.Join(out, logits)}
	}, true)
	b, err := os.ReadFile(filepath.Join(dir, logits))
	if err != nil {
		t.Fatal(err)
	}
	var row []float32
	if err := json.Unmarshal(b, &row); err != nil || len(row) != 512 {
		t.Fatalf("%s: want 512 logits (%v)", filepath.Join(dir, logits), err)
	}
	return filepath.Join(dir, model), row
}
