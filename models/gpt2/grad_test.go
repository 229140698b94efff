package gpt2_test

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/models/gpt2"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/train/gradcheck"
	"github.com/shears-ml/shears/transform/autodiff"
	"github.com/shears-ml/shears/transform/decoder"
)

// The GPT-2 graph's gradients, in float64 against central differences, for a loss Σ w·logits
// with random w: LayerNormalization (scale, bias, and through it to its input), the fused qkv
// weight through Split, the attention through Where, the gelu through Pow and Tanh, the learned
// positions through Gather, and the tied embedding (a Gather and the head's Transpose).
func TestGradientsGPT2(t *testing.T) {
	testkit.ORT(t)
	cfg := gpt2.Tiny
	cfg.Vocab, cfg.MaxSeq = 64, 16
	m32, err := gpt2.Build(cfg, 5)
	if err != nil {
		t.Fatal(err)
	}
	// The train form (no KV cache; the positions gathered by an in-graph Range) is what training
	// differentiates.
	if m32, err = decoder.TrainForm(m32); err != nil {
		t.Fatal(err)
	}
	m, err := autodiff.ToFloat64(m32)
	if err != nil {
		t.Fatal(err)
	}
	const batch, seq = 2, 6
	dims := map[string][]int64{"input_ids": {batch, seq}}
	types, err := autodiff.InferShapes(m, dims)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	w := make([]float64, onnx.NumElements(types["logits"].Shape))
	for i := range w {
		w[i] = rng.NormFloat64()
	}
	b := onnx.BuilderFor(m)
	wt := b.Const("loss_weights", onnx.NewTensor("", onnxpb.TensorProto_DOUBLE, types["logits"].Shape, f64bytes(w)))
	l := b.Op("ReduceSum", "/loss/ReduceSum", []string{b.Op("Mul", "/loss/Mul", []string{wt, "logits"})}, onnx.AttrInt("keepdims", 0))
	b.OpOut("Identity", "/loss/Identity", []string{l}, []string{"loss"})
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	ids := make([]int64, batch*seq)
	for i := range ids {
		ids[i] = rng.Int64N(int64(cfg.Vocab))
	}
	wrt := []string{
		"transformer.h.0.ln_1.weight", "transformer.h.0.ln_1.bias", "transformer.h.0.attn.c_attn.weight",
		"transformer.h.0.attn.c_attn.bias", "transformer.h.0.mlp.c_fc.bias", "transformer.h.1.mlp.c_proj.weight",
		"transformer.ln_f.weight", "transformer.ln_f.bias", "transformer.wpe.weight", "transformer.wte.weight",
	}
	res, err := gradcheck.Check(m, "loss", wrt, map[string]*runtime.Tensor{"input_ids": runtime.I64([]int64{batch, seq}, ids)},
		gradcheck.Options{InputDims: dims, MaxSamples: 24, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range gradcheck.Failures(res, gradcheck.TolModel64) {
		t.Error(f)
	}
	worst := 0.0
	for _, r := range res {
		worst = max(worst, r.MaxRelErr)
	}
	t.Logf("%d tensors, worst max-relative error %.3g", len(res), worst)
}

func f64bytes(v []float64) []byte {
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(x))
	}
	return b
}
