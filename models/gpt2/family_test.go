package gpt2_test

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/shears-ml/shears/calibrate"
	"github.com/shears-ml/shears/internal/safetensors"
	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/models/gpt2"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/pipeline"
	"github.com/shears-ml/shears/transform/convert"
	"github.com/shears-ml/shears/transform/layers"
	"github.com/shears-ml/shears/transform/lora"
	"github.com/shears-ml/shears/transform/merge"
	"github.com/shears-ml/shears/transform/prune"
	"google.golang.org/protobuf/proto"
)

// Without names (a torch export's /MatMul_k nodes and onnx::MatMul_k weights), the structural
// fallback labels GPT-2's four linears per block by depth and finds the tied head.
func TestStructuralRoles(t *testing.T) {
	m, err := gpt2.Build(gpt2.Tiny, 7)
	if err != nil {
		t.Fatal(err)
	}
	g := m.Graph()
	ren := map[string]string{}
	for i, init := range g.Initializer {
		if len(init.GetDims()) == 2 {
			ren[init.GetName()] = fmt.Sprintf("onnx::MatMul_%d", i)
			init.Name = proto.String(ren[init.GetName()])
		}
	}
	for i, n := range g.Node {
		n.Name = proto.String(fmt.Sprintf("/%s_%d", n.GetOpType(), i))
		for k, in := range n.Input {
			if r, ok := ren[in]; ok {
				n.Input[k] = r
			}
		}
	}
	ls, err := layers.Find(m)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range ls {
		got = append(got, fmt.Sprintf("%d:%s", l.Block, l.Role))
	}
	// Structure names the fused attention input (it feeds the attention products) and its
	// output (it follows them); an ungated MLP's two linears keep the generic names.
	want := []string{"0:qkv", "0:o", "0:mlp_in", "0:mlp_out", "1:qkv", "1:o", "1:mlp_in", "1:mlp_out", "-1:lm_head"}
	if !slices.Equal(got, want) || !ls[8].Head || !ls[8].Transposed {
		t.Fatalf("roles %v, want %v (head %+v)", got, want, ls[8])
	}
}

// transform/convert on GPT-2: weight-only fp16/bf16 and native fp16 keep the logits close (bf16
// native has no CPU kernels), and LoRA plans on each.
func TestConvert(t *testing.T) {
	testkit.ORT(t)
	m, _ := gpt2.Build(gpt2.Tiny, 7)
	ref := logits(t, m, nil)
	for _, tc := range []struct {
		dt  onnxpb.TensorProto_DataType
		c   convert.Compute
		tol float64
	}{
		{onnxpb.TensorProto_FLOAT16, convert.ComputeFP32, 1e-2},
		{onnxpb.TensorProto_BFLOAT16, convert.ComputeFP32, 5e-2},
		{onnxpb.TensorProto_FLOAT16, convert.ComputeNative, 1e-2},
	} {
		fresh, _ := gpt2.Build(gpt2.Tiny, 7) // Convert rewrites its model in place
		p := filepath.Join(t.TempDir(), "m.onnx")
		if _, err := convert.Convert(fresh, p, convert.Options{DType: tc.dt, Compute: tc.c}, onnx.SaveOptions{}); err != nil {
			t.Fatalf("%s %s: %v", tc.dt, tc.c, err)
		}
		cm, err := onnx.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		d := maxDiff(ref, logits(t, cm, nil))
		t.Logf("%s %s: max |Δlogit| %.3g", tc.dt, tc.c, d)
		if !(d <= tc.tol) || d == 0 {
			t.Errorf("%s %s: max |Δlogit| %g, want in (0, %g]", tc.dt, tc.c, d, tc.tol)
		}
		ls, _ := layers.Find(cm)
		ls, _ = layers.Select(ls, "", "")
		if _, err := lora.NewPlan(cm, ls, lora.Config{Ranks: []int{8, 4}}); err != nil {
			t.Errorf("%s %s: %v", tc.dt, tc.c, err)
		}
		cm.Close()
	}
}

