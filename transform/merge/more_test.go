package merge

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/safetensors"
	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/transform/layers"
	"github.com/shears-ml/shears/transform/lora"
)

// transposedModel is y = Gemm(x, Wq, transB=1) + x·Transpose(Wk): both weights stored [out, in]
// = [6, 8], half of their values zero.
func transposedModel(t *testing.T) *onnx.Model {
	t.Helper()
	b := onnx.NewBuilder("transposed", 17)
	x := b.Input("x", onnxpb.TensorProto_FLOAT, 2, 8)
	rng := rand.New(rand.NewPCG(9, 9))
	weight := func() []float32 {
		v := make([]float32, 48)
		for i := range v {
			if i%2 == 1 || i%7 == 0 {
				v[i] = float32(rng.NormFloat64())
			}
		}
		return v
	}
	wq := b.Const("layers.0.q_proj.weight", onnx.Float32Tensor("", []int64{6, 8}, weight()))
	wk := b.Const("layers.0.k_proj.weight", onnx.Float32Tensor("", []int64{6, 8}, weight()))
	q := b.Op("Gemm", "/layers.0/q_proj/Gemm", []string{x, wq}, onnx.AttrInt("transB", 1))
	wkT := b.Op("Transpose", "/layers.0/k_proj/Transpose", []string{wk}, onnx.AttrInts("perm", 1, 0))
	k := b.Op("MatMul", "/layers.0/k_proj/MatMul", []string{x, wkT})
	y := b.Op("Add", "/sum", []string{q, k})
	b.Op("Identity", "/y", []string{y})
	m, err := b.Model()
	if err != nil {
		t.Fatal(err)
	}
	m.Graph().Node[len(m.Graph().Node)-1].Output[0] = "y"
	b = onnx.BuilderFor(m)
	b.Output("y", onnxpb.TensorProto_FLOAT, 2, 6)
	if b.Err() != nil {
		t.Fatal(b.Err())
	}
	return m
}

