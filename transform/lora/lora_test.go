package lora

import (
	"bytes"
	"flag"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/lm"
	"github.com/shears-ml/shears/models/llama"
	"github.com/shears-ml/shears/models/llama2c"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/transform/autodiff"
	"github.com/shears-ml/shears/transform/decoder"
	"github.com/shears-ml/shears/transform/layers"
	"google.golang.org/protobuf/proto"
)

var update = flag.Bool("update", false, "rewrite golden files")

// stories imports the shared stories260K checkpoint (5 layers, dim 64, hidden 172, kv 32).
func stories(t *testing.T) *onnx.Model {
	t.Helper()
	m, err := llama2c.Import(testkit.StoriesShaped(t))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var (
	tinyOnce sync.Once
	tinyDir  string
	tinyErr  error
)

// tiny loads the synthetic 2-layer "tiny" preset (written once per test binary).
func tiny(t *testing.T) *onnx.Model {
	t.Helper()
	tinyOnce.Do(func() {
		tinyDir, tinyErr = os.MkdirTemp("", "lora-tiny-")
		if tinyErr != nil {
			return
		}
		cfg, _ := llama.Preset("tiny")
		tinyErr = llama.WriteSynthetic(filepath.Join(tinyDir, "tiny.onnx"), cfg, 7, onnxpb.TensorProto_FLOAT)
	})
	if tinyErr != nil {
		t.Fatal(tinyErr)
	}
	m, err := onnx.Load(filepath.Join(tinyDir, "tiny.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func TestMain(m *testing.M) {
	code := m.Run()
	if tinyDir != "" {
		os.RemoveAll(tinyDir)
	}
	os.Exit(code)
}

func targetsOf(t *testing.T, m *onnx.Model) []layers.Linear {
	t.Helper()
	all, err := layers.Find(m)
	if err != nil {
		t.Fatal(err)
	}
	sel, err := layers.Select(all, "", "")
	if err != nil {
		t.Fatal(err)
	}
	return sel
}

func plan(t *testing.T, m *onnx.Model, cfg Config) *Plan {
	t.Helper()
	p, err := NewPlan(m, targetsOf(t, m), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPlanStoriesDefaults(t *testing.T) {
	m := stories(t)
	p := plan(t, m, Config{})
	if len(p.Groups) != 15 || len(p.Modules) != 25 {
		t.Fatalf("%d groups, %d modules; want 5 layers × 3 groups = 15 and 5 × 5 = 25", len(p.Groups), len(p.Modules))
	}
	// Per layer: q 64→64, k 64→32, v 64→32, up 64→172, down 172→64: Σ(in+out) = 792;
	// 5 layers × 792 × 32 = 126,720 parameters at r_max, 95,040 at 24, 63,360 at 16.
	for r, want := range map[int]int64{32: 126720, 24: 95040, 16: 63360} {
		if got := p.Params(r); got != want {
			t.Errorf("params at r=%d: %d, want %d", r, got, want)
		}
	}
	if p.Scale != 2 {
		t.Errorf("scale %v, want 64/32 = 2", p.Scale)
	}
	wantGroups := []string{"layers.0.qkv", "layers.0.up", "layers.0.down", "layers.1.qkv"}
	for i, w := range wantGroups {
		if p.Groups[i].Name != w || p.Groups[i].Mask != "lora_rank_mask."+w {
			t.Errorf("group %d: %s (mask %s), want %s", i, p.Groups[i].Name, p.Groups[i].Mask, w)
		}
	}
	if g := p.Groups[0]; strings.Join(g.Modules, " ") != "model.layers.0.self_attn.q_proj model.layers.0.self_attn.k_proj model.layers.0.self_attn.v_proj" {
		t.Errorf("qkv group modules %v", g.Modules)
	}
	q := p.Modules[0]
	if q.A != "model.layers.0.self_attn.q_proj.lora_A" || q.B != "model.layers.0.self_attn.q_proj.lora_B" ||
		q.Dropout != "lora_dropout_keep.model.layers.0.self_attn.q_proj" || q.In != 64 || q.Out != 64 {
		t.Errorf("q module %+v", q)
	}
}

// TestPlanGolden pins the printed plan of the tiny synthetic model (go test -update rewrites it).
func TestPlanGolden(t *testing.T) {
	p := plan(t, tiny(t), Config{Targets: []string{"q", "k", "v", "o", "gate", "up", "down"}, Ranks: []int{16, 12, 8}})
	got := p.String()
	golden := filepath.Join("testdata", "plan_tiny.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("plan differs from %s:\n%s", golden, got)
	}
	// All seven roles: groups qkv, up_gate, down, and o on its own (named by no group).
	if len(p.Groups) != 8 || p.Groups[1].Kind != "up_gate" || p.Groups[3].Kind != "o" {
		t.Errorf("groups %+v", p.Groups)
	}
}

func TestParseGroups(t *testing.T) {
	cases := []struct {
		spec    string
		targets []string
		want    string // kinds joined, roles in brackets
	}{
		{"", DefaultTargets, "qkv[q k v] up[up] down[down]"},
		{"", []string{"q", "k", "v", "up", "gate", "down"}, "qkv[q k v] up_gate[up gate] down[down]"},
		{"q+k+v+o,up+down", []string{"q", "k", "v", "o", "up", "down"}, "q_k_v_o[q k v o] up_down[up down]"},
		{"qkv", []string{"q", "k", "v", "down"}, "qkv[q k v] down[down]"},
		{"qkv,up", []string{"qkv", "up"}, "qkv[qkv] up[up]"}, // a fused qkv role is a role
	}
	for _, c := range cases {
		kinds, err := parseGroups(c.spec, c.targets)
		if err != nil {
			t.Errorf("%q: %v", c.spec, err)
			continue
		}
		var parts []string
		for _, k := range kinds {
			parts = append(parts, k.Name+"["+strings.Join(k.Roles, " ")+"]")
		}
		if got := strings.Join(parts, " "); got != c.want {
			t.Errorf("%q over %v: %s, want %s", c.spec, c.targets, got, c.want)
		}
	}
}

func TestBadInputs(t *testing.T) {
	m := tiny(t)
	ts := targetsOf(t, m)
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{Targets: []string{"q", "wq"}}, `target role "wq" matches none`},
		{Config{Ranks: []int{16, 24}}, "strictly descending"},
		{Config{Ranks: []int{32, 32}}, "strictly descending"},
		{Config{Ranks: []int{8, 0}}, "not positive"},
		{Config{Ranks: []int{64}}, "r_max 64 exceeds min(in, out) = min(64, 32)"},
		{Config{Groups: "qkv,up+gate,down"}, `names role "gate", which is not a target`},
		{Config{Groups: "q+k,k+v"}, `role "k" is in two groups`},
		{Config{Groups: "qkv,,down"}, "empty group"},
		{Config{Alpha: -1}, "alpha"},
		{Config{Alpha: math.NaN()}, "alpha"},
		{Config{Dropout: 1}, "dropout"},
		{Config{Targets: []string{"q", "q"}}, "listed twice"},
	}
	for _, c := range cases {
		_, err := NewPlan(m, ts, c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one containing %q", c.cfg, err, c.want)
		}
	}
	// A plan applied twice, or to another model.
	p := plan(t, m, Config{})
	sup, err := Apply(m, p, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(sup, p, ApplyOptions{}); err == nil || !strings.Contains(err.Error(), "already has LoRA adapters") {
		t.Errorf("apply twice: %v", err)
	}
	if _, err := ReadConfig(m); err == nil || !strings.Contains(err.Error(), "no LoRA adapters") {
		t.Errorf("read config of the base: %v", err)
	}
	// stories260K has layers 2..4, which the tiny model lacks.
	if _, err := Apply(m, plan(t, stories(t), Config{}), ApplyOptions{}); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("plan of another model: %v", err)
	}
}

func TestRankMask(t *testing.T) {
	if got := RankMask(6, 4); !equalF32(got, []float32{1, 1, 1, 1, 0, 0}) {
		t.Errorf("RankMask(6,4) = %v", got)
	}
	if got := RankMask(3, 9); !equalF32(got, []float32{1, 1, 1}) {
		t.Errorf("RankMask(3,9) = %v", got)
	}
	if got := RankMask(2, 0); !equalF32(got, []float32{0, 0}) {
		t.Errorf("RankMask(2,0) = %v", got)
	}
	if HeuristicRank([]int{32, 24, 16}) != 24 || HeuristicRank([]int{32, 16}) != 32 || HeuristicRank([]int{8, 6, 4, 2}) != 6 {
		t.Error("heuristic rank is index (n-1)/2")
	}
}

func equalF32(a, b []float32) bool { return slices.Equal(a, b) }

// ones is n float ones (a keep mask that keeps everything).
func ones(n int64) []float32 {
	o := make([]float32, n)
	for i := range o {
		o[i] = 1
	}
	return o
}

// session opens m on the CPU with one thread.
func session(t *testing.T, m *onnx.Model) *runtime.Session {
	t.Helper()
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s, err := runtime.OpenBytes(b, m.Dir, runtime.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var testIDs = []int64{1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 2, 0, 17, 100}

func logits(t *testing.T, m *onnx.Model, feeds map[string][]float32) []float32 {
	t.Helper()
	extra := testkit.Vectors(feeds)
	for name, v := range feeds {
		if strings.HasPrefix(name, "lora_dropout_keep.") {
			extra[name] = runtime.F32([]int64{2, 8, int64(len(v) / 16)}, v)
		}
	}
	_, out := testkit.RunLogits(t, m, 2, testIDs, extra)
	return out
}

var maxDiff = testkit.MaxDiff[float32]

// masksFor feeds group i with ranks[i % len(ranks)], giving mixed ranks across groups.
func masksFor(meta *Meta, ranks ...int) (map[string][]float32, map[string]int) {
	feeds := map[string][]float32{}
	per := map[string]int{}
	for i, g := range meta.Groups {
		r := ranks[i%len(ranks)]
		per[g.Name] = r
		feeds[g.Mask] = RankMask(meta.RMax, r)
	}
	return feeds, per
}

func TestZeroBEqualsBase(t *testing.T) {
	testkit.ORT(t)
	m := stories(t)
	base := logits(t, m, nil)
	sup, err := Apply(m, plan(t, m, Config{}), ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := ReadConfig(sup)
	for _, ranks := range [][]int{{32}, {16}, {32, 24, 16}, {0, 7}} {
		feeds, _ := masksFor(meta, ranks...)
		if d := maxDiff(base, logits(t, sup, feeds)); d != 0 {
			t.Errorf("ranks %v: B = 0 super-network differs from the base by %g", ranks, d)
		}
	}
}

// randomizeB gives every B random values (and returns the super-network with them).
func randomizeB(t *testing.T, sup *onnx.Model, meta *Meta, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	for _, mod := range meta.Modules {
		v := make([]float32, int64(meta.RMax)*mod.Out)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 0.05)
		}
		if err := onnx.SetFloat32s(sup.Initializer(mod.B), v); err != nil {
			t.Fatal(err)
		}
	}
}

// sliced builds, from the base model and by hand, y = x·W + s·(x·A[:, :r])·B[:r, :] with
// the super-network's A and B, rank r per group (no adapter at r = 0), scale s, no masks.
func sliced(t *testing.T, base, sup *onnx.Model, meta *Meta, ranks map[string]int, scale float32) *onnx.Model {
	t.Helper()
	out := &onnx.Model{Proto: proto.Clone(base.Proto).(*onnxpb.ModelProto), Dir: base.Dir}
	b := onnx.BuilderFor(out)
	s := b.Const("s", onnx.Float32Tensor("", nil, []float32{scale}))
	rewire := map[string]string{}
	var adds []string
	for _, mod := range meta.Modules {
		r := int64(ranks[mod.Group])
		if r == 0 {
			continue
		}
		a, _ := sup.Float32s(sup.Initializer(mod.A))
		bv, _ := sup.Float32s(sup.Initializer(mod.B))
		ar := make([]float32, 0, mod.In*r)
		for i := int64(0); i < mod.In; i++ {
			ar = append(ar, a[i*int64(meta.RMax):i*int64(meta.RMax)+r]...)
		}
		br := bv[:r*mod.Out]
		xa := b.Op("MatMul", "t/"+mod.Name+"/a", []string{mod.Input, b.Const("t/A", onnx.Float32Tensor("", []int64{mod.In, r}, ar))})
		xs := b.Op("Mul", "t/"+mod.Name+"/s", []string{xa, s})
		d := b.Op("MatMul", "t/"+mod.Name+"/b", []string{xs, b.Const("t/B", onnx.Float32Tensor("", []int64{r, mod.Out}, br))})
		sum := b.Op("Add", "t/"+mod.Name+"/add", []string{mod.Output, d})
		rewire[mod.Output] = sum
		adds = append(adds, strings.TrimSuffix(sum, "_output_0"))
	}
	if b.Err() != nil {
		t.Fatal(b.Err())
	}
	isAdd := map[string]bool{}
	for _, a := range adds {
		isAdd[a] = true
	}
	for _, n := range out.Graph().Node {
		if isAdd[n.GetName()] {
			continue
		}
		for i, in := range n.Input {
			if r, ok := rewire[in]; ok {
				n.Input[i] = r
			}
		}
	}
	order, err := onnx.NewIndex(out.Graph()).TopoOrder()
	if err != nil {
		t.Fatal(err)
	}
	out.Graph().Node = order
	return out
}

// TestMaskedEqualsSliced: with random B, the masked super-network at rank r per group equals
// a separately built graph with the sliced A[:, :r], B[:r, :] and the same scale; all-ones masks
// at r_max equal the unmasked formula.
func TestMaskedEqualsSliced(t *testing.T) {
	testkit.ORT(t)
	m := stories(t)
	sup, err := Apply(m, plan(t, m, Config{Seed: 1}), ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := ReadConfig(sup)
	randomizeB(t, sup, meta, 2)
	base := logits(t, m, nil)
	for _, ranks := range [][]int{{32}, {32, 24, 16}, {16, 32, 24, 24}, {5, 0, 31}} {
		feeds, per := masksFor(meta, ranks...)
		got := logits(t, sup, feeds)
		want := logits(t, sliced(t, m, sup, meta, per, 2), nil)
		d := maxDiff(got, want)
		t.Logf("ranks %v: masked vs sliced max abs diff %g", ranks, d)
		if !(d < 1e-6) {
			t.Errorf("ranks %v: masked vs sliced max |Δ| = %g", ranks, d)
		}
		if d := maxDiff(got, base); d < 1e-3 {
			t.Errorf("ranks %v: adapters change nothing (|Δ| to base %g): the test would prove nothing", ranks, d)
		}
	}
}

// TestPrefixProperty: at rank r only A[:, :r] and B[:r, :] matter.
func TestPrefixProperty(t *testing.T) {
	testkit.ORT(t)
	m := tiny(t)
	sup, err := Apply(m, plan(t, m, Config{}), ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := ReadConfig(sup)
	randomizeB(t, sup, meta, 5)
	feeds, _ := masksFor(meta, 24, 16)
	want := logits(t, sup, feeds)
	// Scramble every column ≥ r of A and row ≥ r of B.
	rng := rand.New(rand.NewPCG(9, 9))
	rOf := map[string]int{}
	for i, g := range meta.Groups {
		rOf[g.Name] = []int{24, 16}[i%2]
	}
	for _, mod := range meta.Modules {
		r := rOf[mod.Group]
		a, _ := sup.Float32s(sup.Initializer(mod.A))
		for i := range a {
			if i%meta.RMax >= r {
				a[i] = float32(rng.NormFloat64())
			}
		}
		bv, _ := sup.Float32s(sup.Initializer(mod.B))
		for i := int64(r) * mod.Out; i < int64(len(bv)); i++ {
			bv[i] = float32(rng.NormFloat64())
		}
		onnx.SetFloat32s(sup.Initializer(mod.A), a)
		onnx.SetFloat32s(sup.Initializer(mod.B), bv)
	}
	if d := maxDiff(want, logits(t, sup, feeds)); d != 0 {
		t.Errorf("values beyond the active rank changed the output by %g", d)
	}
	full, _ := masksFor(meta, 32)
	if d := maxDiff(want, logits(t, sup, full)); d < 1e-3 {
		t.Errorf("at r_max the scrambled values should matter (|Δ| %g)", d)
	}
}

// TestDropoutInputs: a train graph has one keep-mask input per module with x's symbolic shape;
// keep = 1 gives the inference super-network, keep = 0 the base model.
func TestDropoutInputs(t *testing.T) {
	testkit.ORT(t)
	m := tiny(t)
	p := plan(t, m, Config{Dropout: 0.1})
	inf, err := Apply(m, p, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := Apply(m, p, ApplyOptions{Train: true})
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := ReadConfig(tr)
	if !meta.Train || meta.Dropout != 0.1 {
		t.Errorf("meta train %v dropout %v", meta.Train, meta.Dropout)
	}
	keeps := 0
	for _, in := range tr.Graph().GetInput() {
		if !strings.HasPrefix(in.GetName(), "lora_dropout_keep.") {
			continue
		}
		keeps++
		var dims []string
		for _, d := range in.GetType().GetTensorType().GetShape().GetDim() {
			if d.GetDimParam() != "" {
				dims = append(dims, d.GetDimParam())
			} else {
				dims = append(dims, strconv.FormatInt(d.GetDimValue(), 10))
			}
		}
		want := "batch_size sequence_length 64"
		if strings.Contains(in.GetName(), "down_proj") {
			want = "batch_size sequence_length 172"
		}
		if strings.Join(dims, " ") != want {
			t.Errorf("%s: shape %v, want %s", in.GetName(), dims, want)
		}
	}
	if keeps != len(meta.Modules) {
		t.Errorf("%d keep inputs for %d modules", keeps, len(meta.Modules))
	}
	if err := AddDropout(tr); err == nil {
		t.Error("AddDropout twice accepted")
	}
	randomizeB(t, inf, meta, 3)
	randomizeB(t, tr, meta, 3)
	feeds, _ := masksFor(meta, 24, 32, 16)
	want := logits(t, inf, feeds)
	keep, drop := map[string][]float32{}, map[string][]float32{}
	for k, v := range feeds {
		keep[k], drop[k] = v, v
	}
	for _, mod := range meta.Modules {
		keep[mod.Dropout], drop[mod.Dropout] = ones(16*mod.In), make([]float32, 16*mod.In)
	}
	if d := maxDiff(want, logits(t, tr, keep)); d != 0 {
		t.Errorf("keep = 1 differs from the inference graph by %g", d)
	}
	if d := maxDiff(logits(t, m, nil), logits(t, tr, drop)); d != 0 {
		t.Errorf("keep = 0 differs from the base by %g", d)
	}
}

// TestMaskedGradientsAreZero: with loss = ReduceSum(w ⊙ logits), the gradients with respect to
// the columns of A and rows of B beyond each group's active rank are exactly zero, and the
// active ones are not (so the masks, not a dead graph, make the zeros).
func TestMaskedGradientsAreZero(t *testing.T) {
	testkit.ORT(t)
	m := tiny(t)
	sup, err := Apply(m, plan(t, m, Config{Ranks: []int{8, 6, 4}}), ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := ReadConfig(sup)
	randomizeB(t, sup, meta, 11)
	sup = weightedLoss(t, sup, 4)
	var wrt []string
	for _, mod := range meta.Modules {
		wrt = append(wrt, mod.A, mod.B)
	}
	grads, err := autodiff.Backward(sup, "loss", wrt, autodiff.Options{InputDims: map[string][]int64{"input_ids": {2, 8}}})
	if err != nil {
		t.Fatalf("backward: %v", err)
	}
	b := onnx.BuilderFor(sup)
	r := int64(meta.RMax)
	for _, mod := range meta.Modules {
		b.Output(grads[mod.A], onnxpb.TensorProto_FLOAT, mod.In, r)
		b.Output(grads[mod.B], onnxpb.TensorProto_FLOAT, r, mod.Out)
	}
	if b.Err() != nil {
		t.Fatal(b.Err())
	}
	feeds, per := masksFor(meta, 6, 4, 8, 0)
	s := session(t, sup)
	in := map[string]*runtime.Tensor{"input_ids": runtime.I64([]int64{2, 8}, testIDs)}
	for k, v := range feeds {
		in[k] = runtime.F32([]int64{r}, v)
	}
	out, err := s.Run(in, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, mod := range meta.Modules {
		rk := int64(per[mod.Group])
		ga, gb := out[grads[mod.A]].F32, out[grads[mod.B]].F32
		var activeA, activeB float64
		for i, v := range ga {
			if int64(i)%r >= rk && v != 0 {
				t.Fatalf("%s (rank %d): dA[%d, %d] = %g, want exactly 0", mod.Name, rk, int64(i)/r, int64(i)%r, v)
			}
			activeA += math.Abs(float64(v))
		}
		for i, v := range gb {
			if int64(i)/mod.Out >= rk && v != 0 {
				t.Fatalf("%s (rank %d): dB[%d, %d] = %g, want exactly 0", mod.Name, rk, int64(i)/mod.Out, int64(i)%mod.Out, v)
			}
			activeB += math.Abs(float64(v))
		}
		if rk > 0 && (activeA == 0 || activeB == 0) {
			t.Errorf("%s (rank %d): active gradients are all zero (Σ|dA| %g, Σ|dB| %g)", mod.Name, rk, activeA, activeB)
		}
	}
}

// TestTorchExport adapts the PyTorch export of stories260K (weights onnx::MatMul_N, so module
// names come from the node paths) and checks B = 0 changes nothing and dropout shapes resolve.
func TestTorchExport(t *testing.T) {
	testkit.ORT(t)
	m, err := onnx.Load(testkit.TorchStories(t).Path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	p := plan(t, m, Config{Dropout: 0.1})
	if len(p.Groups) != 15 || len(p.Modules) != 25 || p.Modules[0].Name != "layers.0.wq" || p.Modules[0].A != "layers.0.wq.lora_A" {
		t.Fatalf("plan: %d groups, %d modules, first %+v", len(p.Groups), len(p.Modules), p.Modules[0])
	}
	sup, err := Apply(m, p, ApplyOptions{Train: true})
	if err != nil {
		t.Fatal(err)
	}
	in := sup.Graph().GetInput()
	var keep []string
	for _, d := range in[len(in)-1].GetType().GetTensorType().GetShape().GetDim() {
		keep = append(keep, d.GetDimParam()+strconv.FormatInt(d.GetDimValue(), 10))
	}
	if strings.Join(keep, " ") != "batch0 sequence0 172" {
		t.Errorf("keep input %s shape %v", in[len(in)-1].GetName(), keep)
	}
	meta, _ := ReadConfig(sup)
	feeds, _ := masksFor(meta, 32, 16)
	for _, mod := range meta.Modules {
		feeds[mod.Dropout] = ones(16 * mod.In)
	}
	if d := maxDiff(logits(t, m, nil), logits(t, sup, feeds)); d != 0 {
		t.Errorf("B = 0 super-network of the torch export differs from it by %g", d)
	}
}

// TestExtract: the extracted sub-adapter (sliced A, B; masks folded to constants; no mask
// inputs) computes what the super-network computes with those rank masks.
func TestExtract(t *testing.T) {
	testkit.ORT(t)
	m := stories(t)
	sup, err := Apply(m, plan(t, m, Config{}), ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := ReadConfig(sup)
	randomizeB(t, sup, meta, 8)
	before, _ := sup.Marshal()
	feeds, per := masksFor(meta, 24, 16, 32, 24)
	sub, err := Extract(sup, per)
	if err != nil {
		t.Fatal(err)
	}
	if after, _ := sup.Marshal(); !bytes.Equal(before, after) {
		t.Error("Extract modified the super-network")
	}
	baseIt, err := lm.Read(m)
	if err != nil {
		t.Fatal(err)
	}
	subIt, err := lm.Read(sub)
	if err != nil {
		t.Fatal(err)
	}
	if d := lm.SameIO(baseIt, subIt); d != "" {
		t.Errorf("the sub-adapter's interface differs from the base model's: %s", d)
	}
	sm, err := ReadConfig(sub)
	if err != nil {
		t.Fatal(err)
	}
	if sm.Fixed["layers.0.qkv"] != 24 || sm.Fixed["layers.0.up"] != 16 || sm.Scale != 2 {
		t.Errorf("sub meta fixed %v scale %g", sm.Fixed, sm.Scale)
	}
	if d := sub.Initializer(meta.Modules[0].A).GetDims(); d[1] != 24 {
		t.Errorf("q's A has shape %v, want [64 24]", d)
	}
	if d := maxDiff(logits(t, sup, feeds), logits(t, sub, nil)); !(d < 1e-6) {
		t.Errorf("extracted vs masked max |Δ| = %g", d)
	}
	for _, bad := range []map[string]int{{"layers.9.qkv": 16}, {"layers.0.qkv": 33}, {"layers.0.qkv": 0}} {
		if _, err := Extract(sup, bad); err == nil {
			t.Errorf("Extract(%v) accepted", bad)
		}
	}
	if _, err := Extract(sub, nil); err == nil || !strings.Contains(err.Error(), "already an extracted") {
		t.Errorf("extract twice: %v", err)
	}
}

func TestMetaMasks(t *testing.T) {
	p := plan(t, tiny(t), Config{})
	meta := p.meta()
	got, err := meta.Masks(map[string]int{"layers.1.up": 16})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 6 || !equalF32(got["lora_rank_mask.layers.1.up"], RankMask(32, 16)) || !equalF32(got["lora_rank_mask.layers.0.qkv"], RankMask(32, 32)) {
		t.Errorf("masks %v", got)
	}
	if _, err := meta.Masks(map[string]int{"layers.1.up": 20}); err == nil || !strings.Contains(err.Error(), "not in the rank space") {
		t.Errorf("rank 20: %v", err)
	}
	if _, err := meta.Masks(map[string]int{"qkv": 16}); err == nil || !strings.Contains(err.Error(), `no group "qkv"`) {
		t.Errorf("unknown group: %v", err)
	}
	if u := meta.Uniform(24); len(u) != 6 || u["layers.0.down"] != 24 {
		t.Errorf("uniform %v", u)
	}
}

// TestRanksParams checks Meta.Params against Σ r·(in + out) worked by hand over the modules, and
// Heuristic against HeuristicRank.
func TestRanksParams(t *testing.T) {
	meta := &Meta{Ranks: []int{32, 24, 16}, RMax: 32,
		Groups:  []Group{{Name: "layers.0.qkv"}, {Name: "layers.0.down"}},
		Modules: []Module{{Group: "layers.0.qkv", In: 8, Out: 24}, {Group: "layers.0.down", In: 16, Out: 8}}}
	h := meta.Heuristic()
	if len(h) != 2 || h["layers.0.qkv"] != 24 || h["layers.0.down"] != 24 {
		t.Fatalf("heuristic %v", h)
	}
	r := Ranks{"layers.0.qkv": 16, "layers.0.down": 32}
	if got, want := meta.Params(r), int64(16*(8+24)+32*(16+8)); got != want {
		t.Errorf("params %d, want %d", got, want)
	}
	c := r.Clone()
	c["layers.0.qkv"] = 1
	if r["layers.0.qkv"] != 16 || Ranks(nil).Clone() == nil {
		t.Errorf("clone shares storage or is nil: %v", r)
	}
}

// weightedLoss returns m's train form (what training differentiates: no KV cache) with a
// scalar output "loss" = ReduceSum(w ⊙ logits), w [2, 8, 512] drawn from N(0, 1) with seed: a
// loss whose gradient reaches every logit with a different weight.
func weightedLoss(t *testing.T, m *onnx.Model, seed uint64) *onnx.Model {
	t.Helper()
	m, err := decoder.TrainForm(m)
	if err != nil {
		t.Fatal(err)
	}
	b := onnx.BuilderFor(m)
	rng := rand.New(rand.NewPCG(seed, seed))
	w := make([]float32, 2*8*512)
	for i := range w {
		w[i] = float32(rng.NormFloat64())
	}
	prod := b.Op("Mul", "/loss/Mul", []string{"logits", b.Const("loss_w", onnx.Float32Tensor("", []int64{2, 8, 512}, w))})
	b.OpOut("ReduceSum", "/loss/ReduceSum", []string{prod}, []string{"loss"}, onnx.AttrInt("keepdims", 0))
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}
