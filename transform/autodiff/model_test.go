package autodiff_test

import (
	"math/rand"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/models/llama2c"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/train/gradcheck"
	"github.com/shears-ml/shears/transform/autodiff"
	"github.com/shears-ml/shears/transform/decoder"
)

// Whole-model checks on stories260K with input_ids [2, 16]: loss = Σ W ⊙ logits (W fixed,
// random), gradients w.r.t. every RMSNorm weight and a LoRA-like D [64, 64] added as
// q = q_proj(x) + x·D in block 0, against central differences.
//
// Tolerances: gradcheck's whole-model rows, TolModel64 and TolModel32 (derived in
// train/gradcheck/tolerance.go).

const (
	batch, seq = 2, 16
	samples    = 24 // elements checked per wrt tensor (random, fixed seed)
)

func TestStories260KImportFloat64(t *testing.T) {
	m := importStories(t)
	m64, err := autodiff.ToFloat64(m)
	if err != nil {
		t.Fatal(err)
	}
	checkModel(t, m64, "/model/layers.0/self_attn/q_proj/MatMul", gradcheck.TolModel64)
}

func TestStories260KImportFloat32(t *testing.T) {
	checkModel(t, importStories(t), "/model/layers.0/self_attn/q_proj/MatMul", gradcheck.TolModel32)
}

func TestStories260KTorchExportFloat64(t *testing.T) {
	path := testkit.TorchStories(t).Path
	testkit.ORT(t)
	m, err := onnx.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	m64, err := autodiff.ToFloat64(m)
	if err != nil {
		t.Fatal(err)
	}
	checkModel(t, m64, "/layers.0/wq/MatMul", gradcheck.TolModel64)
}

func importStories(t *testing.T) *onnx.Model {
	path := testkit.StoriesShaped(t)
	testkit.ORT(t)
	m, err := llama2c.Import(path)
	if err != nil {
		t.Fatal(err)
	}
	// What autodiff differentiates is the train form (no KV cache; trainstep derives it too).
	if m, err = decoder.TrainForm(m); err != nil {
		t.Fatal(err)
	}
	return m
}

// checkModel adds D and the loss to m, then gradchecks the norm weights and D.
func checkModel(t *testing.T, m *onnx.Model, qProj string, tol float64) {
	t.Helper()
	dt := onnxpb.TensorProto_FLOAT
	for _, init := range m.Graph().GetInitializer() {
		if strings.HasSuffix(init.GetName(), "norm.weight") {
			dt = onnx.DataType(init)
		}
	}
	rng := rand.New(rand.NewSource(7))
	d := insertLoRA(t, m, qProj, dt, rng)
	dims := map[string][]int64{"input_ids": {batch, seq}}
	types, err := autodiff.InferShapes(m, dims)
	if err != nil {
		t.Fatal(err)
	}
	b := onnx.BuilderFor(m)
	w := make([]float64, onnx.NumElements(types["logits"].Shape))
	for i := range w {
		w[i] = rng.NormFloat64()
	}
	wt := b.Const("loss_weights", floatTensor(dt, types["logits"].Shape, w))
	l := b.Op("ReduceSum", "/loss/ReduceSum", []string{b.Op("Mul", "/loss/Mul", []string{wt, "logits"})}, onnx.AttrInt("keepdims", 0))
	b.OpOut("Identity", "/loss/Identity", []string{l}, []string{"loss"})
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}

	var norms []string
	for _, init := range m.Graph().GetInitializer() {
		if strings.HasSuffix(init.GetName(), "norm.weight") {
			norms = append(norms, init.GetName())
		}
	}
	if len(norms) != 11 {
		t.Fatalf("found %d RMSNorm weights (%v), want 11 (2 per block × 5 + final)", len(norms), norms)
	}
	ids := make([]int64, batch*seq)
	for i := range ids {
		ids[i] = rng.Int63n(512)
	}
	feeds := map[string]*runtime.Tensor{"input_ids": runtime.I64([]int64{batch, seq}, ids)}
	wrt := append([]string{d}, norms...)
	res, err := gradcheck.Check(m, "loss", wrt, feeds, gradcheck.Options{InputDims: dims, MaxSamples: samples, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	worst := checkResults(t, res, tol)
	t.Logf("%s: %d tensors × %d elements, worst max-relative error %.3g (D: %.3g, gradient scale %.3g)",
		dt, len(res), samples, worst, res[0].MaxRelErr, res[0].Scale)
}

// insertLoRA adds a trainable D [64, 64] (small random values) to the q projection named
// qProj: its output y becomes y + x·D for every consumer. The new nodes go right after qProj
// so the node list stays topologically sorted.
func insertLoRA(t *testing.T, m *onnx.Model, qProj string, dt onnxpb.TensorProto_DataType, rng *rand.Rand) string {
	t.Helper()
	g := m.Graph()
	at := -1
	for i, n := range g.GetNode() {
		if n.GetName() == qProj {
			at = i
		}
	}
	if at < 0 {
		t.Fatalf("node %q not found", qProj)
	}
	q := g.Node[at]
	x, y := q.GetInput()[0], q.GetOutput()[0]
	v := make([]float64, 64*64)
	for i := range v {
		v[i] = 0.02 * rng.NormFloat64()
	}
	before := len(g.Node)
	b := onnx.BuilderFor(m)
	d := b.Const("lora.D", floatTensor(dt, []int64{64, 64}, v))
	sum := b.Op("Add", "/lora/Add", []string{y, b.Op("MatMul", "/lora/MatMul", []string{x, d})})
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	added := append([]*onnxpb.NodeProto{}, g.Node[before:]...)
	for _, n := range g.Node[:before] {
		for k, in := range n.Input {
			if in == y {
				n.Input[k] = sum
			}
		}
	}
	rest := append([]*onnxpb.NodeProto{}, g.Node[at+1:before]...)
	g.Node = append(append(g.Node[:at+1], added...), rest...)
	return d
}