func runX(t *testing.T, m *onnx.Model, x []float32, masks map[string][]float32) []float32 {
	t.Helper()
	raw, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s, err := runtime.OpenBytes(raw, m.Dir, runtime.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in := map[string]*runtime.Tensor{"x": runtime.F32([]int64{2, 8}, x)}
	for k, v := range masks {
		in[k] = runtime.F32([]int64{int64(len(v))}, v)
	}
	out, err := s.Run(in, []string{"y"})
	if err != nil {
		t.Fatal(err)
	}
	return out["y"].F32
}

// TestTransposedWeights: merged weights stored [out, in] (Gemm transB and Transpose) get ΔWᵀ,
// and the SparseAdapter's in-graph mask lines up with them.
func TestTransposedWeights(t *testing.T) {
	testkit.ORT(t)
	m := transposedModel(t)
	all, err := layers.Find(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || !all[0].Transposed || !all[1].Transposed || all[0].Role != "q" || all[1].Role != "k" {
		t.Fatalf("linears %+v", all)
	}
	x := make([]float32, 16)
	for i := range x {
		x[i] = float32(i%5) - 2
	}
	for _, sa := range []bool{false, true} {
		sup, meta := superNet(t, m, all, lora.Config{Targets: []string{"q", "k"}, Ranks: []int{4, 2}, Alpha: 8, SparseAdapter: sa}, 2)
		ranks := meta.Uniform(2)
		masks, _ := meta.Masks(ranks)
		want := runX(t, sup, x, masks)
		for _, mode := range []Mode{Dense, Sparse} {
			out, rep, err := Export(sup, ranks, mode)
			if err != nil {
				t.Fatal(err)
			}
			got := runX(t, out, x, nil)
			d := maxDiff(want, got)
			if (mode == Dense || sa) && !(d <= 1e-5) {
				t.Errorf("sparse adapter %v, %s: max |Δ| %g", sa, mode, d)
			}
			if mode == Sparse && !sa && d < 1e-3 {
				t.Errorf("masked merge of a dense-trained adapter changed y by only %g", d)
			}
			if keep := mode == Sparse || sa; keep != (rep.ZerosAfter == rep.ZerosBefore) || rep.ZerosBefore != 2*20 {
				t.Errorf("sparse adapter %v, %s: zeros %d → %d", sa, mode, rep.ZerosBefore, rep.ZerosAfter)
			}
		}
	}
}

// TestPEFT: the PEFT files hold the sliced A, B in PyTorch layout, and PEFT's formula
// (lora_alpha / r) · lora_Bᵀ-product recomputes ΔW = s·A_r·B_r for every module, with
// rank_pattern / alpha_pattern covering the modules off the common rank.
func TestPEFT(t *testing.T) {
	base, targets := sparseStories(t)
	sup, meta := superNet(t, base, targets, lora.Config{}, 4)
	ranks := mixed(meta, 24, 24, 16)
	dir := filepath.Join(t.TempDir(), "peft")
	cfg, err := WritePEFT(dir, sup, ranks, "stories260K")
	if err != nil {
		t.Fatal(err)
	}
	var onDisk PEFTConfig
	b, err := os.ReadFile(filepath.Join(dir, PEFTConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &onDisk); err != nil {
		t.Fatal(err)
	}
	if onDisk.R != 24 || onDisk.LoraAlpha != 48 || onDisk.PeftType != "LORA" || strings.Join(onDisk.TargetModules, ",") != "down_proj,k_proj,q_proj,up_proj,v_proj" {
		t.Errorf("config r %d alpha %g type %s targets %v", onDisk.R, onDisk.LoraAlpha, onDisk.PeftType, onDisk.TargetModules)
	}
	// Groups 2, 5, 8, 11, 14 (the down projections of every layer) are at 16.
	if len(onDisk.RankPattern) != 5 || onDisk.RankPattern["model.layers.0.mlp.down_proj"] != 16 || onDisk.AlphaPattern["model.layers.0.mlp.down_proj"] != 32 {
		t.Errorf("rank pattern %v, alpha pattern %v", onDisk.RankPattern, onDisk.AlphaPattern)
	}
	if len(cfg.RankPattern) != len(onDisk.RankPattern) {
		t.Error("returned config differs from the file")
	}
	f, err := safetensors.Read(filepath.Join(dir, PEFTWeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Tensors) != 2*len(meta.Modules) || f.Metadata["shears.scale"] != "2" {
		t.Errorf("%d tensors, metadata %v", len(f.Tensors), f.Metadata)
	}
	for _, mod := range meta.Modules {
		key := "base_model.model." + mod.Name
		at, ok1 := f.Get(key + ".lora_A.weight")
		bt, ok2 := f.Get(key + ".lora_B.weight")
		if !ok1 || !ok2 {
			t.Fatalf("%s: lora_A/lora_B missing", key)
		}
		r, alpha := onDisk.R, onDisk.LoraAlpha
		if pr, ok := onDisk.RankPattern[mod.Name]; ok {
			r, alpha = pr, onDisk.AlphaPattern[mod.Name]
		}
		if r != ranks[mod.Group] || at.Shape[0] != int64(r) || at.Shape[1] != mod.In || bt.Shape[0] != mod.Out || bt.Shape[1] != int64(r) {
			t.Fatalf("%s: r %d, A %v, B %v", mod.Name, r, at.Shape, bt.Shape)
		}
		av, _ := at.Float32s()
		bv, _ := bt.Float32s()
		want, err := delta(sup, meta, mod, r)
		if err != nil {
			t.Fatal(err)
		}
		worst := 0.0
		for i := int64(0); i < mod.In; i++ {
			for j := int64(0); j < mod.Out; j++ {
				var s float64
				for k := 0; k < r; k++ {
					s += float64(bv[j*int64(r)+int64(k)]) * float64(av[int64(k)*mod.In+i]) // (B_t · A_t)[j, i] = ΔW[i, j]
				}
				s *= alpha / float64(r)
				worst = math.Max(worst, math.Abs(s-float64(want[i*mod.Out+j])))
			}
		}
		if !(worst <= 1e-6) {
			t.Errorf("%s: PEFT recomputation differs from ΔW by %g", mod.Name, worst)
		}
	}
}

func TestSelection(t *testing.T) {
	base, targets := sparseStories(t)
	sup, meta := superNet(t, base, targets, lora.Config{}, 1)
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "c.json")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	h, err := Preset(meta, "heuristic")
	if err != nil || h.Ranks["layers.4.down"] != 24 || len(h.Ranks) != 15 || h.Params != 95040 {
		t.Fatalf("heuristic %+v %v", h, err)
	}
	js, _ := json.Marshal(h)
	sel, err := ReadSelection(write(string(js)))
	if err != nil || sel.Strategy != "heuristic" || sel.Ranks["layers.0.qkv"] != 24 {
		t.Fatalf("round trip %+v %v", sel, err)
	}
	if mn, _ := Preset(meta, "min"); mn.Ranks["layers.0.qkv"] != 16 {
		t.Errorf("min %v", mn.Ranks)
	}
	sel.Ranks["layers.0.qkv"] = 20
	if un, err := Check(meta, sel.Ranks); err != nil || len(un) != 1 || un[0] != "layers.0.qkv" {
		t.Errorf("rank 20: untrained %v, %v", un, err)
	}
	for _, c := range []struct{ json, want string }{
		{`{"ranks": {}}`, `no "ranks"`},
		{`{"ranks": `, "not valid JSON"},
		{`{"ranks": {"layers.0.qkv": 24}}`, "14 of 15 groups have no rank"},
	} {
		s, err := ReadSelection(write(c.json))
		if err == nil {
			_, err = Check(meta, s.Ranks)
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.json, err, c.want)
		}
	}
	bad := meta.Uniform(24)
	bad["layers.9.qkv"] = 24
	if _, _, err := Export(sup, bad, Dense); err == nil || !strings.Contains(err.Error(), `no group "layers.9.qkv"`) {
		t.Errorf("unknown group: %v", err)
	}
	bad = meta.Uniform(33)
	if _, _, err := Export(sup, bad, Dense); err == nil || !strings.Contains(err.Error(), "outside 1..32") {
		t.Errorf("rank 33: %v", err)
	}
	if _, err := Preset(meta, "median"); err == nil {
		t.Error("preset median accepted")
	}
	if _, err := ParseMode("merged"); err == nil {
		t.Error("mode merged accepted")
	}
	// A train graph and a model without adapters are refused with their reason.
	if err := lora.AddDropout(sup); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Export(sup, meta.Uniform(24), Dense); err == nil || !strings.Contains(err.Error(), "train graph") {
		t.Errorf("train graph: %v", err)
	}
	if _, _, err := Export(base, meta.Uniform(24), Dense); err == nil || !strings.Contains(err.Error(), "no LoRA adapters") {
		t.Errorf("base model: %v", err)
	}
}

// TestSelectionFormat reads a CONFIG.json in the format searches wrote before lora.Ranks
// existed (testdata/search-config.json: nls.SearchConfig's fields, ranks as a plain JSON object)
// and checks that writing the selection back gives the same bytes for the fields it owns.
func TestSelectionFormat(t *testing.T) {
	sel, err := ReadSelection(filepath.Join("testdata", "search-config.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := lora.Ranks{"layers.0.down": 16, "layers.0.qkv": 24, "layers.0.up_gate": 32}
	if len(sel.Ranks) != len(want) || sel.Strategy != "hill-climb" || sel.Params != 95040 || sel.Metric == nil || sel.Metric.Value != 1.93 {
		t.Fatalf("read %+v", sel)
	}
	for g, r := range want {
		if sel.Ranks[g] != r {
			t.Errorf("group %s: rank %d, want %d", g, sel.Ranks[g], r)
		}
	}
	b, err := json.Marshal(sel)
	if err != nil {
		t.Fatal(err)
	}
	const golden = `{"ranks":{"layers.0.down":16,"layers.0.qkv":24,"layers.0.up_gate":32},"strategy":"hill-climb","metric":{"name":"val_loss","value":1.93},"adapter_params":95040}`
	if string(b) != golden {
		t.Errorf("re-encoded\n%s\nwant\n%s", b, golden)
	}
	// A plain map[string]int (the type before lora.Ranks) encodes the ranks the same way.
	old, _ := json.Marshal(map[string]map[string]int{"ranks": {"layers.0.down": 16, "layers.0.qkv": 24, "layers.0.up_gate": 32}})
	if !strings.HasPrefix(string(b), strings.TrimSuffix(string(old), "}")) {
		t.Errorf("ranks encode as %s, the old map type as %s", b, old)
	}
}
