package bench

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/models/llama"
	"github.com/shears-ml/shears/models/llama2c"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/train"
	"github.com/shears-ml/shears/transform/trainstep"
)

// Train-step figures (bench/RESULTS.md, "train step"):
//
//	go test -run '^$' -bench 'TrainStep|AdamW' -benchtime 3x ./bench
//
// BenchmarkTrainStep times one train step (forward + loss + backward through every layer +
// AdamW on the RMSNorm weights) against one forward pass on the same batch, per token.
// BenchmarkAdamW times one optimizer update of LoRA-sized parameters in Go and as an
// onnxruntime graph, the measurement behind package train's choice.

type trainModel struct {
	name       string
	b, l       int
	m          *onnx.Model
	cfg        llama.Config
	trainables []string
}

func loadTrainModel(b *testing.B, name string) trainModel {
	b.Helper()
	switch name {
	case "stories260K":
		m, err := llama2c.Import(testkit.Shared(b, "models/stories260K/stories260K.bin"))
		if err != nil {
			b.Fatal(err)
		}
		cfg := llama.Config{Dim: 64, HiddenDim: 172, Layers: 5, Heads: 8, KVHeads: 4, Vocab: 512, MaxSeq: 512}
		return trainModel{name: name, b: 4, l: 64, m: m, cfg: cfg, trainables: norms(cfg.Layers)}
	case "25m":
		cfg, err := llama.Preset("25m")
		if err != nil {
			b.Fatal(err)
		}
		path := filepath.Join(b.TempDir(), "25m.onnx")
		if err := llama.WriteSynthetic(path, cfg, 1, onnxpb.TensorProto_FLOAT); err != nil {
			b.Fatal(err)
		}
		m, err := onnx.Load(path)
		if err != nil {
			b.Fatal(err)
		}
		return trainModel{name: name, b: 4, l: 128, m: m, cfg: cfg, trainables: norms(cfg.Layers)}
	}
	b.Fatalf("unknown model %s", name)
	return trainModel{}
}

func norms(layers int) []string {
	var n []string
	for i := 0; i < layers; i++ {
		n = append(n, llama.LayerWeight(i, "input_layernorm"), llama.LayerWeight(i, "post_attention_layernorm"))
	}
	return append(n, "model.norm.weight")
}

func BenchmarkTrainStep(b *testing.B) {
	testkit.ORT(b)
	for _, name := range []string{"stories260K", "25m"} {
		tm := loadTrainModel(b, name)
		n := tm.b * tm.l
		ids := make([]int64, n)
		for i := range ids {
			ids[i] = int64((i*7919 + 13) % tm.cfg.Vocab)
		}
		b.Run(name+"/forward", func(b *testing.B) {
			raw, err := tm.m.Marshal()
			if err != nil {
				b.Fatal(err)
			}
			s, err := runtime.OpenBytes(raw, tm.m.Dir, runtime.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			in := testkit.Feeds(b, s.Inputs(), runtime.I64([]int64{int64(tm.b), int64(tm.l)}, ids), nil)
			if _, err := s.Run(in, []string{"logits"}); err != nil { // warm-up
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := s.Run(in, []string{"logits"}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n)/1e3, "µs/token")
		})
		b.Run(name+"/trainstep", func(b *testing.B) {
			st, err := trainstep.Build(tm.m, trainstep.Config{Batch: tm.b, Seq: tm.l, Trainable: tm.trainables})
			if err != nil {
				b.Fatal(err)
			}
			r, err := train.New(st, train.Options{MaxGradNorm: 1})
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			if _, err := r.Step(ids, ids, 1e-3); err != nil { // warm-up
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := r.Step(ids, ids, 1e-3); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n)/1e3, "µs/token")
		})
	}
}

