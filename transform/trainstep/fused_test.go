package trainstep

import (
	"math/rand/v2"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
)

// A graph with onnxruntime's fused RMSNorms trains: the step lowers them, and its loss equals
// the causal-LM loss of the fused graph's own logits in onnxruntime.
func TestBuildLowersFusedNorms(t *testing.T) {
	testkit.ORT(t)
	const v, d, bt, seq = 11, 8, 2, 5
	rng := rand.New(rand.NewPCG(3, 4))
	rnd := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		return x
	}
	b := onnx.NewBuilder("fused_norms", 17)
	ids := b.Input("input_ids", onnxpb.TensorProto_INT64, "batch", "sequence")
	x := b.Op("Gather", "/embed", []string{b.Const("embed", onnx.Float32Tensor("embed", []int64{v, d}, rnd(v*d))), ids})
	h := b.Op("SimplifiedLayerNormalization", "/norm0", []string{x, b.Const("w0", onnx.Float32Tensor("w0", []int64{d}, rnd(d)))}, onnx.AttrFloat("epsilon", 1e-5))
	y := b.Op("MatMul", "/layers.0/mlp/up_proj/MatMul", []string{h, b.Const("up", onnx.Float32Tensor("up", []int64{d, d}, rnd(d*d)))})
	outs := b.OpN("SkipSimplifiedLayerNormalization", "/norm1", []string{y, x, b.Const("w1", onnx.Float32Tensor("w1", []int64{d}, rnd(d)))}, 4, onnx.AttrFloat("epsilon", 1e-6))
	ms := onnx.MicrosoftDomain
	b.Graph().Node[len(b.Graph().Node)-1].Domain = &ms
	b.OpOut("MatMul", "/lm_head/MatMul", []string{outs[0], b.Const("head", onnx.Float32Tensor("head", []int64{d, v}, rnd(d*v)))}, []string{"logits"})
	b.Output("logits", onnxpb.TensorProto_FLOAT, "batch", "sequence", v)
	m, err := b.Model()
	if err != nil {
		t.Fatal(err)
	}
	one := int64(1)
	m.Proto.OpsetImport = append(m.Proto.OpsetImport, &onnxpb.OperatorSetIdProto{Domain: &ms, Version: &one})

	tokens := make([]int64, bt*seq)
	for i := range tokens {
		tokens[i] = int64(rng.IntN(v))
	}
	_, logits := testkit.RunLogits(t, m, bt, tokens, nil)
	want := goLoss(logits, tokens, bt, seq, v)

	st, err := Build(m, Config{Batch: bt, Seq: seq, Trainable: []string{"up"}})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := st.Model.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s, err := runtime.OpenBytes(raw, "", runtime.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := s.Run(map[string]*runtime.Tensor{
		st.InputIDs: runtime.I64([]int64{bt, seq}, tokens), st.Labels: runtime.I64([]int64{bt, seq}, tokens),
		"up": runtime.F32([]int64{d, d}, st.Params[0].Init),
	}, []string{st.Loss})
	if err != nil {
		t.Fatal(err)
	}
	if got := float64(res[st.Loss].F32[0]); !(abs(got-want) <= 1e-5*want) {
		t.Errorf("step loss %.7f, fused graph's loss %.7f", got, want)
	}
}

// A GenAI-style graph (fused norms, rotary, GroupQueryAttention) trains: lowered and put in
// its train form, the step's loss equals the causal-LM loss of the fused graph's own logits.
func TestBuildLowersFusedAttention(t *testing.T) {
	testkit.ORT(t)
	m, _, cfg := testkit.FusedTiny(t, testkit.GQA, 1)
	const bt, seq = 2, 6
	tokens := []int64{1, 50, 9, 300, 2, 7, 7, 100, 11, 3, 499, 8}
	_, logits := testkit.RunLogits(t, m, bt, tokens, nil)
	want := goLoss(logits, tokens, bt, seq, cfg.Vocab)
	st, err := Build(m, Config{Batch: bt, Seq: seq, Trainable: []string{"model.norm.weight"}})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := st.Model.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s, err := runtime.OpenBytes(raw, st.Model.Dir, runtime.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := s.Run(map[string]*runtime.Tensor{
		st.InputIDs: runtime.I64([]int64{bt, seq}, tokens), st.Labels: runtime.I64([]int64{bt, seq}, tokens),
		"model.norm.weight": runtime.F32([]int64{64}, st.Params[0].Init),
	}, []string{st.Loss, st.Params[0].Grad})
	if err != nil {
		t.Fatal(err)
	}
	if got := float64(res[st.Loss].F32[0]); !(abs(got-want) <= 1e-5*want) {
		t.Errorf("step loss %.7f, fused graph's loss %.7f", got, want)
	}
	if g := res[st.Params[0].Grad].F32; len(g) != 64 || g[0] == 0 {
		t.Errorf("gradient %v", g[:4])
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
