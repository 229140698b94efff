package pipeline

import (
	"path/filepath"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/models/gpt2"
	"github.com/shears-ml/shears/onnx"
)

// TestQuantizeGPT2: the GPT-2 family (fused c_attn, biases after the MatMuls, tied head)
// quantizes too, with logits equal to its dequantized float twin's.
func TestQuantizeGPT2(t *testing.T) {
	testkit.ORT(t)
	m, err := gpt2.Build(gpt2.Tiny, 3)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "gpt2.onnx")
	if err := m.Save(src, onnx.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "q.onnx")
	rep, err := Quantize(QuantizeOptions{Model: src, Out: out, Bits: 4}) // the head is tied to the embedding table: the twin below would change both
	if err != nil {
		t.Fatal(err)
	}
	qm, err := onnx.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	defer qm.Close()
	_, got := testkit.RunLogits(t, qm, 1, []int64{5, 6, 7, 8}, nil)
	dm, err := onnx.Load(dequantModel(t, src, out))
	if err != nil {
		t.Fatal(err)
	}
	defer dm.Close()
	_, want := testkit.RunLogits(t, dm, 1, []int64{5, 6, 7, 8}, nil)
	if d := testkit.MaxDiff(got, want); !(d <= 1e-3) {
		t.Fatalf("gpt2: %d layers quantized; logits differ from the dequantized model's by %g", len(rep.Layers), d)
	}
	t.Logf("%d linears quantized", len(rep.Layers))
}
