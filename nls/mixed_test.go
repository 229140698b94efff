package nls_test

import (
	"encoding/json"
	"github.com/shears-ml/shears/nls"
	"github.com/shears-ml/shears/pipeline"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shears-ml/shears/data"
	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/models/llama2c"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/transform/convert"
	"github.com/shears-ml/shears/transform/layers"
	"github.com/shears-ml/shears/transform/lora"
	"github.com/shears-ml/shears/transform/merge"
)

// idsFile writes n pre-tokenized sequences ({"ids": [...]}) of varied length.
func idsFile(t *testing.T, dir string, n int) (string, []data.Sequence) {
	t.Helper()
	var b strings.Builder
	var seqs []data.Sequence
	for i := 0; i < n; i++ {
		ids := []int{1}
		for k := 0; k < 10+3*(i%5); k++ {
			ids = append(ids, (i*37+k*11)%500+3)
		}
		line, _ := json.Marshal(map[string][]int{"ids": ids})
		b.Write(line)
		b.WriteByte('\n')
		seqs = append(seqs, data.Sequence{IDs: ids, Labels: ids})
	}
	p := filepath.Join(dir, "ids.jsonl")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p, seqs
}

// NLS on a float16 base computing natively: train without a tokenizer (pre-tokenized data),
// loss scaling on, float32 adapters; the loss search runs on the fp16 super-network and the
// exports keep the base's float16 weights.
func TestMixedPrecisionNLS(t *testing.T) {
	testkit.ORT(t)
	dir := t.TempDir()
	m, err := llama2c.Import(testkit.StoriesShaped(t))
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "fp16.onnx")
	if _, err := convert.Convert(m, base, convert.Options{DType: onnxpb.TensorProto_FLOAT16, Compute: convert.ComputeNative}, onnx.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	bm, err := onnx.Load(base)
	if err != nil {
		t.Fatal(err)
	}
	defer bm.Close()
	ls, err := layers.Find(bm)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := lora.NewPlan(bm, ls, lora.Config{Ranks: nls.TestRanks, Alpha: nls.TestAlpha, Dropout: 0.1, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	sup, err := lora.Apply(bm, plan, lora.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	super := filepath.Join(dir, "super.onnx")
	if err := sup.Save(super, onnx.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	if mod := plan.Modules[0]; mod.DType != "fp16" || mod.AdapterDType != "" || onnx.DataType(sup.Initializer(mod.A)) != onnxpb.TensorProto_FLOAT {
		t.Fatalf("module %s: dtype %q, adapter %q; want an fp16 linear with float32 A, B", mod.Name, mod.DType, mod.AdapterDType)
	}

	idsPath, seqs := idsFile(t, dir, 16)
	o := pipeline.DefaultTrainOptions()
	o.Super, o.Data, o.Out = super, idsPath, filepath.Join(dir, "run")
	o.Epochs, o.Batch, o.MicroBatch, o.Cutoff, o.LR = 2, 8, 4, 64, 2e-3
	o.Runtime = runtime.Options{Threads: 2}
	res, err := pipeline.Train(o)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := pipeline.ReadMetrics(o.Out)
	if err != nil {
		t.Fatal(err)
	}
	taken := 0
	for _, r := range recs {
		if r.LossScale <= 0 {
			t.Fatalf("step %d records no loss scale: %+v", r.Step, r)
		}
		if !r.Skipped {
			taken++
		}
		if math.IsNaN(r.Loss) || math.IsInf(r.Loss, 0) {
			t.Fatalf("step %d loss %v", r.Step, r.Loss)
		}
	}
	cfg, _ := pipeline.ReadRunConfig(o.Out)
	t.Logf("%d steps (%d taken), loss %.4f → %.4f, scale %g, max-graphs %d", len(recs), taken, res.FirstLoss, res.LastLoss, recs[len(recs)-1].LossScale, cfg.Hyper.MaxGraphs)
	if taken == 0 || cfg.Hyper.MaxGraphs != nls.DefaultMaxGraphs {
		t.Fatalf("no step taken, or max-graphs %d (auto for a small model is %d)", cfg.Hyper.MaxGraphs, nls.DefaultMaxGraphs)
	}

	run, err := pipeline.OpenRun(o.Out)
	if err != nil {
		t.Fatal(err)
	}
	defer run.Model.Close()
	ev, err := nls.NewLossEvaluator(&run.Run, seqs, nls.EvalOptions{Batch: 4, Runtime: runtime.Options{Threads: 2}})
	if err != nil {
		t.Fatal(err)
	}
	sr, err := nls.Search(ev, nls.SearchOptions{Strategy: nls.StrategyHeuristic})
	if err != nil {
		t.Fatal(err)
	}
	if v := sr.Best.Value; !(v > 0 && v < 20) {
		t.Fatalf("heuristic sub-adapter's loss %v", v)
	}

	// Exports keep the base's float16 weights: merged (dense) and unmerged.
	for _, mode := range []merge.Mode{merge.None, merge.Dense} {
		out, _, err := merge.Export(run.Model, run.Space.Map(sr.Best.Ranks), mode)
		if err != nil {
			t.Fatal(err)
		}
		mod := run.Meta.Modules[0]
		if dt := onnx.DataType(out.Initializer(mod.Weight)); dt != onnxpb.TensorProto_FLOAT16 {
			t.Fatalf("%s export: %s is %s, want FLOAT16", mode, mod.Weight, dt)
		}
		p := filepath.Join(dir, string(mode)+".onnx")
		if err := out.Save(p, onnx.SaveOptions{}); err != nil {
			t.Fatal(err)
		}
		s, err := runtime.OpenFile(p, runtime.Options{Threads: 2})
		if err != nil {
			t.Fatal(err)
		}
		ids := []int64{1, 40, 300, 7, 12}
		got, err := s.Run(testkit.Feeds(t, s.Inputs(), runtime.I64([]int64{1, 5}, ids), nil), []string{"logits"})
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range got["logits"].F32 {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("%s export: non-finite logit", mode)
			}
		}
	}
}
