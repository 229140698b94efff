package lora

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/models/gpt2"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/transform/layers"
)

func TestFuseQKV(t *testing.T) {
	fused := []layers.Linear{{Role: "qkv"}, {Role: "o"}, {Role: "up"}, {Role: "down"}}
	split := []layers.Linear{{Role: "q"}, {Role: "k"}, {Role: "v"}, {Role: "up"}}
	cases := []struct {
		roles []string
		ls    []layers.Linear
		want  []string
	}{
		{DefaultTargets, fused, []string{"qkv", "up", "down"}},
		{[]string{"v", "o", "k", "q"}, fused, []string{"o", "qkv"}},
		{DefaultTargets, split, DefaultTargets},             // separate q, k, v: unchanged
		{[]string{"q", "up"}, fused, []string{"q", "up"}},   // not all three: left to fail loudly
		{[]string{"qkv", "o"}, fused, []string{"qkv", "o"}}, // already fused
	}
	for _, c := range cases {
		if got := fuseQKV(c.roles, c.ls); !slices.Equal(got, c.want) {
			t.Errorf("%v over %v: %v, want %v", c.roles, c.ls, got, c.want)
		}
	}
}

// The default targets adapt GPT-2's fused c_attn (one adapter per q, k, v slice of its output,
// all three in the block's qkv group), c_fc and mlp c_proj (not attn c_proj: o is not a default
// role); asking for q alone is refused with the roles present.
func TestPlanGPT2Defaults(t *testing.T) {
	m, err := gpt2.Build(gpt2.Tiny, 1)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := layers.Find(m)
	if err != nil {
		t.Fatal(err)
	}
	ls, _ = layers.Select(ls, "", "")
	p, err := NewPlan(m, ls, Config{Targets: DefaultTargets, Ranks: []int{8, 4}})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mod := range p.Modules {
		names = append(names, mod.Name)
	}
	want := []string{
		"transformer.h.0.attn.c_attn.q", "transformer.h.0.attn.c_attn.k", "transformer.h.0.attn.c_attn.v",
		"transformer.h.0.mlp.c_fc", "transformer.h.0.mlp.c_proj",
		"transformer.h.1.attn.c_attn.q", "transformer.h.1.attn.c_attn.k", "transformer.h.1.attn.c_attn.v",
		"transformer.h.1.mlp.c_fc", "transformer.h.1.mlp.c_proj",
	}
	if !slices.Equal(names, want) || !slices.Equal(p.Config.Targets, []string{"qkv", "up", "down"}) {
		t.Fatalf("modules %v, targets %v", names, p.Config.Targets)
	}
	if g := p.Groups[0]; g.Name != "layers.0.qkv" || !slices.Equal(g.Modules, want[:3]) {
		t.Fatalf("group %+v", g)
	}
	d := int64(gpt2.Tiny.Dim)
	for k, mod := range p.Modules[:3] {
		if mod.Out != d || !slices.Equal(mod.Slice, []int64{int64(k) * d, int64(k+1) * d}) || mod.Fused != "transformer.h.0.attn.c_attn" || mod.Role != "qkv"[k:k+1] {
			t.Errorf("slice module %+v", mod)
		}
	}
	_, err = NewPlan(m, ls, Config{Targets: []string{"q", "up"}, Ranks: []int{8, 4}})
	if err == nil || !strings.Contains(err.Error(), `target role "q" matches none`) || !strings.Contains(err.Error(), "qkv") {
		t.Fatalf("q alone on GPT-2: %v", err)
	}
}

// fusedPair builds the same attention input projection twice: once as one fused qkv linear
// (MatMul + bias + Split into q 6, k 4, v 4, as a GQA model has), once as separate q, k and v
// linears whose weights and biases are the fused ones' column slices.
func fusedPair(t *testing.T) (fused, split *onnx.Model) {
	t.Helper()
	rng := rand.New(rand.NewPCG(3, 4))
	const in = 8
	sizes := []int64{6, 4, 4}
	w := make([]float32, in*14)
	bias := make([]float32, 14)
	for i := range w {
		w[i] = float32(rng.NormFloat64() / 3)
	}
	for i := range bias {
		bias[i] = float32(rng.NormFloat64() / 10)
	}
	cols := func(v []float32, width, lo, hi int64) []float32 {
		var out []float32
		for r := int64(0); r < int64(len(v))/width; r++ {
			out = append(out, v[r*width+lo:r*width+hi]...)
		}
		return out
	}
	b := onnx.NewBuilder("fused", 17)
	x := b.Input("x", onnxpb.TensorProto_FLOAT, 2, 3, in)
	wt := b.Const("model.layers.0.self_attn.qkv_proj.weight", onnx.Float32Tensor("", []int64{in, 14}, w))
	y := b.Op("MatMul", "/model/layers.0/self_attn/qkv_proj/MatMul", []string{x, wt})
	y = b.Op("Add", "/model/layers.0/self_attn/qkv_proj/Add", []string{y, b.Const("qkv_bias", onnx.Float32Tensor("", []int64{14}, bias))})
	parts := b.OpN("Split", "/model/layers.0/self_attn/Split", []string{y, b.Const("sizes", onnx.Int64Tensor("", []int64{3}, sizes))}, 3, onnx.AttrInt("axis", -1))
	for k, role := range []string{"q", "k", "v"} {
		b.OpOut("Identity", "/out/"+role, []string{parts[k]}, []string{role})
		b.Output(role, onnxpb.TensorProto_FLOAT, 2, 3, sizes[k])
	}
	fused, err := b.Model()
	if err != nil {
		t.Fatal(err)
	}
	b = onnx.NewBuilder("split", 17)
	x = b.Input("x", onnxpb.TensorProto_FLOAT, 2, 3, in)
	lo := int64(0)
	for _, c := range []struct {
		role string
		n    int64
	}{{"q", 6}, {"k", 4}, {"v", 4}} {
		p := "/model/layers.0/self_attn/" + c.role + "_proj"
		wt := b.Const("model.layers.0.self_attn."+c.role+"_proj.weight", onnx.Float32Tensor("", []int64{in, c.n}, cols(w, 14, lo, lo+c.n)))
		y := b.Op("MatMul", p+"/MatMul", []string{x, wt})
		y = b.Op("Add", p+"/Add", []string{y, b.Const(c.role+"_bias", onnx.Float32Tensor("", []int64{c.n}, bias[lo:lo+c.n]))})
		b.OpOut("Identity", "/out/"+c.role, []string{y}, []string{c.role})
		b.Output(c.role, onnxpb.TensorProto_FLOAT, 2, 3, c.n)
		lo += c.n
	}
	split, err = b.Model()
	if err != nil {
		t.Fatal(err)
	}
	return fused, split
}

