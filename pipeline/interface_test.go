package pipeline

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/lm"
	"github.com/shears-ml/shears/models/gpt2"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/transform/convert"
	"github.com/shears-ml/shears/transform/decoder"
	"github.com/shears-ml/shears/transform/lora"
)

// pass is one model-writing transform: it reads in and writes out.
type pass struct {
	name string
	run  func(t *testing.T, in, out string) error
}

func convertPass(dt onnxpb.TensorProto_DataType, c convert.Compute) func(t *testing.T, in, out string) error {
	return func(t *testing.T, in, out string) error {
		m, err := onnx.Load(in)
		if err != nil {
			return err
		}
		defer m.Close()
		p, err := convert.NewPlan(m, convert.Options{DType: dt, Compute: c})
		if err != nil {
			return err
		}
		if err := p.Rewrite(m); err != nil {
			return err
		}
		return m.Save(out, p.SaveOptions(onnx.SaveOptions{}))
	}
}

func exportPass(mode string) func(t *testing.T, in, out string) error {
	return func(t *testing.T, in, out string) error {
		super := filepath.Join(t.TempDir(), "super.onnx")
		if _, err := Adapt(AdaptOptions{Model: in, Out: super, LoRA: lora.Config{Ranks: []int{8, 6, 4}, Alpha: 16}, CopyBase: true}); err != nil {
			return err
		}
		_, err := Export(ExportOptions{Super: super, Ranks: "heuristic", Merge: mode, Out: out, CopyBase: true})
		return err
	}
}

// Every model-writing pass keeps the model's interface exactly — the same inputs and outputs, in
// the same order, with the same names, element types and fixed dims — on with-past models (our
// LLaMA and GPT-2 builders, PyTorch's optimum-style export when torch is installed), and writes
// a file the official checker accepts.
func TestPassesKeepInterface(t *testing.T) {
	testkit.ORT(t)
	dir := t.TempDir()
	fixtures := map[string]string{"llama": testkit.Synthetic(t, "tiny")}
	g2, err := gpt2.Build(gpt2.Tiny, 1)
	if err != nil {
		t.Fatal(err)
	}
	fixtures["gpt2"] = filepath.Join(dir, "gpt2.onnx")
	if err := g2.Save(fixtures["gpt2"], onnx.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	// optimum's merged decoder of the LLaMA (decoder.Merge): prune and adapt + export handle both
	// branches; convert and quantize refuse it, naming the If.
	{
		m, err := onnx.Load(fixtures["llama"])
		if err != nil {
			t.Fatal(err)
		}
		nc, err := decoder.NoCache(m)
		if err != nil {
			t.Fatal(err)
		}
		mg, err := decoder.Merge(m, nc)
		if err != nil {
			t.Fatal(err)
		}
		fixtures["merged"] = filepath.Join(dir, "merged.onnx")
		if err := mg.Save(fixtures["merged"], onnx.SaveOptions{}); err != nil {
			t.Fatal(err)
		}
		m.Close()
	}
	if testkit.TorchAvailable() == nil {
		fixtures["torch"] = testkit.TorchRandom(t, testkit.TorchTinySpec, 7).WithPast
	} else {
		t.Logf("no torch fixture: %v", testkit.TorchAvailable())
	}
	passes := []pass{
		{"prune magnitude 50%", func(t *testing.T, in, out string) error {
			_, err := Prune(PruneOptions{Model: in, Out: out, Method: "magnitude", Sparsity: 0.5})
			return err
		}},
		{"quantize rtn int4", func(t *testing.T, in, out string) error {
			_, err := Quantize(QuantizeOptions{Model: in, Out: out, Bits: 4, BlockSize: 32})
			return err
		}},
		{"convert fp16 weight-only", convertPass(onnxpb.TensorProto_FLOAT16, convert.ComputeFP32)},
		{"convert fp16 native", convertPass(onnxpb.TensorProto_FLOAT16, convert.ComputeNative)},
		{"adapt + export unmerged", exportPass("none")},
		{"adapt + export dense merge", exportPass("dense")},
		{"adapt + export sparse merge", exportPass("sparse")},
	}
	for fname, path := range fixtures {
		m, err := onnx.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		want, err := lm.Read(m)
		m.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !want.HasPast() {
			t.Fatalf("%s: no KV cache", fname)
		}
		for _, p := range passes {
			t.Run(fname+"/"+p.name, func(t *testing.T) {
				out := filepath.Join(t.TempDir(), "out.onnx")
				err := p.run(t, path, out)
				if fname == "merged" && (strings.HasPrefix(p.name, "convert") || strings.HasPrefix(p.name, "quantize")) {
					if err == nil || !strings.Contains(err.Error(), `node "optimum::if" (If) holds subgraphs`) {
						t.Errorf("merged decoder: error %v, want a refusal naming the If", err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				m, err := onnx.Load(out)
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				got, err := lm.Read(m)
				if err != nil {
					t.Fatal(err)
				}
				if d := lm.SameIO(want, got); d != "" {
					t.Errorf("interface changed: %s", d)
				}
				testkit.CheckONNX(t, out)
			})
		}
	}
}
