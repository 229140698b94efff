package gpt2_test

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/shears-ml/shears/calibrate"
	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/models/gpt2"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/pipeline"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/transform/layers"
	"github.com/shears-ml/shears/transform/lora"
	"github.com/shears-ml/shears/transform/merge"
	"github.com/shears-ml/shears/transform/prune"
)

// The whole pipeline on a GPT-2-family graph: layers labels the fused qkv, o, up and down
// linears of each block (the tied head excluded); sequential Wanda prunes every output of every
// target to exactly floor(in·s) zeros, differently from magnitude (the statistics matter);
// LoRA adapts the four GPT-2 roles; NLS trains from pre-tokenized ids with finite, falling loss
// through LayerNormalization, Split, Where, Tanh and Pow; and both merge exports reproduce the
// trained super-network's logits at the heuristic ranks.
func TestPipelineGPT2(t *testing.T) {
	testkit.ORT(t)
	dir := t.TempDir()
	m, err := gpt2.Build(gpt2.Tiny, 7)
	if err != nil {
		t.Fatal(err)
	}

	// 1. Roles.
	all, err := layers.Find(m)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range all {
		got = append(got, l.Role)
		if l.Head != (l.Node == "/lm_head/MatMul") {
			t.Errorf("%s: head = %v", l.Node, l.Head)
		}
	}
	want := []string{"qkv", "o", "up", "down", "qkv", "o", "up", "down", "lm_head"}
	if !slices.Equal(got, want) {
		t.Fatalf("roles %v, want %v", got, want)
	}
	targets, err := layers.Select(all, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(targets) != 8 || targets[0].Node != "/transformer/h.0/attn/c_attn/MatMul" || targets[0].Out != 192 || targets[7].Block != 1 {
		t.Fatalf("targets %+v", targets)
	}

	// 2. Sequential Wanda at 50%.
	windows := make([][]int, 4)
	for i := range windows {
		for p := 0; p < 16; p++ {
			windows[i] = append(windows[i], (i*37+p*p*11+3)%512)
		}
	}
	cfg := prune.Config{Method: prune.Wanda, Sparsity: 0.5}
	stats, _, err := calibrate.Calibrate(m, targets, cfg, windows, calibrate.Options{Runtime: runtime.Options{Threads: 2}})
	if err != nil {
		t.Fatal(err)
	}
	// Block 0's qkv statistics, recomputed in Go: x = LayerNorm(wte[id] + wpe[t]).
	x0 := targets[0].Input
	ref := ln1Stats(t, m, windows)
	if len(stats[x0]) != len(ref) {
		t.Fatalf("stats of %s: %d values, want %d", x0, len(stats[x0]), len(ref))
	}
	for i := range ref {
		if d := math.Abs(stats[x0][i] - ref[i]); !(d <= 1e-4*math.Max(1, ref[i])) {
			t.Fatalf("stat %d of %s: %g, recomputed %g", i, x0, stats[x0][i], ref[i])
		}
	}
	sparse := filepath.Join(dir, "sparse.onnx")
	if err := m.Save(sparse, onnx.SaveOptions{Transform: calibrate.Transform(targets, stats, cfg)}); err != nil {
		t.Fatal(err)
	}
	magPath := filepath.Join(dir, "magnitude.onnx")
	mag := prune.Config{Method: prune.Magnitude, Sparsity: 0.5}
	if err := m.Save(magPath, onnx.SaveOptions{Transform: calibrate.Transform(targets, nil, mag)}); err != nil {
		t.Fatal(err)
	}
	sm, err := onnx.Load(sparse)
	if err != nil {
		t.Fatal(err)
	}
	defer sm.Close()
	mm, err := onnx.Load(magPath)
	if err != nil {
		t.Fatal(err)
	}
	defer mm.Close()
	differs := 0
	for _, l := range targets {
		w := f32(t, sm, l.Weight)
		for j := int64(0); j < l.Out; j++ {
			var z int64
			for i := int64(0); i < l.In; i++ {
				if w[i*l.Out+j] == 0 {
					z++
				}
			}
			if z != l.In/2 {
				t.Fatalf("%s output %d: %d zeros, want floor(%d·0.5) = %d", l.Weight, j, z, l.In, l.In/2)
			}
		}
		if l == targets[0] { // Wanda's order: every zeroed |W|·√s at most every kept one
			dense := f32(t, m, l.Weight)
			for j := int64(0); j < l.Out; j++ {
				maxZero, minKept := 0.0, math.Inf(1)
				for i := int64(0); i < l.In; i++ {
					sc := math.Abs(float64(dense[i*l.Out+j])) * math.Sqrt(ref[i])
					if w[i*l.Out+j] == 0 {
						maxZero = max(maxZero, sc)
					} else {
						minKept = min(minKept, sc)
					}
				}
				if maxZero > minKept {
					t.Fatalf("%s output %d: a zeroed score %g exceeds a kept one %g", l.Weight, j, maxZero, minKept)
				}
			}
		}
		if !slices.Equal(w, f32(t, mm, l.Weight)) {
			differs++
		}
	}
	if differs == 0 {
		t.Error("Wanda pruned every layer exactly as magnitude did: the activation statistics had no effect")
	}
	if !slices.Equal(f32(t, sm, "transformer.wte.weight"), f32(t, m, "transformer.wte.weight")) {
		t.Error("the tied embedding / head was pruned")
	}

	// 3. LoRA on the four GPT-2 roles.
	ls, err := layers.Find(sm)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := lora.NewPlan(sm, ls, lora.Config{Targets: []string{"qkv", "o", "up", "down"}, Ranks: []int{8, 6, 4}, Alpha: 16, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	// c_attn is adapted as three q, k, v slice modules in one group: 2 × (3 + 3) modules.
	if len(plan.Modules) != 12 || len(plan.Groups) != 8 {
		t.Fatalf("plan: %d modules in %d groups, want 12 in 8\n%s", len(plan.Modules), len(plan.Groups), plan)
	}
	sup, err := lora.Apply(sm, plan, lora.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// 4. NLS training from ids: a learnable stream (arithmetic progressions mod 512).
	o := trainOptions(t, sup, dir, func(int) int { return 24 })
	o.Epochs = 4
	o.MaxGraphs = 1
	o.Runtime = runtime.Options{Threads: 2}
	res, err := pipeline.Train(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("NLS: %d steps, loss %.4f → %.4f", res.Steps, res.FirstLoss, res.LastLoss)
	if res.Steps != 8 || math.IsNaN(res.FirstLoss) || math.IsNaN(res.LastLoss) || math.IsInf(res.LastLoss, 0) {
		t.Fatalf("train result %+v", res)
	}
	if !(res.LastLoss < res.FirstLoss) {
		t.Errorf("loss did not fall: %.4f → %.4f", res.FirstLoss, res.LastLoss)
	}

	// 5. Exports at the heuristic ranks reproduce the trained super-network.
	run, err := pipeline.OpenRun(o.Out)
	if err != nil {
		t.Fatal(err)
	}
	defer run.Model.Close()
	ranks := run.Space.Heuristic()
	masks, err := run.Meta.Masks(ranks)
	if err != nil {
		t.Fatal(err)
	}
	wantLogits := logits(t, run.Model, masks)
	if d := maxDiff(wantLogits, logits(t, sm, nil)); d < 1e-3 {
		t.Fatalf("the trained adapters change the logits by only %g: the export check would prove nothing", d)
	}
	for _, mode := range []merge.Mode{merge.None, merge.Dense} {
		out, _, err := merge.Export(run.Model, ranks, mode)
		if err != nil {
			t.Fatalf("export %s: %v", mode, err)
		}
		d := maxDiff(wantLogits, logits(t, out, nil))
		t.Logf("export %s: max |Δlogit| %.3g", mode, d)
		if !(d < 1e-4) {
			t.Errorf("export %s: max |Δlogit| = %g, want < 1e-4", mode, d)
		}
	}
}

func f32(t *testing.T, m *onnx.Model, name string) []float32 {
	t.Helper()
	w := m.Initializer(name)
	if w == nil {
		t.Fatalf("no initializer %s", name)
	}
	v, err := m.Float32s(w)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var maxDiff = testkit.MaxDiff[float32]

// ln1Stats is Wanda's statistic of block 0's qkv input: the mean over windows of Σ_t x[t,i]²,
// x = LayerNorm(wte[id] + wpe[t]) with ln_1's scale and bias, in float64.
func ln1Stats(t *testing.T, m *onnx.Model, windows [][]int) []float64 {
	wte, wpe := f32(t, m, "transformer.wte.weight"), f32(t, m, "transformer.wpe.weight")
	g, b := f32(t, m, "transformer.h.0.ln_1.weight"), f32(t, m, "transformer.h.0.ln_1.bias")
	d := len(g)
	acc := make([]float64, d)
	x := make([]float64, d)
	for _, w := range windows {
		for p, id := range w {
			var mean, vr float64
			for i := range x {
				x[i] = float64(wte[id*d+i]) + float64(wpe[p*d+i])
				mean += x[i] / float64(d)
			}
			for i := range x {
				vr += (x[i] - mean) * (x[i] - mean) / float64(d)
			}
			for i := range x {
				y := (x[i]-mean)/math.Sqrt(vr+float64(gpt2.Tiny.Eps))*float64(g[i]) + float64(b[i])
				acc[i] += y * y / float64(len(windows))
			}
		}
	}
	return acc
}

// trainOptions saves the super-network into dir, writes 8 pre-tokenized sequences (arithmetic
// progressions mod 512, length n(s)) as {"ids"} JSONL, and returns small NLS options over them
// with no tokenizer: batch 4 as 2 × 2, cutoff 32, lr 1e-2, 3 epochs.
func trainOptions(t *testing.T, sup *onnx.Model, dir string, n func(s int) int) pipeline.TrainOptions {
	t.Helper()
	super := filepath.Join(dir, "super.onnx")
	if err := sup.Save(super, onnx.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	var lines []byte
	for s := 0; s < 8; s++ {
		ids := make([]int, n(s))
		for p := range ids {
			ids[p] = (s*13 + p*(s%3+1)) % 512
		}
		b, _ := json.Marshal(map[string][]int{"ids": ids})
		lines = append(append(lines, b...), '\n')
	}
	dataPath := filepath.Join(dir, "ids.jsonl")
	if err := os.WriteFile(dataPath, lines, 0o644); err != nil {
		t.Fatal(err)
	}
	o := pipeline.DefaultTrainOptions()
	o.Super, o.Data, o.Out = super, dataPath, filepath.Join(dir, "run")
	o.Epochs, o.Batch, o.MicroBatch, o.Cutoff, o.LR = 3, 4, 2, 32, 1e-2
	o.Runtime = runtime.Options{Threads: 2}
	return o
}
