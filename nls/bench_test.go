package nls_test

import (
	"github.com/shears-ml/shears/nls"
	"github.com/shears-ml/shears/pipeline"
	"path/filepath"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/models/llama"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/transform/layers"
	"github.com/shears-ml/shears/transform/lora"
)

// benchTrain runs one NLS epoch at batch 16 = 4 × 4, cutoff 256 on n ARC-Easy training
// nls.Examples (all longer than 256 tokens with tok512, so every micro-batch is 4 × 256) and
// reports non-pad tokens per second over the whole call (graph build included) and per step
// after the first (steady state).
func benchTrain(b *testing.B, super string, n int) {
	dir := b.TempDir()
	d := nls.Subset(b, dir, "data/llm-adapters/ARC-Easy-train.json", 0, n)
	for i := 0; i < b.N; i++ {
		o := pipeline.DefaultTrainOptions()
		o.Super, o.Data, o.Tokenizer, o.Out = super, d, nls.TokPath(b), filepath.Join(dir, "run", string(rune('a'+i)))
		o.Epochs = 1
		res, err := pipeline.Train(o)
		if err != nil {
			b.Fatal(err)
		}
		recs, err := pipeline.ReadMetrics(o.Out)
		if err != nil {
			b.Fatal(err)
		}
		var tok int
		var sec float64
		for _, r := range recs[1:] {
			tok += r.Tokens
			sec += float64(r.Tokens) / r.TokensPerS
		}
		b.ReportMetric(res.TokensPerS, "tok/s-total")
		b.ReportMetric(float64(tok)/sec, "tok/s-steady")
		b.ReportMetric(float64(res.Steps), "steps")
	}
}

// BenchmarkNLSTrainStories260K: go test -run '^$' -bench NLSTrainStories -benchtime 1x ./nls
func BenchmarkNLSTrainStories260K(b *testing.B) {
	testkit.ORT(b)
	_, super := nls.SuperNet(b, b.TempDir(), 0.1)
	benchTrain(b, super, 64)
}

// BenchmarkNLSTrain25M: the 25m synthetic preset (random weights, external data), elastic LoRA
// with the reference's rank space 32, 24, 16 on q, k, v, up, down, dropout 0.1.
// go test -run '^$' -bench NLSTrain25M -benchtime 1x ./nls
func BenchmarkNLSTrain25M(b *testing.B) {
	testkit.ORT(b)
	dir := b.TempDir()
	cfg, err := llama.Preset("25m")
	if err != nil {
		b.Fatal(err)
	}
	base := filepath.Join(dir, "m25.onnx")
	if err := llama.WriteSynthetic(base, cfg, 0, onnxpb.TensorProto_FLOAT); err != nil {
		b.Fatal(err)
	}
	m, err := onnx.Load(base)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	ls, err := layers.Find(m)
	if err != nil {
		b.Fatal(err)
	}
	plan, err := lora.NewPlan(m, ls, lora.Config{Dropout: 0.1})
	if err != nil {
		b.Fatal(err)
	}
	sup, err := lora.Apply(m, plan, lora.ApplyOptions{})
	if err != nil {
		b.Fatal(err)
	}
	super := filepath.Join(dir, "super.onnx")
	if err := sup.Save(super, onnx.SaveOptions{ExternalData: true}); err != nil {
		b.Fatal(err)
	}
	benchTrain(b, super, 32)
}