// loraParams are the elastic-LoRA tensors of a LLaMA shape at rank r: A [in, r] and B [r, out]
// for q, k, v, up and down in every layer (METHOD.md §2's default targets).
func loraParams(c llama.Config, r int64) []trainstep.Param {
	d, kv, h := int64(c.Dim), int64(c.KVDim()), int64(c.HiddenDim)
	var ps []trainstep.Param
	for i := 0; i < c.Layers; i++ {
		for _, t := range []struct {
			name    string
			in, out int64
		}{{"q", d, d}, {"k", d, kv}, {"v", d, kv}, {"up", d, h}, {"down", h, d}} {
			for _, ab := range []struct {
				s    string
				dims []int64
			}{{"A", []int64{t.in, r}}, {"B", []int64{r, t.out}}} {
				n := ab.dims[0] * ab.dims[1]
				init := make([]float32, n)
				for k := range init {
					init[k] = float32(k%17) * 1e-3
				}
				ps = append(ps, trainstep.Param{Name: fmt.Sprintf("l%d.%s.lora_%s", i, t.name, ab.s), Dims: ab.dims, Init: init})
			}
		}
	}
	return ps
}

func BenchmarkAdamW(b *testing.B) {
	testkit.ORT(b)
	c25, _ := llama.Preset("25m")
	cases := []struct {
		name string
		ps   []trainstep.Param
	}{
		{"stories260K-r8", loraParams(llama.Config{Dim: 64, HiddenDim: 172, Layers: 5, Heads: 8, KVHeads: 4}, 8)},
		{"stories260K-r32", loraParams(llama.Config{Dim: 64, HiddenDim: 172, Layers: 5, Heads: 8, KVHeads: 4}, 32)},
		{"25m-r32", loraParams(c25, 32)},
	}
	hp := trainstep.DefaultAdamW()
	for _, c := range cases {
		var total int64
		for _, p := range c.ps {
			total += int64(len(p.Init))
		}
		grads := make([][]float32, len(c.ps))
		for i, p := range c.ps {
			grads[i] = make([]float32, len(p.Init))
			for k := range grads[i] {
				grads[i][k] = float32((k%13)-6) * 1e-2
			}
		}
		b.Run(fmt.Sprintf("%s-%dparams/go", c.name, total), func(b *testing.B) {
			ps := make([][]float32, len(c.ps))
			ms, vs := make([][]float32, len(c.ps)), make([][]float32, len(c.ps))
			for i, p := range c.ps {
				ps[i] = append([]float32(nil), p.Init...)
				ms[i], vs[i] = make([]float32, len(p.Init)), make([]float32, len(p.Init))
			}
			b.ResetTimer()
			for it := 0; it < b.N; it++ {
				for i := range ps {
					train.AdamWUpdate(hp, ps[i], grads[i], ms[i], vs[i], 1e-3, it+1)
				}
			}
		})
		b.Run(fmt.Sprintf("%s-%dparams/graph", c.name, total), func(b *testing.B) {
			m, err := trainstep.BuildAdamW(c.ps, hp)
			if err != nil {
				b.Fatal(err)
			}
			raw, _ := m.Marshal()
			s, err := runtime.OpenBytes(raw, "", runtime.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			lr := runtime.F32([]int64{}, []float32{1e-3})
			step := runtime.F32([]int64{}, []float32{1})
			in := map[string]*runtime.Tensor{trainstep.AdamWLR: lr, trainstep.AdamWStep: step}
			out := map[string]*runtime.Tensor{}
			type triple struct{ p, m, v, np, nm, nv *runtime.Tensor }
			var ts []triple
			for i, p := range c.ps {
				pn, gn, mn, vn, np, nm, nv := trainstep.AdamWNames(p.Name)
				mk := func() *runtime.Tensor { return runtime.F32(p.Dims, make([]float32, len(p.Init))) }
				t := triple{runtime.F32(p.Dims, append([]float32(nil), p.Init...)), mk(), mk(), mk(), mk(), mk()}
				in[pn], in[gn], in[mn], in[vn] = t.p, runtime.F32(p.Dims, grads[i]), t.m, t.v
				out[np], out[nm], out[nv] = t.np, t.nm, t.nv
				ts = append(ts, t)
			}
			bd, err := s.Bind(in, out)
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for it := 0; it < b.N; it++ {
				step.F32[0] = float32(it + 1)
				if err := bd.Run(); err != nil {
					b.Fatal(err)
				}
				// The next step reads the new state from the bound inputs.
				for _, t := range ts {
					copy(t.p.F32, t.np.F32)
					copy(t.m.F32, t.nm.F32)
					copy(t.v.F32, t.nv.F32)
				}
			}
		})
	}
}
