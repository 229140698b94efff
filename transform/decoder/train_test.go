package decoder_test

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/lm"
	"github.com/shears-ml/shears/models/gpt2"
	"github.com/shears-ml/shears/models/llama"
	"github.com/shears-ml/shears/onnx"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/transform/convert"
	"github.com/shears-ml/shears/transform/decoder"
	"google.golang.org/protobuf/proto"
)

func tinyLlama(t *testing.T) *onnx.Model {
	return tinyLlamaVariant(t, llama.Variant{})
}

// tinyLlamaVariant is tinyLlama with the Hugging Face departures v.
func tinyLlamaVariant(t *testing.T, v llama.Variant) *onnx.Model {
	t.Helper()
	c := llama.Config{Dim: 32, HiddenDim: 48, Layers: 2, Heads: 4, KVHeads: 2, Vocab: 40, MaxSeq: 16, NormEps: 1e-5, RopeTheta: 10000, Variant: v}
	w := map[string][]float32{}
	m, err := llama.Build(c, func(name string, dims []int64, computed []float32) (*onnxpb.TensorProto, error) {
		if computed != nil {
			return onnx.Float32Tensor(name, dims, computed), nil
		}
		v := make([]float32, onnx.NumElements(dims))
		for i := range v {
			v[i] = float32((i*7919+len(name)*31)%97-48) / 200
		}
		w[name] = v
		return onnx.Float32Tensor(name, dims, v), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// The train form takes input_ids alone, gives logits alone, keeps the ids' symbolic dims, leaves
// its input untouched, and computes the with-past model's logits on an empty past; also with a
// sliding window (3, in the second layer) and LongRoPE over a partial rotary dim whose long
// tables the 6-token rows switch to (the mask and the switch computed from lengths and
// positions survive the fold).
func TestTrainForm(t *testing.T) {
	testkit.ORT(t)
	g2, err := gpt2.Build(gpt2.Config{Vocab: 40, Dim: 16, Heads: 2, Layers: 2, MaxSeq: 16, Eps: 1e-5}, 1)
	if err != nil {
		t.Fatal(err)
	}
	hfStyle := llama.Variant{RotateHalf: true, SlidingWindow: 3, SlidingLayers: []bool{false, true},
		Rope: &llama.Rope{Dim: 6, InvFreq: []float64{1, 0.3, 0.1}, LongInvFreq: []float64{0.5, 0.1, 0.02}, LongFrom: 4, Scale: 1.2}}
	for name, m := range map[string]*onnx.Model{"llama": tinyLlama(t), "gpt2": g2, "llama-hf": tinyLlamaVariant(t, hfStyle)} {
		before, _ := m.Marshal()
		tf, err := decoder.TrainForm(m)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if after, _ := m.Marshal(); !bytes.Equal(before, after) {
			t.Errorf("%s: TrainForm changed its input", name)
		}
		it, err := lm.Read(tf)
		if err != nil {
			t.Fatal(err)
		}
		if len(it.Inputs) != 1 || it.Inputs[0].Name != lm.InputIDs || len(it.Outputs) != 1 || it.Outputs[0].Name != lm.Logits {
			t.Errorf("%s: train form interface %v → %v", name, it.Inputs, it.Outputs)
		}
		var dims []string
		for _, d := range tf.Graph().GetInput()[0].GetType().GetTensorType().GetShape().GetDim() {
			dims = append(dims, d.GetDimParam())
		}
		if !slices.Equal(dims, []string{lm.DimBatch, lm.DimSequence}) {
			t.Errorf("%s: input_ids dims %v, want symbolic [batch_size sequence_length]", name, dims)
		}
		for _, n := range tf.Graph().GetNode() {
			if n.GetOpType() == "Concat" && strings.Contains(n.GetName(), "Concat_key") {
				t.Errorf("%s: the cache's Concat %s is still there", name, n.GetName())
			}
		}
		if err := onnx.Validate(tf); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		ids := []int64{1, 5, 9, 39, 0, 12, 20, 20, 21, 2, 38, 7}
		_, want := testkit.RunLogits(t, m, 2, ids, nil)
		_, got := testkit.RunLogits(t, tf, 2, ids, nil)
		if d := testkit.MaxDiff(want, got); !(d <= 1e-6) {
			t.Errorf("%s: train-form logits differ from the with-past model's by %g", name, d)
		}
	}
}

// A native fp16 model reads its float32 past through a Cast: the fold follows it.
func TestTrainFormThroughCast(t *testing.T) {
	testkit.ORT(t)
	m := tinyLlama(t)
	p, err := convert.NewPlan(m, convert.Options{DType: onnxpb.TensorProto_FLOAT16, Compute: convert.ComputeNative})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Rewrite(m); err != nil {
		t.Fatal(err)
	}
	tf, err := decoder.TrainForm(m)
	if err != nil {
		t.Fatal(err)
	}
	it, _ := lm.Read(tf)
	if it.HasPast() || it.Presents != 0 || len(it.Outputs) != 1 {
		t.Errorf("train form of the fp16 model: %+v", it)
	}
}

// A past read other than by the Concat (its length through Shape, as torch exports do) becomes
// an empty past made in the graph; a past read through a Cast by anything but a Concat is an
// error naming the node.
func TestTrainFormPastFallback(t *testing.T) {
	testkit.ORT(t)
	m := tinyLlama(t)
	// logits := raw logits + 0·(past length): a Shape of the past on the way to the output.
	g := m.Graph()
	for _, n := range g.Node {
		for i, o := range n.Output {
			if o == lm.Logits {
				n.Output[i] = "raw_logits"
			}
		}
	}
	g.Output[0].Name = proto.String("raw_logits")
	b := onnx.BuilderFor(m)
	l := b.Op("Shape", "/odd/Shape", []string{lm.Past(1, lm.Value)})
	l = b.Op("Gather", "/odd/Gather", []string{l, b.Const("/odd/two", onnx.Int64Tensor("", nil, []int64{2}))}, onnx.AttrInt("axis", 0))
	l = b.Op("Cast", "/odd/Cast", []string{l}, onnx.AttrInt("to", int64(onnxpb.TensorProto_FLOAT)))
	l = b.Op("Mul", "/odd/Mul", []string{l, b.Const("/odd/zero", onnx.Float32Tensor("", nil, []float32{0}))})
	b.Op("Add", "/odd/Add", []string{"raw_logits", l})
	if b.Err() != nil {
		t.Fatal(b.Err())
	}
	g.Node[len(g.Node)-1].Output[0] = lm.Logits
	g.Output[0].Name = proto.String(lm.Logits)
	tf, err := decoder.TrainForm(m)
	if err != nil {
		t.Fatal(err)
	}
	ids := []int64{1, 5, 9, 39, 0, 12}
	_, want := testkit.RunLogits(t, m, 1, ids, nil)
	_, got := testkit.RunLogits(t, tf, 1, ids, nil)
	if d := testkit.MaxDiff(want, got); !(d <= 1e-6) {
		t.Errorf("train form with an in-graph empty past differs by %g", d)
	}

	m = tinyLlama(t)
	b = onnx.BuilderFor(m)
	c := b.Op("Cast", "/odd/Cast", []string{lm.Past(0, lm.Key)}, onnx.AttrInt("to", int64(onnxpb.TensorProto_FLOAT16)))
	b.Op("Shape", "/odd/Shape", []string{c})
	if _, err := decoder.TrainForm(m); err == nil || !strings.Contains(err.Error(), `"past_key_values.0.key" is read through a Cast by node "/odd/Shape"`) {
		t.Errorf("error %v", err)
	}
}
