package pipeline

import (
	"encoding/binary"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/models/llama"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/transform/convert"
	"github.com/shears-ml/shears/transform/layers"
	"github.com/shears-ml/shears/transform/lora"
	"github.com/shears-ml/shears/transform/quant"
)

// dequantModel writes the float model at base with each quantized linear's weight replaced by
// the dequantized weight read from the quantized model at q: the truth the quantized model's
// logits must match.
func dequantModel(t *testing.T, base, q string) string {
	t.Helper()
	qm, err := onnx.Load(q)
	if err != nil {
		t.Fatal(err)
	}
	defer qm.Close()
	_, ql, err := quant.Quantized(qm)
	if err != nil {
		t.Fatal(err)
	}
	m, err := onnx.Load(base)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ls, err := layers.Find(m)
	if err != nil {
		t.Fatal(err)
	}
	repl := map[string][]float32{}
	for _, l := range ls {
		if x := ql[l.Node]; x != nil {
			w := x.Dequant()
			if l.Transposed {
				tw := make([]float32, len(w))
				for i := 0; i < x.K; i++ {
					for j := 0; j < x.N; j++ {
						tw[j*x.K+i] = w[i*x.N+j]
					}
				}
				w = tw
			}
			repl[l.Weight] = w
		}
	}
	if len(repl) != len(ql) {
		t.Fatalf("%d quantized layers, %d matched to float linears", len(ql), len(repl))
	}
	out := filepath.Join(t.TempDir(), "deq.onnx")
	err = m.Save(out, onnx.SaveOptions{Transform: func(name string, tp *onnxpb.TensorProto, raw []byte) ([]byte, error) {
		if w, ok := repl[name]; ok && onnx.DataType(tp) == onnxpb.TensorProto_FLOAT16 {
			b := make([]byte, 2*len(w))
			for i, x := range w {
				binary.LittleEndian.PutUint16(b[2*i:], onnx.Float32ToFloat16(x))
			}
			return b, nil
		} else if ok {
			return f32Bytes(w), nil
		}
		return raw, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestQuantizeKeepsZerosAndMatchesDequantizedFloat quantizes a 50%-sparse tiny LLaMA with every
// grid and checks: 14 MatMulNBits nodes, every zero kept, the size ratio, and the quantized
// model's logits against the float model holding the dequantized weights.
func TestQuantizeKeepsZerosAndMatchesDequantizedFloat(t *testing.T) {
	testkit.ORT(t)
	dir := t.TempDir()
	src := testkit.Synthetic(t, "tiny")
	sparse := filepath.Join(dir, "sparse.onnx")
	if _, err := Prune(PruneOptions{Model: src, Out: sparse, Method: "magnitude", Sparsity: 0.5}); err != nil {
		t.Fatal(err)
	}
	ids := []int64{1, 5, 9, 200, 17, 3, 44, 8}
	for _, c := range []struct {
		bits, block int
		sym         bool
		maxRatio    float64
		acc         int     // accuracy_level
		tol         float64 // logits vs the dequantized float model
	}{{4, 32, false, 0.2, 0, 1e-3}, {4, 64, true, 0.2, 0, 1e-3}, {4, 128, true, 0.3, 0, 1e-3}, {8, 64, false, 0.3, 0, 1e-3},
		{4, 32, false, 0.2, 4, 0.05}} { // int8 activations: the kernel's own rounding of A
		out := filepath.Join(dir, "q.onnx")
		rep, err := Quantize(QuantizeOptions{Model: sparse, Out: out, Bits: c.bits, BlockSize: c.block, Symmetric: c.sym, AccuracyLevel: c.acc})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Layers) != 14 || !rep.ZerosKept || rep.BaseZeros == 0 || !(rep.Sparsity >= 0.5) || !(rep.Ratio <= c.maxRatio) {
			t.Fatalf("%+v: %d layers, zeros kept %v (%d), sparsity %g, ratio %g", c, len(rep.Layers), rep.ZerosKept, rep.BaseZeros, rep.Sparsity, rep.Ratio)
		}
		qm, err := onnx.Load(out)
		if err != nil {
			t.Fatal(err)
		}
		_, got := testkit.RunLogits(t, qm, 1, ids, nil)
		qm.Close()
		dm, err := onnx.Load(dequantModel(t, sparse, out))
		if err != nil {
			t.Fatal(err)
		}
		_, want := testkit.RunLogits(t, dm, 1, ids, nil)
		dm.Close()
		if d := testkit.MaxDiff(got, want); !(d <= c.tol) {
			t.Fatalf("%+v: quantized logits differ from the dequantized float model's by %g", c, d)
		}
	}
}

func TestQuantizeBadInput(t *testing.T) {
	testkit.ORT(t)
	dir := t.TempDir()
	src := testkit.Synthetic(t, "tiny")
	q := filepath.Join(dir, "q.onnx")
	if _, err := Quantize(QuantizeOptions{Model: src, Out: q, Bits: 4}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		o    QuantizeOptions
		want string
	}{
		{"bits 3", QuantizeOptions{Model: src, Bits: 3}, "--bits 3"},
		{"block 48", QuantizeOptions{Model: src, Bits: 4, BlockSize: 48}, "--block-size 48"},
		{"method", QuantizeOptions{Model: src, Bits: 4, Method: "awq"}, "--method"},
		{"accuracy level", QuantizeOptions{Model: src, Bits: 4, AccuracyLevel: 2}, "--accuracy-level 2"},
		{"gptq without data", QuantizeOptions{Model: src, Bits: 4, Method: "gptq"}, "--calib"},
		{"already quantized", QuantizeOptions{Model: q, Bits: 4}, "already quantized"},
		{"no targets", QuantizeOptions{Model: src, Bits: 4, Include: "nothing-matches"}, "no linear layers"},
	} {
		c.o.Out = filepath.Join(dir, "bad.onnx")
		_, err := Quantize(c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to mention %q", c.name, err, c.want)
		}
		if m, _ := filepath.Glob(c.o.Out + "*"); len(m) > 0 {
			t.Errorf("%s: output left behind: %v", c.name, m)
		}
	}
	_, err := Prune(PruneOptions{Model: q, Out: filepath.Join(dir, "p.onnx"), Method: "magnitude", Sparsity: 0.5})
	if err == nil || !strings.Contains(err.Error(), "prune first") {
		t.Errorf("pruning a quantized model: %v, want a \"prune first\" error", err)
	}
	// A QA super-network holds no MatMulNBits node (its unadapted linears dequantize with
	// standard operators), and is refused all the same.
	super := filepath.Join(dir, "super.onnx")
	if _, err := Adapt(AdaptOptions{Model: q, Out: super, LoRA: lora.Config{Ranks: []int{8, 4}, Alpha: 16, SparseAdapter: true}}); err != nil {
		t.Fatal(err)
	}
	_, err = Prune(PruneOptions{Model: super, Out: filepath.Join(dir, "p.onnx"), Method: "magnitude", Sparsity: 0.5})
	if err == nil || !strings.Contains(err.Error(), "QA-SparsePEFT super-network") {
		t.Errorf("pruning a QA super-network: %v, want it refused", err)
	}
	_, err = Quantize(QuantizeOptions{Model: super, Out: filepath.Join(dir, "q2.onnx"), Bits: 4})
	if err == nil || !strings.Contains(err.Error(), "QA-SparsePEFT super-network") {
		t.Errorf("quantizing a QA super-network: %v, want it refused", err)
	}
	for _, out := range []string{"p.onnx", "q2.onnx"} {
		if m, _ := filepath.Glob(filepath.Join(dir, out) + "*"); len(m) > 0 {
			t.Errorf("output left behind: %v", m)
		}
	}
}

func f32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// TestQuantizeFloat16Base quantizes a float16 model from its float16 weights (scales in the
// activations' float16) and runs it.
func TestQuantizeFloat16Base(t *testing.T) {
	testkit.ORT(t)
	cfg, err := llama.Preset("tiny")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "fp16.onnx")
	if err := llama.WriteSyntheticAs(src, cfg, 1, convert.Storage(convert.Options{DType: onnxpb.TensorProto_FLOAT16, Compute: convert.ComputeFP32})); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "q.onnx")
	rep, err := Quantize(QuantizeOptions{Model: src, Out: out, Bits: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Layers) != 14 {
		t.Fatalf("%d layers quantized, want 14", len(rep.Layers))
	}
	qm, err := onnx.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	defer qm.Close()
	_, got := testkit.RunLogits(t, qm, 1, []int64{1, 2, 3}, nil)
	dm, err := onnx.Load(dequantModel(t, src, out))
	if err != nil {
		t.Fatal(err)
	}
	defer dm.Close()
	_, want := testkit.RunLogits(t, dm, 1, []int64{1, 2, 3}, nil)
	if d := testkit.MaxDiff(got, want); !(d <= 0.05) {
		t.Fatalf("float16: quantized logits differ from the dequantized model's by %g", d)
	}
}

// TestQuantizeIncludeHead: --include-head adds the LM head (15 MatMulNBits on the tiny model)
// and the model still computes its dequantized float twin's logits.
func TestQuantizeIncludeHead(t *testing.T) {
	testkit.ORT(t)
	src := testkit.Synthetic(t, "tiny")
	out := filepath.Join(t.TempDir(), "q.onnx")
	rep, err := Quantize(QuantizeOptions{Model: src, Out: out, Bits: 8, IncludeHead: true})
	if err != nil {
		t.Fatal(err)
	}
	head := 0
	for _, l := range rep.Layers {
		if l.Block < 0 {
			head++
		}
	}
	if len(rep.Layers) != 15 || head != 1 {
		t.Fatalf("%d layers quantized (%d outside the blocks), want 15 with the head", len(rep.Layers), head)
	}
	qm, err := onnx.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	defer qm.Close()
	_, got := testkit.RunLogits(t, qm, 1, []int64{5, 6, 7}, nil)
	dm, err := onnx.Load(dequantModel(t, src, out))
	if err != nil {
		t.Fatal(err)
	}
	defer dm.Close()
	_, want := testkit.RunLogits(t, dm, 1, []int64{5, 6, 7}, nil)
	if d := testkit.MaxDiff(got, want); !(d <= 1e-3) {
		t.Fatalf("with the head quantized, logits differ from the dequantized model's by %g", d)
	}
}

// TestQuantizedModelsPrepack: sessions over what shears quantize writes get onnxruntime's
// weight pre-packing from the session layer (the MatMulNBits kernel re-packs per run without
// it), with the options every command loads (RuntimeConfig); the float model does not; an
// explicit prepack: off wins.
func TestQuantizedModelsPrepack(t *testing.T) {
	testkit.ORT(t)
	dir := t.TempDir()
	src := testkit.Synthetic(t, "tiny")
	out := filepath.Join(dir, "q.onnx")
	if _, err := Quantize(QuantizeOptions{Model: src, Out: out, Bits: 4, BlockSize: 32}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		model, prepack string
		want           bool
	}{{src, "", false}, {out, "", true}, {out, "off", false}, {src, "on", true}} {
		ro, err := RuntimeConfig{Threads: 1, Prepack: c.prepack}.Load()
		if err != nil {
			t.Fatal(err)
		}
		s, err := runtime.OpenFile(c.model, ro)
		if err != nil {
			t.Fatal(err)
		}
		if s.Prepacked() != c.want {
			t.Errorf("%s, prepack %q: pre-packing %v, want %v", c.model, c.prepack, s.Prepacked(), c.want)
		}
		s.Close()
	}
	if _, err := (RuntimeConfig{Prepack: "sometimes"}).Load(); err == nil || !strings.Contains(err.Error(), `"sometimes"`) {
		t.Errorf("prepack: sometimes: %v", err)
	}
}