// SparseAdapter on a 50% GPT-2 with random B: the sparse merge reproduces the super-network
// and keeps the zeros; the PEFT export names GPT-2's modules.
func TestSparseAdapterAndPEFT(t *testing.T) {
	testkit.ORT(t)
	dir := t.TempDir()
	m, _ := gpt2.Build(gpt2.Tiny, 7)
	ls, _ := layers.Find(m)
	ls, _ = layers.Select(ls, "", "")
	sp := filepath.Join(dir, "sparse.onnx")
	if err := m.Save(sp, onnx.SaveOptions{Transform: calibrate.Transform(ls, nil, prune.Config{Method: prune.Magnitude, Sparsity: 0.5})}); err != nil {
		t.Fatal(err)
	}
	sm, err := onnx.Load(sp)
	if err != nil {
		t.Fatal(err)
	}
	defer sm.Close()
	ls, _ = layers.Find(sm)
	plan, err := lora.NewPlan(sm, ls, lora.Config{Targets: []string{"qkv", "o", "up", "down"}, Ranks: []int{8, 4}, SparseAdapter: true})
	if err != nil {
		t.Fatal(err)
	}
	sup, err := lora.Apply(sm, plan, lora.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	meta, err := lora.ReadConfig(sup)
	if err != nil {
		t.Fatal(err)
	}
	ranks := map[string]int{}
	for k, mod := range meta.Modules {
		b := sup.Initializer(mod.B)
		v := make([]float32, onnx.NumElements(b.GetDims()))
		for i := range v {
			v[i] = float32((i*7+k*3)%11-5) * 0.02
		}
		if err := onnx.SetFloat32s(b, v); err != nil {
			t.Fatal(err)
		}
		ranks[mod.Group] = 4
	}
	masks, _ := meta.Masks(ranks)
	want := logits(t, sup, masks)
	if d := maxDiff(want, logits(t, sm, nil)); d < 1e-2 {
		t.Fatalf("random adapters move the logits by only %g", d)
	}
	out, rep, err := merge.Export(sup, ranks, merge.Sparse)
	if err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(want, logits(t, out, nil)); !(d < 1e-4) || !rep.Exact || rep.ZerosAfter != rep.ZerosBefore {
		t.Errorf("sparse merge: max |Δlogit| %g, exact %v, zeros %d → %d", d, rep.Exact, rep.ZerosBefore, rep.ZerosAfter)
	}
	cfg, err := merge.WritePEFT(filepath.Join(dir, "peft"), sup, ranks, "gpt2")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.TargetModules, []string{"c_attn", "c_fc", "c_proj"}) || cfg.R != 4 {
		t.Errorf("peft config %+v", cfg)
	}
	// The fused c_attn's q, k, v slice adapters are one PEFT module of rank 3·4 (A stacked, B
	// block-diagonal): (α/r)·B·A reproduces the merged update on every kept weight.
	const attn = "transformer.h.0.attn.c_attn"
	if cfg.RankPattern[attn] != 12 || cfg.AlphaPattern[attn] != 12*meta.Scale {
		t.Fatalf("c_attn rank/alpha pattern %d/%g, want 12/%g", cfg.RankPattern[attn], cfg.AlphaPattern[attn], 12*meta.Scale)
	}
	f, err := safetensors.Read(filepath.Join(dir, "peft", merge.PEFTWeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	at, ok1 := f.Get(merge.PEFTKeyPrefix + attn + ".lora_A.weight")
	bt, ok2 := f.Get(merge.PEFTKeyPrefix + attn + ".lora_B.weight")
	if !ok1 || !ok2 || !slices.Equal(at.Shape, []int64{12, 64}) || !slices.Equal(bt.Shape, []int64{192, 12}) {
		t.Fatalf("c_attn PEFT tensors %v %v", at.Shape, bt.Shape)
	}
	av, _ := at.Float32s()
	bv, _ := bt.Float32s()
	w0, w1 := f32(t, sm, attn+".weight"), f32(t, out, attn+".weight") // [64, 192]
	worst, kept := 0.0, 0
	for i := 0; i < 64; i++ {
		for j := 0; j < 192; j++ {
			if w0[i*192+j] == 0 {
				continue
			}
			var d float64
			for k := 0; k < 12; k++ {
				d += float64(bv[j*12+k]) * float64(av[k*64+i])
			}
			d *= meta.Scale
			worst = testkit.Worse(worst, math.Abs(float64(w1[i*192+j]-w0[i*192+j])-d))
			kept++
		}
	}
	if !(worst <= 1e-5) || kept == 0 {
		t.Errorf("PEFT c_attn update differs from the merged one by %g over %d weights", worst, kept)
	}
}

// NLS on a weight-only fp16 GPT-2 with adapter dropout: finite loss that falls; the dense export
// stays within fp16 rounding of the unmerged one.
func TestTrainFP16Dropout(t *testing.T) {
	testkit.ORT(t)
	dir := t.TempDir()
	m, _ := gpt2.Build(gpt2.Tiny, 7)
	p := filepath.Join(dir, "fp16.onnx")
	if _, err := convert.Convert(m, p, convert.Options{DType: onnxpb.TensorProto_FLOAT16}, onnx.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	cm, err := onnx.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	defer cm.Close()
	ls, _ := layers.Find(cm)
	ls, _ = layers.Select(ls, "", "")
	plan, err := lora.NewPlan(cm, ls, lora.Config{Ranks: []int{8, 4}, Dropout: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	sup, err := lora.Apply(cm, plan, lora.ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	o := trainOptions(t, sup, dir, func(s int) int { return 20 + s })
	res, err := pipeline.Train(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fp16 + dropout: %d steps, loss %.4f → %.4f, buckets %v", res.Steps, res.FirstLoss, res.LastLoss, res.Buckets)
	if res.Steps != 6 || math.IsNaN(res.LastLoss) || !(res.LastLoss < res.FirstLoss) {
		t.Fatalf("train result %+v", res)
	}
	run, err := pipeline.OpenRun(o.Out)
	if err != nil {
		t.Fatal(err)
	}
	defer run.Model.Close()
	ranks := run.Space.Heuristic()
	none, _, err := merge.Export(run.Model, ranks, merge.None)
	if err != nil {
		t.Fatal(err)
	}
	dense, _, err := merge.Export(run.Model, ranks, merge.Dense)
	if err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(logits(t, none, nil), logits(t, dense, nil)); !(d <= 1e-2) {
		t.Errorf("dense merge into fp16 weights: max |Δlogit| %g", d)
	}
}
