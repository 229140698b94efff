package trainstep

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/lm"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
)

// tinyModel writes the "tiny" LLaMA preset with random weights (external data) and loads it,
// with an extra input ("rank_mask" [batch, 4]) that the step must pass through.
func tinyModel(t *testing.T) *onnx.Model {
	t.Helper()
	m := testkit.LoadSynthetic(t, "tiny")
	b := onnx.BuilderFor(m)
	x := b.Input("rank_mask", onnxpb.TensorProto_FLOAT, lm.DimBatch, 4)
	b.Op("Identity", "/rank_mask/Identity", []string{x})
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestBuildInterface(t *testing.T) {
	m := tinyModel(t)
	before, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	train := []string{"model.layers.1.input_layernorm.weight", "model.norm.weight"}
	st, err := Build(m, Config{Batch: 3, Seq: 10, Trainable: train})
	if err != nil {
		t.Fatal(err)
	}
	after, _ := m.Marshal()
	if string(before) != string(after) {
		t.Fatal("Build changed its input model")
	}
	if st.Model.Dir != m.Dir {
		t.Fatalf("step Dir %q, model Dir %q: external data would not resolve", st.Model.Dir, m.Dir)
	}
	g := st.Model.Graph()
	ins := map[string][]int64{}
	for _, v := range g.GetInput() {
		ins[v.GetName()] = dimsOf(v)
	}
	for name, want := range map[string][]int64{"input_ids": {3, 10}, "labels": {3, 10}, "rank_mask": {3, 4},
		train[0]: {64}, train[1]: {64}} {
		if !slices.Equal(ins[name], want) {
			t.Errorf("input %s dims %v, want %v", name, ins[name], want)
		}
	}
	if len(ins) != 5 {
		t.Errorf("inputs %v: want exactly the batch, the extra input and the 2 parameters", ins)
	}
	var outs []string
	for _, v := range g.GetOutput() {
		outs = append(outs, v.GetName())
	}
	if want := []string{"loss", train[0] + ".grad", train[1] + ".grad"}; !slices.Equal(outs, want) {
		t.Fatalf("outputs %v, want %v", outs, want)
	}
	if d := dimsOf(g.GetOutput()[1]); !slices.Equal(d, []int64{64}) {
		t.Fatalf("gradient output dims %v", d)
	}
	if len(st.Extra) != 1 || st.Extra[0].Name != "rank_mask" || !slices.Equal(st.Extra[0].Dims, []int64{3, 4}) {
		t.Fatalf("extra inputs %+v", st.Extra)
	}
	// Frozen weights stay initializers, still external; trainables are no longer initializers.
	ext := 0
	for _, init := range g.GetInitializer() {
		if slices.Contains(train, init.GetName()) {
			t.Fatalf("trainable %s is still an initializer", init.GetName())
		}
		if init.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
			ext++
		}
	}
	if ext == 0 {
		t.Fatal("no external initializer left in the step: frozen weights were inlined")
	}
	for i, p := range st.Params {
		if p.Name != train[i] || len(p.Init) != 64 || p.Init[0] != 1 || p.Grad != train[i]+".grad" {
			t.Fatalf("param %d: %+v", i, p)
		}
	}
	if err := onnx.Validate(st.Model); err != nil {
		t.Fatal(err)
	}
	// The step saves and loads back (--save-graph), external data rewritten next to it.
	out := filepath.Join(t.TempDir(), "step.onnx")
	if err := st.Model.Save(out, onnx.SaveOptions{ExternalData: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := onnx.Load(out); err != nil {
		t.Fatal(err)
	}
}

func TestBuildErrors(t *testing.T) {
	m := tinyModel(t)
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Batch: 1, Seq: 1, Trainable: []string{"model.norm.weight"}}, "seq ≥ 2"},
		{Config{Batch: 1, Seq: 4}, "no trainable"},
		{Config{Batch: 1, Seq: 4, Trainable: []string{"nope"}}, `"nope" is not an initializer`},
		{Config{Batch: 1, Seq: 4, Trainable: []string{"model.norm.weight", "model.norm.weight"}}, "listed twice"},
		{Config{Batch: 1, Seq: 4, Trainable: []string{"model.norm.weight"}, InputIDs: "ids"}, `no input "ids"`},
	} {
		if _, err := Build(m, c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.cfg, err, c.want)
		}
	}
}
