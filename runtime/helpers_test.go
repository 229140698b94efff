package runtime_test

import (
	"sort"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/shears-ml/shears/internal/testkit"
	"github.com/shears-ml/shears/onnx/onnxpb"
	"github.com/shears-ml/shears/runtime"
)

// storiesPath is the stories260K PyTorch export (../shared's, or made by testkit.TorchStories).
func storiesPath(t *testing.T) string {
	return testkit.TorchStories(t).Path
}

var testOpts = runtime.Options{Threads: 2}

func openStories(t *testing.T) *runtime.Session {
	t.Helper()
	path := storiesPath(t)
	testkit.ORT(t)
	s, err := runtime.OpenFile(path, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

type idLogit struct {
	id    int
	logit float32
}

func topK(row []float32, k int) []idLogit {
	all := make([]idLogit, len(row))
	for i, v := range row {
		all[i] = idLogit{i, v}
	}
	sort.Slice(all, func(a, b int) bool { return all[a].logit > all[b].logit })
	return all[:k]
}

// goldenTop5 are the stories260K logits after BOS (ONNX-NOTES §8).
// Provenance: llama2.c's reference forward (run.c of karpathy/llama2.c at 350e04f) on
// stories260K.bin with tok512.bin, `run stories260K.bin -z tok512.bin -t 0 -n 21 -i ""`, with
// the pos-0 logits printed: top-5 403 17.023516, 385 15.406213, 410 13.108263, 317 12.769166,
// 407 12.418087 (re-run 2026-12-03; testdata/stories260K-golden.sh;
// also ONNX-NOTES §8, where the torch export agrees).
var goldenTop5 = []idLogit{{403, 17.0235}, {385, 15.4062}, {410, 13.1083}, {317, 12.7692}, {407, 12.4181}}

// checkTop5 checks the logits after BOS: run.c's goldens for the trained model, PyTorch's own
// eager top-5 for the random-weight stand-in a clone without network exports.
func checkTop5(t *testing.T, row []float32) {
	t.Helper()
	want := goldenTop5
	if fx := testkit.TorchStories(t); !fx.Trained {
		want = topK(fx.AfterBOS, 5)
	}
	got := topK(row, 5)
	for i, g := range want {
		if got[i].id != g.id || !(abs32(got[i].logit-g.logit) <= 1e-3) {
			t.Fatalf("top-5 after BOS = %v, want %v", got, want)
		}
	}
}

func abs32(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}

// Tiny hand-built models, to reach the paths stories260K does not (fp16 and scalar outputs,
// initializers listed as inputs).

func vinfo(name string, dt onnxpb.TensorProto_DataType, dims ...any) *onnxpb.ValueInfoProto {
	var ds []*onnxpb.TensorShapeProto_Dimension
	for _, d := range dims {
		switch d := d.(type) {
		case int:
			ds = append(ds, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: int64(d)}})
		case string:
			ds = append(ds, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: d}})
		}
	}
	return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(dt)), Shape: &onnxpb.TensorShapeProto{Dim: ds}}}}}
}

func node(op string, in, out []string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
	return &onnxpb.NodeProto{OpType: proto.String(op), Name: proto.String(out[0] + "_node"), Input: in, Output: out, Attribute: attrs}
}

func intAttr(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

func modelBytes(t *testing.T, g *onnxpb.GraphProto) []byte {
	t.Helper()
	m := &onnxpb.ModelProto{IrVersion: proto.Int64(8), ProducerName: proto.String("shears-test"),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(17)}}, Graph: g}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tinyModel: x float32 [N,3]; w (initializer, also listed as a graph input) float32 [3] = {1,2,3};
// y = x + w; h = Cast(y, fp16) [N,3]; hs = Cast(y, fp16) with static [2,3]; s = ReduceSum(y) scalar.
func tinyModel(t *testing.T) []byte {
	w := &onnxpb.TensorProto{Name: proto.String("w"), Dims: []int64{3},
		DataType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)), FloatData: []float32{1, 2, 3}}
	g := &onnxpb.GraphProto{Name: proto.String("tiny"),
		Node: []*onnxpb.NodeProto{
			node("Add", []string{"x", "w"}, []string{"y"}),
			node("Cast", []string{"y"}, []string{"h"}, intAttr("to", int64(onnxpb.TensorProto_FLOAT16))),
			node("Cast", []string{"y"}, []string{"hs"}, intAttr("to", int64(onnxpb.TensorProto_FLOAT16))),
			node("ReduceSum", []string{"y"}, []string{"s"}, intAttr("keepdims", 0)),
		},
		Initializer: []*onnxpb.TensorProto{w},
		Input:       []*onnxpb.ValueInfoProto{vinfo("x", onnxpb.TensorProto_FLOAT, "N", 3), vinfo("w", onnxpb.TensorProto_FLOAT, 3)},
		Output: []*onnxpb.ValueInfoProto{
			vinfo("y", onnxpb.TensorProto_FLOAT, "N", 3),
			vinfo("h", onnxpb.TensorProto_FLOAT16, "N", 3),
			vinfo("hs", onnxpb.TensorProto_FLOAT16, 2, 3),
			vinfo("s", onnxpb.TensorProto_FLOAT),
		},
	}
	return modelBytes(t, g)
}