// super adapts m with q, k, v targets (ranks 4, 2) and returns the super-network and its plan.
func superOf(t *testing.T, m *onnx.Model) (*onnx.Model, *Plan) {
	t.Helper()
	ls, err := layers.Find(m)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan(m, ls, Config{Targets: []string{"q", "k", "v"}, Ranks: []int{4, 2}})
	if err != nil {
		t.Fatal(err)
	}
	sup, err := Apply(m, p, ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return sup, p
}

func setF32(t *testing.T, m *onnx.Model, name string, v []float32) {
	t.Helper()
	init := m.Initializer(name)
	if init == nil {
		t.Fatalf("no initializer %s", name)
	}
	if err := onnx.SetFloat32s(init, v); err != nil {
		t.Fatal(err)
	}
}

// The q, k, v slice adapters of a fused linear have exactly the effect of separate q, k, v
// adapters (same A, B, rank mask) on the split weights, at every rank of the space; the fused
// linear's three adapters share one rank group.
func TestFusedSliceAdaptersEqualSeparate(t *testing.T) {
	testkit.ORT(t)
	fusedM, splitM := fusedPair(t)
	fs, fp := superOf(t, fusedM)
	ss, sp := superOf(t, splitM)
	if len(fp.Groups) != 1 || len(fp.Groups[0].Modules) != 3 || len(fp.Modules) != 3 {
		t.Fatalf("fused plan:\n%s", fp)
	}
	if !strings.Contains(fp.String(), "outputs [6:10]") {
		t.Errorf("the plan does not show the k slice:\n%s", fp)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for k := range fp.Modules {
		f, s := fp.Modules[k], sp.Modules[k]
		if f.Role != s.Role || f.Out != s.Out || f.In != s.In {
			t.Fatalf("module %d: fused %+v, separate %+v", k, f, s)
		}
		a := make([]float32, f.In*4)
		bb := make([]float32, 4*f.Out)
		for i := range a {
			a[i] = float32(rng.NormFloat64())
		}
		for i := range bb {
			bb[i] = float32(rng.NormFloat64())
		}
		setF32(t, fs, f.A, a)
		setF32(t, fs, f.B, bb)
		setF32(t, ss, s.A, a)
		setF32(t, ss, s.B, bb)
	}
	x := make([]float32, 2*3*8)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	run := func(m *onnx.Model, mask string, r int) map[string][]float32 {
		data, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		sess, err := runtime.OpenBytes(data, "", runtime.Options{Threads: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close()
		feeds := map[string]*runtime.Tensor{"x": runtime.F32([]int64{2, 3, 8}, x)}
		if mask != "" {
			feeds[mask] = runtime.F32([]int64{4}, RankMask(4, r))
		}
		out, err := sess.Run(feeds, []string{"q", "k", "v"})
		if err != nil {
			t.Fatal(err)
		}
		return map[string][]float32{"q": out["q"].F32, "k": out["k"].F32, "v": out["v"].F32}
	}
	base := run(fusedM, "", 0)
	for _, r := range []int{4, 2} {
		got, want := run(fs, fp.Groups[0].Mask, r), run(ss, sp.Groups[0].Mask, r)
		for _, role := range []string{"q", "k", "v"} {
			if d := testkit.MaxDiff(got[role], want[role]); !(d <= 1e-5) {
				t.Errorf("rank %d, %s: fused slice adapters differ from separate adapters by %.3g", r, role, d)
			}
			if d := testkit.MaxDiff(got[role], base[role]); !(d > 1e-2) {
				t.Errorf("rank %d, %s: the adapter changed nothing (%.3g)", r, role, d)
			}
		}
	}
}
