package autodiff_test

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
	"github.com/shears-ml/shears/transform/autodiff"
	"google.golang.org/protobuf/proto"
)

// TestRegistryCoversRequired fails when an op of autodiff.Required has no rule.
func TestRegistryCoversRequired(t *testing.T) {
	have := autodiff.SupportedOps()
	for _, op := range autodiff.Required {
		if !slices.Contains(have, op) {
			t.Errorf("op %s is required but has no gradient rule", op)
		}
	}
	if len(have) < len(autodiff.Required) {
		t.Errorf("%d rules for %d required ops", len(have), len(autodiff.Required))
	}
}

// linear builds loss = ReduceSum(MatMul(x, W) + b) with x a graph input [2, 3], W [3, 4] and
// b [4] initializers, plus whatever extra does to the builder before the loss.
func linear(t *testing.T, extra func(b *onnx.Builder, y string) string) *onnx.Model {
	t.Helper()
	b := onnx.NewBuilder("lin", 17)
	x := b.Input("x", onnxpb.TensorProto_FLOAT, 2, 3)
	w := b.Const("W", onnx.Float32Tensor("", []int64{3, 4}, make([]float32, 12)))
	bias := b.Const("b", onnx.Float32Tensor("", []int64{4}, make([]float32, 4)))
	y := b.Op("Add", "/Add", []string{b.Op("MatMul", "/MatMul", []string{x, w}), bias})
	if extra != nil {
		y = extra(b, y)
	}
	b.OpOut("ReduceSum", "/loss", []string{y}, []string{"loss"}, onnx.AttrInt("keepdims", 0))
	b.Output("loss", onnxpb.TensorProto_FLOAT)
	m, err := b.Model()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func countOps(nodes []*onnxpb.NodeProto, op string) int {
	n := 0
	for _, nd := range nodes {
		if nd.GetOpType() == op {
			n++
		}
	}
	return n
}

func TestFrozenWeightsGetNoGradient(t *testing.T) {
	// Only the bias is trained: nothing flows into the MatMul (x is an input, W frozen).
	m := linear(t, nil)
	before := len(m.Graph().Node)
	g, err := autodiff.Backward(m, "loss", []string{"b"}, autodiff.Options{})
	if err != nil {
		t.Fatal(err)
	}
	added := m.Graph().Node[before:]
	if n := countOps(added, "MatMul"); n != 0 {
		t.Errorf("training only the bias emitted %d MatMuls", n)
	}
	if g["b"] != autodiff.GradName("b") {
		t.Errorf("gradient of b is %q, want %q", g["b"], autodiff.GradName("b"))
	}

	// Training W with x a plain input: dW only (one MatMul), no dX.
	m = linear(t, nil)
	before = len(m.Graph().Node)
	if _, err := autodiff.Backward(m, "loss", []string{"W"}, autodiff.Options{}); err != nil {
		t.Fatal(err)
	}
	if n := countOps(m.Graph().Node[before:], "MatMul"); n != 1 {
		t.Errorf("training W emitted %d MatMuls, want 1 (dW only)", n)
	}
}

func TestGradientValuesOfLinear(t *testing.T) {
	testkit.ORT(t)
	// loss = Σ (x·W + b): dW[k][j] = Σ_i x[i][k], db[j] = rows = 2.
	m := linear(t, nil)
	g, err := autodiff.Backward(m, "loss", []string{"W", "b"}, autodiff.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := onnx.BuilderFor(m)
	b.Output(g["W"], onnxpb.TensorProto_FLOAT, 3, 4)
	b.Output(g["b"], onnxpb.TensorProto_FLOAT, 4)
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s, err := runtime.OpenBytes(data, "", runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	x := []float32{1, 2, 3, 10, 20, 30}
	out, err := s.Run(map[string]*runtime.Tensor{"x": runtime.F32([]int64{2, 3}, x)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k := 0; k < 3; k++ {
		for j := 0; j < 4; j++ {
			if got, want := out[g["W"]].F32[k*4+j], x[k]+x[3+k]; got != want {
				t.Errorf("dW[%d][%d] = %g, want %g", k, j, got, want)
			}
		}
	}
	for j, v := range out[g["b"]].F32 {
		if v != 2 {
			t.Errorf("db[%d] = %g, want 2", j, v)
		}
	}
}

func TestFanOutIsSummed(t *testing.T) {
	// loss = Σ (y + y·y) with y = x·W + b: the two uses of y are summed.
	m := linear(t, func(b *onnx.Builder, y string) string {
		return b.Op("Add", "/Add2", []string{y, b.Op("Mul", "/Sq", []string{y, y})})
	})
	before := len(m.Graph().Node)
	if _, err := autodiff.Backward(m, "loss", []string{"b"}, autodiff.Options{}); err != nil {
		t.Fatal(err)
	}
	if n := countOps(m.Graph().Node[before:], "Sum"); n != 1 {
		t.Errorf("%d Sum nodes for the fan-out of y, want 1", n)
	}
}

func TestErrors(t *testing.T) {
	// Floor on the gradient path has no rule: an error naming the node and op.
	m := linear(t, func(b *onnx.Builder, y string) string { return b.Op("Floor", "/my/Floor", []string{y}) })
	_, err := autodiff.Backward(m, "loss", []string{"b"}, autodiff.Options{})
	if err == nil || !strings.Contains(err.Error(), `"/my/Floor"`) || !strings.Contains(err.Error(), "no gradient rule for op Floor") {
		t.Errorf("Floor on the path: got %v", err)
	}

	// The same Floor off the path (on a frozen tensor) is fine.
	m = linear(t, func(b *onnx.Builder, y string) string {
		f := b.Op("Floor", "/my/Floor", []string{"W"})
		return b.Op("Add", "/Add2", []string{y, b.Op("ReduceSum", "/RS", []string{f}, onnx.AttrInt("keepdims", 0))})
	})
	if _, err := autodiff.Backward(m, "loss", []string{"b"}, autodiff.Options{}); err != nil {
		t.Errorf("Floor off the gradient path: %v", err)
	}

	// If on the path is refused.
	m = linear(t, func(b *onnx.Builder, y string) string {
		c := b.Const("cond", onnx.NewTensor("", onnxpb.TensorProto_BOOL, nil, []byte{1}))
		branch := &onnxpb.GraphProto{Name: proto.String("br")}
		out := b.Op("If", "/my/If", []string{c},
			&onnxpb.AttributeProto{Name: proto.String("then_branch"), Type: onnxpb.AttributeProto_GRAPH.Enum(), G: branch},
			&onnxpb.AttributeProto{Name: proto.String("else_branch"), Type: onnxpb.AttributeProto_GRAPH.Enum(), G: branch})
		return b.Op("Add", "/Add2", []string{y, out})
	})
	_, err = autodiff.Backward(m, "loss", []string{"b"}, autodiff.Options{})
	if err == nil || !strings.Contains(err.Error(), `"/my/If" (If)`) {
		t.Errorf("If on the path: got %v", err)
	}

	for _, tc := range []struct {
		loss string
		wrt  []string
		want string
	}{
		{"loss", []string{"nope"}, `wrt "nope" is not a tensor`},
		{"nope", []string{"b"}, `loss "nope" is not a tensor`},
		{"/Add_output_0", []string{"b"}, "must be a float scalar"},
		{"loss", nil, "no tensors to differentiate"},
	} {
		_, err := autodiff.Backward(linear(t, nil), tc.loss, tc.wrt, autodiff.Options{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Backward(%q, %v): got %v, want an error containing %q", tc.loss, tc.wrt, err, tc.want)
		}
	}

	// A wrt the loss does not depend on.
	m = linear(t, func(b *onnx.Builder, y string) string {
		b.Const("unused", onnx.Float32Tensor("", []int64{2}, []float32{1, 2}))
		return y
	})
	if _, err := autodiff.Backward(m, "loss", []string{"unused"}, autodiff.Options{}); err == nil || !strings.Contains(err.Error(), `does not depend on wrt "unused"`) {
		t.Errorf("unused wrt: got %v", err)
	}
}

// TestStoriesGraphIsStandard: the backward pass of the imported stories260K graph uses only
// ai.onnx ops, still shape-infers (the train-step builder runs InferShapes on it) and every
// gradient has its parameter's shape.
func TestStoriesGraphIsStandard(t *testing.T) {
	m := importStories(t)
	dims := map[string][]int64{"input_ids": {2, 16}}
	b := onnx.BuilderFor(m)
	b.OpOut("ReduceSum", "/loss", []string{"logits"}, []string{"loss"}, onnx.AttrInt("keepdims", 0))
	var wrt []string
	for _, init := range m.Graph().GetInitializer() {
		if onnx.DataType(init) == onnxpb.TensorProto_FLOAT && strings.HasPrefix(init.GetName(), "model.layers.") {
			wrt = append(wrt, init.GetName())
		}
	}
	before := len(m.Graph().Node)
	g, err := autodiff.Backward(m, "loss", wrt, autodiff.Options{InputDims: dims})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range m.Graph().Node[before:] {
		if n.GetDomain() != "" {
			t.Errorf("node %q uses domain %q", n.GetName(), n.GetDomain())
		}
	}
	types, err := onnx.InferShapes(m, dims)
	if err != nil {
		t.Fatalf("shape inference of the backward graph: %v", err)
	}
	for _, w := range wrt {
		if got, want := types[g[w]].Shape, onnx.Dims(m.Initializer(w)); !slices.Equal(got, want) {
			t.Errorf("gradient of %s has shape %v, want %v", w, got, want)
		}
	}
	if err := onnx.Validate(m); err != nil {
		t.Errorf("validate: %v", err)
	}
	t.Logf("%d parameters, %d forward nodes, %d backward nodes", len(wrt), before, len(m.Graph().Node)-before)
}

// TestToFloat64 runs a model and its float64 copy on the same ids: the logits agree to float32
// precision, and the copy has no float32 tensor left.
func TestToFloat64(t *testing.T) {
	testkit.Shared(t, "models/stories260K/stories260K.bin") // the golden logit: the trained model
	m := importStories(t)
	m64, err := autodiff.ToFloat64(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, init := range m64.Graph().GetInitializer() {
		if onnx.DataType(init) == onnxpb.TensorProto_FLOAT {
			t.Fatalf("initializer %s is still float32", init.GetName())
		}
	}
	if onnx.DataType(m.Graph().GetInitializer()[0]) == onnxpb.TensorProto_DOUBLE {
		t.Fatal("ToFloat64 changed its input")
	}
	ids := runtime.I64([]int64{1, 4}, []int64{1, 403, 407, 261})
	run := func(mm *onnx.Model) *runtime.Tensor {
		data, err := mm.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		// Basic optimization: extended fusions (QuickGelu, FusedMatMul) have float32 kernels only.
		s, err := runtime.OpenBytes(data, "", runtime.Options{OptLevel: "basic"})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		out, err := s.Run(testkit.Feeds(t, s.Inputs(), ids, nil), []string{"logits"})
		if err != nil {
			t.Fatal(err)
		}
		return out["logits"]
	}
	a, b := run(m), run(m64)
	if len(b.F64) != len(a.F32) {
		t.Fatalf("float64 logits: %d values, want %d", len(b.F64), len(a.F32))
	}
	worst := 0.0
	for i := range a.F32 {
		worst = math.Max(worst, math.Abs(float64(a.F32[i])-b.F64[i]))
	}
	// The golden top logit after BOS is 17.0235: llama2.c's run.c reference forward (karpathy/llama2.c
	// at 350e04f, printed 17.023516; ONNX-NOTES §8); float32 keeps ~1e-6 relative.
	if !(worst <= 1e-3) || !(math.Abs(b.F64[403]-17.0235) <= 1e-3) {
		t.Errorf("float64 logits differ from float32 by %.3g; logit[0][403] = %.5f, want 17.0235", worst, b.F64[403])
	}
	t.Logf("max |float32 − float64| logit difference: %.3g", worst)
}
