package pipeline

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shears-ml/shears/runtime"
)

// GPTQ, like Wanda, calibrates on pre-tokenized {"ids": [...]} .jsonl without a tokenizer:
// records of exactly --seq-len ids are the windows (every decoder linear is quantized); text
// data without a tokenizer is refused, saying so.
func TestGPTQOnPreTokenizedIDsNeedsNoTokenizer(t *testing.T) {
	r := fixture(t)
	dir := t.TempDir()
	ids := filepath.Join(dir, "ids.jsonl")
	var b strings.Builder
	for rec := range 2 {
		w := make([]int, 16)
		for i := range w {
			w[i] = (rec*37 + i*11) % 512
		}
		line, err := json.Marshal(map[string][]int{"ids": w})
		if err != nil {
			t.Fatal(err)
		}
		b.Write(append(line, '\n'))
	}
	if err := os.WriteFile(ids, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	o := QuantizeOptions{Model: r.Model, Out: filepath.Join(dir, "q.onnx"), Bits: 4, Method: "gptq", Calib: ids, Samples: 2, SeqLen: 16,
		Runtime: runtime.Options{Threads: 1}}
	rep, err := Quantize(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Layers) != 35 || rep.Samples != 2 || rep.SeqLen != 16 { // stories260K: 5 blocks × 7 linears
		t.Fatalf("%d layers, %d × %d windows", len(rep.Layers), rep.Samples, rep.SeqLen)
	}
	o.Calib, o.Out = r.Prune.Calib, filepath.Join(dir, "q2.onnx")
	if _, err := Quantize(o); err == nil || !strings.Contains(err.Error(), "no tokenizer given") {
		t.Fatalf("text data without a tokenizer: %v", err)
	}
}
